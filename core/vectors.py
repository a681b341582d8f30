"""Unit vectors, so that a dot product is a cosine similarity: one place for the zero-vector guard."""

from __future__ import annotations

import numpy as np


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1; an all-zero row stays zero (its cosine with anything is 0)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)
