//! The exam report as one printable A4 page (PDF) a clinician or GP can file: the patient
//! and exam references as supplied, per eye the graded images (a thumbnail of the field of
//! view the model saw and its heatmap beside it), DR grade (ICDR 0-4) in words and number,
//! macular oedema, gradability with the reasons in words, the exam outcome and recall
//! interval, the model (name, version, sha256), the line "AI result - not for diagnostic
//! use", and, when a clinician has signed a review, the clinician's grades, name and key
//! and signing time, which supersede the AI result.
//!
//! Real text in embedded, subset fonts (DejaVu Sans, bundled under `assets/fonts/`, so
//! nothing depends on the fonts of the machine; it covers æøå), drawn with `krilla`.
//! Pure: the caller passes the exam record, the signed review and the already-rendered
//! thumbnails; the output depends on nothing else (the same input gives the same bytes).

use std::collections::BTreeMap;

use ab_glyph::Font as _;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::image::Image;
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use krilla::{Data, Document};

use crate::grading::rules::ICDR_LABELS;
use crate::grading::{ExamOutcome, EyeResult, ImageFinding, Laterality};
use crate::preprocess::quality::{
    REASON_BRIGHT, REASON_CLIPPED, REASON_CONTRAST, REASON_DARK, REASON_FOCUS, REASON_FOV, REASON_MODEL, REASON_NO_FIELD,
};
use crate::review::{EyeReview, Review};
use crate::store::StoredExam;

/// DejaVu Sans (license: `assets/fonts/LICENSE-DejaVu.txt`).
pub const REGULAR_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold.
pub const BOLD_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
/// The line every report carries: the model is not cleared for clinical use.
pub const DISCLAIMER: &str = "AI result - not for diagnostic use";
/// Images drawn per eye (photograph and heatmap each); the report says how many more.
pub const MAX_THUMBNAILS_PER_EYE: usize = 2;

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("cannot load the bundled font")]
    Font,
    #[error("cannot write the PDF: {0}")]
    Write(String),
}

/// One image's pictures as JPEG or PNG bytes: the photograph (the field of view the model
/// saw) and, beside it, the model's heatmap over it.
#[derive(Debug, Clone, Default)]
pub struct Thumbnail {
    pub photo: Vec<u8>,
    pub heatmap: Option<Vec<u8>>,
}

/// What a report is made of.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    pub exam: &'a StoredExam,
    /// The latest signed version of the exam's review, when there is one.
    pub review: Option<&'a Review>,
    /// Thumbnails by image index (into the exam's images), for the images
    /// [`thumbnail_images`] chose; an index without one is drawn as "not available".
    pub thumbnails: &'a BTreeMap<usize, Thumbnail>,
    /// When the report is generated (RFC 3339): printed and written as the creation date.
    pub generated_at: &'a str,
}

/// The images a report draws: the first [`MAX_THUMBNAILS_PER_EYE`] of each eye, in upload order.
pub fn thumbnail_images(exam: &StoredExam) -> Vec<usize> {
    exam.result.eyes.iter().flat_map(|eye| eye.images.iter().copied().take(MAX_THUMBNAILS_PER_EYE)).collect()
}

/// The outcome in words.
pub fn outcome_words(outcome: ExamOutcome) -> &'static str {
    match outcome {
        ExamOutcome::UrgentReferral => "Urgent referral",
        ExamOutcome::Referral => "Referral",
        ExamOutcome::Rescreen => "Rescreen",
        ExamOutcome::Ungradable => "Ungradable",
    }
}

/// A DR grade in number and words: "2 (ICDR) - Moderate non-proliferative DR".
pub fn grade_words(grade: Option<u8>) -> String {
    match grade {
        Some(g) => format!("{} of 4 (ICDR) - {}", g.min(4), ICDR_LABELS[usize::from(g.min(4))]),
        None => "not graded (ungradable)".into(),
    }
}

/// Macular oedema in words.
pub fn dme_words(dme: Option<bool>) -> &'static str {
    match dme {
        Some(true) => "present",
        Some(false) => "absent",
        None => "not assessed (ungradable)",
    }
}

