//! Explainable image-quality measures on the prepared (cropped, resized) fundus image:
//! field-of-view coverage, exposure, highlight clipping, contrast and focus. They are
//! combined with the model's own gradability output in `grading::image`; here they are
//! only measured and compared with configurable limits, each failure named by a stable
//! reason code a clinician can read.

use serde::{Deserialize, Serialize};

/// R+G+B below which a pixel counts as black (outside the field or occluded). Much
/// lower than the field-locating threshold so a dark but visible retina still counts as
/// covered and is reported as underexposed instead.
pub const COVERED_SUM_THRESHOLD: u16 = 15;

/// The measures, all computed inside the inscribed circle of the square crop.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct QualityMeasures {
    /// Share of the circular field that is visible (not black), 0..1.
    pub fov_coverage: f32,
    /// Mean luma (0..255) of the visible field.
    pub brightness: f32,
    /// Share of visible pixels with a channel at 250 or above.
    pub clipped_fraction: f32,
    /// Standard deviation of the green channel in the visible field (retinal detail).
    pub contrast: f32,
    /// Mean absolute Laplacian of the green channel, divided by the contrast: edge
    /// energy that blur removes, independent of exposure.
    pub focus: f32,
}

/// Limits below/above which an image is ungradable on its measures alone.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QualityLimits {
    pub min_fov_coverage: f32,
    pub min_brightness: f32,
    pub max_brightness: f32,
    pub max_clipped_fraction: f32,
    pub min_contrast: f32,
    pub min_focus: f32,
    pub warn_fov_coverage: f32,
    pub warn_min_brightness: f32,
    pub warn_max_brightness: f32,
    pub warn_contrast: f32,
    pub warn_focus: f32,
}

impl Default for QualityLimits {
    fn default() -> Self {
        // Deliberately permissive: these catch only images no grader could use; the
        // model's gradability output handles the borderline cases.
        Self {
            min_fov_coverage: 0.75,
            min_brightness: 20.0,
            max_brightness: 235.0,
            max_clipped_fraction: 0.30,
            min_contrast: 4.0,
            min_focus: 0.05,
            warn_fov_coverage: 0.85,
            warn_min_brightness: 35.0,
            warn_max_brightness: 200.0,
            warn_contrast: 10.0,
            warn_focus: 0.30,
        }
    }
}

/// Stable reason codes for ungradable images.
pub const REASON_FOV: &str = "field_of_view_incomplete";
pub const REASON_DARK: &str = "underexposed";
pub const REASON_BRIGHT: &str = "overexposed";
pub const REASON_CLIPPED: &str = "highlights_clipped";
pub const REASON_CONTRAST: &str = "low_contrast";
pub const REASON_FOCUS: &str = "out_of_focus";
pub const REASON_MODEL: &str = "model_judged_ungradable";
pub const REASON_NO_FIELD: &str = "no_field_of_view_found";

