//! The review image viewer: the markup of one viewer box (a display-sized rendition of
//! the original photograph, zoom and pan, the heatmap as a separate layer loaded only
//! when first shown), the shared tool bar (heatmap opacity, legend and caption,
//! green channel, brightness, contrast, keys), the routes behind them
//! (`view.jpg?w=` renditions, the heatmap layer, and `/review/images/{id}/view`, a
//! whole-window viewer titled with the eye and exam) and the small script that drives
//! it (`static/viewer.js`). Without JavaScript the photograph still shows at fit size.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::html::{esc, page};
use super::{PagePath, PageQuery, ReviewSession, error_page};
use crate::grading::{ImageFinding, Laterality};
use crate::http::AppState;
use crate::http::error::ApiError;

/// Rendition widths the viewer may ask for (besides the original's own width): a small
/// fixed set, so a handful of sizes per image can be cached and nobody can make the
/// server resize to arbitrary sizes.
pub const RENDITION_WIDTHS: [u32; 3] = [512, 1024, 2048];

/// The width of the rendition a page without JavaScript shows first.
const DEFAULT_RENDITION: u32 = 1024;

/// What the heatmap shows, in words (the engine's `referable_cam` output).
pub const HEATMAP_CAPTION: &str = "Heatmap: the model's class activation map for referable diabetic retinopathy \
(ICDR grade 2 or worse), laid over the part of the photograph the model analysed. It shows where the model's \
evidence for referral was strongest; it is not a lesion map and can miss lesions (for example new vessels).";

/// The eye's title as the case page shows it.
pub fn eye_title(laterality: Laterality) -> &'static str {
    match laterality {
        Laterality::Right => "Right eye (OD)",
        Laterality::Left => "Left eye (OS)",
        Laterality::Unspecified => "Eye not stated",
    }
}

/// The `<script>` element for the viewer, placed in the page body (the page frame's
/// scripts are shared by every page).
pub const SCRIPT: &str = r#"<script src="/review/static/viewer.js" defer></script>"#;

/// The rendition widths offered for an original `width` pixels wide: the fixed sizes
/// below it, and the original's own width when it is not above the largest.
fn rendition_widths(width: u32) -> Vec<u32> {
    let mut sizes: Vec<u32> = RENDITION_WIDTHS.iter().copied().filter(|w| *w < width).collect();
    if width > 0 && width <= RENDITION_WIDTHS[RENDITION_WIDTHS.len() - 1] {
        sizes.push(width);
    }
    sizes
}

/// The tool bar shared by every viewer on the page. It must follow the
/// `#heatmap-toggle` checkbox and precede the viewers (the CSS shows the heatmap layers
/// with a sibling selector, so the checkbox also works before the script runs).
pub fn tools(b: &mut String) {
    let _ = write!(
        b,
        r#"<div class="viewer-tools" id="viewer-tools">
<label>Heatmap opacity <input type="range" id="heat-opacity" min="0" max="100" step="5" value="50"> <output id="heat-opacity-value" for="heat-opacity">50%</output></label>
<span class="legend" aria-label="Heatmap colours: blue low activation, yellow medium, red high"><span>low</span><span class="ramp"></span><span>high activation</span></span>
<label><input type="checkbox" id="green-toggle"> Green channel (red-free) <kbd>g</kbd></label>
<label>Brightness <input type="range" id="brightness" min="40" max="300" step="10" value="100"></label>
<label>Contrast <input type="range" id="contrast" min="40" max="300" step="10" value="100"></label>
<button type="button" id="viewer-reset">Reset view</button>
<details class="keys" id="viewer-keys"><summary>Keys</summary><p>
<kbd>h</kbd> heatmap · <kbd>g</kbd> green channel · <kbd>[</kbd> <kbd>]</kbd> brightness · <kbd>{{</kbd> <kbd>}}</kbd> contrast ·
<kbd>+</kbd> <kbd>-</kbd> zoom the image under the mouse (or the last one used) · <kbd>0</kbd> reset zoom ·
mouse wheel or pinch to zoom, drag to pan.</p></details>
</div>
<p class="heat-caption hint" id="heat-caption">{caption}</p>"#,
        caption = esc(HEATMAP_CAPTION),
    );
}

