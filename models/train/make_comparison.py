#!/usr/bin/env python3
"""Writes models/train/renderer_vs_real.png: the real CC0 fundus photo (scikit-image's retina.jpg,
top-left, labelled REAL) next to synthetic renders of every grade and some ungradable defects."""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import package  # noqa: E402
import render  # noqa: E402

T = 320


def thumb(im):
    im = im.convert("RGB")
    w, h = im.size
    s = T / max(w, h)
    im = im.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.LANCZOS)
    c = Image.new("RGB", (T, T))
    c.paste(im, ((T - im.size[0]) // 2, (T - im.size[1]) // 2))
    return c


def main(out=os.path.join(HERE, "renderer_vs_real.png")):
    tiles = [(thumb(Image.open(package.skimage_retina_path())), "REAL (scikit-image retina.jpg, CC0)")]
    cases = [(0, 0, 1, None, "R"), (0, 0, 1, None, "L"), (1, 0, 1, None, "L"), (2, 0, 1, None, "R"),
             (2, 1, 1, None, "L"), (3, 0, 1, None, "R"), (4, 0, 1, None, "L"), (0, 0, 0, "blur", "L"),
             (0, 0, 0, "haze", "R"), (0, 0, 0, "dark", "L"), (0, 0, 0, "lid", "R")]
    for i, (g, d, q, defect, eye) in enumerate(cases):
        _, lab, cv = render.render(880000 + i, D=1100, frame=(1400, 1100),
                                   case_override=dict(grade=g, dme=d, gradable=q, defect=defect, eye=eye))
        txt = f"synthetic: grade {g}" + (" DME" if d else "") + ("" if q else f" UNGRADABLE ({defect})")
        tiles.append((thumb(Image.fromarray(cv)), txt))
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    W = Image.new("RGB", (cols * T, rows * (T + 18)), (255, 255, 255))
    dr = ImageDraw.Draw(W)
    for k, (im, txt) in enumerate(tiles):
        x, y = (k % cols) * T, (k // cols) * (T + 18)
        W.paste(im, (x, y))
        dr.text((x + 4, y + T + 3), txt, fill=(0, 0, 0))
    W.save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