/// A quality reason code in words.
pub fn reason_words(code: &str) -> String {
    match code {
        REASON_FOV => "field of view incomplete".into(),
        REASON_DARK => "too dark (underexposed)".into(),
        REASON_BRIGHT => "too bright (overexposed)".into(),
        REASON_CLIPPED => "highlights clipped".into(),
        REASON_CONTRAST => "contrast too low".into(),
        REASON_FOCUS => "out of focus".into(),
        REASON_MODEL => "judged ungradable by the model".into(),
        REASON_NO_FIELD => "no fundus field of view found".into(),
        other => other.replace('_', " "),
    }
}

fn eye_title(l: Laterality) -> &'static str {
    match l {
        Laterality::Right => "Right eye (OD)",
        Laterality::Left => "Left eye (OS)",
        Laterality::Unspecified => "Eye not given",
    }
}

/// An RFC 3339 time as the review pages show it, `2026-11-30 14:05 UTC` (the text as
/// given when it does not parse).
pub fn display_time(rfc3339: &str) -> String {
    match time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
        }
        Err(_) => rfc3339.to_string(),
    }
}

fn pdf_date(rfc3339: &str) -> Option<DateTime> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?.to_offset(time::UtcOffset::UTC);
    let year = u16::try_from(t.year()).ok()?;
    Some(
        DateTime::new(year)
            .month(u8::from(t.month()))
            .day(t.day())
            .hour(t.hour())
            .minute(t.minute())
            .second(t.second())
            .utc_offset_hour(0)
            .utc_offset_minute(0),
    )
}

/// Metrics of a font, for measuring text (krilla draws, ab_glyph measures).
struct Face {
    draw: Font,
    measure: ab_glyph::FontRef<'static>,
    units_per_em: f32,
}

impl Face {
    fn load(bytes: &'static [u8]) -> Result<Self, PdfError> {
        let draw = Font::new(Data::from(bytes), 0).ok_or(PdfError::Font)?;
        let measure = ab_glyph::FontRef::try_from_slice(bytes).map_err(|_| PdfError::Font)?;
        let units_per_em = measure.units_per_em().ok_or(PdfError::Font)?;
        Ok(Self { draw, measure, units_per_em })
    }

    /// The advance width of `text` at `size` points.
    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.measure.h_advance_unscaled(self.measure.glyph_id(c))).sum::<f32>() * size / self.units_per_em
    }
}

/// Breaks `text` into lines at most `width` points wide (words longer than a line are
/// broken between characters).
fn wrap(face: &Face, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if face.width(&candidate, size) <= width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if face.width(&line, size) > width && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::replace(&mut line, c.to_string()));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 42.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;
/// Where the footer (model, disclaimer) starts; the body stops above it.
const FOOTER_TOP: f32 = PAGE_H - MARGIN - 44.0;
const THUMB: f32 = 76.0;
/// Lines of ungradability reasons per eye.
const MAX_REASON_LINES: usize = 4;
const TEXT: f32 = 9.0;
const LINE: f32 = 12.0;

type Colour = (u8, u8, u8);
const BLACK: Colour = (0, 0, 0);
const GREY: Colour = (90, 90, 90);
const RED: Colour = (160, 20, 20);
const BLUE: Colour = (20, 60, 140);

/// The page being written: a cursor (`y`, the top of the next line) over a surface.
struct Pen<'a, 'b> {
    surface: &'a mut Surface<'b>,
    regular: &'a Face,
    bold: &'a Face,
    y: f32,
    /// Lines that did not fit above the footer (the page says so).
    dropped: usize,
}

impl Pen<'_, '_> {
    fn fill(&mut self, (r, g, b): Colour) {
        self.surface.set_fill(Some(Fill { paint: rgb::Color::new(r, g, b).into(), ..Default::default() }));
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, colour: Colour) {
        if let Some(rect) = Rect::from_xywh(x, y, w, h) {
            let mut pb = PathBuilder::new();
            pb.push_rect(rect);
            if let Some(path) = pb.finish() {
                self.fill(colour);
                self.surface.draw_path(&path);
            }
        }
    }

