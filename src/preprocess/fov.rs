//! Finding the circular fundus field of view on its black surround and turning it into
//! a square crop (recipe `fov-crop-bilinear-v1`, mirrored in `models/train/preprocess.py`).
//! A pixel is in the field when R+G+B >= 60; a column (row) belongs to the field when at
//! least max(3, H/100) (max(3, W/100)) of its pixels do. The square's side is the larger
//! extent, centred on the field, so a field clipped at the top and bottom by the camera
//! mask keeps its true diameter; parts of the square outside the image are black.

use serde::{Deserialize, Serialize};

/// Minimum R+G+B for a pixel to count as inside the field of view.
pub const FIELD_SUM_THRESHOLD: u16 = 60;

/// Where the field of view is, in decoded-image pixels.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldOfView {
    /// Whether any field was found; if not, the whole image is used.
    pub found: bool,
    pub left: u32,
    pub right: u32,
    pub top: u32,
    pub bottom: u32,
    /// Top-left corner of the square crop (may be negative: padded with black).
    pub x0: i64,
    pub y0: i64,
    /// Side of the square crop.
    pub side: u32,
}

/// The threshold as a byte: the per-pixel test runs on saturating byte sums.
const FIELD_SUM_THRESHOLD_U8: u8 = {
    assert!(FIELD_SUM_THRESHOLD <= 255);
    FIELD_SUM_THRESHOLD as u8
};

/// Locates the field of view in an RGB8 image.
pub fn locate(width: u32, height: u32, rgb: &[u8]) -> FieldOfView {
    let (w, h) = (width as usize, height as usize);
    let (columns, rows) = count_inside(w, h, rgb);
    let column_min = (height / 100).max(3);
    let row_min = (width / 100).max(3);
    let span = |counts: &[u32], min: u32| {
        let first = counts.iter().position(|&c| c >= min)?;
        let last = counts.iter().rposition(|&c| c >= min)?;
        Some((first as u32, last as u32))
    };
    let (found, (left, right), (top, bottom)) = match (span(&columns, column_min), span(&rows, row_min)) {
        (Some(cols), Some(rws)) => (true, cols, rws),
        _ => (false, (0, width - 1), (0, height - 1)),
    };
    let side = (right - left + 1).max(bottom - top + 1);
    let x0 = (i64::from(left) + i64::from(right) + 1 - i64::from(side)).div_euclid(2);
    let y0 = (i64::from(top) + i64::from(bottom) + 1 - i64::from(side)).div_euclid(2);
    FieldOfView { found, left, right, top, bottom, x0, y0, side }
}

/// Per-column and per-row counts of in-field pixels.
///
/// This pass reads every decoded pixel, so it is written for the vector unit rather
/// than pixel by pixel: the test runs at every byte offset of a row on saturating byte
/// sums `b[i] + b[i+1] + b[i+2]` (saturation cannot change the outcome of `>= 60`), so no
/// de-interleaving is needed, and only offsets that start a pixel are tallied. Column
/// tallies run in byte counters, flushed into the totals every 255 rows before they can
/// overflow.
fn count_inside(w: usize, h: usize, rgb: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let row_bytes = w * 3;
    let mut columns = vec![0u32; w];
    let mut rows = vec![0u32; h];
    if w == 0 || h == 0 {
        return (columns, rows);
    }
    // Offsets 0..row_bytes-2 cover every pixel start (the last is row_bytes-3).
    let span = row_bytes - 2;
    let starts: Vec<u8> = (0..span).map(|i| u8::from(i % 3 == 0)).collect();
    let mut tally = vec![0u8; span];
    let flush = |tally: &mut [u8], columns: &mut [u32]| {
        for (column, t) in columns.iter_mut().zip(tally.iter().step_by(3)) {
            *column += u32::from(*t);
        }
        tally.fill(0);
    };
    for (block, block_rows) in rgb.chunks(row_bytes * 255).zip(rows.chunks_mut(255)) {
        for (row, row_count) in block.chunks_exact(row_bytes).zip(block_rows.iter_mut()) {
            let (a, b, c) = (&row[..span], &row[1..span + 1], &row[2..]);
            let mut count = 0u32;
            // Pieces of 240 offsets hold at most 80 pixel starts, so the piece's count fits
            // a byte and the loop runs on full-width byte vectors.
            for lo in (0..span).step_by(240) {
                let hi = (lo + 240).min(span);
                let mut piece = 0u8;
                for ((((&x, &y), &z), t), &start) in
                    a[lo..hi].iter().zip(&b[lo..hi]).zip(&c[lo..hi]).zip(&mut tally[lo..hi]).zip(&starts[lo..hi])
                {
                    let inside = u8::from(x.saturating_add(y).saturating_add(z) >= FIELD_SUM_THRESHOLD_U8) & start;
                    *t += inside;
                    piece += inside;
                }
                count += u32::from(piece);
            }
            *row_count = count;
        }
        flush(&mut tally, &mut columns);
    }
    (columns, rows)
}