impl QualityMeasures {
    /// Measures a square RGB8 image of `side` x `side`.
    pub fn measure(side: usize, rgb: &[u8]) -> Self {
        let c = (side as f32 - 1.0) / 2.0;
        // Stay clear of the rim, where the camera mask's soft edge would count as dark.
        let r = side as f32 * 0.47;
        let r2 = r * r;
        let (mut total, mut visible) = (0u64, 0u64);
        // Luma in thousandths (299 R + 587 G + 114 B) and green moments, summed exactly in
        // integers: the same measures as per-pixel floating point, without its cost.
        let (mut luma_milli, mut clipped) = (0u64, 0u64);
        let (mut g_sum, mut g_sq) = (0u64, 0u64);
        for y in 0..side {
            let dy = y as f32 - c;
            let Some((x0, x1)) = chord(side, c, dy, r2) else { continue };
            total += (x1 - x0 + 1) as u64;
            // Branch-free, in per-row u32 sums, so the loop vectorises (u32 holds a row of
            // 16,843 pixels of luma; the manifest caps inputs at 4,096).
            let (mut row_visible, mut row_luma, mut row_clipped, mut row_g, mut row_g_sq) = (0u32, 0u32, 0u32, 0u32, 0u32);
            for px in rgb[(y * side + x0) * 3..(y * side + x1 + 1) * 3].chunks_exact(3) {
                let (pr, pg, pb) = (u32::from(px[0]), u32::from(px[1]), u32::from(px[2]));
                let covered = u32::from(pr + pg + pb >= u32::from(COVERED_SUM_THRESHOLD));
                let luma = 299 * pr + 587 * pg + 114 * pb;
                row_visible += covered;
                row_luma += covered * luma;
                // Red saturates on many healthy fundus photos; only washed-out white counts.
                row_clipped += covered & u32::from(luma >= 245_000);
                row_g += covered * pg;
                row_g_sq += covered * pg * pg;
            }
            visible += u64::from(row_visible);
            luma_milli += u64::from(row_luma);
            clipped += u64::from(row_clipped);
            g_sum += u64::from(row_g);
            g_sq += u64::from(row_g_sq);
        }
        let (luma_sum, g_sum, g_sq) = (luma_milli as f64 / 1000.0, g_sum as f64, g_sq as f64);
        let visible_f = visible.max(1) as f64;
        let mean_g = g_sum / visible_f;
        let contrast = ((g_sq / visible_f) - mean_g * mean_g).max(0.0).sqrt();
        Self {
            fov_coverage: (visible as f64 / total.max(1) as f64) as f32,
            brightness: (luma_sum / visible_f) as f32,
            clipped_fraction: (clipped as f64 / visible_f) as f32,
            contrast: contrast as f32,
            focus: focus(side, rgb, contrast as f32),
        }
    }

    /// The reason codes of every limit this image fails.
    pub fn failures(&self, limits: &QualityLimits) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.fov_coverage < limits.min_fov_coverage {
            reasons.push(REASON_FOV);
        }
        if self.brightness < limits.min_brightness {
            reasons.push(REASON_DARK);
        }
        if self.brightness > limits.max_brightness {
            reasons.push(REASON_BRIGHT);
        }
        if self.clipped_fraction > limits.max_clipped_fraction {
            reasons.push(REASON_CLIPPED);
        }
        if self.contrast < limits.min_contrast {
            reasons.push(REASON_CONTRAST);
        }
        if self.focus < limits.min_focus {
            reasons.push(REASON_FOCUS);
        }
        reasons
    }

    /// The reason codes of every advisory limit this image is beyond: used to explain
    /// why the model judged an image ungradable.
    pub fn warnings(&self, limits: &QualityLimits) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.fov_coverage < limits.warn_fov_coverage {
            reasons.push(REASON_FOV);
        }
        if self.brightness < limits.warn_min_brightness {
            reasons.push(REASON_DARK);
        }
        if self.brightness > limits.warn_max_brightness {
            reasons.push(REASON_BRIGHT);
        }
        if self.contrast < limits.warn_contrast {
            reasons.push(REASON_CONTRAST);
        }
        if self.focus < limits.warn_focus {
            reasons.push(REASON_FOCUS);
        }
        reasons
    }
}

/// The columns of row offset `dy` inside the circle `dx^2 + dy^2 <= r2` around `c`, as
/// an inclusive range; `None` when the row misses it. The square-root estimate is
/// corrected with the exact per-pixel test, so the set is the same as testing each pixel.
fn chord(side: usize, c: f32, dy: f32, r2: f32) -> Option<(usize, usize)> {
    let inside = |x: usize| {
        let dx = x as f32 - c;
        dx * dx + dy * dy <= r2
    };
    let rem = r2 - dy * dy;
    if rem < 0.0 {
        return None;
    }
    let half = rem.sqrt();
    let clamp = |v: f32| (v.max(0.0) as usize).min(side - 1);
    let (mut x0, mut x1) = (clamp((c - half).floor()), clamp((c + half).ceil()));
    while x0 > 0 && inside(x0 - 1) {
        x0 -= 1;
    }
    while x0 <= x1 && !inside(x0) {
        x0 += 1;
    }
    while x1 + 1 < side && inside(x1 + 1) {
        x1 += 1;
    }
    while x1 >= x0 && !inside(x1) {
        if x1 == 0 {
            return None;
        }
        x1 -= 1;
    }
    (x0 <= x1).then_some((x0, x1))
}

