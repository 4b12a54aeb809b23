//! The model's heatmap: its referable-DR activation map, bilinearly upsampled over the
//! prepared (cropped) field of view and blended in a blue-to-red colour ramp where the
//! activation is high. Drawn on demand from the stored map; nothing is re-inferred.

/// Renders an RGB8 overlay of `side` x `side` from the prepared image and the map.
pub fn overlay(side: usize, rgb: &[u8], cam: &[f32], cam_shape: (usize, usize)) -> Vec<u8> {
    let (ch, cw) = cam_shape;
    let mut out = rgb.to_vec();
    if ch == 0 || cw == 0 || cam.len() != ch * cw || rgb.len() != side * side * 3 {
        return out;
    }
    let sample = |y: f32, x: f32| {
        let fy = (y * ch as f32 - 0.5).clamp(0.0, (ch - 1) as f32);
        let fx = (x * cw as f32 - 0.5).clamp(0.0, (cw - 1) as f32);
        let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(ch - 1), (x0 + 1).min(cw - 1));
        let (ty, tx) = (fy - y0 as f32, fx - x0 as f32);
        let top = cam[y0 * cw + x0] * (1.0 - tx) + cam[y0 * cw + x1] * tx;
        let bottom = cam[y1 * cw + x0] * (1.0 - tx) + cam[y1 * cw + x1] * tx;
        (top * (1.0 - ty) + bottom * ty).clamp(0.0, 1.0)
    };
    for y in 0..side {
        for x in 0..side {
            let v = sample((y as f32 + 0.5) / side as f32, (x as f32 + 0.5) / side as f32);
            let i = (y * side + x) * 3;
            // Blue (low) -> yellow -> red (high), opacity growing with the activation.
            let colour =
                [255.0 * (2.0 * v).min(1.0), 255.0 * (2.0 - 2.0 * v).min(1.0) * (v * 2.0).min(1.0), 255.0 * (1.0 - 2.0 * v).max(0.0)];
            let alpha = 0.15 + 0.5 * v;
            for c in 0..3 {
                out[i + c] = (f32::from(rgb[i + c]) * (1.0 - alpha) + colour[c] * alpha).round() as u8;
            }
        }
    }
    out
}

/// Encodes an RGB8 image as PNG.
pub fn png(side: usize, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(encoder, rgb, side as u32, side as u32, image::ExtendedColorType::Rgb8).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hot_cell_turns_its_region_red() {
        let rgb = vec![100u8; 64 * 64 * 3];
        let mut cam = vec![0.0f32; 4];
        cam[3] = 1.0; // bottom-right
        let out = super::overlay(64, &rgb, &cam, (2, 2));
        let px = |x: usize, y: usize| &out[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
        assert!(px(60, 60)[0] > 180 && px(60, 60)[2] < 80, "{:?}", px(60, 60));
        assert!(px(3, 3)[2] > px(3, 3)[0], "{:?}", px(3, 3));
    }
}
