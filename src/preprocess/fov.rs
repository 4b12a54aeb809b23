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

/// Locates the field of view in an RGB8 image.
pub fn locate(width: u32, height: u32, rgb: &[u8]) -> FieldOfView {
    let (w, h) = (width as usize, height as usize);
    let mut columns = vec![0u32; w];
    let mut rows = vec![0u32; h];
    for (row, row_count) in rgb.chunks_exact(w * 3).zip(rows.iter_mut()) {
        // Zipped iterators (no indexing) let the compiler drop bounds checks: this loop
        // touches every decoded pixel once.
        let mut count = 0u32;
        for (px, column) in row.chunks_exact(3).zip(columns.iter_mut()) {
            let inside = u32::from(u16::from(px[0]) + u16::from(px[1]) + u16::from(px[2]) >= FIELD_SUM_THRESHOLD);
            *column += inside;
            count += inside;
        }
        *row_count = count;
    }
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
