#!/usr/bin/env python3
"""Procedural renderer of synthetic 45-degree colour fundus photographs with ICDR-graded
diabetic-retinopathy lesions, macular oedema and image-quality defects.

Everything is driven by one integer seed (numpy PCG64), so a (seed, size) pair always gives
the same image bytes. Sizes are expressed relative to the field-of-view diameter D, so the
same case can be rendered at 600 px for training or 3000 px for a 12 MP fixture.

Canonical geometry is a right eye (OD): optic disc on the image right (nasal), fovea near
the centre; left eyes (OS) are the horizontal mirror.

Labels (ICDR): 0 none; 1 microaneurysms only; 2 more than MAs (haemorrhages, hard exudates,
cotton-wool spots) but not severe; 3 severe NPDR by the 4-2-1 rule (>20 haemorrhages in each of
4 quadrants, venous beading in >=2 quadrants, or IRMA in >=1 quadrant); 4 PDR (new vessels at the
disc or elsewhere, pre-retinal or vitreous haemorrhage). DME = hard exudates within one disc
diameter of the fovea. Ungradable = strong defocus, under/over-exposure, media haze, eyelid/lash
shadow or less than ~2/3 of the field visible; the gradable population only receives clearly
milder versions of those defects (a gap between the two keeps the labels consistent).
"""
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

GRADE_PROBS = [0.30, 0.17, 0.20, 0.17, 0.16]
P_UNGRADABLE = 0.25
DEFECTS = ["blur", "dark", "bright", "haze", "lid", "fov"]
DEFECT_P = [0.28, 0.20, 0.08, 0.18, 0.12, 0.14]
LOWRES = 192  # resolution of smooth illumination / texture fields


# ----------------------------------------------------------------------------- helpers
def _noise_lr(rng, cells, n=LOWRES):
    """Smooth zero-mean unit-std noise on an n x n grid with ~`cells` features across."""
    cells = max(3, int(cells))
    g = rng.standard_normal((cells + 4, cells + 4)).astype(np.float32)
    g = ndimage.gaussian_filter(g, 0.9, mode="wrap")
    g = (g - g.mean()) / (g.std() + 1e-6)
    im = Image.fromarray(g, "F").resize((n, n), Image.Resampling.BICUBIC, box=(2, 2, cells + 2, cells + 2))
    return np.asarray(im, dtype=np.float32)


def _up(a, n):
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), "F").resize(
        (n, n), Image.Resampling.BICUBIC), dtype=np.float32)


def _blur(a, sigma):
    if sigma <= 0.05:
        return a
    if a.ndim == 3:
        return ndimage.gaussian_filter(a, (sigma, sigma, 0), truncate=2.5)
    return ndimage.gaussian_filter(a, sigma, truncate=2.5)


def _blur_fast(a, sigma):
    """Large-sigma blur by downsample - blur - upsample."""
    if sigma < 4:
        return _blur(a, sigma)
    f = int(max(1, sigma // 2.5))
    h, w = a.shape[:2]
    hs, ws = max(4, h // f), max(4, w // f)
    chans = [a] if a.ndim == 2 else [a[..., i] for i in range(a.shape[2])]
    out = []
    for c in chans:
        small = np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32), "F").resize(
            (ws, hs), Image.Resampling.BOX))
        small = ndimage.gaussian_filter(small, sigma / f, mode="nearest", truncate=2.5)
        out.append(np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BILINEAR)))
    return out[0] if a.ndim == 2 else np.stack(out, -1)


_NOISE_BANK = None


