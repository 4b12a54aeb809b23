//! FHIR R4 for an exam: one DiagnosticReport with its Observations and the AI device as
//! contained resources (one self-contained JSON document an EHR can read or post),
//! shaped after Norway's DIPS RetinaIntegration implementation guide 0.9.0 (codes and
//! canonical URLs shared with [`super::dips`]):
//!
//! - per eye, a DR finding (`StructureDefinition-retina-diabetic-retinopathy-finding.json`:
//!   SNOMED CT 4855003, valueQuantity on the guide's 0.0-5.0 scale, ICDR grade g as g.0),
//!   a DME finding (`StructureDefinition-retina-diabetic-macular-edema-finding.json`:
//!   312912001, valueBoolean) and an image quality assessment
//!   (`StructureDefinition-retina-image-quality-asessment.json`: 133887000, a 2000-series
//!   value); the body site (retina of the right / left eye, `ValueSet-retina-body-site-vs.json`)
//!   is the only carrier of laterality. Each claims its profile; an eye sent without
//!   laterality has no body site, so its observations claim none.
//! - the AI device as `StructureDefinition-retina-ai-device.json` (claimed);
//! - `conclusionCode` from `retina-conclusion-code-cs` (the append's mapping,
//!   [`super::dips::ConclusionMapping`]) and, with a recall, the
//!   days-until-next-examination extension (integer days).
//!
//! The report itself does not claim `retina-diagnostic-report`: that profile requires the
//! DIPS examination GUID (`identifier:retinaExaminationId`, 1..1), which only DIPS
//! assigns. It honours the profile's other rules: no `performer`, `resultsInterpreter` or
//! free-text `conclusion`, `code` from `retina-imaging-procedure-vs` (fundus photography),
//! at most two findings of each kind.

use serde_json::{Value, json};

use super::dips::{self, ConclusionMapping, concept};
use crate::grading::Laterality;
use crate::store::{ExamSource, StoredExam};

/// Local code system for what the guide does not name (the report's own identifier).
pub const LOCAL_EXAM_ID: &str = "urn:drscreen:exam";

fn observation(id: &str, profile: Option<&str>, code: Value, effective: &str, laterality: Laterality, value: (&str, Value)) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging", "display": "Imaging"}]}],
        "code": code,
        "effectiveDateTime": effective,
        "device": {"reference": "#ai-device"},
    });
    match (dips::body_site(laterality), profile) {
        (Some(site), Some(profile)) => {
            o["meta"] = json!({"profile": [profile]});
            o["bodySite"] = site;
        }
        _ => o["note"] = json!([{"text": "Eye not given: laterality unknown."}]),
    }
    o[value.0] = value.1;
    o
}

/// Adds the PDF report as the DiagnosticReport's `presentedForm` (the human-readable
/// rendition FHIR provides for: base64 `data`, `contentType` application/pdf).
pub fn attach_presented_form(report: &mut Value, pdf: &[u8], title: &str, creation: &str) {
    report["presentedForm"] = json!([{
        "contentType": "application/pdf",
        "language": "en",
        "data": dips::base64(pdf),
        "title": title,
        "creation": creation,
    }]);
}

/// The DiagnosticReport for a stored exam, with the default conclusion mapping.
pub fn diagnostic_report(exam: &StoredExam, sources: &[ExamSource]) -> Value {
    diagnostic_report_with(exam, sources, &ConclusionMapping::default())
}

/// The DiagnosticReport for a stored exam, its conclusion code chosen by `mapping`.
pub fn diagnostic_report_with(exam: &StoredExam, sources: &[ExamSource], mapping: &ConclusionMapping) -> Value {
    let result = &exam.result;
    let when = exam.created_at.as_str();
    let mut contained = vec![dips::ai_device("ai-device", exam)];
    let mut refs = Vec::new();
    for eye in &result.eyes {
        let side = eye.laterality.as_str();
        if let Some(grade) = eye.grade {
            let id = format!("dr-{side}");
            let code = concept(dips::SNOMED, dips::SCT_DIABETIC_RETINOPATHY);
            let value = json!({"value": dips::dr_decimal(grade)});
            contained.push(observation(&id, Some(dips::PROFILE_DR_FINDING), code, when, eye.laterality, ("valueQuantity", value)));
            refs.push(id);
        }
        if let Some(dme) = eye.dme {
            let id = format!("dme-{side}");
            let code = concept(dips::SNOMED, dips::SCT_DIABETIC_MACULAR_EDEMA);
            contained.push(observation(&id, Some(dips::PROFILE_DME_FINDING), code, when, eye.laterality, ("valueBoolean", json!(dme))));
            refs.push(id);
        }
        let id = format!("quality-{side}");
        let code = concept(dips::SNOMED, dips::SCT_IMAGE_QUALITY);
        let value = concept(dips::IMAGE_QUALITY_CS, dips::image_quality(eye.gradable));
        let mut o = observation(&id, Some(dips::PROFILE_IMAGE_QUALITY), code, when, eye.laterality, ("valueCodeableConcept", value));
        let reasons: Vec<&str> =
            eye.images.iter().filter_map(|&i| result.images.get(i)).flat_map(|im| im.quality.reasons.iter().map(String::as_str)).collect();
        if !reasons.is_empty() {
            let mut notes = o.get("note").and_then(Value::as_array).cloned().unwrap_or_default();
            notes.push(json!({"text": format!("Image quality reasons: {}", reasons.join(", "))}));
            o["note"] = Value::Array(notes);
        }
        let images: Vec<Value> = eye
            .images
            .iter()
            .filter_map(|&i| exam.image_ids.get(i))
            .map(|img| json!({"system": "urn:drscreen:image", "value": img}))
            .chain(
                eye.images
                    .iter()
                    .filter_map(|&i| sources.iter().find(|s| s.idx == i as i64))
                    .map(|s| json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{}", s.sop_instance_uid)})),
            )
            .collect();
        if !images.is_empty() {
            o["identifier"] = json!(images);
        }
        contained.push(o);
        refs.push(id);
    }
    let any_gradable = result.eyes.iter().any(|e| e.laterality != Laterality::Unspecified && e.gradable);
    let chosen = mapping.conclusion(result.outcome, result.recall_months, any_gradable, false);
    let mut identifier = vec![json!({"system": LOCAL_EXAM_ID, "value": exam.id})];
    if let Some(study) = sources.first() {
        identifier.push(json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{}", study.study_uid)}));
    }
    let mut report = json!({
        "resourceType": "DiagnosticReport",
        "id": exam.id,
        "contained": contained,
        "identifier": identifier,
        "status": "final",
        "code": concept(dips::PROCEDURE_CS, dips::PROCEDURE_FUNDUS_PHOTOGRAPHY),
        "effectiveDateTime": when,
        "issued": when,
        "result": refs.iter().map(|r| json!({"reference": format!("#{r}")})).collect::<Vec<_>>(),
        "conclusionCode": [concept(dips::CONCLUSION_CS, (chosen.code, chosen.display))],
    });
    if let Some(m) = chosen.months {
        report["extension"] = json!([{"url": dips::EXT_DAYS_UNTIL_NEXT_EXAMINATION, "valueInteger": dips::months_to_days(m)}]);
    }
    if let Some(p) = &exam.patient_ref {
        report["subject"] = json!({"identifier": {"value": p}});
    }
    report
}