    /// Draws `text` with its baseline `size * 0.8` below `top`.
    fn text_at(&mut self, x: f32, top: f32, text: &str, size: f32, bold: bool, colour: Colour) {
        let face = if bold { self.bold } else { self.regular };
        self.fill(colour);
        self.surface.draw_text(Point::from_xy(x, top + size * 0.8), face.draw.clone(), size, text, false, TextDirection::LeftToRight);
    }

    /// One line at the cursor, if it fits above `limit`.
    fn line(&mut self, x: f32, text: &str, size: f32, bold: bool, colour: Colour, limit: f32) {
        let height = size.max(TEXT) / TEXT * LINE;
        if self.y + height > limit {
            self.dropped += 1;
            return;
        }
        self.text_at(x, self.y, text, size, bold, colour);
        self.y += height;
    }

    /// "Label: value" with the label in bold, the value wrapped after it.
    fn field(&mut self, x: f32, width: f32, label: &str, value: &str, max_lines: usize) {
        let label_w = self.bold.width(label, TEXT) + 4.0;
        let lines = wrap(self.regular, value, TEXT, (width - label_w).max(40.0));
        if self.y + LINE > FOOTER_TOP {
            self.dropped += 1;
            return;
        }
        self.text_at(x, self.y, label, TEXT, true, BLACK);
        let shown = lines.len().min(max_lines.max(1));
        for (i, l) in lines.iter().take(shown).enumerate() {
            let cut = i + 1 == shown && lines.len() > shown;
            let text = if cut { format!("{l} ...") } else { l.clone() };
            self.line(x + label_w, &text, TEXT, false, BLACK, FOOTER_TOP);
        }
        if lines.is_empty() {
            self.y += LINE;
        }
    }

    fn image(&mut self, x: f32, y: f32, bytes: Option<&[u8]>) {
        let image = bytes.and_then(|b| {
            let data = Data::from(b.to_vec());
            if b.starts_with(b"\x89PNG") { Image::from_png(data, true).ok() } else { Image::from_jpeg(data, true).ok() }
        });
        let (Some(image), Some(size)) = (image, Size::from_wh(THUMB, THUMB)) else {
            self.rect(x, y, THUMB, THUMB, (225, 225, 225));
            self.text_at(x + 6.0, y + THUMB / 2.0 - 4.0, "not available", 7.0, false, GREY);
            return;
        };
        self.surface.push_transform(&Transform::from_translate(x, y));
        self.surface.draw_image(image, size);
        self.surface.pop();
    }
}

/// The report as PDF bytes.
pub fn exam_report(input: &ReportInput) -> Result<Vec<u8>, PdfError> {
    let regular = Face::load(REGULAR_FONT)?;
    let bold = Face::load(BOLD_FONT)?;
    let mut document = Document::new();
    let mut metadata = Metadata::new()
        .title("Diabetic retinopathy screening report".into())
        .description(format!("drscreen exam {}; {DISCLAIMER}", input.exam.id))
        .creator(format!("drscreen {}", env!("CARGO_PKG_VERSION")))
        .producer("drscreen (krilla)".into())
        .language("en".into());
    if let Some(date) = pdf_date(input.generated_at) {
        metadata = metadata.creation_date(date);
    }
    document.set_metadata(metadata);
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H).ok_or_else(|| PdfError::Write("page size".into()))?;
    let mut page = document.start_page_with(settings);
    let mut surface = page.surface();
    let mut pen = Pen { surface: &mut surface, regular: &regular, bold: &bold, y: MARGIN, dropped: 0 };
    draw(&mut pen, input);
    surface.finish();
    page.finish();
    document.finish().map_err(|e| PdfError::Write(e.to_string()))
}

