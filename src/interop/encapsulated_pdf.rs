//! The exam's PDF report as a DICOM Encapsulated PDF Storage instance (PS3.3 A.45.1), so a
//! PACS keeps the printable report beside the photographs and the SR: placed in the source
//! study (patient and study attributes copied exactly as the SR copies them,
//! [`sr::COPIED`]), in a series of its own described as an AI result not for diagnostic
//! use, referencing the source images in SourceInstanceSequence.
//!
//! UIDs are derived from the exam id and the report's revision (0 for the AI result alone,
//! else the version of the signed review it shows), so sending the same report again
//! names the same instance (idempotent at the PACS), while a report that gained a signed
//! review is a new instance in the same series.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};

use super::sr::{self, SrError};
use super::{EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, uid_from_name};
use crate::store::{ExamSource, StoredExam};

/// Encapsulated PDF Storage.
pub const ENCAPSULATED_PDF: &str = "1.2.840.10008.5.1.4.1.1.104.1";
/// The document title every report carries.
pub const DOCUMENT_TITLE: &str = "Diabetic retinopathy screening report - AI result, not for diagnostic use";
/// LOINC 18748-4 as DICOM CID 7000 (Diagnostic Imaging Report Document Titles) names it.
const CONCEPT: (&str, &str, &str) = ("18748-4", "LN", "Diagnostic Imaging Report");

fn s(tag: Tag, vr: VR, v: impl Into<String>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v.into()))
}

fn sq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// The SOP Instance UID of an exam's report at `revision` (0: the AI result alone; n: with
/// signed review version n).
pub fn sop_instance_uid(exam_id: &str, revision: u32) -> String {
    uid_from_name(&format!("drscreen-pdf:{exam_id}:{revision}"))
}

