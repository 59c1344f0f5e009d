"""The signal processing behind the Envelope node, kept apart from the node class. The node
imports it, so the engine counts it as the node's code: editing it invalidates cached envelopes."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def envelope(signal: np.ndarray, window: int, mode: str, progress: Callable[[int, int], None] = lambda i, n: None) -> np.ndarray:
    """RMS (or peak absolute value) over a centred window of `window` samples, edge-padded."""
    padded = np.pad(np.abs(signal.astype(np.float64)), (window // 2, window - 1 - window // 2), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    out = np.empty(len(signal))
    step = max(1, len(signal) // 10)
    for start in range(0, len(signal), step):  # in blocks, so that progress can be shown
        block = windows[start:start + step]
        out[start:start + step] = np.sqrt((block ** 2).mean(axis=1)) if mode == "rms" else block.max(axis=1)
        progress(min(start + step, len(signal)), len(signal))
    return out.astype(np.float32)