fn draw(pen: &mut Pen, input: &ReportInput) {
    let exam = input.exam;
    let result = &exam.result;
    let x = MARGIN;

    pen.line(x, "Diabetic retinopathy screening report", 15.0, true, BLACK, FOOTER_TOP);
    pen.y += 2.0;
    // The disclaimer banner, and that a signed review supersedes the AI result.
    let banner_lines = if input.review.is_some() { 2.0 } else { 1.0 };
    let banner_h = banner_lines * LINE + 8.0;
    pen.rect(x, pen.y, CONTENT_W, banner_h, (250, 228, 228));
    pen.y += 4.0;
    pen.line(x + 6.0, DISCLAIMER, 10.0, true, RED, FOOTER_TOP);
    if input.review.is_some() {
        pen.y -= 1.0;
        pen.line(
            x + 6.0,
            "A clinician has signed a review of this exam: the signed review supersedes the AI result.",
            TEXT,
            true,
            BLUE,
            FOOTER_TOP,
        );
    }
    pen.y += 10.0;

    let not_supplied = "(not supplied)";
    pen.field(x, CONTENT_W, "Patient reference:", exam.patient_ref.as_deref().unwrap_or(not_supplied), 2);
    pen.field(x, CONTENT_W, "Exam reference:", exam.external_exam_ref.as_deref().unwrap_or(not_supplied), 2);
    pen.field(x, CONTENT_W, "Exam id:", &exam.id, 1);
    pen.field(x, CONTENT_W, "Exam date:", &display_time(&exam.created_at), 1);
    pen.field(x, CONTENT_W, "Report generated:", &display_time(input.generated_at), 1);
    pen.y += 6.0;

    if let Some(review) = input.review {
        draw_review(pen, exam, review);
        pen.y += 6.0;
    }

    let heading = if input.review.is_some() { "AI result (superseded by the signed review above)" } else { "AI result" };
    pen.line(x, heading, 11.0, true, BLACK, FOOTER_TOP);
    pen.field(x, CONTENT_W, "Outcome:", outcome_words(result.outcome), 1);
    let recall = match result.recall_months {
        Some(m) => format!("{m} months"),
        None => "none (see the outcome)".into(),
    };
    pen.field(x, CONTENT_W, "Recall interval:", &recall, 1);
    pen.field(x, CONTENT_W, "Why:", &result.explanation, 3);
    if let Some(n) = result.laterality_warnings.filter(|n| *n > 0) {
        let text = format!("{n} image(s): the optic disc is not where the stated eye puts it; check the eye was labelled right.");
        pen.field(x, CONTENT_W, "Laterality:", &text, 2);
    }
    pen.y += 4.0;
    for eye in &result.eyes {
        draw_eye(pen, eye, &result.images, input.thumbnails);
    }
    if input.review.is_none() {
        pen.line(x, "Clinician review: none signed when this report was generated.", TEXT, false, GREY, FOOTER_TOP);
    }
    if pen.dropped > 0 {
        pen.y = pen.y.min(FOOTER_TOP - LINE);
        let dropped = format!("({} line(s) did not fit on this page; see the exam record.)", pen.dropped);
        pen.line(x, &dropped, 8.0, false, GREY, FOOTER_TOP + LINE);
    }
    draw_footer(pen, input);
}

