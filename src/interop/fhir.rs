//! FHIR R4 for an exam: one DiagnosticReport with its Observations and the AI device as
//! contained resources (one self-contained JSON document an EHR can read or post).
//! Shaped after Norway's DIPS RetinaIntegration implementation guide
//! (<https://dipsas.github.io/DIPS-RetinaIntegration-IG>, v0.5.0): per-eye DR and DME
//! observations, image quality with the IG's 2000-series code system, the AI product
//! name extension and the days-until-next-examination extension. Where the IG's codes
//! could not be read (its conclusion code system's codes, the view code system and the
//! algorithm-version extension URL), local code systems under `urn:drscreen:` are used,
//! and the resource does not claim the IG's profiles.
//!
//! Code sources: LOINC 71490-7/71491-5 and answer list LL2117-1 (<https://loinc.org/LL2117-1>)
//! for DR severity; SNOMED CT 8966001 / 18944008 (left / right eye structure) as body site.

use serde_json::{Value, json};

use crate::grading::Laterality;
use crate::store::{ExamSource, StoredExam};

/// The IG's image quality code system (2001 Good ... 2004 Missing).
pub const DIPS_IMAGE_QUALITY: &str = "http://dips.no/fhir/RetinaIntegration/CodeSystem/retina-image-quality-cs";
/// The IG's AI product name extension.
pub const DIPS_PRODUCT_NAME: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/ki-productname-extension";
/// The IG's days-until-next-examination extension.
pub const DIPS_DAYS_UNTIL_NEXT: &str = "http://dips.no/fhir/StructureDefinition/days-until-next-examination-extension";
/// Local code system for findings and outcomes the IG's readable parts do not cover.
pub const LOCAL_CODES: &str = "urn:drscreen:fhir:codes";
/// Local extension for the algorithm version.
pub const LOCAL_ALGORITHM_VERSION: &str = "urn:drscreen:fhir:algorithm-version";

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const ICDR: [(&str, &str); 5] = [
    ("LA18643-9", "No apparent retinopathy"),
    ("LA18644-7", "Mild non-proliferative retinopathy"),
    ("LA18645-4", "Moderate non-proliferative retinopathy"),
    ("LA18646-2", "Severe non-proliferative retinopathy"),
    ("LA18648-8", "Proliferative retinopathy"),
];

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

fn body_site(l: Laterality) -> Option<Value> {
    match l {
        Laterality::Right => Some(coding(SNOMED, "18944008", "Right eye structure")),
        Laterality::Left => Some(coding(SNOMED, "8966001", "Left eye structure")),
        Laterality::Unspecified => None,
    }
}

fn observation(id: &str, code: Value, effective: &str, site: Option<Value>, value: (&str, Value)) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging", "display": "Imaging"}]}],
        "code": code,
        "effectiveDateTime": effective,
        "device": {"reference": "#ai-device"},
    });
    if let Some(site) = site {
        o["bodySite"] = site;
    }
    o[value.0] = value.1;
    o
}

/// The DiagnosticReport for a stored exam.
pub fn diagnostic_report(exam: &StoredExam, sources: &[ExamSource]) -> Value {
    let result = &exam.result;
    let when = exam.created_at.as_str();
    let mut contained = vec![json!({
        "resourceType": "Device",
        "id": "ai-device",
        "manufacturer": "drscreen",
        "deviceName": [{"name": result.model.name, "type": "model-name"}],
        "version": [{"value": result.model.version}, {"type": {"text": "sha256"}, "value": result.model.sha256}],
        "type": {"text": "AI diabetic retinopathy screening software (not for diagnostic use)"},
    })];
    let mut refs = Vec::new();
    for eye in &result.eyes {
        let side = eye.laterality.as_str();
        if let Some(grade) = eye.grade {
            let code = match eye.laterality {
                Laterality::Right => coding(LOINC, "71491-5", "Right eye Diabetic retinopathy severity level"),
                Laterality::Left => coding(LOINC, "71490-7", "Left eye Diabetic retinopathy severity level"),
                Laterality::Unspecified => coding(LOCAL_CODES, "dr-severity", "Diabetic retinopathy severity level, eye not given"),
            };
            let (c, d) = ICDR[usize::from(grade.min(4))];
            let id = format!("dr-{side}");
            contained.push(observation(&id, code, when, body_site(eye.laterality), ("valueCodeableConcept", coding(LOINC, c, d))));
            refs.push(id);
        }
        if let Some(dme) = eye.dme {
            let id = format!("dme-{side}");
            let code = coding(LOCAL_CODES, "dme", "Diabetic macular edema (AI)");
            contained.push(observation(&id, code, when, body_site(eye.laterality), ("valueBoolean", json!(dme))));
            refs.push(id);
        }
    }
    for (i, image) in result.images.iter().enumerate() {
        let id = format!("quality-{i}");
        let (c, d) = if image.quality.gradable { ("2001", "Good") } else { ("2003", "Not gradable") };
        let mut o = observation(
            &id,
            coding(LOCAL_CODES, "image-gradability", "Image gradability (AI)"),
            when,
            body_site(image.laterality),
            ("valueCodeableConcept", coding(DIPS_IMAGE_QUALITY, c, d)),
        );
        let source = sources.iter().find(|s| s.idx == i as i64);
        let mut identifiers = vec![];
        if let Some(img) = exam.image_ids.get(i) {
            identifiers.push(json!({"system": "urn:drscreen:image", "value": img}));
        }
        if let Some(s) = source {
            identifiers.push(json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{}", s.sop_instance_uid)}));
        }
        o["identifier"] = json!(identifiers);
        if !image.quality.reasons.is_empty() {
            o["note"] = json!([{"text": image.quality.reasons.join(", ")}]);
        }
        contained.push(o);
        refs.push(id);
    }
    let outcome = result.outcome.as_str();
    let mut extension = vec![
        json!({"url": DIPS_PRODUCT_NAME, "valueString": result.model.name}),
        json!({"url": LOCAL_ALGORITHM_VERSION, "valueString": result.model.version}),
    ];
    if let Some(m) = result.recall_months {
        extension.push(json!({"url": DIPS_DAYS_UNTIL_NEXT, "valueInteger": (f64::from(m) * 365.25 / 12.0).round() as i64}));
    }
    let mut identifier = vec![json!({"system": "urn:drscreen:exam", "value": exam.id})];
    if let Some(study) = sources.first() {
        identifier.push(json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{}", study.study_uid)}));
    }
    let mut report = json!({
        "resourceType": "DiagnosticReport",
        "id": exam.id,
        "contained": contained,
        "extension": extension,
        "identifier": identifier,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "OPH", "display": "Ophthalmology"}]}],
        "code": coding(LOCAL_CODES, "dr-screening", "Diabetic retinopathy screening, AI grading of fundus photographs"),
        "effectiveDateTime": when,
        "issued": when,
        "result": refs.iter().map(|r| json!({"reference": format!("#{r}")})).collect::<Vec<_>>(),
        "conclusion": format!("{}{}", result.explanation, result.recall_months.map(|m| format!(" Recall in {m} months.")).unwrap_or_default()),
        "conclusionCode": [coding(LOCAL_CODES, outcome, &outcome.replace('_', " "))],
    });
    if let Some(p) = &exam.patient_ref {
        report["subject"] = json!({"identifier": {"value": p}});
    }
    report
}
