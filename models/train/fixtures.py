"""Builds fixtures/: rendered test images, labels.csv, broken inputs, the CC0 real retina photo,
and fixtures/reference/<stem>.png (512x512 output of preprocess.py for every image fixture)."""
import csv
import io
import json
import os
import shutil
import struct
import zlib

import numpy as np
from PIL import Image

import preprocess
import render

# (file, seed, overrides, frame (W,H), D, format, quality, exam)
FIXTURES = [
    ("grade0_R.jpg", 71001, dict(grade=0, dme=0, gradable=1, defect=None, eye="R"), (1600, 1200), 1150, "JPEG", 92, "exam01"),
    ("grade0_L.jpg", 71002, dict(grade=0, dme=0, gradable=1, defect=None, eye="L"), (1600, 1200), 1150, "JPEG", 92, "exam01"),
    ("grade1_R.jpg", 71011, dict(grade=1, dme=0, gradable=1, defect=None, eye="R"), (1800, 1350), 1300, "JPEG", 90, "exam02"),
    ("grade1_L.jpg", 71012, dict(grade=1, dme=0, gradable=1, defect=None, eye="L"), (1800, 1350), 1300, "JPEG", 90, "exam02"),
    ("grade2_R.jpg", 71021, dict(grade=2, dme=0, gradable=1, defect=None, eye="R"), (2000, 1500), 1440, "JPEG", 88, "exam03"),
    ("grade2_L.png", 71022, dict(grade=2, dme=0, gradable=1, defect=None, eye="L"), (1024, 768), 740, "PNG", None, "exam03"),
    ("grade3_R.jpg", 71031, dict(grade=3, dme=0, gradable=1, defect=None, eye="R"), (1400, 1400), 1350, "JPEG", 90, "exam04"),
    ("grade3_L.jpg", 71032, dict(grade=3, dme=0, gradable=1, defect=None, eye="L"), (1800, 1200), 1300, "JPEG", 90, "exam04"),
    ("grade4_R_12mp.jpg", 71041, dict(grade=4, dme=0, gradable=1, defect=None, eye="R"), (4000, 3000), 2900, "JPEG", 85, "exam05"),
    ("grade4_L.jpg", 71042, dict(grade=4, dme=1, gradable=1, defect=None, eye="L"), (1600, 1200), 1160, "JPEG", 90, "exam05"),
    ("dme_R.jpg", 71051, dict(grade=2, dme=1, gradable=1, defect=None, eye="R"), (1600, 1200), 1160, "JPEG", 92, "exam06"),
    ("ungradable_blur_L.jpg", 71061, dict(grade=0, dme=0, gradable=0, defect="blur", eye="L"), (1600, 1200), 1160, "JPEG", 90, "exam06"),
    ("ungradable_dark_R.jpg", 71071, dict(grade=0, dme=0, gradable=0, defect="dark", eye="R"), (1600, 1200), 1160, "JPEG", 90, "exam07"),
    ("ungradable_haze_L.jpg", 71072, dict(grade=0, dme=0, gradable=0, defect="haze", eye="L"), (1600, 1200), 1160, "JPEG", 90, "exam07"),
    ("ungradable_clipped_R.jpg", 71073, dict(grade=0, dme=0, gradable=0, defect="fov", eye="R"), (1600, 1200), 1160, "JPEG", 90, "exam07"),
    ("ungradable_lid_L.jpg", 71074, dict(grade=0, dme=0, gradable=0, defect="lid", eye="L"), (1600, 1200), 1160, "JPEG", 90, "exam07"),
]

LICENSE_RETINA = """fixtures/retina_skimage.jpg

Source: the file skimage/data/retina.jpg shipped inside the scikit-image wheel
(function skimage.data.retina()), copied byte for byte.

scikit-image documents it as: "Human retina. This image was downloaded from wikimedia
(Wikimedia Commons, File:Fundus_photograph_of_normal_left_eye.jpg). This file is made available
under the Creative Commons CC0 1.0 Universal Public Domain Dedication."
Reference given by scikit-image: Haggstrom, Mikael (2014). "Medical gallery of Mikael Haggstrom
2014". WikiJournal of Medicine 1 (2). DOI:10.15347/wjm/2014.008. ISSN 2002-4436. Public Domain.

Licence: CC0 1.0 Universal (public domain dedication), https://creativecommons.org/publicdomain/zero/1.0/

fixtures/retina_skimage_{mild,moderate,severe}.jpg are that photograph with synthetic lesions painted on
by models/train/paint_lesions.py; released under the same CC0 dedication.
"""


