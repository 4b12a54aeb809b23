//! Locating the optic disc on the prepared (cropped, resized) field of view, for the
//! laterality check in `grading::laterality`. Deterministic and cheap: the image is
//! averaged into a 64x64 grid of luma cells, the cells fully inside the field are
//! box-smoothed at about disc size, and the brightest smoothed cell is the disc's
//! estimate. Its strength is the peak against the ring of retina around it, in standard
//! deviations of the field's cell brightness: a disc is a compact bright spot, whereas a
//! broad bright area (an eyelid shadow's lit side, a haze) is about as bright as its own
//! surroundings. Only measured here; the decision with its thresholds is the grading
//! module's. It reads the prepared pixels and never changes them: the model's input stays
//! exactly the recipe's.

use serde::{Deserialize, Serialize};

/// Cells per side of the analysis grid (8x8 pixels each at the 512 input size).
const GRID: usize = 64;
/// Box-smoothing half-width in cells: a 7x7 box, about the size of a disc (a disc's
/// diameter is roughly 0.3 field radii, ~10 cells), so vessels and lesions average out.
const SMOOTH: usize = 3;
/// A smoothed cell needs this share of its box inside the field, so the field's rim
/// (dark mask, soft edge) cannot drag a peak down or push one up.
const SMOOTH_MIN_SHARE: f32 = 0.6;
/// Cells used at all lie within this many field radii of the centre (clear of the rim).
const FIELD_RADIUS: f32 = 0.92;
/// The disc's centre is looked for within this many field radii (macula-centred discs
/// sit at about 0.5-0.85).
const SEARCH_RADIUS: f32 = 0.88;
/// The ring around the peak the peak is compared with, in cells from the peak:
/// from just outside the disc to about one disc diameter further out.
const RING: (f32, f32) = (7.0, 11.0);
/// R+G+B below which a pixel is black (outside the field), as in the quality measures.
const COVERED_SUM: u32 = crate::preprocess::quality::COVERED_SUM_THRESHOLD as u32;

/// Where the brightest disc-sized spot of the field is, and how clearly it stands out.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct DiscEstimate {
    /// Horizontal offset of the spot from the field's centre in field radii, positive to
    /// the right as displayed (-1..1).
    pub offset_x: f32,
    /// Vertical offset, positive downwards.
    pub offset_y: f32,
    /// The spot's smoothed brightness minus the mean of the ring around it, in standard
    /// deviations of the field's cell brightness.
    pub contrast: f32,
    /// The same difference in luma levels (0..255): guards against a tiny spread (a
    /// nearly black image) turning noise into a high `contrast`.
    pub step: f32,
}

