"""Docs figures: labelled rows of frames from videos (docs/yi.md shows the demos before and
after a retrain this way).

    python -c "from pathlib import Path; from tools.video_strips import video_strips; \
               video_strips({'before': Path('a.mp4'), 'after': Path('b.mp4')}, [0, 25, 50], Path('docs/figures/x.jpg'))"
"""
from __future__ import annotations

from pathlib import Path


def video_strips(rows: dict[str, Path], frames: list[int], jpg: Path, size: int = 256,
                 crop: tuple[slice, slice] | None = None) -> None:
    """One labelled row of frames per video (docs/yi.md figures: the demos before/after a retrain)."""
    import cv2
    import numpy as np

    from nodes.io.media import read_video

    strips = []
    for label, path in rows.items():
        video = read_video(str(path))
        tiles = [cv2.resize(video.frames[i], (size, size), interpolation=cv2.INTER_AREA) for i in frames]
        tiles = [t[crop] if crop else t for t in tiles]
        strip = np.ascontiguousarray(np.concatenate(tiles, 1)[..., ::-1])
        cv2.putText(strip, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.putText(strip, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        strips.append(strip)
    cv2.imwrite(str(jpg), np.concatenate(strips, 0), [cv2.IMWRITE_JPEG_QUALITY, 90])
