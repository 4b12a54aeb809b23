#!/usr/bin/env python3
"""Writes fixtures/reference/fov_boxes.csv: the field-of-view box (left, top, right, bottom,
inclusive, in decoded pixels) that preprocess.py finds for every reference image, so the
Rust skew test can tell a one-pixel box difference (decoder rounding at the rim) from a
real recipe mismatch. Run after fixtures are (re)built."""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import preprocess  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FX = os.path.join(ROOT, "fixtures")


def main():
    names = sorted(f for f in os.listdir(FX) if f.lower().endswith((".jpg", ".jpeg", ".png", ".tif", ".tiff")))
    with open(os.path.join(FX, "reference", "fov_boxes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "left", "top", "right", "bottom"])
        for name in names:
            stem = os.path.splitext(name)[0]
            if not os.path.exists(os.path.join(FX, "reference", stem + ".png")):
                continue
            with open(os.path.join(FX, name), "rb") as img:
                rgb = preprocess.decode_rgb(img.read())
            w.writerow([name, *preprocess.fov_box(rgb)])


if __name__ == "__main__":
    main()
