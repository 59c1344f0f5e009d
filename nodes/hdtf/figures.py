"""HDTF's Fig. 8: the animation-parameter curves (the Fig. 9 grid is nodes/figures.intermediates_grid)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nodes.types import MorphCoeffs


def animation_curves(series: Sequence[tuple[str, MorphCoeffs]], fps: float = 25.0) -> np.ndarray:
    """Fig. 8: (a) mouth opening, (b) eyebrow down, (c) head roll in degrees, (d) horizontal head
    translation in pixels (from the first frame), one line per labelled coefficient sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6))
    panels = [
        ("(a) mouth: jaw open", lambda c: c.expression[:, 0]),
        ("(b) eyebrow: brow down (mean of left, right)", lambda c: c.expression[:, 28:30].mean(1)),
        ("(c) head rotation: roll (degrees)", lambda c: np.degrees(c.pose[:, 2])),
        ("(d) head translation: horizontal (pixels)", lambda c: c.pose[:, 3] - c.pose[0, 3]),
    ]
    for ax, (title, fn) in zip(axes.flat, panels):
        for label, c in series:
            y = fn(c)
            ax.plot(np.arange(len(y)) / fps, y, label=label, linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb
