"""Writes models/dr-synth/{manifest.toml, MODEL_CARD.md} and runs package-level checks
(ONNX names/shapes, ORT latency, real-photo sanity check)."""
import hashlib
import io
import json
import os
import time

import numpy as np
from PIL import Image
from scipy import ndimage

import preprocess

HERE = os.path.dirname(os.path.abspath(__file__))
CREATED = "2026-11-27"
VERSION = "1.4.0"
LICENSE = "Apache-2.0"


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def skimage_retina_path():
    try:
        import skimage
        p = os.path.join(os.path.dirname(skimage.__file__), "data", "retina.jpg")
        if os.path.exists(p):
            return p
    except ImportError:
        pass
    p = os.path.join(os.path.dirname(HERE), "..", "fixtures", "retina_skimage.jpg")
    return p if os.path.exists(p) else None


def check_outputs(sess):
    res = {}
    ins = sess.get_inputs()
    res["input"] = [ins[0].name, [str(s) for s in ins[0].shape], ins[0].type]
    res["outputs"] = {o.name: [str(s) for s in o.shape] for o in sess.get_outputs()}
    for n in (1, 16):
        outs = sess.run(None, {"image": np.zeros((n, 3, 512, 512), np.float32)})
        res[f"shapes_batch{n}"] = {o.name: list(v.shape) for o, v in zip(sess.get_outputs(), outs)}
        res[f"dtypes_batch{n}"] = {o.name: str(v.dtype) for o, v in zip(sess.get_outputs(), outs)}
    return res


def latency(sess, reps=(12, 6)):
    out = {}
    rng = np.random.default_rng(0)
    for bs, n in zip((1, 8), reps):
        x = rng.standard_normal((bs, 3, 512, 512)).astype(np.float32)
        sess.run(None, {"image": x})
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            sess.run(None, {"image": x})
            ts.append(time.perf_counter() - t)
        out[f"batch{bs}_ms_per_image_median"] = float(np.median(ts) / bs * 1000)
        out[f"batch{bs}_ms_per_batch_median"] = float(np.median(ts) * 1000)
    return out


def _encode_png(a):
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


def real_photo_check(sess, th):
    """Clean / Gaussian-blurred (sigma 1.5% of FOV diameter) / darkened (x0.25) real photo, and the clean photo
    with mild / moderate / severe lesion load painted on (paint_lesions.py)."""
    import build
    p = skimage_retina_path()
    if p is None:
        return {"skipped": "retina.jpg not found"}
    raw = open(p, "rb").read()
    rgb = preprocess.decode_rgb(raw)
    l, t, r, b = preprocess.fov_box(rgb)
    dia = max(r - l + 1, b - t + 1)
    sigma = 0.015 * dia
    blurred = ndimage.gaussian_filter(rgb.astype(np.float32), (sigma, sigma, 0))
    variants = {
        "clean": raw,
        "blurred_sigma_1.5pct": _encode_png(np.clip(blurred + 0.5, 0, 255).astype(np.uint8)),
        "dark_x0.25": _encode_png(np.clip(rgb.astype(np.float32) * 0.25 + 0.5, 0, 255).astype(np.uint8)),
    }
    import paint_lesions
    for load in paint_lesions.LOADS:
        variants[f"lesions_{load}"] = paint_lesions.painted_jpeg(rgb, load)
    res = {"fov_diameter_px": int(dia), "blur_sigma_px": float(sigma)}
    for k, data in variants.items():
        x = preprocess.preprocess_bytes(data)[None]
        out = build.predict(sess, x)
        d = build.derive(out, th)
        res[k] = {"p_gradable": float(d["p_q"][0]), "gradable": bool(d["gradable"][0]),
                  "grade": int(d["grade"][0]), "p_grades": [round(float(v), 4) for v in d["p"][0]],
                  "p_referable_dr": float(d["p_ref"][0]), "p_dme": float(d["p_dme"][0]),
                  "cam_max": float(out["referable_cam"][0].max()), "cam_mean": float(out["referable_cam"][0].mean())}
    return res


def _toml_val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(round(v, 6))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_val(x) for x in v) + "]"
    raise TypeError(type(v))