fn draw_eye(pen: &mut Pen, eye: &EyeResult, images: &[ImageFinding], thumbnails: &BTreeMap<usize, Thumbnail>) {
    let x = MARGIN;
    let shown: Vec<usize> = eye.images.iter().copied().take(MAX_THUMBNAILS_PER_EYE).collect();
    let thumbs_w = MAX_THUMBNAILS_PER_EYE as f32 * (2.0 * THUMB + 4.0) + (MAX_THUMBNAILS_PER_EYE as f32 - 1.0) * 10.0;
    let text_w = CONTENT_W - thumbs_w - 10.0;
    let top = pen.y;
    let block_h = THUMB + LINE + 16.0;
    if top + block_h > FOOTER_TOP {
        pen.dropped += 1;
        return;
    }
    pen.rect(x, top, CONTENT_W, 0.6, (180, 180, 180));
    pen.y += 4.0;
    pen.line(x, eye_title(eye.laterality), 11.0, true, BLACK, FOOTER_TOP);
    let thumbs_top = pen.y;
    // Text column (it may run below the thumbnails).
    let limit = FOOTER_TOP;
    let gradable = eye.images.iter().filter(|&&i| images.get(i).is_some_and(|f| f.quality.gradable)).count();
    let lines = [
        ("DR grade:", grade_words(eye.grade)),
        ("Macular oedema:", dme_words(eye.dme).to_string()),
        ("Gradable:", format!("{} ({gradable} of {} images gradable)", if eye.gradable { "yes" } else { "no" }, eye.images.len())),
    ];
    for (label, value) in lines {
        let label_w = pen.bold.width(label, TEXT) + 4.0;
        for (i, l) in wrap(pen.regular, &value, TEXT, text_w - label_w).iter().enumerate() {
            if pen.y + LINE > limit {
                pen.dropped += 1;
                continue;
            }
            if i == 0 {
                pen.text_at(x, pen.y, label, TEXT, true, BLACK);
            }
            pen.text_at(x + label_w, pen.y, l, TEXT, false, BLACK);
            pen.y += LINE;
        }
    }
    // Why images were ungradable, in words: at most MAX_REASON_LINES lines per eye.
    let mut reason_lines = Vec::new();
    let with_reasons: Vec<&usize> = eye.images.iter().filter(|&&i| images.get(i).is_some_and(|f| !f.quality.reasons.is_empty())).collect();
    for (n, &&i) in with_reasons.iter().enumerate() {
        let reasons = images[i].quality.reasons.iter().map(|r| reason_words(r)).collect::<Vec<_>>().join("; ");
        let wrapped = wrap(pen.regular, &format!("Image {}: {reasons}", i + 1), 8.0, text_w);
        if reason_lines.len() + wrapped.len() > MAX_REASON_LINES {
            let left = with_reasons.len() - n;
            reason_lines.push(format!("(reasons for {left} more image(s): see the exam record)"));
            break;
        }
        reason_lines.extend(wrapped);
    }
    for l in reason_lines {
        if pen.y + 10.0 > limit {
            pen.dropped += 1;
            continue;
        }
        pen.text_at(x, pen.y, &l, 8.0, false, GREY);
        pen.y += 10.0;
    }
    // Thumbnails: photograph and heatmap side by side, captioned.
    let mut tx = x + text_w + 10.0;
    for &i in &shown {
        let thumb = thumbnails.get(&i);
        pen.image(tx, thumbs_top, thumb.map(|t| t.photo.as_slice()));
        pen.image(tx + THUMB + 4.0, thumbs_top, thumb.and_then(|t| t.heatmap.as_deref()));
        let gradable = images.get(i).is_some_and(|f| f.quality.gradable);
        let caption = format!("Image {}{}: photo | heatmap", i + 1, if gradable { "" } else { " (ungradable)" });
        pen.text_at(tx, thumbs_top + THUMB + 2.0, &caption, 7.0, false, GREY);
        tx += 2.0 * THUMB + 4.0 + 10.0;
    }
    let more = eye.images.len().saturating_sub(shown.len());
    if more > 0 {
        let text = format!("+ {more} more image(s) of this eye not shown");
        pen.text_at(x + text_w + 10.0, thumbs_top + THUMB + 11.0, &text, 7.0, false, GREY);
    }
    pen.y = (pen.y + 6.0).max(thumbs_top + THUMB + LINE + 8.0);
}

