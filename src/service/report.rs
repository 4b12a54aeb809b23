//! The exam's printable report: the data a PDF report needs (the latest signed review, a
//! thumbnail and a heatmap of the first images of each eye) gathered from the store, then
//! drawn by `interop::pdf`; and the same report as a DICOM Encapsulated PDF instance in
//! the exam's source study (`interop::encapsulated_pdf`).

use std::collections::BTreeMap;

use dicom_object::{FileDicomObject, InMemDicomObject};

use super::{ScreeningService, ServiceError, blocking};
use crate::interop::pdf::{self, ReportInput, Thumbnail};
use crate::interop::{encapsulated_pdf, object};
use crate::preprocess::Preprocessor;
use crate::report::heatmap;
use crate::review::{Review, ReviewState};
use crate::store::{Store, StoredExam, now_rfc3339};

/// Thumbnail width and height in pixels (drawn at about 27 mm: ~210 dpi).
const THUMB_PX: u32 = 224;

/// The latest signed version among an exam's review versions: what the report shows as
/// the clinician's reading (a later draft amending it is not signed yet).
pub fn latest_signed(reviews: &[Review]) -> Option<&Review> {
    reviews.iter().filter(|r| r.state == ReviewState::Signed).max_by_key(|r| r.version)
}

/// `side` x `side` RGB as a `THUMB_PX` JPEG.
fn thumbnail_jpeg(side: usize, rgb: Vec<u8>) -> Result<Vec<u8>, String> {
    let side = u32::try_from(side).map_err(|e| e.to_string())?;
    let image = image::RgbImage::from_raw(side, side, rgb).ok_or("the pixel buffer has the wrong size")?;
    let small = image::imageops::resize(&image, THUMB_PX, THUMB_PX, image::imageops::FilterType::Triangle);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&small).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The thumbnail (field of view the model saw) and heatmap of image `index`. Storage
/// failures are errors; an image that cannot be drawn is `None` (the report says so).
fn thumbnail(store: &Store, pre: &Preprocessor, exam: &StoredExam, index: usize) -> Result<Option<Thumbnail>, ServiceError> {
    let Some(image_id) = exam.image_ids.get(index) else { return Ok(None) };
    let Some(image) = store.get_image(image_id)? else { return Ok(None) };
    let bytes = store.read_blob(&image.sha256)?;
    let drawn = pre.prepare(&bytes).map_err(|e| e.to_string()).and_then(|prepared| {
        let side = pre.input_size as usize;
        let heat = heatmap::overlay(side, &prepared.rgb, &image.cam, image.cam_shape);
        Ok(Thumbnail { photo: thumbnail_jpeg(side, prepared.rgb)?, heatmap: Some(thumbnail_jpeg(side, heat)?) })
    });
    match drawn {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            tracing::warn!(image = %image_id, error = %e, "cannot draw an image for the exam report");
            Ok(None)
        }
    }
}

/// The report PDF of `exam` with `review`, generated at `generated_at` (blocking).
fn render(
    store: &Store,
    pre: &Preprocessor,
    exam: &StoredExam,
    review: Option<&Review>,
    generated_at: &str,
) -> Result<Vec<u8>, ServiceError> {
    let mut thumbnails = BTreeMap::new();
    for index in pdf::thumbnail_images(exam) {
        if let Some(t) = thumbnail(store, pre, exam, index)? {
            thumbnails.insert(index, t);
        }
    }
    Ok(pdf::exam_report(&ReportInput { exam, review, thumbnails: &thumbnails, generated_at })?)
}

impl ScreeningService {
    /// The exam's one-page PDF report, with the latest signed clinician review when there
    /// is one, generated now. Store reads, decoding and drawing run on the blocking pool.
    pub async fn exam_report_pdf(&self, exam: StoredExam) -> Result<Vec<u8>, ServiceError> {
        let store = self.store.clone();
        let pre = self.screener.engine.preprocessor().clone();
        blocking(move || -> Result<Vec<u8>, ServiceError> {
            let reviews = store.reviews(&exam.id)?;
            render(&store, &pre, &exam, latest_signed(&reviews), &now_rfc3339())
        })
        .await?
    }

    /// The exam's report as a DICOM Encapsulated PDF instance in its source study, with
    /// patient and study attributes copied from its first DICOM source instance as the SR
    /// does (blocking). The report is dated by its content (the signing time of the review
    /// it shows, else the exam's time), so the same state always gives the same instance
    /// and bytes: sending it again is idempotent at the PACS.
    pub fn exam_pdf_dicom(&self, exam: &StoredExam) -> Result<FileDicomObject<InMemDicomObject>, ServiceError> {
        let reviews = self.store.reviews(&exam.id)?;
        let review = latest_signed(&reviews);
        let generated_at = review.and_then(|r| r.signed_at.clone()).unwrap_or_else(|| exam.created_at.clone());
        let pdf = render(&self.store, self.screener.engine.preprocessor(), exam, review, &generated_at)?;
        let sources = self.store.exam_sources(&exam.id)?;
        let source_study = match sources.first() {
            Some(s) => Some(object::read_part10(&self.store.read_blob(&s.instance_sha256)?)?.0),
            None => None,
        };
        let revision = review.map_or(0, |r| r.version);
        Ok(encapsulated_pdf::build(exam, &sources, source_study.as_ref(), &pdf, revision, &generated_at)?)
    }
}