def _noise_bank():
    """Fixed (seeded) bank of sensor-noise samples; cropped at random offsets per image."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        r = np.random.default_rng(12345)
        _NOISE_BANK = r.standard_normal((1600, 1600, 3), dtype=np.float32)
    return _NOISE_BANK


def _sensor_noise(rng, D):
    bank = _noise_bank()
    out = np.empty((D, D, 3), np.float32)
    B = bank.shape[0]
    for y0 in range(0, D, B):
        for x0 in range(0, D, B):
            h, w = min(B, D - y0), min(B, D - x0)
            oy, ox = int(rng.integers(0, B - h + 1)), int(rng.integers(0, B - w + 1))
            out[y0:y0 + h, x0:x0 + w] = bank[oy:oy + h, ox:ox + w]
    return out


class Canvas:
    """Mask drawing in normalised coordinates (FOV radius 1, centre 0)."""

    def __init__(self, n):
        self.n = n
        self.r = n / 2.0
        self.im = Image.new("L", (n, n), 0)
        self.dr = ImageDraw.Draw(self.im)

    def px(self, p):
        return (self.r + p[0] * self.r, self.r + p[1] * self.r)

    def line(self, p0, p1, w_px, val=255):
        wi = max(1, int(round(w_px)))
        v = int(val * min(1.0, max(w_px, 0.35)))
        r = self.r
        a = (r + p0[0] * r, r + p0[1] * r)
        b = (r + p1[0] * r, r + p1[1] * r)
        self.dr.line([a, b], fill=v, width=wi)
        if wi >= 3:
            rr = (wi - 1) / 2.0
            self.dr.ellipse([b[0] - rr, b[1] - rr, b[0] + rr, b[1] + rr], fill=v)

    def ellipse(self, c, rx_px, ry_px, angle=0.0, val=255):
        x, y = self.px(c)
        if abs(angle) < 1e-3 or abs(rx_px - ry_px) < 0.5:
            self.dr.ellipse([x - rx_px, y - ry_px, x + rx_px, y + ry_px], fill=val)
            return
        t = np.linspace(0, 2 * np.pi, 18, endpoint=False)
        ca, sa = math.cos(angle), math.sin(angle)
        pts = [(x + rx_px * math.cos(a) * ca - ry_px * math.sin(a) * sa,
                y + rx_px * math.cos(a) * sa + ry_px * math.sin(a) * ca) for a in t]
        self.dr.polygon(pts, fill=val)

    def polygon(self, pts, val=255):
        self.dr.polygon([self.px(p) for p in pts], fill=val)

    def mask(self, blur=0.0):
        """(array float32 0..1 restricted to bbox, (y0, y1, x0, x1)) or None when empty."""
        bb = self.im.getbbox()
        if bb is None:
            return None
        m = int(3 * blur + 2)
        x0, y0 = max(0, bb[0] - m), max(0, bb[1] - m)
        x1, y1 = min(self.n, bb[2] + m), min(self.n, bb[3] + m)
        im = self.im.crop((x0, y0, x1, y1))
        if blur > 0.3:
            im = im.filter(ImageFilter.GaussianBlur(blur))
        a = np.asarray(im, dtype=np.float32) * (1 / 255.0)
        return a, (y0, y1, x0, x1)


def _mul(img, mk, coef):
    """img[roi] *= 1 - mask * coef (per channel)."""
    if mk is None:
        return
    a, (y0, y1, x0, x1) = mk
    img[y0:y1, x0:x1] *= 1 - a[..., None] * np.asarray(coef, np.float32)


def _mix(img, mk, col, alpha=1.0):
    """img[roi] = img*(1-a) + a*col."""
    if mk is None:
        return
    a, (y0, y1, x0, x1) = mk
    a = (a * alpha)[..., None]
    sub = img[y0:y1, x0:x1]
    sub *= 1 - a
    sub += a * np.asarray(col, np.float32)


# ----------------------------------------------------------------------------- case spec
def sample_case(rng):
    """Labels and high-level choices for one image."""
    grade = int(rng.choice(5, p=GRADE_PROBS))
    dme = 0
    if grade >= 2:
        dme = int(rng.random() < 0.38)
    gradable = int(rng.random() >= P_UNGRADABLE)
    defect = None if gradable else str(rng.choice(DEFECTS, p=DEFECT_P))
    return dict(grade=grade, dme=dme, gradable=gradable, defect=defect,
                eye="R" if rng.random() < 0.5 else "L")


def finish_case(rng, case):
    g = case["grade"]
    if g == 3:
        while not (case.get("_h421") or case.get("_vb") or case.get("_irma")):
            case["_h421"] = rng.random() < 0.5
            case["_vb"] = rng.random() < 0.45
            case["_irma"] = rng.random() < 0.45
    if g == 4:
        while not (case.get("_nvd") or case.get("_nve") or case.get("_prh") or case.get("_vh")):
            case["_nvd"] = rng.random() < 0.55
            case["_nve"] = rng.random() < 0.5
            case["_prh"] = rng.random() < 0.3
            case["_vh"] = rng.random() < 0.15
        case["_vb"] = rng.random() < 0.25  # severe NPDR features often co-exist
        case["_h421"] = rng.random() < 0.2
    return case


# ----------------------------------------------------------------------------- anatomy
def _vessel_tree(rng, fovea, disc, dd, D):
    """Returns list of (p0, p1, width_px, kind) with kind 'a' (artery) or 'v' (vein)."""
    segs = []
    step = 0.021 if D < 1200 else 0.012
    wmin = max(0.55, D * 0.001)
    faz2 = (0.3 * dd) ** 2

    def free_grow(p, h, w, kind, depth, budget, toward=None):
        px, py = float(p[0]), float(p[1])
        dist, since = 0.0, 0.0
        curv = rng.normal(0, 0.02)
        interval = rng.uniform(0.1, 0.22)
        side = 1 if rng.random() < 0.5 else -1
        while w > wmin and dist < budget:
            curv = 0.9 * curv + rng.normal(0, 0.018)
            h += curv
            if toward is not None:  # gently steer toward a point (macular branches)
                ht = math.atan2(toward[1] - py, toward[0] - px)
                h += 0.15 * math.atan2(math.sin(ht - h), math.cos(ht - h))
            qx, qy = px + step * math.cos(h), py + step * math.sin(h)
            if qx * qx + qy * qy > 1.02:
                break
            if (qx - fovea[0]) ** 2 + (qy - fovea[1]) ** 2 < faz2:
                break
            segs.append(((px, py), (qx, qy), w, kind))
            px, py = qx, qy
            w *= 0.993
            dist += step
            since += step
            if since > interval and depth < 3:
                since = 0.0
                interval = rng.uniform(0.1, 0.22)
                cw = w * rng.uniform(0.5, 0.78)
                w *= rng.uniform(0.86, 0.95)
                free_grow((px, py), h + side * rng.uniform(0.4, 0.95), cw, kind, depth + 1,
                          budget * rng.uniform(0.35, 0.75))
                side = -side

    vein_w0 = D * 0.013 * rng.uniform(0.85, 1.15)
    art_w0 = vein_w0 * rng.uniform(0.66, 0.8)
    for sgn in (-1, 1):  # -1 superior (image up), +1 inferior: temporal arcades
        for kind, w0 in (("v", vein_w0), ("a", art_w0)):
            ax = rng.uniform(0.95, 1.35)
            by = rng.uniform(0.55, 0.72) * (1.05 if kind == "v" else 1.0)
            cx = disc[0] - ax
            cy = disc[1] + rng.normal(0, 0.02)
            ph = rng.uniform(0, 6.28, 3)
            amp = rng.uniform(0.0, 0.035, 3)
            th = rng.uniform(0.02, 0.12)
            p = (disc[0] + rng.normal(0, 0.012), disc[1] + rng.normal(0, 0.012))
            w = w0
            since, interval = 0.0, rng.uniform(0.06, 0.14)
            side = 1 if rng.random() < 0.5 else -1
            hd = -sgn * math.pi / 2
            th_end = rng.uniform(1.9, 2.4)
            while th < th_end:
                rad = 1.0 + sum(amp[k] * math.sin((k + 2) * th + ph[k]) for k in range(3))
                q = (cx + ax * rad * math.cos(th), cy + sgn * by * rad * math.sin(th))
                th += 0.5 * step / max(0.2, math.hypot(ax * math.sin(th), by * math.cos(th)))
                seg_len = math.hypot(q[0] - p[0], q[1] - p[1])
                if seg_len < step * 0.8:
                    continue
                if q[0] ** 2 + q[1] ** 2 > 1.02:
                    break
                segs.append((p, q, w, kind))
                hd = math.atan2(q[1] - p[1], q[0] - p[0])
                p = q
                w *= 0.996
                since += seg_len
                if since > interval:
                    since, interval = 0.0, rng.uniform(0.07, 0.16)
                    if side > 0:  # outward branch (away from macula)
                        cw = w * rng.uniform(0.5, 0.75)
                        w *= rng.uniform(0.88, 0.96)
                        free_grow(p, hd + sgn * rng.uniform(0.5, 1.0) * -1, cw, kind, 1, rng.uniform(0.35, 0.9))
                    else:  # small branch toward the fovea
                        cw = w * rng.uniform(0.3, 0.5)
                        w *= rng.uniform(0.93, 0.98)
                        free_grow(p, hd + sgn * rng.uniform(0.6, 1.1), cw, kind, 2, rng.uniform(0.2, 0.45),
                                  toward=fovea)
                    side = -side
            free_grow(p, hd, w, kind, 2, rng.uniform(0.2, 0.5))
    for sgn in (-1, 1):  # nasal vessels
        for kind, w0 in (("v", vein_w0 * 0.75), ("a", art_w0 * 0.75)):
            h = sgn * rng.uniform(0.45, 1.25)
            free_grow(disc + rng.normal(0, 0.01, 2), h, w0, kind, 1, rng.uniform(0.5, 0.9))
    for _ in range(int(rng.integers(2, 5))):  # small macular vessels from the disc
        kind = "a" if rng.random() < 0.5 else "v"
        h = math.pi + rng.normal(0, 0.35)
        free_grow(disc + rng.normal(0, 0.01, 2), h, art_w0 * rng.uniform(0.25, 0.45), kind, 2,
                  rng.uniform(0.3, 0.6), toward=fovea)
    return segs


def _grid(n, lo=0, hi=None):
    hi = n if hi is None else hi
    return ((np.arange(lo, hi, dtype=np.float32) + 0.5) / (n / 2.0) - 1.0)


# ----------------------------------------------------------------------------- lesions
def _sample_points(rng, k, centre, sigma, disc, dd, fovea=None, min_fovea=0.0, max_r=0.9, quadrant=None,
                   qcentre=(0.0, 0.0)):
    pts = []
    tries = 0
    while len(pts) < k and tries < k * 60:
        tries += 1
        p = np.array(centre) + rng.normal(0, sigma, 2)
        if p[0] ** 2 + p[1] ** 2 > max_r ** 2:
            continue
        if np.hypot(*(p - disc)) < 0.65 * dd:
            continue
        if fovea is not None and np.hypot(*(p - fovea)) < min_fovea:
            continue
        if quadrant is not None:
            qx = 1 if p[0] >= qcentre[0] else 0
            qy = 1 if p[1] >= qcentre[1] else 0
            if qx + 2 * qy != quadrant:
                continue
        pts.append(p)
    return pts


def _tortuous(cv, rng, p, size, w_px, n_steps, curl):
    h = rng.uniform(0, 2 * np.pi)
    c0 = np.array(p, dtype=np.float64)
    p = c0.copy()
    for _ in range(n_steps):
        h += rng.normal(curl, 0.6)
        q = p + size * 0.12 * np.array([math.cos(h), math.sin(h)])
        if np.hypot(*(q - c0)) > size:
            h += np.pi * 0.8
            continue
        cv.line(p, q, w_px)
        p = q


def _nv_fan(cv, fib, rng, root, heading, spread, length, w_px, n_loops, px):
    """Neovascular frond / "sea-fan": a fan of fine looping vessels from `root`.

    Each loop leaves the root on one side of its axis and comes back on the other (a petal-shaped
    loop); neighbouring loops are joined by short cross-links and carry small side sprouts, which
    gives the irregular net seen in NVD/NVE. Lines are also drawn, wider, into `fib` (the optional
    fibrous-tissue sheen)."""
    root = np.asarray(root, np.float64)
    axes = np.sort(heading + rng.uniform(-spread, spread, n_loops))
    paths = []
    for a in axes:
        L = length * rng.uniform(0.45, 1.0)
        half = rng.uniform(0.06, 0.22)
        n = max(6, int(L * px / 2.5))
        t = np.linspace(0.0, 1.0, n + 1)
        wig = np.cumsum(rng.normal(0, 0.8 / math.sqrt(n), (2, n + 1)), 1)
        wig -= wig[:, -1:] * t[None]  # both sides meet at the tip
        rj = L * t * (1 + 0.12 * np.cumsum(rng.normal(0, 1 / math.sqrt(n), n + 1)) * np.sin(np.pi * t))
        for side in (-1, 1):
            phi = a + side * half * np.sin(np.pi * t) ** 0.7 + 0.35 * wig[(side + 1) // 2] * np.sin(np.pi * t)
            pts = root[None] + rj[:, None] * np.stack([np.cos(phi), np.sin(phi)], 1)
            paths.append(pts)
    for pts in paths:
        n = len(pts) - 1
        for i in range(n):
            w = w_px * (1.35 - 0.55 * i / n)
            cv.line(pts[i], pts[i + 1], w)
            if fib is not None:
                fib.line(pts[i], pts[i + 1], w * 4.0, val=170)
        if rng.random() < 0.6:  # small side sprout with a tiny loop
            i = int(rng.integers(n // 3, n))
            p = pts[i].copy()
            h = rng.uniform(0, 2 * np.pi)
            for _ in range(int(rng.integers(4, 9))):
                h += rng.normal(0.5, 0.5)
                q = p + 2.5 / px * np.array([math.cos(h), math.sin(h)])
                cv.line(p, q, w_px * 0.8)
                p = q
    for k in range(len(paths) - 1):  # cross-links between neighbouring loops -> net
        A, B = paths[k], paths[k + 1]
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(A) // 4, len(A)))
            j = min(len(B) - 1, max(0, i + int(rng.integers(-2, 3))))
            mid = (A[i] + B[j]) / 2 + rng.normal(0, 1.5 / px, 2)
            cv.line(A[i], mid, w_px * 0.8)
            cv.line(mid, B[j], w_px * 0.8)


# ----------------------------------------------------------------------------- render
def render_fov(rng, case, D):
    """Render the D x D field-of-view square (float32, linear-ish 0..255, before camera effects)."""
    grade, dme = case["grade"], case["dme"]
    dd = 2.0 / rng.uniform(6.0, 7.2)  # disc diameter in FOV-radius units
    fovea = np.array([rng.uniform(-0.2, 0.08), rng.uniform(-0.07, 0.07)])
    disc = fovea + np.array([2.5 * dd * rng.uniform(0.92, 1.08), -dd * rng.uniform(-0.1, 0.3)])
    if disc[0] > 0.8:
        fovea[0] -= disc[0] - 0.8
        disc[0] = 0.8
    case["_fovea"], case["_disc"], case["_dd"] = fovea, disc, dd

    # --- smooth fields at low resolution: illumination, texture, macula
    n = LOWRES
    gx = _grid(n)[None, :]
    gy = _grid(n)[:, None]
    pig = rng.beta(1.5, 1.5)  # 0 = light orange, 1 = dark red-brown
    light = np.array([246, 112, 68], np.float32)
    dark = np.array([165, 50, 32], np.float32)
    base = light * (1 - pig) + dark * pig
    base *= np.array([rng.normal(1, 0.04), rng.normal(1, 0.08), rng.normal(1, 0.12)], np.float32)
    cx, cy = rng.normal(0, 0.08, 2)
    rr = np.sqrt((gx - cx) ** 2 + (gy - cy) ** 2)
    vig = rng.uniform(0.2, 0.65)
    illum = 1.0 - vig * np.clip(rr, 0, 1.3) ** rng.uniform(1.8, 3.2)
    gdir = rng.uniform(0, 2 * np.pi)
    illum *= 1.0 + rng.uniform(0, 0.14) * (gx * math.cos(gdir) + gy * math.sin(gdir))
    tess = rng.uniform(0.0, 0.08) * (1.15 - 0.7 * pig)
    ridge = 1.0 - np.abs(_noise_lr(rng, rng.uniform(26, 44)))
    tex = tess * (ridge - 0.6) + 0.022 * _noise_lr(rng, 7)
    fd2 = (gx - fovea[0]) ** 2 + (gy - fovea[1]) ** 2
    msig = rng.uniform(0.15, 0.25)
    mac = rng.uniform(0.1, 0.28) * np.exp(-fd2 / (2 * msig ** 2))
    pit = rng.uniform(0.08, 0.25) * np.exp(-fd2 / (2 * rng.uniform(0.028, 0.05) ** 2))
    chan_tex = np.array([0.9, 1.2, 1.1], np.float32)
    chan_mac = np.array([0.75, 1.25, 1.05], np.float32)
    img = np.empty((D, D, 3), np.float32)
    for c in range(3):
        f = illum * (1 + tex * chan_tex[c]) * (1 - (mac + pit) * chan_mac[c])
        img[..., c] = _up(f, D) * base[c]
    if rng.random() < 0.35:  # foveal light reflex
        _mix(img, _spot(D, fovea, D * rng.uniform(0.003, 0.006), 3), [255, 220, 180], rng.uniform(0.15, 0.4))

    # --- optic disc (ROI only)
    ddx = dd / 2 * rng.uniform(0.9, 1.0)
    ddy = dd / 2 * rng.uniform(1.0, 1.12)
    half = int(dd * 1.6 * D / 2) + 4
    cxp, cyp = int((disc[0] + 1) * D / 2), int((disc[1] + 1) * D / 2)
    y0, y1 = max(0, cyp - half), min(D, cyp + half)
    x0, x1 = max(0, cxp - half), min(D, cxp + half)
    X = _grid(D, x0, x1)[None, :]
    Y = _grid(D, y0, y1)[:, None]
    sub = img[y0:y1, x0:x1]
    e = np.sqrt(((X - disc[0]) / ddx) ** 2 + ((Y - disc[1]) / ddy) ** 2)
    halo = np.exp(-np.clip(e - 1, 0, None) ** 2 / 0.4) * rng.uniform(0.0, 0.18)
    sub *= 1 + halo[..., None] * np.array([0.15, 0.35, 0.3], np.float32)
    soft = rng.uniform(0.07, 0.16)
    disc_m = np.clip((1.0 - e) / soft + 0.5, 0, 1)
    dcol = np.array([250, 188, 122], np.float32) * np.array(
        [1, rng.uniform(0.88, 1.1), rng.uniform(0.75, 1.2)], np.float32) * rng.uniform(0.9, 1.05)
    pale = (1 + 0.1 * np.clip(-(X - disc[0]) / ddx, -1, 1)) * (1 + 0.05 * rng.standard_normal(e.shape).astype(np.float32))
    pale = _blur(pale, 1.5)
    dalpha = rng.uniform(0.6, 0.9)
    a = (dalpha * disc_m)[..., None]
    sub *= 1 - a
    sub += a * pale[..., None] * dcol
    cdr = rng.uniform(0.25, 0.6)
    cup_c = disc + np.array([-ddx * rng.uniform(0.0, 0.25), rng.normal(0, 0.05) * ddy])
    ce = np.sqrt(((X - cup_c[0]) / (ddx * cdr)) ** 2 + ((Y - cup_c[1]) / (ddy * cdr)) ** 2)
    cup = (np.clip((1.0 - ce) / 0.4 + 0.25, 0, 1) * rng.uniform(0.45, 0.85))[..., None]
    sub *= 1 - cup
    sub += cup * np.array([255, 240, 212], np.float32)
    if rng.random() < 0.3:  # peripapillary crescent (pale or pigmented), temporal side
        ang = np.arctan2(Y - disc[1], -(X - disc[0]))
        cres = (np.abs(ang) < rng.uniform(0.6, 1.3)) & (e > 0.95) & (e < rng.uniform(1.15, 1.35))
        cm = _blur(cres.astype(np.float32), D * 0.002)
        col = np.array([70, 40, 30], np.float32) if rng.random() < 0.5 else np.array([235, 195, 150], np.float32)
        ca = (cm * rng.uniform(0.4, 0.8))[..., None]
        sub *= 1 - ca
        sub += ca * col

    # --- vessels
    segs = _vessel_tree(rng, fovea, disc, dd, D)
    cva, cvv, cvr = Canvas(D), Canvas(D), Canvas(D)
    qc = (fovea + disc) / 2
    bead_q = set()
    if case.get("_vb"):
        bead_q = set(rng.choice(4, size=int(rng.integers(2, 5)), replace=False).tolist())
    for p0, p1, w, kind in segs:
        if kind == "v":
            cvv.line(p0, p1, w)
            if bead_q:
                q = (1 if p1[0] >= qc[0] else 0) + 2 * (1 if p1[1] >= qc[1] else 0)
                if q in bead_q and w > D * 0.0035 and math.hypot(p1[0] - disc[0], p1[1] - disc[1]) > dd \
                        and rng.random() < 0.5:
                    rb = w * rng.uniform(0.8, 1.1)
                    cvv.ellipse(p1, rb, rb)
        else:
            cva.line(p0, p1, w)
    aa = 0.3 + D * 0.0004
    vc = rng.uniform(0.6, 1.05)  # vessel contrast
    _mul(img, cvv.mask(aa), np.array([0.26, 0.60, 0.38], np.float32) * vc)
    _mul(img, cva.mask(aa), np.array([0.10, 0.42, 0.22], np.float32) * vc)
    case["_segs"] = len(segs)

    # --- lesions
    px = D / 2.0  # pixels per radius unit
    red, exu, cws, nv, pre = Canvas(D), Canvas(D), Canvas(D), Canvas(D), Canvas(D)
    post = (fovea + disc) / 2 + np.array([-0.05, 0])
    if grade >= 1:
        n_ma = int(rng.integers(1, 12)) if grade == 1 else int(rng.integers(2, 25))
        for p in _sample_points(rng, n_ma, post, 0.42, disc, dd):
            r = D * rng.uniform(0.0026, 0.0052)
            red.ellipse(p, r, r, val=int(rng.uniform(180, 255)))
    if grade >= 2:
        kinds = set()
        while not kinds:
            if rng.random() < 0.7: kinds.add("haem")
            if rng.random() < 0.5: kinds.add("exu")
            if rng.random() < 0.35: kinds.add("cws")
            if dme: kinds.add("exu")
        if grade >= 3:
            kinds.add("haem")
        n_h = int(rng.integers(1, 18)) if "haem" in kinds else 0
        hp = _sample_points(rng, n_h, post, 0.45, disc, dd)
        if case.get("_h421"):
            hp = []
            for q in range(4):
                qcen = np.array([qc[0] + (0.45 if q % 2 else -0.45), qc[1] + (0.4 if q >= 2 else -0.4)])
                hp += _sample_points(rng, int(rng.integers(21, 32)), qcen, 0.3, disc, dd, quadrant=q, qcentre=qc)
        for p in hp:
            r = D * rng.uniform(0.005, 0.013)
            if rng.random() < 0.25 and np.hypot(*(p - disc)) < 2.2 * dd:  # flame haemorrhage
                ang = math.atan2(p[1] - disc[1], p[0] - disc[0])
                red.ellipse(p, r * 1.8, r * 0.5, angle=ang, val=int(rng.uniform(150, 230)))
            else:  # dot / blot
                for _ in range(int(rng.integers(1, 4))):
                    o = p + rng.normal(0, r / px * 0.5, 2)
                    red.ellipse(o, r * rng.uniform(0.6, 1.0), r * rng.uniform(0.6, 1.0),
                                angle=rng.uniform(0, 3.14), val=int(rng.uniform(170, 250)))
        if "exu" in kinds:
            n_cl = int(rng.integers(1, 4))
            centres = []
            if dme:
                ang = rng.uniform(0, 2 * np.pi)
                centres.append(fovea + dd * rng.uniform(0.1, 0.7) * np.array([math.cos(ang), math.sin(ang)]))
                n_cl = n_cl - 1 if rng.random() < 0.5 else 0
            centres += _sample_points(rng, n_cl, post, 0.4, disc, dd, fovea=fovea, min_fovea=1.7 * dd)
            for ci, c in enumerate(centres):
                spread = D * rng.uniform(0.008, 0.028)
                near = dme and ci == 0
                ring = rng.random() < 0.3
                placed = 0
                for _ in range(int(rng.integers(4, 24))):
                    if ring:
                        a_ = rng.uniform(0, 2 * np.pi)
                        o = c + (spread / px) * 1.5 * np.array([math.cos(a_), math.sin(a_)]) + \
                            rng.normal(0, spread / px * 0.15, 2)
                    else:
                        o = c + rng.normal(0, spread / px, 2)
                    fd = np.hypot(*(o - fovea))
                    if near and fd > 0.9 * dd:
                        continue
                    if not near and fd < 1.4 * dd:
                        continue
                    if o[0] ** 2 + o[1] ** 2 > 0.85:
                        continue
                    r = D * rng.uniform(0.0018, 0.0055)
                    exu.ellipse(o, r, r * rng.uniform(0.6, 1.0), angle=rng.uniform(0, 3.1),
                                val=int(rng.uniform(200, 255)))
                    placed += 1
                if near and placed < 3:  # guarantee visible exudates for DME
                    for _ in range(3):
                        o = c + rng.normal(0, 0.02, 2)
                        if np.hypot(*(o - fovea)) < 0.9 * dd:
                            r = D * rng.uniform(0.003, 0.0055)
                            exu.ellipse(o, r, r, val=255)
        if "cws" in kinds:
            for p in _sample_points(rng, int(rng.integers(1, 5)), disc + np.array([-0.3, 0]), 0.3, disc, dd,
                                    fovea=fovea, min_fovea=0.8 * dd):
                r = D * rng.uniform(0.012, 0.026)
                for _ in range(int(rng.integers(3, 7))):
                    cws.ellipse(p + rng.normal(0, r / px * 0.4, 2), r * rng.uniform(0.4, 0.8),
                                r * rng.uniform(0.3, 0.6), angle=rng.uniform(0, 3.1), val=int(rng.uniform(150, 255)))
    if case.get("_irma") and grade == 3:
        for q in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
            qcen = np.array([qc[0] + (0.4 if q % 2 else -0.4), qc[1] + (0.35 if q >= 2 else -0.35)])
            for p in _sample_points(rng, int(rng.integers(2, 5)), qcen, 0.18, disc, dd, quadrant=int(q), qcentre=qc):
                _tortuous(nv, rng, p, rng.uniform(0.03, 0.06), max(1.0, D * 0.0022), 25, 0.25)
    fib = None
    if grade == 4:
        # New vessels: fans of fine looping vessels (about 1-2 px at 512) with occasional fibrous sheen.
        w_nv = max(1.0, D * rng.uniform(0.0018, 0.0027))
        if rng.random() < 0.4:
            fib = Canvas(D)
        if case.get("_nvd"):  # on the disc, spreading up to ~1 disc diameter from its centre
            for _ in range(int(rng.integers(1, 4))):
                root = disc + rng.normal(0, dd * 0.15, 2)
                _nv_fan(nv, fib, rng, root, rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 3.1),
                        dd * rng.uniform(0.45, 1.0), w_nv, int(rng.integers(5, 14)), px)
        if case.get("_nve"):  # from a vein along the arcades, sea-fan shaped
            veins = [sg for sg in segs if sg[3] == "v" and sg[2] > D * 0.004
                     and 1.3 * dd < math.hypot(sg[1][0] - disc[0], sg[1][1] - disc[1])
                     and sg[1][0] ** 2 + sg[1][1] ** 2 < 0.75 ** 2]
            for _ in range(int(rng.integers(1, 4))):
                if not veins:
                    break
                p0, p1, _, _ = veins[int(rng.integers(0, len(veins)))]
                along = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
                heading = along + (np.pi / 2 if rng.random() < 0.5 else -np.pi / 2) + rng.normal(0, 0.5)
                _nv_fan(nv, fib, rng, p1, heading, rng.uniform(0.4, 1.1), dd * rng.uniform(0.3, 0.7),
                        w_nv, int(rng.integers(4, 10)), px)
        if case.get("_prh"):
            for p in _sample_points(rng, int(rng.integers(1, 3)), disc + np.array([-0.2, 0.1]), 0.3, disc, dd):
                wdt = rng.uniform(0.08, 0.2)
                hgt = wdt * rng.uniform(0.35, 0.6)
                t = np.linspace(0, np.pi, 24)
                pts = [(p[0] - wdt / 2, p[1])] + [(p[0] - wdt / 2 * math.cos(a_), p[1] + hgt * math.sin(a_)) for a_ in t]
                pre.polygon(pts)
    _mul(img, red.mask(0.35 + D * 0.0005), np.array([0.36, 0.72, 0.58], np.float32) * rng.uniform(0.75, 1.0))
    _mix(img, exu.mask(0.3 + D * 0.0003), np.array([250, 228, 125], np.float32) * rng.uniform(0.85, 1.05),
         rng.uniform(0.75, 0.95))
    cm = cws.mask(D * 0.006)
    if cm is not None:
        cm = (np.clip(cm[0] * 1.3, 0, 1), cm[1])
    _mix(img, cm, [240, 228, 205], rng.uniform(0.45, 0.75))
    if fib is not None:  # greyish-white fibrovascular tissue around the new vessels
        _mix(img, fib.mask(D * 0.006), np.array([222, 212, 198], np.float32), rng.uniform(0.2, 0.45))
    _mul(img, nv.mask(0.35 + D * 0.0003), [0.32, 0.6, 0.5])
    _mix(img, pre.mask(D * 0.002), [110, 18, 12], 0.85)
    if grade == 4 and case.get("_vh"):
        cloud = np.clip(_up(_noise_lr(rng, 5), D) * 0.6 + rng.uniform(-0.2, 0.4), 0, 1) * rng.uniform(0.35, 0.7)
        c3 = cloud[..., None]
        img *= 1 - c3
        img += c3 * np.array([120, 25, 15], np.float32)
        img = img * (1 - c3) + _blur_fast(img, D * 0.02) * c3
    return img


def _spot(D, c, sigma_px, k=3):
    cx, cy = (c[0] + 1) * D / 2, (c[1] + 1) * D / 2
    r = int(k * sigma_px) + 2
    x0, x1 = max(0, int(cx) - r), min(D, int(cx) + r)
    y0, y1 = max(0, int(cy) - r), min(D, int(cy) + r)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    return np.exp(-(xs ** 2 + ys ** 2) / (2 * sigma_px ** 2)), (y0, y1, x0, x1)


def _fov_mask(rng, case, D):
    X = _grid(D)[None, :]
    Y = _grid(D)[:, None]
    R = np.sqrt(X ** 2 + Y ** 2)
    edge = 1.5 / (D / 2)
    fov = np.clip((1.0 - R) / edge + 0.5, 0, 1)
    if rng.random() < 0.3:  # small notch / tab at the field edge
        a = rng.choice([-np.pi / 4, -3 * np.pi / 4, np.pi / 4, 0.0]) + rng.normal(0, 0.05)
        u = X * math.cos(a) + Y * math.sin(a)
        v = -X * math.sin(a) + Y * math.cos(a)
        tab = ((u > 0.9) & (u < 1.0 + rng.uniform(0.02, 0.05)) & (np.abs(v) < rng.uniform(0.02, 0.05)))
        if rng.random() < 0.5:
            fov = np.maximum(fov, tab.astype(np.float32))
        else:
            fov = fov * (1 - tab)
    vis = 1.0
    defect = case["defect"]
    if defect == "fov" or (case["gradable"] and rng.random() < 0.1):
        # dark crescent (misaligned pupil); visible fraction kept far from the 3/4 limit
        target = rng.uniform(0.3, 0.66) if defect == "fov" else rng.uniform(0.87, 0.97)
        a = rng.uniform(0, 2 * np.pi)
        s = 96
        xs = _grid(s)[None, :]
        ys = _grid(s)[:, None]
        fs = (xs ** 2 + ys ** 2 < 1).astype(np.float32)
        width = rng.uniform(0.03, 0.12)
        curve = rng.uniform(0.0, 0.6)

        def cut(xx, yy, mid):
            u = xx * math.cos(a) + yy * math.sin(a)
            v = -xx * math.sin(a) + yy * math.cos(a)
            return np.clip((mid + curve * v ** 2 - u) / width + 0.5, 0, 1)
        lo, hi = -1.0, 1.5
        for _ in range(20):
            mid = (lo + hi) / 2
            vf = float((fs * cut(xs, ys, mid)).sum() / fs.sum())
            if vf > target:
                hi = mid
            else:
                lo = mid
        m = cut(X, Y, mid)
        vis = float((fov * m).sum() / fov.sum())
        fov = fov * (0.02 + 0.98 * m)
    case["_visible"] = vis
    return fov, R


def camera(rng, img, case, D):
    """Optics, exposure, sensor and defects. Returns uint8 DxDx3 FOV square."""
    gradable = case["gradable"]
    defect = case["defect"]
    # media haze: contrast-reducing veil + forward scatter
    if defect == "haze":
        h = rng.uniform(0.5, 0.85)
    else:
        h = rng.uniform(0.0, 0.2) if rng.random() < 0.3 else 0.0
    if h > 0:
        veil = np.array([215, 170, 120], np.float32) * rng.uniform(0.7, 1.1)
        scat = _blur_fast(img, D * 0.025)
        img = img * (1 - h) + h * (0.5 * veil + 0.5 * scat)
    # eyelid / lash shadow
    if defect == "lid" or (gradable and rng.random() < 0.1):
        X = _grid(D)[None, :]
        Y = _grid(D)[:, None]
        side = 1 if rng.random() < 0.6 else -1  # +1 from the top
        cover = rng.uniform(0.4, 0.7) if defect == "lid" else rng.uniform(0.02, 0.08)
        ye = -1 + 2 * _area_to_height(cover)  # shadow edge (top-down coordinates)
        curve = rng.uniform(0.05, 0.25) * X ** 2
        dist = (ye + curve) - side * Y
        shade = np.clip(dist / rng.uniform(0.05, 0.15) + 0.5, 0, 1)
        lash = Canvas(D)
        for _ in range(int(rng.integers(15, 50))):
            x0 = rng.uniform(-1, 1)
            y0 = side * (ye + rng.uniform(-0.05, 0.15))
            L = rng.uniform(0.1, 0.4)
            ang = side * np.pi / 2 + rng.normal(0, 0.5)
            pts = [(x0, y0)]
            for k in range(6):
                pts.append((pts[-1][0] + L / 6 * math.cos(ang + k * 0.1), pts[-1][1] + L / 6 * math.sin(ang + k * 0.1)))
            for k in range(6):
                lash.line(pts[k], pts[k + 1], D * rng.uniform(0.003, 0.008), val=200)
        lm = np.zeros((D, D), np.float32)
        mk = lash.mask(D * 0.004)
        if mk is not None:
            a, (y0_, y1_, x0_, x1_) = mk
            lm[y0_:y1_, x0_:x1_] = a
        depth = rng.uniform(0.78, 0.95) if defect == "lid" else rng.uniform(0.3, 0.6)
        sh = np.clip(shade * depth + lm * 0.6 * (1 - shade), 0, 0.97)[..., None]
        img = img * (1 - sh) + sh * np.array([25, 12, 8], np.float32)
    fov, R = _fov_mask(rng, case, D)
    # camera colour response: gains + saturation as one 3x3 matrix
    gains = np.array([rng.normal(1, 0.05), rng.normal(1, 0.07), rng.normal(1, 0.1)], np.float32)
    sat = rng.uniform(0.9, 1.35)
    M = (np.eye(3, dtype=np.float32) * sat + (1 - sat) / 3.0) * gains[None, :]
    # exposure from the mean luminance inside the field
    inside = R < 0.9
    lumw = np.array([0.299, 0.587, 0.114], np.float32)
    sub = img[::4, ::4][inside[::4, ::4]]
    luma = float((sub.mean(0) @ (M @ lumw))) if len(sub) else 100.0
    if defect == "dark":
        target = rng.uniform(5, 34)
    elif defect == "bright":
        target = rng.uniform(185, 225)
    else:
        target = float(np.clip(luma * rng.lognormal(0.25, 0.22), 62, 160))
    k = target / max(luma, 1e-3)
    Mk = M * k
    ch = [img[..., 0], img[..., 1], img[..., 2]]
    img = np.stack([ch[0] * Mk[0, c] + ch[1] * Mk[1, c] + ch[2] * Mk[2, c] for c in range(3)], -1)
    if defect == "bright":
        img += np.clip(img - 200, 0, None) * 0.6  # bloom
    sharp_edge = rng.random() < 0.6  # field stop stays sharp when the retina is defocused
    if not sharp_edge:
        img *= fov[..., None]
    u8 = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    im = Image.fromarray(u8, "RGB")
    # optics: defocus (ungradable) or mild softness, optional in-camera sharpening
    if defect == "blur":
        soft = D * rng.uniform(0.0075, 0.03)
        case["_blur_frac"] = soft / D
    elif defect is not None and rng.random() < 0.3:
        soft = D * rng.uniform(0.001, 0.003)
    else:
        soft = D * rng.uniform(0.0, 0.0019)
    if h > 0:
        soft = math.hypot(soft, D * 0.002 * h)
    if soft > 0.6:
        im = im.filter(ImageFilter.GaussianBlur(soft))
    if defect != "blur" and rng.random() < 0.35:
        im = im.filter(ImageFilter.UnsharpMask(radius=max(1.0, D * 0.002), percent=int(rng.uniform(40, 140)),
                                               threshold=2))
    gamma = rng.uniform(0.85, 1.2)
    lut = [int(255.0 * (i / 255.0) ** gamma + 0.5) for i in range(256)] * 3
    im = im.point(lut)
    ns = rng.uniform(0.6, 4.0) * (1.6 if defect == "dark" else 1.0)
    out = np.asarray(im, dtype=np.float32)
    if sharp_edge:
        out *= fov[..., None]
    out += _sensor_noise(rng, D) * ns
    out += 0.5
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _area_to_height(frac):
    """Height h in [0,1] (from the top, in diameter units) of a circular segment with area frac."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        m = (lo + hi) / 2
        t = 1 - 2 * m
        area = (math.acos(t) - t * math.sqrt(max(0.0, 1 - t * t))) / math.pi
        if area < frac:
            lo = m
        else:
            hi = m
    return (lo + hi) / 2


