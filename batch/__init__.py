"""The DIMSUM refresh: Spark recomputes item-item cosine similarity generations."""