/// The Encapsulated PDF instance for `pdf`, the report of `exam` at `revision`, generated
/// at `generated_at` (RFC 3339; the content date and time). `sources` are the exam's DICOM
/// source images and `source_study` one of them, whose patient and study attributes are
/// copied (without one, the instance gets the study the exam's SR gets).
pub fn build(
    exam: &StoredExam,
    sources: &[ExamSource],
    source_study: Option<&InMemDicomObject>,
    pdf: &[u8],
    revision: u32,
    generated_at: &str,
) -> Result<FileDicomObject<InMemDicomObject>, SrError> {
    let model = &exam.result.model;
    let (date, time) = sr::da_tm(generated_at);
    let (exam_date, exam_time) = sr::da_tm(&exam.created_at);
    let study_uid = sources.first().map(|s| s.study_uid.clone()).unwrap_or_else(|| uid_from_name(&format!("drscreen-study:{}", exam.id)));
    let software = format!("drscreen {} model {} {}", env!("CARGO_PKG_VERSION"), model.name, model.version);

    let mut obj = InMemDicomObject::new_empty();
    // SOP Common.
    obj.put(s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    obj.put(s(tags::SOP_CLASS_UID, VR::UI, ENCAPSULATED_PDF));
    obj.put(s(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid(&exam.id, revision)));
    obj.put(s(tags::INSTANCE_CREATION_DATE, VR::DA, date.clone()));
    obj.put(s(tags::INSTANCE_CREATION_TIME, VR::TM, time.clone()));
    obj.put(s(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000"));
    // Patient and General Study: copied from the source study, as the SR's are.
    sr::copy_study_attributes(&mut obj, source_study);
    if source_study.is_none() {
        if let Some(p) = &exam.patient_ref {
            obj.put(s(tags::PATIENT_ID, VR::LO, p.clone()));
        }
        obj.put(s(tags::STUDY_DATE, VR::DA, exam_date));
        obj.put(s(tags::STUDY_TIME, VR::TM, exam_time));
    }
    obj.put(s(tags::STUDY_INSTANCE_UID, VR::UI, study_uid));
    // Encapsulated Document Series.
    obj.put(s(tags::MODALITY, VR::CS, "DOC"));
    obj.put(s(tags::SERIES_INSTANCE_UID, VR::UI, uid_from_name(&format!("drscreen-pdf-series:{}", exam.id))));
    obj.put(s(tags::SERIES_NUMBER, VR::IS, "9902"));
    obj.put(s(tags::SERIES_DESCRIPTION, VR::LO, sr::SERIES_DESCRIPTION));
    // General Equipment and SC Equipment (a document made on a workstation).
    obj.put(s(tags::MANUFACTURER, VR::LO, "drscreen"));
    obj.put(s(tags::MANUFACTURER_MODEL_NAME, VR::LO, model.name.clone()));
    obj.put(s(tags::SOFTWARE_VERSIONS, VR::LO, software));
    obj.put(s(tags::CONVERSION_TYPE, VR::CS, "WSD"));
    // Encapsulated Document.
    obj.put(s(tags::INSTANCE_NUMBER, VR::IS, (revision + 1).to_string()));
    obj.put(s(tags::CONTENT_DATE, VR::DA, date.clone()));
    obj.put(s(tags::CONTENT_TIME, VR::TM, time.clone()));
    obj.put(s(tags::ACQUISITION_DATE_TIME, VR::DT, format!("{date}{time}")));
    obj.put(s(tags::BURNED_IN_ANNOTATION, VR::CS, "YES"));
    obj.put(s(tags::RECOGNIZABLE_VISUAL_FEATURES, VR::CS, "NO"));
    obj.put(s(tags::DOCUMENT_TITLE, VR::ST, DOCUMENT_TITLE));
    obj.put(sq(
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            s(tags::CODE_VALUE, VR::SH, CONCEPT.0),
            s(tags::CODING_SCHEME_DESIGNATOR, VR::SH, CONCEPT.1),
            s(tags::CODE_MEANING, VR::LO, CONCEPT.2),
        ])],
    ));
    obj.put(s(tags::VERIFICATION_FLAG, VR::CS, if revision > 0 { "VERIFIED" } else { "UNVERIFIED" }));
    let mut seen = std::collections::HashSet::new();
    let referenced: Vec<InMemDicomObject> = sources
        .iter()
        .filter(|src| seen.insert(src.sop_instance_uid.clone()))
        .map(|src| {
            InMemDicomObject::from_element_iter([
                s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, src.sop_class_uid.clone()),
                s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, src.sop_instance_uid.clone()),
            ])
        })
        .collect();
    if !referenced.is_empty() {
        obj.put(sq(tags::SOURCE_INSTANCE_SEQUENCE, referenced));
    }
    obj.put(s(tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT, VR::LO, "application/pdf"));
    let length = u32::try_from(pdf.len()).map_err(|_| SrError::Encode("the PDF is larger than 4 GiB".into()))?;
    obj.put(DataElement::new(tags::ENCAPSULATED_DOCUMENT_LENGTH, VR::UL, PrimitiveValue::from(length)));
    // OB values have even length: an odd document gets one trailing NUL (PS3.3 C.24.2.1).
    let mut document = pdf.to_vec();
    if document.len() % 2 == 1 {
        document.push(0);
    }
    obj.put(DataElement::new(tags::ENCAPSULATED_DOCUMENT, VR::OB, PrimitiveValue::from(document)));
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(EXPLICIT_VR_LE)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name("DRSCREEN"),
    )
    .map_err(|e| SrError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_uids_follow_exam_and_revision() {
        assert_eq!(sop_instance_uid("e1", 0), sop_instance_uid("e1", 0));
        assert_ne!(sop_instance_uid("e1", 0), sop_instance_uid("e1", 1));
        assert_ne!(sop_instance_uid("e1", 0), sop_instance_uid("e2", 0));
        assert_ne!(sop_instance_uid("e1", 0), uid_from_name("drscreen-sr:e1"));
    }
}