fn draw_review(pen: &mut Pen, exam: &StoredExam, review: &Review) {
    let x = MARGIN;
    let top = pen.y;
    pen.line(x, "Clinician review (signed) - supersedes the AI result", 11.0, true, BLUE, FOOTER_TOP);
    let who = match &review.reviewer_name {
        Some(name) => format!("{name} (key {})", review.reviewer),
        None => format!("key {}", review.reviewer),
    };
    pen.field(x, CONTENT_W, "Signed by:", &who, 2);
    let signed = review.signed_at.as_deref().map(display_time).unwrap_or_else(|| "(not recorded)".into());
    pen.field(x, CONTENT_W, "Signed at:", &format!("{signed} (review version {})", review.version), 1);
    let outcome = review.outcome.map(outcome_words).unwrap_or("(none)");
    pen.field(x, CONTENT_W, "Outcome:", outcome, 1);
    // The eyes in the exam's order, then any the review names that the exam does not.
    let mut keys: Vec<&str> = exam.result.eyes.iter().map(|e| e.laterality.as_str()).collect();
    let others: Vec<&str> = review.eyes.keys().map(String::as_str).filter(|k| !keys.contains(k)).collect();
    keys.extend(others);
    for key in keys {
        let Some(EyeReview { grade, dme }) = review.eyes.get(key).copied() else { continue };
        let title = Laterality::parse(key).map(eye_title).unwrap_or(key);
        pen.field(x, CONTENT_W, &format!("{title}:"), &format!("DR grade {}; macular oedema {}", grade_words(grade), dme_words(dme)), 2);
    }
    if let Some(reason) = review.outcome_reason.as_deref().filter(|r| !r.trim().is_empty()) {
        pen.field(x, CONTENT_W, "Outcome reason:", reason, 2);
    }
    if let (Some(v), Some(reason)) = (review.amends, review.amendment_reason.as_deref()) {
        pen.field(x, CONTENT_W, &format!("Amends version {v}:"), reason, 2);
    }
    if !review.note.trim().is_empty() {
        pen.field(x, CONTENT_W, "Note:", &review.note, 4);
    }
    // A bar down the left of the review block.
    let bottom = pen.y;
    pen.rect(x - 8.0, top, 2.5, bottom - top, BLUE);
}

fn draw_footer(pen: &mut Pen, input: &ReportInput) {
    let model = &input.exam.result.model;
    let x = MARGIN;
    pen.rect(x, FOOTER_TOP, CONTENT_W, 0.6, (180, 180, 180));
    pen.y = FOOTER_TOP + 5.0;
    let limit = PAGE_H - MARGIN + 10.0;
    pen.line(x, &format!("Model: {} {}  sha256 {}", model.name, model.version, model.sha256), 7.5, false, BLACK, limit);
    let scale = "ICDR: International Clinical Diabetic Retinopathy scale, 0 no apparent retinopathy to 4 proliferative DR. \
                 Heatmaps show where the model looked (referable-DR output), not lesions.";
    for l in wrap(pen.regular, scale, 7.0, CONTENT_W) {
        pen.line(x, &l, 7.0, false, GREY, limit);
    }
    pen.line(x, &format!("{DISCLAIMER}. drscreen {}.", env!("CARGO_PKG_VERSION")), 8.0, true, RED, limit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_grades_outcomes_and_reasons() {
        assert_eq!(grade_words(Some(2)), "2 of 4 (ICDR) - Moderate non-proliferative DR");
        assert_eq!(grade_words(Some(9)), "4 of 4 (ICDR) - Proliferative DR");
        assert_eq!(grade_words(None), "not graded (ungradable)");
        assert_eq!(dme_words(Some(true)), "present");
        assert_eq!(outcome_words(ExamOutcome::UrgentReferral), "Urgent referral");
        assert_eq!(reason_words(REASON_FOCUS), "out of focus");
        assert_eq!(reason_words("some_new_code"), "some new code");
    }

    #[test]
    fn times_read_as_on_the_review_pages() {
        assert_eq!(display_time("2026-11-30T14:05:59.123Z"), "2026-11-30 14:05 UTC");
        assert_eq!(display_time("2026-11-30T15:05:00+01:00"), "2026-11-30 14:05 UTC");
        assert_eq!(display_time("yesterday"), "yesterday");
        assert!(pdf_date("2026-11-30T14:05:00Z").is_some() && pdf_date("nope").is_none());
    }

    #[test]
    fn wrapping_keeps_lines_within_the_width() {
        let face = Face::load(REGULAR_FONT).unwrap();
        let text = "Blåbærsyltetøy på skiva og en sha256 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef til slutt";
        let lines = wrap(&face, text, 9.0, 120.0);
        assert!(lines.len() > 2, "{lines:?}");
        assert!(lines.iter().all(|l| face.width(l, 9.0) <= 120.0), "{lines:?}");
        assert_eq!(lines.join("").replace(' ', ""), text.replace(' ', ""));
        assert!(face.width("æøå", 10.0) > 10.0, "the bundled font has the Norwegian letters");
    }
}