impl FieldOfView {
    /// Whether the square lies entirely inside the image (no padding needed).
    pub fn inside(&self, width: u32, height: u32) -> bool {
        self.x0 >= 0
            && self.y0 >= 0
            && self.x0 + i64::from(self.side) <= i64::from(width)
            && self.y0 + i64::from(self.side) <= i64::from(height)
    }

    /// Copies the square crop into a new black-padded RGB8 buffer of side x side.
    pub fn padded_square(&self, width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
        let side = self.side as usize;
        let mut out = vec![0u8; side * side * 3];
        let x_from = self.x0.max(0);
        let x_to = (self.x0 + side as i64).min(i64::from(width));
        if x_from >= x_to {
            return out;
        }
        let run = (x_to - x_from) as usize * 3;
        for dy in 0..side as i64 {
            let y = self.y0 + dy;
            if y < 0 || y >= i64::from(height) {
                continue;
            }
            let src = (y as usize * width as usize + x_from as usize) * 3;
            let dst = (dy as usize * side + (x_from - self.x0) as usize) * 3;
            out[dst..dst + run].copy_from_slice(&rgb[src..src + run]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc_image(w: u32, h: u32, cx: f32, cy: f32, r: f32) -> Vec<u8> {
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    let i = ((y * w + x) * 3) as usize;
                    rgb[i] = 180;
                    rgb[i + 1] = 60;
                    rgb[i + 2] = 20;
                }
            }
        }
        rgb
    }

    /// The per-pixel definition the vectorised counter must equal.
    fn count_inside_per_pixel(w: usize, h: usize, rgb: &[u8]) -> (Vec<u32>, Vec<u32>) {
        let (mut columns, mut rows) = (vec![0u32; w], vec![0u32; h]);
        for y in 0..h {
            for x in 0..w {
                let p = &rgb[(y * w + x) * 3..][..3];
                if u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2]) >= FIELD_SUM_THRESHOLD {
                    columns[x] += 1;
                    rows[y] += 1;
                }
            }
        }
        (columns, rows)
    }

    #[test]
    fn vectorised_counts_equal_the_per_pixel_definition() {
        // Values clustered around the threshold (sums near 60, and near 255 where byte
        // sums saturate), odd widths, and heights past the 255-row tally flush.
        for (w, h) in [(1usize, 1usize), (2, 3), (7, 300), (33, 256), (101, 511), (640, 520)] {
            let rgb: Vec<u8> = (0..w * h * 3)
                .map(|i| {
                    let r = (i.wrapping_mul(2_654_435_761) >> 9) as u8;
                    if r & 1 == 0 { r % 40 } else { r }
                })
                .collect();
            assert_eq!(count_inside(w, h, &rgb), count_inside_per_pixel(w, h, &rgb), "{w}x{h}");
            let disc = disc_image(w as u32, h as u32, w as f32 / 2.0, h as f32 / 2.0, w.min(h) as f32 * 0.45);
            assert_eq!(count_inside(w, h, &disc), count_inside_per_pixel(w, h, &disc), "disc {w}x{h}");
        }
    }

    #[test]
    fn centred_disc_gives_square_around_it() {
        let rgb = disc_image(400, 300, 200.0, 150.0, 120.0);
        let fov = locate(400, 300, &rgb);
        assert!(fov.found);
        assert!((fov.side as i32 - 240).abs() <= 4, "{fov:?}");
        assert!((fov.x0 - 80).abs() <= 2 && (fov.y0 - 30).abs() <= 2, "{fov:?}");
        assert!(fov.inside(400, 300));
    }

    #[test]
    fn clipped_disc_keeps_diameter_and_pads() {
        // Field of diameter 300 in a 400x240 frame: top and bottom are cut off.
        let rgb = disc_image(400, 240, 200.0, 120.0, 150.0);
        let fov = locate(400, 240, &rgb);
        assert!((fov.side as i32 - 300).abs() <= 4, "{fov:?}");
        assert!(fov.y0 < 0 && !fov.inside(400, 240));
        let square = fov.padded_square(400, 240, &rgb);
        assert_eq!(square.len(), (fov.side * fov.side * 3) as usize);
        assert_eq!(&square[..3], &[0, 0, 0]);
    }

    #[test]
    fn black_image_falls_back_to_whole_frame() {
        let rgb = vec![0u8; 50 * 40 * 3];
        let fov = locate(50, 40, &rgb);
        assert!(!fov.found);
        assert_eq!((fov.side, fov.x0, fov.y0), (50, 0, -5));
    }
}
