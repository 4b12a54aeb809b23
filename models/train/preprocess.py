#!/usr/bin/env python3
"""Preprocessing recipe "fov-crop-bilinear-v1" (single source of truth for training,
evaluation and the fixtures/reference images).

Input: encoded image bytes (JPEG/PNG/TIFF). Output: 512x512 RGB uint8.

1. Decode to RGB8, EXIF orientation applied. JPEG only: reduced DCT-scale decode with the
   smallest denominator d in {8,4,2,1} such that min(W,H)//d >= 640 (d=1 if none), via
   Pillow's draft(); the decoded size is ceil(W/d) x ceil(H/d).
2. Field of view: pixel in field iff R+G+B >= 60. c[x] = in-field count of column x,
   r[y] = in-field count of row y. Column qualifies iff c[x] >= max(3, H//100), row iff
   r[y] >= max(3, W//100). left/right/top/bottom = first/last qualifying column/row; if no
   column or no row qualifies, the whole image is used.
3. Square crop: d = max(right-left+1, bottom-top+1); x0 = (left+right+1-d)//2,
   y0 = (top+bottom+1-d)//2; copy [x0,x0+d) x [y0,y0+d) onto a black d x d canvas.
4. Resize to 512x512 with Pillow BILINEAR (antialiased triangle filter).

Normalisation for the model (not applied here): (pixel/255 - mean)/std with
mean=[0.485,0.456,0.406], std=[0.229,0.224,0.225].

CLI: python3 models/train/preprocess.py IN OUT.png
"""
import io
import sys

import numpy as np
from PIL import Image, ImageOps

RECIPE = "fov-crop-bilinear-v1"
SIZE = 512
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
FOV_SUM_THRESHOLD = 60
MIN_DECODE_SIDE = 640


def jpeg_scale_denominator(w: int, h: int) -> int:
    for d in (8, 4, 2, 1):
        if min(w, h) // d >= MIN_DECODE_SIDE:
            return d
    return 1


def decode_rgb(data: bytes) -> np.ndarray:
    """Step 1: decode to an RGB8 HxWx3 array (reduced-scale decode for JPEG)."""
    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        w, h = im.size
        d = jpeg_scale_denominator(w, h)
        if d > 1:
            im.draft("RGB", (w // d, h // d))
            expect = (-(-w // d), -(-h // d))
            if im.size != expect:
                raise ValueError(f"JPEG draft gave {im.size}, expected {expect} (d={d})")
    im.load()
    im = ImageOps.exif_transpose(im)
    if im.mode != "RGB":
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA").convert("RGB")  # drop alpha (no compositing)
        else:
            im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def fov_box(rgb: np.ndarray):
    """Step 2: (left, top, right, bottom), inclusive."""
    h, w = rgb.shape[:2]
    inf = rgb.astype(np.int32).sum(axis=2) >= FOV_SUM_THRESHOLD
    cols = inf.sum(axis=0)
    rows = inf.sum(axis=1)
    qc = np.nonzero(cols >= max(3, h // 100))[0]
    qr = np.nonzero(rows >= max(3, w // 100))[0]
    if len(qc) == 0 or len(qr) == 0:
        return 0, 0, w - 1, h - 1
    return int(qc[0]), int(qr[0]), int(qc[-1]), int(qr[-1])


def square_crop(rgb: np.ndarray, box) -> np.ndarray:
    """Step 3: black-padded square crop centred on the FOV box."""
    left, top, right, bottom = box
    h, w = rgb.shape[:2]
    d = max(right - left + 1, bottom - top + 1)
    x0 = (left + right + 1 - d) // 2
    y0 = (top + bottom + 1 - d) // 2
    out = np.zeros((d, d, 3), dtype=np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + d, w), min(y0 + d, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out


def preprocess_array(rgb: np.ndarray) -> np.ndarray:
    """Steps 2-4 on an already decoded RGB8 array."""
    sq = square_crop(rgb, fov_box(rgb))
    im = Image.fromarray(sq, "RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def preprocess_bytes(data: bytes) -> np.ndarray:
    """Full recipe: encoded bytes -> 512x512x3 uint8."""
    return preprocess_array(decode_rgb(data))


def preprocess_file(path) -> np.ndarray:
    with open(path, "rb") as f:
        return preprocess_bytes(f.read())


def normalize(u8: np.ndarray) -> np.ndarray:
    """HxWx3 (or NxHxWx3) uint8 -> float32 CHW (or NCHW) model input."""
    x = u8.astype(np.float32) / 255.0
    x = (x - MEAN) / STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def main(argv):
    if len(argv) != 3:
        print("usage: preprocess.py IN OUT.png", file=sys.stderr)
        return 2
    out = preprocess_file(argv[1])
    Image.fromarray(out, "RGB").save(argv[2], format="PNG")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