def manifest_text(onnx_path, th, metrics, info, quick=False):
    cfg = info["cfg"]
    L = []
    L.append("# dr-synth model package manifest (schema documented in models/README.md)")
    L.append("schema_version = 1")
    L.append('name = "dr-synth"')
    L.append(f'version = "{VERSION}"')
    L.append('description = ' + _toml_val(
        "Compact CNN that grades diabetic retinopathy (ICDR 0-4), flags diabetic macular oedema and image "
        "gradability on 45-degree colour fundus photographs. Trained only on procedurally rendered synthetic images."))
    L.append('intended_use = ' + _toml_val(
        "Software testing, demos and integration work for the drscreen service. It shows how a screening model "
        "plugs in; it must not be used to make decisions about real patients."))
    L.append("clinical_use = false")
    L.append(f'created = "{CREATED}"')
    L.append(f'license = "{LICENSE}"')
    L.append("")
    L.append("[file]")
    L.append('path = "model.onnx"')
    L.append(f'sha256 = "{sha256(onnx_path)}"')
    L.append(f"bytes = {os.path.getsize(onnx_path)}")
    L.append("")
    L.append("[input]")
    L.append('name = "image"')
    L.append('dtype = "float32"')
    L.append('layout = "NCHW"')
    L.append('color_order = "RGB"')
    L.append("height = 512")
    L.append("width = 512")
    L.append("scale = 255.0")
    L.append("mean = [0.485, 0.456, 0.406]")
    L.append("std = [0.229, 0.224, 0.225]")
    L.append(f'recipe = "{preprocess.RECIPE}"')
    outs = [
        ("dr_logits", ["N", 5], "ICDR grade logits for grades 0..4; softmax gives grade probabilities"),
        ("dme_logit", ["N", 1], "diabetic macular oedema logit; sigmoid gives P(DME)"),
        ("gradable_logit", ["N", 1], "image gradability logit; sigmoid gives P(gradable)"),
        ("referable_cam", ["N", 1, 16, 16],
         "class-activation map for referable DR in [0,1] (sigmoid of per-location score, not normalised per image); "
         "cell (i,j) covers input pixels [32i,32i+32) x [32j,32j+32)"),
    ]
    for name, shape, meaning in outs:
        L.append("")
        L.append("[[output]]")
        L.append(f'role = "{name}"')
        L.append(f'name = "{name}"')
        L.append("shape = " + _toml_val(shape))
        L.append('dtype = "float32"')
        L.append("meaning = " + _toml_val(meaning))
    L.append("")
    L.append("[thresholds]")
    L.append(f"referable_dr = {_toml_val(float(th['referable_dr']))}")
    L.append(f"dme = {_toml_val(float(th['dme']))}")
    L.append(f"gradable = {_toml_val(float(th['gradable']))}")
    L.append("")
    L.append("[grading]")
    L.append('grade_rule = "threshold-then-argmax-v1"')
    L.append("")
    L.append("[training]")
    L.append('data = "synthetic fundus images rendered by models/train/render.py (no real patient data)"')
    L.append(f'build_command = "python3 models/train/build.py{" --quick" if quick else ""}"')
    L.append(f"seed = {info['seed']}")
    L.append(f"train_images = {cfg['train']}")
    L.append(f"val_images = {cfg['val']}")
    L.append(f"test_images = {cfg['test']}")
    L.append(f"train_seed_base = {info['split_base']['train']}")
    L.append(f"val_seed_base = {info['split_base']['val']}")
    L.append(f"test_seed_base = {info['split_base']['test']}")
    L.append(f"epochs = {cfg['epochs']}")
    L.append(f"batch_size = {cfg['batch']}")
    L.append(f"max_lr = {_toml_val(float(cfg['lr']))}")
    L.append('optimizer = "AdamW + OneCycle"')
    L.append(f'torch_version = "{info["torch_version"]}"')
    L.append(f"parameters = {info['params']}")
    L.append(f"macs = {info['macs']}")
    L.append('architecture = "3x3/2 + 2x2/2 conv stem (8-24 ch) + 7 depthwise-separable residual blocks (24-48-96-160 ch), avg+max pooled MLP heads, 1x1 CAM head"')
    L.append('loss = "grade CE (label smoothing 0.05) + 0.5 cumulative ordinal BCE + 0.3 expected squared grade distance; DME/gradability BCE; CAM log-sum-exp MIL BCE"')
    L.append(f"quick_build = {_toml_val(bool(quick))}")
    L.append("")
    L.append("[metrics]")
    L.append('split = "held-out synthetic test set (seeds disjoint from train/val)"')
    keys = ["qwk", "grade_accuracy", "referable_auc", "referable_sensitivity", "referable_specificity",
            "dme_auc", "dme_sensitivity", "dme_specificity", "gradable_auc", "ungradable_caught", "gradable_accepted"]
    for k in keys:
        L.append(f"{k} = {_toml_val(float(metrics[k]))}")
    L.append(f"referable_sensitivity_ci95 = {_toml_val([float(v) for v in metrics['referable_sensitivity_ci95']])}")
    L.append(f"referable_specificity_ci95 = {_toml_val([float(v) for v in metrics['referable_specificity_ci95']])}")
    L.append(f"n_test = {metrics['n_test']}")
    L.append(f"n_test_gradable = {metrics['n_gradable']}")
    return "\n".join(L) + "\n"