def render(seed, D=None, frame="tight", quality=None, case_override=None):
    """Render one case. Returns (encoded JPEG bytes, labels dict, uint8 frame)."""
    rng = np.random.default_rng(seed)
    case = sample_case(rng)
    if case_override:
        case.update(case_override)
    case = finish_case(rng, case)
    if D is None:
        D = int(rng.integers(520, 720))
    img = render_fov(rng, case, D)
    fov = camera(rng, img, case, D)
    clip = rng.random() < 0.3
    if frame == "tight":
        W = D + 2 * int(rng.integers(4, D // 10))
        H = int(D * rng.uniform(0.88, 0.96)) if clip else D + 2 * int(rng.integers(2, 12))
    else:
        W, H = frame
    canvas = np.zeros((H, W, 3), np.uint8)
    canvas += rng.integers(0, 7, (H, W, 1), dtype=np.uint8)
    ox = (W - D) // 2 + (int(rng.integers(-((W - D) // 4), (W - D) // 4 + 1)) if W - D >= 8 else 0)
    oy = (H - D) // 2
    sx0, sy0 = max(0, -ox), max(0, -oy)
    sx1, sy1 = min(D, W - ox), min(D, H - oy)
    tgt = canvas[oy + sy0:oy + sy1, ox + sx0:ox + sx1]
    np.maximum(tgt, fov[sy0:sy1, sx0:sx1], out=tgt)
    if case["eye"] == "L":
        canvas = np.ascontiguousarray(canvas[:, ::-1])
    q = quality if quality is not None else int(rng.integers(68, 97))
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="JPEG", quality=q, subsampling=2 if rng.random() < 0.7 else 0)
    labels = dict(grade=case["grade"], dme=case["dme"], gradable=case["gradable"], eye=case["eye"],
                  defect=case["defect"] or "")
    return buf.getvalue(), labels, canvas


if __name__ == "__main__":
    import sys
    import time
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    t = time.time()
    for s in range(n):
        b, l, c = render(1000 + s)
        open(f"/tmp/rend_{s}.jpg", "wb").write(b)
        print(s, l, c.shape)
    print("time/img", (time.time() - t) / n)