/// Estimates the disc on a square RGB8 image of `side` x `side` (the prepared image,
/// whose centre is the field's centre and half-side its radius). `None` when the image is
/// too small for the grid or no part of the field is visible.
pub fn locate(side: usize, rgb: &[u8]) -> Option<DiscEstimate> {
    if side < GRID || rgb.len() != side * side * 3 {
        return None;
    }
    // Per cell: pixels, covered pixels and their luma sum (in thousandths, exact integers).
    let cell_of: Vec<usize> = (0..side).map(|i| i * GRID / side).collect();
    let (mut pixels, mut covered, mut luma) = (vec![0u32; GRID * GRID], vec![0u32; GRID * GRID], vec![0u64; GRID * GRID]);
    for (y, row) in rgb.chunks_exact(side * 3).enumerate() {
        let base = cell_of[y] * GRID;
        for (x, px) in row.chunks_exact(3).enumerate() {
            let (r, g, b) = (u32::from(px[0]), u32::from(px[1]), u32::from(px[2]));
            let cell = base + cell_of[x];
            pixels[cell] += 1;
            if r + g + b >= COVERED_SUM {
                covered[cell] += 1;
                luma[cell] += u64::from(299 * r + 587 * g + 114 * b);
            }
        }
    }
    let centre = GRID as f32 / 2.0;
    let radius_of = |cx: usize, cy: usize| ((cx as f32 + 0.5 - centre).hypot(cy as f32 + 0.5 - centre)) / centre;
    // A cell counts when it is well inside the field and (nearly) all of it is visible.
    let mean: Vec<Option<f32>> = (0..GRID * GRID)
        .map(|i| {
            let inside = radius_of(i % GRID, i / GRID) <= FIELD_RADIUS && covered[i] * 10 >= pixels[i] * 9 && covered[i] > 0;
            inside.then(|| luma[i] as f32 / 1000.0 / covered[i] as f32)
        })
        .collect();
    let values: Vec<f32> = mean.iter().flatten().copied().collect();
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f32;
    let field_mean = values.iter().sum::<f32>() / n;
    let field_sd = (values.iter().map(|v| (v - field_mean).powi(2)).sum::<f32>() / n).sqrt();

    // Box-smoothed brightness of each candidate cell; the brightest wins (first in row
    // order on a tie, so the result is deterministic).
    let box_cells = ((2 * SMOOTH + 1) * (2 * SMOOTH + 1)) as f32;
    let mut best: Option<(usize, usize, f32)> = None;
    for cy in 0..GRID {
        for cx in 0..GRID {
            if mean[cy * GRID + cx].is_none() || radius_of(cx, cy) > SEARCH_RADIUS {
                continue;
            }
            let (mut sum, mut count) = (0f32, 0f32);
            for y in cy.saturating_sub(SMOOTH)..(cy + SMOOTH + 1).min(GRID) {
                for x in cx.saturating_sub(SMOOTH)..(cx + SMOOTH + 1).min(GRID) {
                    if let Some(v) = mean[y * GRID + x] {
                        sum += v;
                        count += 1.0;
                    }
                }
            }
            if count < box_cells * SMOOTH_MIN_SHARE {
                continue;
            }
            let smoothed = sum / count;
            if best.is_none_or(|(_, _, b)| smoothed > b) {
                best = Some((cx, cy, smoothed));
            }
        }
    }
    let (px, py, peak) = best?;
    let (mut ring_sum, mut ring_count) = (0f32, 0f32);
    for (i, v) in mean.iter().enumerate() {
        let Some(v) = v else { continue };
        let d = (i % GRID).abs_diff(px) as f32;
        let d = d.hypot((i / GRID).abs_diff(py) as f32);
        if (RING.0..=RING.1).contains(&d) {
            ring_sum += v;
            ring_count += 1.0;
        }
    }
    let ring = if ring_count > 0.0 { ring_sum / ring_count } else { peak };
    Some(DiscEstimate {
        offset_x: (px as f32 + 0.5 - centre) / centre,
        offset_y: (py as f32 + 0.5 - centre) / centre,
        contrast: (peak - ring) / field_sd.max(1.0),
        step: peak - ring,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image mirrored left to right.
    fn mirror(side: usize, rgb: &[u8]) -> Vec<u8> {
        rgb.chunks_exact(side * 3).flat_map(|row| row.chunks_exact(3).rev().flatten().copied().collect::<Vec<u8>>()).collect()
    }

    /// A 512 field: dim retina in a circle with a bright disc-sized spot at (dx, dy) field radii.
    fn field(dx: f32, dy: f32, spot: u8) -> Vec<u8> {
        let side = 512usize;
        let c = side as f32 / 2.0;
        let mut rgb = vec![0u8; side * side * 3];
        for y in 0..side {
            for x in 0..side {
                let (fx, fy) = ((x as f32 + 0.5 - c) / c, (y as f32 + 0.5 - c) / c);
                if fx.hypot(fy) > 0.98 {
                    continue;
                }
                // A gentle, deterministic texture so the field has a spread.
                let texture = ((x * 7 + y * 13) % 17) as u8;
                let on_disc = (fx - dx).hypot(fy - dy) < 0.15;
                let p = &mut rgb[(y * side + x) * 3..][..3];
                p.copy_from_slice(&if on_disc { [spot, spot, spot / 2] } else { [150 + texture, 70 + texture, 30] });
            }
        }
        rgb
    }

    #[test]
    fn finds_a_bright_spot_on_the_right_and_its_mirror_on_the_left() {
        let rgb = field(0.65, -0.05, 240);
        let d = locate(512, &rgb).unwrap();
        assert!((d.offset_x - 0.65).abs() < 0.05 && (d.offset_y + 0.05).abs() < 0.05, "{d:?}");
        assert!(d.contrast > 3.0 && d.step > 40.0, "{d:?}");
        let m = locate(512, &mirror(512, &rgb)).unwrap();
        assert!((m.offset_x + d.offset_x).abs() < 0.05, "{m:?} mirrors {d:?}");
    }

    #[test]
    fn a_field_without_a_spot_has_no_contrast_and_black_has_no_field() {
        let flat = field(0.0, 0.0, 0);
        // The "spot" is black here: the field is texture only.
        let d = locate(512, &flat).unwrap();
        assert!(d.step < 12.0, "{d:?}");
        assert_eq!(locate(512, &vec![0u8; 512 * 512 * 3]), None);
        assert_eq!(locate(32, &vec![0u8; 32 * 32 * 3]), None, "too small for the grid");
    }
}