def card_text(th, metrics, val_metrics, info, checks, quick):
    m = metrics
    cfg = info["cfg"]
    epochs, w_signs = cfg["epochs"], info["w_signs"]
    conf = m["confusion_matrix"]
    ctab = "| true \\ pred | 0 | 1 | 2 | 3 | 4 |\n|---|---|---|---|---|---|\n" + "\n".join(
        f"| {i} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(conf))
    rp = checks.get("real_photo", {})
    recall = ", ".join(f"grade {i} {row[i] / max(1, sum(row)):.2f}" for i, row in enumerate(conf))
    missed = []
    if m["qwk"] < 0.90:
        missed.append(f"QWK ({m['qwk']:.3f}) misses its target")
    if not (m["referable_sensitivity"] >= 0.95 and m["referable_specificity"] >= 0.90):
        missed.append("the referable operating point misses its target")
    if m["gradable_auc"] < 0.98:
        missed.append("gradability AUC misses its target")
    target_note = ("; ".join(missed) + ". The other targets are met.") if missed else "all are met."

    def rp_line(k):
        r = rp.get(k)
        if not r:
            return f"- {k}: not run"
        return (f"- {k}: P(gradable) = {r['p_gradable']:.3f} -> {'gradable' if r['gradable'] else 'UNGRADABLE'}; "
                f"grade {r['grade']} (P(grade>=2) = {r['p_referable_dr']:.3f}, P(DME) = {r['p_dme']:.3f})")
    lat = checks.get("latency", {})
    train_time = (f"; training took {info['train_s'] / 60:.0f} min wall on the 2-core build machine"
                  if info.get("train_s") else "")
    warn = "\n> **QUICK SMOKE BUILD** - trained for a few steps only; numbers below are meaningless.\n" if quick else ""
    return f"""# dr-synth {VERSION} - model card
{warn}
**Not a medical device. Not for clinical use.** This model was trained only on computer-generated
("synthetic") pictures of the back of the eye. It exists so that the drscreen service can be built,
tested and demonstrated end to end. Its numbers say how well it reads *our own synthetic pictures*;
they say nothing about how it would do on real patients.

## What it does
Given one colour fundus photograph (a 45-degree picture of the retina) it returns:
- how severe diabetic retinopathy looks, on the 5-step international (ICDR) scale 0-4
  (0 none, 1 mild, 2 moderate, 3 severe non-proliferative, 4 proliferative);
- whether there are signs of diabetic macular oedema (hard exudates near the centre of vision);
- whether the picture is good enough to be graded at all (blur, darkness, haze, eyelid shadow, cut-off field);
- a coarse 16x16 heat map showing where it sees referable disease.

## Training data
{cfg['train']} training, {cfg['val']} validation and {cfg['test']} test images, all rendered by
`models/train/render.py` from disjoint seed ranges, JPEG-encoded like a camera would, then passed
through the serving preprocessing (`fov-crop-bilinear-v1`, `models/train/preprocess.py`). The renderer
draws a circular field of view, orange-red background with vignetting and choroidal texture, optic disc
with cup, darker macula/fovea, an artery/vein tree in arcades, and ICDR lesions: microaneurysms,
dot/blot/flame haemorrhages, hard exudates, cotton-wool spots, venous beading, IRMA, new vessels at the
disc/elsewhere (fans of fine looping vessels, sometimes with a greyish-white fibrous sheen), pre-retinal and
vitreous haemorrhage. About 24% of images are made ungradable
(defocus blur, under/over-exposure, media haze, eyelid/lash shadow, less than 3/4 of the field visible);
DR/DME losses are masked on those. Camera variation: colour cast, gamma, saturation, noise,
sharpening, JPEG quality 68-96, field sizes and clipping. Left eyes are mirror images of right eyes.

## Changes in 1.4.0
Training only; the renderer, preprocessing, ONNX outputs and decision rule are unchanged, so the test
pictures are the same as 1.3.0's and the numbers compare directly. 1.3.0 scored QWK 0.835 with grade 4 recall
0.20 (46 of 234): it saw the signs of proliferative disease but hedged between grades 2, 3 and 4 (mean
probabilities about 0.35 / 0.30 / 0.31 on grade 4 eyes) and called 88% of eyes whose only grade 4 sign was a
large pre-retinal haemorrhage grade 2 or 3. A five-way grade label never says *which* sign made an eye a 3 or
a 4, so 1.4.0 adds a training-only head that predicts, from the same pooled features, each sign the renderer
drew: new vessels at the disc, new vessels elsewhere, pre-retinal haemorrhage, vitreous haemorrhage, the
4-2-1 haemorrhage pattern, venous beading and IRMA (summed binary cross-entropy, weight {w_signs}). The signs
are recomputed from each image's seed, exactly as the renderer draws them. The head is dropped at export.
Training also runs {epochs} epochs instead of 13 (1.3.0's training loss was still falling).

1.3.0 changed only the renderer's grade 4 new vessels: fans of 4-13 fine looping vessels 1-2 px wide at 512
(NVD on the disc, NVE from a vein along the arcades), in 40% of eyes with a faint fibrous sheen, replacing
1.2.0's barely visible scribbles.

## Architecture
{info['params']:,} parameters, {info['macs'] / 1e6:.0f} M multiply-accumulates per 512x512 image.
Two-layer convolution stem (3x3 stride 2 at full resolution, 8 channels, then 2x2 stride 2, 24 channels), so
that 1-2 pixel microaneurysms and fine new vessels are seen by overlapping filters before downsampling; then
seven depthwise-separable residual blocks (24-48-96-160 channels, output 16x16). Average- and max-pooled features feed a small MLP with three heads (grade logits, DME
logit, gradability logit). A 1x1 convolution on the 16x16 feature map gives a per-location referable
score trained with log-sum-exp pooling (multiple-instance style), and its sigmoid is exported as
`referable_cam`. The grade head is trained with cross-entropy plus two ordinal terms: binary cross-entropy
on the cumulative probabilities P(grade >= k), k = 1..4, and the expected squared grade distance under the
softmax (the quantity quadratic weighted kappa penalises), which keeps the argmax near the true grade when the
model is unsure. During training only, an extra linear head predicts which grade 3/4 signs are present
(see Changes in 1.4.0); it is not part of the exported graph. ONNX opset 17, dynamic batch. Trained {cfg['epochs']} epochs, batch {cfg['batch']},
AdamW + one-cycle (max lr {cfg['lr']}), seed {info['seed']}, torch {info['torch_version']}, CPU only{train_time}.

## Decision rule and thresholds (chosen on the validation split)
`threshold-then-argmax-v1`: p = softmax(dr_logits); P(ref DR) = p2+p3+p4. If P(ref DR) >= {th['referable_dr']}
the grade is 2 + argmax(p2..p4), otherwise argmax(p0, p1). DME if sigmoid(dme_logit) >= {th['dme']}.
Referable = grade >= 2 or DME. Ungradable if sigmoid(gradable_logit) < {th['gradable']}.
The referable thresholds give sensitivity {th.get('_val_sens', float('nan')):.3f} / specificity
{th.get('_val_spec', float('nan')):.3f} on validation (target sensitivity >= 0.97); the gradability threshold
is set to catch at least 98% of ungradable validation images.

## Held-out synthetic test results (n = {m['n_test']}, {m['n_gradable']} gradable)
| metric | value |
|---|---|
| quadratic weighted kappa (grade) | {m['qwk']:.3f} |
| exact grade accuracy | {m['grade_accuracy']:.3f} |
| referable (grade>=2 or DME) AUC | {m['referable_auc']:.4f} |
| referable sensitivity (95% CI, Wilson) | {m['referable_sensitivity']:.3f} ({m['referable_sensitivity_ci95'][0]:.3f}-{m['referable_sensitivity_ci95'][1]:.3f}) |
| referable specificity (95% CI, Wilson) | {m['referable_specificity']:.3f} ({m['referable_specificity_ci95'][0]:.3f}-{m['referable_specificity_ci95'][1]:.3f}) |
| DME AUC | {m['dme_auc']:.4f} |
| gradability AUC | {m['gradable_auc']:.4f} |
| ungradable images caught | {m['ungradable_caught']:.3f} |
| gradable images accepted | {m['gradable_accepted']:.3f} |

Confusion matrix of ICDR grade on truly gradable test images (rows = truth):

{ctab}

Per-grade recall: {recall}. Targets set for this package were QWK >= 0.90, referable sensitivity >= 0.95 at
specificity >= 0.90 and gradability AUC >= 0.98; {target_note}

## Sanity check on a real photograph
`fixtures/retina_skimage.jpg` (normal left eye, CC0, shipped with scikit-image):
{rp_line('clean')}
{rp_line('blurred_sigma_1.5pct')}
{rp_line('dark_x0.25')}

The same photograph with lesions painted on (`models/train/paint_lesions.py`, renderer-sized and -coloured;
`fixtures/retina_skimage_<load>.jpg`): a check that the model reads lesions on a real retina, which the
synthetic test set cannot show. Lesion load should raise P(grade>=2); mild should stay non-referable.
{rp_line('lesions_mild')}
{rp_line('lesions_moderate')}
{rp_line('lesions_severe')}

## Speed
ONNX Runtime {checks.get('ort_version', '?')}, CPU, 2 intra-op threads, on the build machine:
batch 1: {lat.get('batch1_ms_per_image_median', float('nan')):.1f} ms/image,
batch 8: {lat.get('batch8_ms_per_image_median', float('nan')):.1f} ms/image.

## Reproduce
`pip install -r models/train/requirements.txt && python3 models/train/build.py` (CPU only, about an hour on a
2-core machine). The build is seeded and uses deterministic torch kernels with 2 threads, so on the same
machine and library versions it reproduces `model.onnx` byte for byte (sha256 in `manifest.toml`);
other CPUs or library versions may differ in the last bits. `python3 models/train/verify_package.py`
re-checks a built package (hash, ONNX names/shapes, latency, preprocessing references, real-photo check)
without retraining. `models/train/renderer_vs_real.png` shows renders next to the real photo.

## Limitations (plain words)
- Synthetic only. Real photographs differ in countless ways the renderer does not imitate (real
  lesion shapes, other eye diseases such as AMD, glaucoma or hypertensive changes, artefacts, drusen,
  laser scars, children's reflexes, unusual cameras). Expect much worse and unpredictable behaviour on
  real images. Never use its output for a patient.
- The 4-2-1 rule, neovascularisation and IRMA are rendered in a simplified way; grade 3 vs 4 and
  grade 0 vs 1 (a handful of tiny dots) are the hardest distinctions.
- Which referable grade (2, 3 or 4) it gives is its least reliable output, and more so on real pictures
  than on renders: compare the painted-lesion lines above with what was painted. The referable / not
  referable decision is far more robust than the exact grade.
- Gradability is learned from our defect simulations; real ungradable pictures can fail in other ways.
- The heat map is coarse (32x32-pixel cells) and is an explanation aid, not a lesion detector.
- Input must follow the `fov-crop-bilinear-v1` recipe exactly (see models/README.md).
"""


def write_package(out_dir, onnx_path, th, metrics, val_metrics, info, quick=False):
    import onnxruntime as ort
    sess = __import__("build").ort_session(onnx_path)
    checks = {"ort_version": ort.__version__, "io": check_outputs(sess), "latency": latency(sess)}
    checks["real_photo"] = real_photo_check(sess, th)
    thr = {k: v for k, v in th.items() if not k.startswith("_")}
    open(os.path.join(out_dir, "manifest.toml"), "w").write(manifest_text(onnx_path, thr, metrics, info, quick))
    open(os.path.join(out_dir, "MODEL_CARD.md"), "w").write(card_text(th, metrics, val_metrics, info, checks, quick))
    # verify manifest sha
    import tomllib
    man = tomllib.load(open(os.path.join(out_dir, "manifest.toml"), "rb"))
    assert man["file"]["sha256"] == sha256(onnx_path)
    assert man["file"]["bytes"] == os.path.getsize(onnx_path)
    return {"thresholds": th, "test": metrics, "val": val_metrics, "checks": checks,
            "model": {"sha256": sha256(onnx_path), "bytes": os.path.getsize(onnx_path),
                      "params": info["params"], "macs": info["macs"]}}