/// Vessel-scale sharpness: the green channel is box-averaged 4x4 (which removes sensor
/// and JPEG noise, the dominant fine-scale signal at this size), then the mean absolute
/// Laplacian inside the central field is divided by the image contrast. Defocus and
/// media haze flatten vessel edges at exactly this scale.
fn focus(side: usize, rgb: &[u8], contrast: f32) -> f32 {
    const F: usize = 4;
    let n = side / F;
    if n < 8 || contrast <= 0.0 {
        return 0.0;
    }
    // Green sums of each 4x4 cell, accumulated row by row so memory is read in order.
    let mut sums = vec![0u32; n * n];
    for (y, row) in rgb.chunks_exact(side * 3).take(n * F).enumerate() {
        let cells = &mut sums[(y / F) * n..][..n];
        for (cell, px) in cells.iter_mut().zip(row.chunks_exact(3 * F)) {
            *cell += px.iter().skip(1).step_by(3).map(|&g| u32::from(g)).sum::<u32>();
        }
    }
    let small: Vec<f32> = sums.iter().map(|&v| v as f32 / (F * F) as f32).collect();
    let c = (n as f32 - 1.0) / 2.0;
    let r2 = (n as f32 * 0.40).powi(2);
    let (mut sum, mut count) = (0f64, 0u64);
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let (dx, dy) = (x as f32 - c, y as f32 - c);
            let v = small[y * n + x];
            if dx * dx + dy * dy > r2 || v * 3.0 < f32::from(COVERED_SUM_THRESHOLD) {
                continue;
            }
            let lap = 4.0 * v - small[y * n + x - 1] - small[y * n + x + 1] - small[(y - 1) * n + x] - small[(y + 1) * n + x];
            sum += f64::from(lap.abs());
            count += 1;
        }
    }
    (sum / count.max(1) as f64) as f32 / contrast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chords_are_exactly_the_pixels_inside_the_circle() {
        for side in [1usize, 2, 7, 33, 100, 512] {
            let c = (side as f32 - 1.0) / 2.0;
            let r2 = (side as f32 * 0.47).powi(2);
            for y in 0..side {
                let dy = y as f32 - c;
                let expected: Vec<usize> = (0..side).filter(|&x| (x as f32 - c).powi(2) + dy * dy <= r2).collect();
                let got: Vec<usize> = chord(side, c, dy, r2).map(|(a, b)| (a..=b).collect()).unwrap_or_default();
                assert_eq!(got, expected, "side {side} row {y}");
            }
        }
    }

    #[test]
    fn integer_sums_match_per_pixel_floating_point() {
        let side = 96;
        // A deterministic, varied image with dark, mid and near-white pixels.
        let rgb: Vec<u8> = (0..side * side * 3).map(|i| ((i * 2_654_435_761usize) >> 7) as u8).collect();
        let m = QualityMeasures::measure(side, &rgb);
        let c = (side as f32 - 1.0) / 2.0;
        let r2 = (side as f32 * 0.47).powi(2);
        let (mut total, mut visible, mut luma, mut clipped, mut g, mut g2) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
        for y in 0..side {
            for x in 0..side {
                if (x as f32 - c).powi(2) + (y as f32 - c).powi(2) > r2 {
                    continue;
                }
                total += 1.0;
                let p = &rgb[(y * side + x) * 3..][..3];
                if u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2]) < COVERED_SUM_THRESHOLD {
                    continue;
                }
                visible += 1.0;
                let l = 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
                luma += l;
                clipped += f64::from(u8::from(l >= 245.0));
                g += f64::from(p[1]);
                g2 += f64::from(p[1]).powi(2);
            }
        }
        let contrast = (g2 / visible - (g / visible).powi(2)).sqrt();
        assert!((f64::from(m.fov_coverage) - visible / total).abs() < 1e-6);
        assert!((f64::from(m.brightness) - luma / visible).abs() < 1e-3);
        assert!((f64::from(m.clipped_fraction) - clipped / visible).abs() < 1e-6);
        assert!((f64::from(m.contrast) - contrast).abs() < 1e-3);
    }
}
