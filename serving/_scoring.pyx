# cython: language_level=3, boundscheck=False, wraparound=False
"""Placeholder scoring kernel until the serving issue lands: a weighted sum."""


def weighted_sum(double[:] weights, double[:] values) -> double:
    cdef Py_ssize_t i
    cdef double total = 0.0
    with nogil:
        for i in range(weights.shape[0]):
            total += weights[i] * values[i]
    return total
