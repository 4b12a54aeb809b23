"""Lesion load painted onto the real (CC0) photograph: a transfer check the synthetic test set cannot give.

The held-out test set is rendered by the same code the model trained on, so it cannot say whether the
model reads lesions on a *real* retina. Here a real photograph of a normal eye gets deterministic, renderer-
sized lesions in three loads: `mild` (8 microaneurysms), `moderate` (dot/blot haemorrhages plus hard
exudates away from the fovea) and `severe` (more than 20 haemorrhages in each quadrant, the 4-2-1 rule).
Lesion load must raise P(referable DR); mild must stay non-referable and moderate/severe must be referable.
Colours follow render.py: a haemorrhage multiplies the pixel by 1 - (0.36, 0.72, 0.58) * strength, an
exudate blends towards (250, 228, 125). Sizes are in units of the field-of-view radius R, as in render.py
(microaneurysms 0.006-0.010 R, blots 0.010-0.018 R).
"""
import io

import numpy as np
from PIL import Image

import preprocess

LOADS = ("mild", "moderate", "severe")
SEED = 7


def _soft_spot(img, cy, cx, ry, rx):
    """Alpha of a soft-edged ellipse (1 inside, linear rim half a radius wide) in a local window."""
    h, w = img.shape[:2]
    y0, y1 = max(0, int(cy - 1.6 * ry)), min(h, int(cy + 1.6 * ry) + 2)
    x0, x1 = max(0, int(cx - 1.6 * rx)), min(w, int(cx + 1.6 * rx) + 2)
    y = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    x = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    d = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    return np.clip(1.5 - d, 0, 1)[..., None], (slice(y0, y1), slice(x0, x1))


def paint(rgb, load, seed=SEED):
    """A copy of `rgb` (uint8 HxWx3 fundus photo) with `load` lesions painted inside its field of view."""
    if load not in LOADS:
        raise ValueError(load)
    rng = np.random.default_rng(seed)
    img = rgb.astype(np.float32)
    left, top, right, bottom = preprocess.fov_box(rgb)
    cx, cy, R = (left + right + 1) / 2, (top + bottom + 1) / 2, (right - left + 1) / 2

    def spots(n, rmin, rmax, quadrant=None, ring=(0.15, 0.75)):
        out = []
        for _ in range(n):
            lo, hi = (0, 2 * np.pi) if quadrant is None else (quadrant * np.pi / 2, (quadrant + 1) * np.pi / 2)
            a = rng.uniform(lo, hi)
            rr = R * np.sqrt(rng.uniform(ring[0] ** 2, ring[1] ** 2))
            out.append((cy + rr * np.sin(a), cx + rr * np.cos(a), rng.uniform(rmin, rmax) * R))
        return out

    if load == "mild":
        haem, exu = spots(8, 0.006, 0.010), []
    elif load == "moderate":
        haem = spots(4, 0.006, 0.010) + spots(10, 0.010, 0.018)
        exu = spots(14, 0.003, 0.006, ring=(0.3, 0.5))
    else:
        haem = [s for q in range(4) for s in spots(24, 0.010, 0.018, quadrant=q)]
        exu = spots(14, 0.003, 0.006, ring=(0.3, 0.5))
    coef = np.array([0.36, 0.72, 0.58], np.float32) * 0.9
    for y, x, r in haem:
        a, win = _soft_spot(img, y, x, r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0))
        img[win] *= 1 - a * coef
    colour = np.array([250, 228, 125], np.float32)
    for y, x, r in exu:
        a, win = _soft_spot(img, y, x, r, r)
        a = a * 0.85
        img[win] = img[win] * (1 - a) + a * colour
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def painted_jpeg(rgb, load):
    """paint() encoded as the committed fixture `fixtures/retina_skimage_<load>.jpg` (JPEG quality 92), so the
    model card's real-photo lines and the Rust test see the same bytes."""
    buf = io.BytesIO()
    Image.fromarray(paint(rgb, load)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()
