"""The animation parameters of HDTF §3 in the project's MorphCoeffs conventions (nodes/types.py):
expression (T, 33) = 28 mouth + 5 eyebrow coefficients. The generator's head pose is a delta
from the reference frame's pose (the paper's p^hed "difference sequence"; nodes/face/pose_deltas.py).
"""
from __future__ import annotations

import numpy as np

N_MOUTH, N_BROW = 28, 5


def split_expression(expression: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if expression.shape[-1] != N_MOUTH + N_BROW:
        raise ValueError(f"expected {N_MOUTH + N_BROW} expression coefficients (28 mouth + 5 brow), got {expression.shape[-1]}")
    return expression[..., :N_MOUTH], expression[..., N_MOUTH:]