/// One viewer box for stored image `id`. `sizes` is the `<img sizes>` hint: how wide the
/// box is on this page, so the browser picks the right rendition.
pub fn viewer(b: &mut String, id: &str, label: &str, finding: &ImageFinding, sizes: &str) {
    let (w, h) = (finding.image.width, finding.image.height);
    let widths = rendition_widths(w);
    let srcset = widths.iter().map(|x| format!("/review/images/{id}/view.jpg?w={x} {x}w", id = esc(id))).collect::<Vec<_>>().join(", ");
    let first = widths.iter().copied().find(|x| *x >= DEFAULT_RENDITION).or(widths.last().copied()).unwrap_or(DEFAULT_RENDITION);
    let _ = write!(
        b,
        r#"<div class="viewer" tabindex="0" role="group" aria-label="{label}: image viewer" data-image="{id}" data-width="{w}" data-height="{h}" data-zoom="1" data-pan-x="0" data-pan-y="0" data-source="rendition" data-original="/review/images/{id}/original" data-heat="/review/images/{id}/heatmap-layer.png"><div class="stage">
<img class="photo" src="/review/images/{id}/view.jpg?w={first}" srcset="{srcset}" sizes="{sizes}" alt="{label}: fundus photograph" width="{w}" height="{h}">
<img class="heat" alt="" width="{w}" height="{h}"></div>
<div class="zoom-buttons"><button type="button" data-zoom-step="in" title="Zoom in (+)" aria-label="Zoom in">+</button><button type="button" data-zoom-step="out" title="Zoom out (-)" aria-label="Zoom out">&minus;</button><button type="button" data-zoom-step="reset" title="Reset zoom (0)">1:1 fit</button></div></div>
<noscript><p class="hint"><a href="/review/images/{id}/heatmap.png">Model heatmap</a></p></noscript>"#,
        id = esc(id),
        label = esc(label),
        sizes = esc(sizes),
    );
}

#[derive(Deserialize)]
pub struct RenditionQuery {
    w: u32,
}

/// `GET /review/images/{id}/view.jpg?w=`: the original scaled to one of the
/// [`RENDITION_WIDTHS`] (or its own width), as JPEG. Resizing runs on the blocking pool
/// under the decoder's pixel limit.
pub async fn view_jpg(
    State(state): State<AppState>,
    _user: ReviewSession,
    PagePath(id): PagePath<String>,
    PageQuery(q): PageQuery<RenditionQuery>,
) -> Response {
    // Widths outside the set cost a decode only when they might be the original's own.
    if q.w == 0 || q.w > 16_384 {
        return ApiError::bad_request(
            "invalid_width",
            format!("w={}: the width must be one of 512, 1024, 2048 or the original's width", q.w),
        )
        .into_response();
    }
    let image = match super::case::stored_image(&state, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.service.view_rendition(image.sha256, q.w, &RENDITION_WIDTHS).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=600")], bytes).into_response(),
        Err(crate::service::ServiceError::Invalid(msg)) => ApiError::bad_request("invalid_width", msg).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /review/images/{id}/heatmap-layer.png`: the heatmap alone, transparent, in the
/// original photograph's geometry.
pub async fn heatmap_layer_png(State(state): State<AppState>, _user: ReviewSession, PagePath(id): PagePath<String>) -> Response {
    let image = match super::case::stored_image(&state, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.service.heatmap_layer_png(image.sha256, image.cam, image.cam_shape).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=600")], bytes).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /review/images/{id}/view`: one image in a whole-window viewer, titled with its
/// eye and exam ("Right eye (OD) · exam ACC-1"), with the same tools as the case page
/// and a link to the untouched original file. Audited as `exam.view`.
pub async fn view_page(State(state): State<AppState>, user: ReviewSession, PagePath(id): PagePath<String>) -> Response {
    let actor = user.session.key.id.clone();
    let image_id = id.clone();
    let loaded = state
        .store_call(move |store| {
            let Some(image) = store.get_image(&image_id)? else { return Ok(None) };
            let Some(exam) = store.get_exam(&image.exam_id)? else { return Ok(None) };
            let Some(found) = store.exam_images(&exam.id)?.into_iter().find(|i| i.id == image_id) else { return Ok(None) };
            store.audit(&actor, "exam.view", Some(&exam.id), Some(&format!("image viewer {image_id}")))?;
            Ok(Some((exam, found)))
        })
        .await;
    let (exam, image) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, Some(&user.session), "Image not found", "No stored image has that id."),
        Err(e) => return e.into_response(),
    };
    let exam_name = exam.external_exam_ref.clone().unwrap_or_else(|| exam.id.clone());
    let title = format!("{} · exam {exam_name}", eye_title(image.laterality));
    let mut b = String::new();
    let _ = write!(
        b,
        r#"<div class="viewer-page"><h1>{title}</h1><p class="hint"><a href="/review/exams/{exam}">Back to the case</a> · <a href="/review/images/{id}/original" download>Download the original file</a></p>
<input type="checkbox" id="heatmap-toggle" class="toggle"><label for="heatmap-toggle" class="toggle-label">Show model heatmap (<kbd>h</kbd>)</label>"#,
        title = esc(&title),
        exam = esc(&exam.id),
        id = esc(&image.id),
    );
    tools(&mut b);
    b.push_str(r#"<div class="eyes single">"#);
    viewer(&mut b, &image.id, eye_title(image.laterality), &image.finding, "100vw");
    b.push_str("</div></div>");
    b.push_str(SCRIPT);
    Html(page(&title, Some(&user.session), &b)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renditions_never_exceed_the_original() {
        assert_eq!(rendition_widths(1400), vec![512, 1024, 1400]);
        assert_eq!(rendition_widths(4000), vec![512, 1024, 2048]);
        assert_eq!(rendition_widths(300), vec![300]);
        assert_eq!(rendition_widths(2048), vec![512, 1024, 2048]);
    }
}
