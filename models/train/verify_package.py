#!/usr/bin/env python3
"""Checks a built package without retraining: manifest schema keys, sha256/bytes, ONNX input/output
names, shapes and dtypes at batch 1 and 16, ORT CPU latency (2 intra-op threads) at batch 1 and 8,
reference-image skew check, and the real-photo sanity check.

    python3 models/train/verify_package.py [models/dr-synth]
"""
import hashlib
import json
import os
import sys
import tomllib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.dirname(os.path.dirname(HERE))


def main(pkg=os.path.join(ROOT, "models", "dr-synth")):
    import build
    import package
    import preprocess
    man = tomllib.load(open(os.path.join(pkg, "manifest.toml"), "rb"))
    path = os.path.join(pkg, man["file"]["path"])
    data = open(path, "rb").read()
    res = {"sha256_ok": hashlib.sha256(data).hexdigest() == man["file"]["sha256"],
           "bytes_ok": len(data) == man["file"]["bytes"], "bytes": len(data)}
    for k in ("schema_version", "name", "version", "description", "intended_use", "clinical_use", "created",
              "license", "file", "input", "output", "thresholds", "grading", "training", "metrics"):
        assert k in man, k
    assert man["grading"]["grade_rule"] == "threshold-then-argmax-v1"
    assert man["input"]["recipe"] == preprocess.RECIPE
    sess = build.ort_session(path)
    io = package.check_outputs(sess)
    res["io"] = io
    want = {o["name"]: o["shape"] for o in man["output"]}
    for n in (1, 16):
        for name, shape in want.items():
            got = io[f"shapes_batch{n}"][name]
            exp = [n if s == "N" else s for s in shape]
            assert got == exp, (name, got, exp)
            assert io[f"dtypes_batch{n}"][name] == "float32"
    assert io["input"][0] == man["input"]["name"] == "image"
    res["io_ok"] = True
    res["latency"] = package.latency(sess, reps=(30, 12))
    th = man["thresholds"]
    res["real_photo"] = package.real_photo_check(sess, th)
    # reference skew check: fixtures/reference/<stem>.png == preprocess(fixture)
    fx = os.path.join(ROOT, "fixtures")
    ref = os.path.join(fx, "reference")
    bad = []
    if os.path.isdir(ref):
        from PIL import Image
        for f in sorted(os.listdir(fx)):
            stem, ext = os.path.splitext(f)
            if ext.lower() not in (".jpg", ".png") or not os.path.isfile(os.path.join(fx, f)):
                continue
            a = preprocess.preprocess_file(os.path.join(fx, f))
            b = np.asarray(Image.open(os.path.join(ref, stem + ".png")).convert("RGB"))
            if a.shape != b.shape or np.abs(a.astype(int) - b).max() > 0:
                bad.append(f)
        res["reference_mismatch"] = bad
    print(json.dumps(res, indent=1))
    ok = res["sha256_ok"] and res["bytes_ok"] and not bad
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
