"""The streaming fold: Pub/Sub events -> Beam -> Bigtable user scores and item norms."""
