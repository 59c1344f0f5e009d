"""Image quality of generated frames: PSNR and SSIM against the ground truth, and CPBD, a
no-reference sharpness measure (Narvekar & Karam, IEEE TIP 2011) as used in HDTF Table 4."""
from __future__ import annotations

import numpy as np

# CPBD constants from the paper: blocks of 64x64, JNB widths 5 (contrast <= 50) / 3, beta = 3.6,
# a block is an edge block when more than 0.2 % of its pixels are edges, P_JNB = 63 %.
BLOCK, BETA, EDGE_FRACTION, P_JNB = 64, 3.6, 0.002, 0.63


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 RGB images (Gaussian window, sigma 1.5, as Wang et al. 2004)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return image.astype(np.float64)


def edge_widths(gray: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Marziliano edge width at each edge pixel with a mostly horizontal gradient: the distance
    between the intensity extrema on either side along the row (0 where not measured)."""
    from scipy import ndimage

    gx = ndimage.sobel(gray, axis=1)
    gy = ndimage.sobel(gray, axis=0)
    widths = np.zeros_like(gray)
    h, w = gray.shape
    rows, cols = np.nonzero(edges & (np.abs(gx) >= np.abs(gy)) & (gx != 0))
    for r, c in zip(rows, cols):
        line = gray[r]
        s = 1.0 if gx[r, c] > 0 else -1.0  # rising (s=1) or falling edge, left to right
        left = c
        while left > 0 and s * (line[left] - line[left - 1]) > 0:
            left -= 1
        right = c
        while right < w - 1 and s * (line[right + 1] - line[right]) > 0:
            right += 1
        widths[r, c] = right - left
    return widths


def cpbd(image: np.ndarray) -> float:
    """Cumulative probability of blur detection in [0, 1]; higher is sharper."""
    from skimage.feature import canny

    gray = _gray(image)
    edges = canny(gray)
    widths = edge_widths(gray, edges)
    probabilities = []
    h, w = gray.shape
    for y in range(0, h - BLOCK + 1, BLOCK):
        for x in range(0, w - BLOCK + 1, BLOCK):
            block_edges = edges[y:y + BLOCK, x:x + BLOCK]
            if block_edges.sum() <= EDGE_FRACTION * BLOCK * BLOCK:
                continue
            block = gray[y:y + BLOCK, x:x + BLOCK]
            w_jnb = 5.0 if block.max() - block.min() <= 50 else 3.0
            bw = widths[y:y + BLOCK, x:x + BLOCK]
            bw = bw[bw > 0]
            probabilities.append(1.0 - np.exp(-np.abs(bw / w_jnb) ** BETA))
    if not probabilities:
        return 0.0
    p = np.concatenate(probabilities)
    return float(np.mean(p <= P_JNB)) if p.size else 0.0


def frame_metrics(generated: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean PSNR, SSIM (against the truth) and CPBD (of the generated frames) over a clip."""
    if generated.shape != truth.shape:
        raise ValueError(f"generated frames {generated.shape} and ground truth {truth.shape} differ in shape")
    return {
        "psnr": float(np.mean([psnr(g, t) for g, t in zip(generated, truth)])),
        "ssim": float(np.mean([ssim(g, t) for g, t in zip(generated, truth)])),
        "cpbd": float(np.mean([cpbd(g) for g in generated])),
    }
