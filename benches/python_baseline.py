#!/usr/bin/env python3
"""Single-thread Python baselines for the preprocessing benchmark (numbers for the
issue notes, not a test): a 12 MP fundus JPEG to a normalised 512x512 CHW float32
tensor with (a) OpenCV's reduced-size decode + INTER_AREA + numpy, the fastest common
Python pipeline, and (b) plain Pillow (full decode + BILINEAR resize).

    python3 -m pip install opencv-python-headless numpy pillow
    python3 benches/python_baseline.py fixtures/grade4_R_12mp.jpg
"""
import sys
import time

import cv2
import numpy as np
from PIL import Image
import io

cv2.setNumThreads(1)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def fov_square(rgb):
    inf = rgb.astype(np.int32).sum(axis=2) >= 60
    h, w = inf.shape
    cols, rows = inf.sum(axis=0), inf.sum(axis=1)
    qc, qr = np.nonzero(cols >= max(3, h // 100))[0], np.nonzero(rows >= max(3, w // 100))[0]
    left, right, top, bottom = (qc[0], qc[-1], qr[0], qr[-1]) if len(qc) and len(qr) else (0, w - 1, 0, h - 1)
    d = max(right - left + 1, bottom - top + 1)
    x0, y0 = (left + right + 1 - d) // 2, (top + bottom + 1 - d) // 2
    out = np.zeros((d, d, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + d, w), min(y0 + d, h)
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out


def normalise(rgb):
    return np.ascontiguousarray(((rgb.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1))


def opencv(buf):
    bgr = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return normalise(cv2.resize(fov_square(rgb), (512, 512), interpolation=cv2.INTER_AREA))


def pillow(buf):
    rgb = np.asarray(Image.open(io.BytesIO(buf)).convert("RGB"))
    return normalise(np.asarray(Image.fromarray(fov_square(rgb)).resize((512, 512), Image.Resampling.BILINEAR)))


def bench(f, buf, n):
    f(buf)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f(buf)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


if __name__ == "__main__":
    data = open(sys.argv[1], "rb").read()
    print(f"opencv reduced-4 + INTER_AREA: {bench(opencv, data, 30):.1f} ms (median)")
    print(f"plain Pillow full decode + BILINEAR: {bench(pillow, data, 10):.1f} ms (median)")