def png_chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def bomb_png():
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def build_all(fx_dir, onnx_path=None, th=None):
    os.makedirs(fx_dir, exist_ok=True)
    ref_dir = os.path.join(fx_dir, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    for f in os.listdir(ref_dir):  # drop stale reference PNGs, keep other files
        if f.endswith(".png"):
            os.remove(os.path.join(ref_dir, f))
    brk = os.path.join(fx_dir, "broken")
    os.makedirs(brk, exist_ok=True)
    rows = []
    for name, seed, ov, frame, D, fmt, q, exam in FIXTURES:
        data, lab, canvas = render.render(seed, D=D, frame=frame, quality=q or 90, case_override=ov)
        path = os.path.join(fx_dir, name)
        if fmt == "PNG":
            Image.fromarray(canvas).save(path, format="PNG", optimize=False, compress_level=9)
        else:
            open(path, "wb").write(data)
        rows.append([name, lab["grade"], lab["dme"], lab["gradable"], lab["eye"], exam])
    with open(os.path.join(fx_dir, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "grade", "dme", "gradable", "laterality", "exam_id"])
        w.writerows(rows)
    # real CC0 photo
    import package
    src = package.skimage_retina_path()
    dst = os.path.join(fx_dir, "retina_skimage.jpg")
    if src and os.path.abspath(src) != os.path.abspath(dst):
        shutil.copyfile(src, dst)
    open(os.path.join(fx_dir, "LICENSE-retina.txt"), "w").write(LICENSE_RETINA)
    # the same photo with lesions painted on (paint_lesions.py), for the lesion-load transfer check
    import paint_lesions
    real_rgb = preprocess.decode_rgb(open(dst, "rb").read())
    painted = []
    for load in paint_lesions.LOADS:
        name = f"retina_skimage_{load}.jpg"
        open(os.path.join(fx_dir, name), "wb").write(paint_lesions.painted_jpeg(real_rgb, load))
        painted.append(name)
    # broken inputs
    open(os.path.join(brk, "empty.jpg"), "wb").close()
    g0 = open(os.path.join(fx_dir, "grade0_R.jpg"), "rb").read()
    open(os.path.join(brk, "truncated.jpg"), "wb").write(g0[:len(g0) // 2])
    open(os.path.join(brk, "bomb.png"), "wb").write(bomb_png())
    open(os.path.join(brk, "not_an_image.jpg"), "w").write(
        "This is a plain text file with a .jpg extension. It is not an image.\n")
    # references
    stems = [r[0] for r in rows] + ["retina_skimage.jpg"] + painted
    preds = {}
    for name in stems:
        arr = preprocess.preprocess_file(os.path.join(fx_dir, name))
        Image.fromarray(arr, "RGB").save(os.path.join(ref_dir, os.path.splitext(name)[0] + ".png"), format="PNG")
        if onnx_path:
            import build
            sess = build.ort_session(onnx_path)
            out = build.predict(sess, arr[None])
            d = build.derive(out, th)
            preds[name] = {"grade": int(d["grade"][0]), "dme": bool(d["dme"][0]), "gradable": bool(d["gradable"][0]),
                           "p_gradable": round(float(d["p_q"][0]), 4), "p_ref_dr": round(float(d["p_ref"][0]), 4),
                           "p_dme": round(float(d["p_dme"][0]), 4)}
    write_readme(fx_dir, rows)
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.exists(os.path.join(here, "fov_boxes.py")):  # reference FOV boxes for the Rust skew test
        import fov_boxes
        fov_boxes.main()
    if preds:
        json.dump(preds, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture_predictions.json"), "w"),
                  indent=1)
    return preds


def write_readme(fx_dir, rows):
    def size_of(name):
        im = Image.open(os.path.join(fx_dir, name))
        return f"{im.size[0]}x{im.size[1]} {im.format}"
    lines = ["# Test fixtures", "",
             "Generated by `python3 models/train/build.py` (module `models/train/fixtures.py`); do not edit by hand.",
             "All images except `retina_skimage.jpg` are synthetic renders (no patient data).", "",
             "## Images (ground truth in `labels.csv`)", "",
             "`labels.csv` columns: `path,grade,dme,gradable,laterality,exam_id` (path relative to fixtures/, "
             "grade = ICDR 0-4, dme 0/1, gradable 0/1, laterality L/R). Ungradable fixtures are rendered "
             "without lesions (grade 0, dme 0). Exams group 2-4 images with both eyes.", "",
             "| file | size | grade | dme | gradable | eye | exam | what |", "|---|---|---|---|---|---|---|---|"]
    what = {
        "grade0": "no retinopathy", "grade1": "mild NPDR: microaneurysms only",
        "grade2": "moderate NPDR: haemorrhages / exudates / cotton-wool spots",
        "grade3": "severe NPDR (4-2-1 rule: haemorrhages in 4 quadrants, venous beading or IRMA)",
        "grade4": "proliferative DR (new vessels, pre-retinal or vitreous haemorrhage)",
        "dme": "hard exudates within one disc diameter of the fovea (DME)",
        "ungradable_blur": "defocus blur", "ungradable_dark": "under-exposed",
        "ungradable_haze": "media haze (cataract-like veil)", "ungradable_clipped": "less than 3/4 of the field visible",
        "ungradable_lid": "eyelid / lash shadow",
    }
    for r in rows:
        key = next(k for k in sorted(what, key=len, reverse=True) if r[0].startswith(k))
        extra = " (12 MP, 4000x3000)" if "12mp" in r[0] else (" (PNG)" if r[0].endswith(".png") else "")
        lines.append(f"| `{r[0]}` | {size_of(r[0])} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {what[key]}{extra} |")
    lines += ["", "## Real photograph", "",
              f"- `retina_skimage.jpg` ({size_of('retina_skimage.jpg')}): CC0 fundus photograph of a normal left eye, "
              "copied from scikit-image's bundled data; source and licence in `LICENSE-retina.txt`. "
              "Not listed in labels.csv (a normal eye: a sane model should call it gradable, grade 0-1).",
              "- `retina_skimage_mild.jpg`, `retina_skimage_moderate.jpg`, `retina_skimage_severe.jpg`: the same "
              "photograph with lesions painted on by `models/train/paint_lesions.py` (seeded): 8 microaneurysms; "
              "dot/blot haemorrhages and hard exudates away from the fovea; more than 20 haemorrhages in each "
              "quadrant. Derived from the CC0 photo, so CC0 as well. Lesion load must raise P(referable DR): "
              "mild non-referable, moderate and severe referable.", "",
              "## Broken inputs (`broken/`)", "",
              "- `broken/empty.jpg`: 0 bytes.",
              "- `broken/truncated.jpg`: the first half of `grade0_R.jpg`.",
              "- `broken/bomb.png`: valid PNG signature and IHDR (correct CRC) claiming 100000x100000 RGB8, tiny IDAT.",
              "- `broken/not_an_image.jpg`: a text file.", "",
              "## Preprocessing references (`reference/`)", "",
              "`reference/<stem>.png`: the 512x512 RGB8 output of `models/train/preprocess.py` "
              "(recipe `fov-crop-bilinear-v1`, before normalisation) for every image above, including "
              "`retina_skimage`. The Rust implementation should match these within +-1 per channel "
              "(resampler rounding), which guards against training/serving skew.",
              "`reference/fov_boxes.csv` (written by `models/train/fov_boxes.py`): the inclusive field-of-view box "
              "(left, top, right, bottom, decoded pixels) the recipe finds for each reference image.", ""]
    open(os.path.join(fx_dir, "README.md"), "w").write("\n".join(lines))
