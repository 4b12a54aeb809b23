//! The per-exam DICOM Structured Report: TID 1500 "Measurement Report" in a Comprehensive
//! 3D SR (PS3.3 A.35.13), placed in the source study in a new series described as an AI
//! result not for diagnostic use. One measurement group per eye carries the DR severity,
//! DME and gradability, each group naming the algorithm (TID 4019: name, version, and as
//! parameters the model sha256, the preprocessing recipe, the grade rule and the
//! thresholds and quality cut-offs it was graded with); the image library references
//! every graded source image with its view (macula or disc centred) when known; the model
//! is named as the device observer (TID 1004) and in ContributingEquipmentSequence (IHE AI
//! Results). UIDs are derived from the exam id, so the same exam always yields the same SR
//! instance (a regraded study gets a new exam and a new SR).
//!
//! Code sources:
//! - DCM codes: DICOM PS3.16 Annex D (DICOM Controlled Terminology Definitions) and the
//!   TID 1500/1501/1204/1002/1004 tables in PS3.16 Annex A.
//! - LOINC 71490-7 / 71491-5 (left/right eye diabetic retinopathy severity level) and the
//!   answer list LL2117-1 (LA18643-9 ... LA18648-8): <https://loinc.org/LL2117-1>.
//! - SNOMED CT 363698007 Finding site, 81745001 Eye, 272741003 Laterality, 24028007
//!   Right, 7771000 Left, 373066001 Yes, 373067005 No: as used by DICOM PS3.16 TID 1501,
//!   CID 244 (Laterality) and CID 230 (Yes-No).
//! - Image view: DCM 111031 "Image View" (HAS ACQ CONTEXT of the IMAGE item, as TID 1602
//!   Image Library Entry Descriptors has it) with DCM 111900 "Macula centered" / 111901
//!   "Disc centered", the fundus image positions of PS3.16 CID 4207 (Ophthalmic Image
//!   Position); code values and meanings as in PS3.16 Annex D (checked against dcmtk's
//!   generated dcmsr/codes/dcm.h: CODE_DCM_MaculaCentered, CODE_DCM_DiscCentered).
//! - DME, gradability, the screening outcome and the procedure have no code we could
//!   check against a published source, so they use the private scheme `99DRSCREEN`,
//!   declared in CodingSchemeIdentificationSequence.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};

use super::{EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, uid_from_name};
use crate::grading::{ExamOutcome, ExamResult, EyeResult, GradingPolicy, Laterality};
use crate::store::{ExamSource, StoredExam};

/// Comprehensive 3D SR Storage.
pub const COMPREHENSIVE_3D_SR: &str = "1.2.840.10008.5.1.4.1.1.88.34";
/// The private coding scheme for concepts without a checked standard code.
pub const PRIVATE_SCHEME: &str = "99DRSCREEN";
/// The series description every SR carries.
pub const SERIES_DESCRIPTION: &str = "AI RESULT - NOT FOR DIAGNOSTIC USE";

type Code = (&'static str, &'static str, &'static str);

const REPORT: Code = ("126000", "DCM", "Imaging Measurement Report");
// TID 4019 Algorithm Identification (PS3.16), included by TID 1501 in each measurement group.
const ALGORITHM_NAME: Code = ("111001", "DCM", "Algorithm Name");
const ALGORITHM_VERSION: Code = ("111003", "DCM", "Algorithm Version");
const ALGORITHM_PARAMETERS: Code = ("111002", "DCM", "Algorithm Parameters");
// TID 1602 Image Library Entry Descriptors; values from CID 4207 Ophthalmic Image Position.
const IMAGE_VIEW: Code = ("111031", "DCM", "Image View");
const MACULA_CENTERED: Code = ("111900", "DCM", "Macula centered");
const DISC_CENTERED: Code = ("111901", "DCM", "Disc centered");
const LANGUAGE: Code = ("121049", "DCM", "Language of Content Item and Descendants");
const ENGLISH: Code = ("en-US", "RFC5646", "English (United States)");
const OBSERVER_TYPE: Code = ("121005", "DCM", "Observer Type");
const DEVICE: Code = ("121007", "DCM", "Device");
const DEVICE_UID: Code = ("121012", "DCM", "Device Observer UID");
const DEVICE_NAME: Code = ("121013", "DCM", "Device Observer Name");
const DEVICE_MANUFACTURER: Code = ("121014", "DCM", "Device Observer Manufacturer");
const DEVICE_MODEL: Code = ("121015", "DCM", "Device Observer Model Name");
const PROCEDURE_REPORTED: Code = ("121058", "DCM", "Procedure reported");
const PROCEDURE: Code = ("DRSCREEN-AI", PRIVATE_SCHEME, "AI screening of fundus photographs for diabetic retinopathy");
const IMAGE_LIBRARY: Code = ("111028", "DCM", "Image Library");
const IMAGE_LIBRARY_GROUP: Code = ("126200", "DCM", "Image Library Group");
const MEASUREMENTS: Code = ("126010", "DCM", "Imaging Measurements");
const MEASUREMENT_GROUP: Code = ("125007", "DCM", "Measurement Group");
const TRACKING_ID: Code = ("112039", "DCM", "Tracking Identifier");
const TRACKING_UID: Code = ("112040", "DCM", "Tracking Unique Identifier");
const QUALITATIVE: Code = ("C0034375", "UMLS", "Qualitative Evaluations");
const FINDING_SITE: Code = ("363698007", "SCT", "Finding Site");
const EYE: Code = ("81745001", "SCT", "Eye");
const LATERALITY: Code = ("272741003", "SCT", "Laterality");
const RIGHT: Code = ("24028007", "SCT", "Right");
const LEFT: Code = ("7771000", "SCT", "Left");
const YES: Code = ("373066001", "SCT", "Yes");
const NO: Code = ("373067005", "SCT", "No");
const DR_RIGHT: Code = ("71491-5", "LN", "Right eye Diabetic retinopathy severity level");
const DR_LEFT: Code = ("71490-7", "LN", "Left eye Diabetic retinopathy severity level");
const DR_UNSPECIFIED: Code = ("DR-SEVERITY", PRIVATE_SCHEME, "Diabetic retinopathy severity level, eye not given");
const ICDR: [Code; 5] = [
    ("LA18643-9", "LN", "No apparent retinopathy"),
    ("LA18644-7", "LN", "Mild non-proliferative retinopathy"),
    ("LA18645-4", "LN", "Moderate non-proliferative retinopathy"),
    ("LA18646-2", "LN", "Severe non-proliferative retinopathy"),
    ("LA18648-8", "LN", "Proliferative retinopathy"),
];
const DME: Code = ("DME", PRIVATE_SCHEME, "Diabetic macular edema present (AI)");
const GRADABLE: Code = ("GRADABLE", PRIVATE_SCHEME, "Gradable for diabetic retinopathy screening (AI)");
const OUTCOME: Code = ("OUTCOME", PRIVATE_SCHEME, "Screening outcome");
const RECALL: Code = ("RECALL", PRIVATE_SCHEME, "Recall interval in months");
const OUTCOMES: [Code; 4] = [
    ("urgent_referral", PRIVATE_SCHEME, "Urgent referral"),
    ("referral", PRIVATE_SCHEME, "Referral"),
    ("rescreen", PRIVATE_SCHEME, "Rescreen"),
    ("ungradable", PRIVATE_SCHEME, "Ungradable"),
];

/// What an SR says beyond the stored exam.
#[derive(Debug, Clone, Copy, Default)]
pub struct SrContext<'a> {
    /// The grading policy (model thresholds, quality cut-offs) the exam was graded with:
    /// given only when the exam's model is the one loaded, so the SR never claims
    /// parameters another model version used.
    pub policy: Option<&'a GradingPolicy>,
    /// The model's grade rule (manifest `[grading] grade_rule`), on the same condition.
    pub grade_rule: Option<&'a str>,
    /// Each image's view ("macula" or "disc"), by the exam's image index.
    pub views: &'a [Option<String>],
}

/// The Image View code of a view name (`macula` / `disc`, as the HTTP upload and the
/// review pages name them); other names have no code and are left out.
pub fn view_code(view: &str) -> Option<Code> {
    match view.trim().to_ascii_lowercase().as_str() {
        "macula" | "macula centered" | "macula centred" => Some(MACULA_CENTERED),
        "disc" | "disc centered" | "disc centred" => Some(DISC_CENTERED),
        _ => None,
    }
}

/// Why an SR could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SrError {
    #[error("cannot encode the SR: {0}")]
    Encode(String),
}

enum Value {
    Container,
    Code(Code),
    Text(String),
    UidRef(String),
    Image { class: String, instance: String, frame: Option<i64> },
}

struct Item {
    relationship: &'static str,
    concept: Option<Code>,
    value: Value,
    children: Vec<Item>,
}

fn item(relationship: &'static str, concept: Code, value: Value) -> Item {
    Item { relationship, concept: Some(concept), value, children: Vec::new() }
}

fn container(relationship: &'static str, concept: Code, children: Vec<Item>) -> Item {
    Item { relationship, concept: Some(concept), value: Value::Container, children }
}

fn code_item(c: Code) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(c.0)),
        DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PrimitiveValue::from(c.1)),
        DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(c.2)),
    ])
}

fn sq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn s(tag: Tag, vr: VR, v: impl Into<String>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v.into()))
}

fn empty(tag: Tag, vr: VR) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::Empty)
}

fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Container => "CONTAINER",
        Value::Code(_) => "CODE",
        Value::Text(_) => "TEXT",
        Value::UidRef(_) => "UIDREF",
        Value::Image { .. } => "IMAGE",
    }
}

/// The attributes of one content item (the root's relationship type is omitted).
fn content(item: Item, root: bool) -> Vec<DataElement<InMemDicomObject>> {
    let mut out = Vec::new();
    if !root {
        out.push(s(tags::RELATIONSHIP_TYPE, VR::CS, item.relationship));
    }
    out.push(s(tags::VALUE_TYPE, VR::CS, value_type(&item.value)));
    if let Some(c) = item.concept {
        out.push(sq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(c)]));
    }
    match item.value {
        Value::Container => {
            out.push(s(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
            if root {
                out.push(sq(
                    tags::CONTENT_TEMPLATE_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        s(tags::MAPPING_RESOURCE, VR::CS, "DCMR"),
                        s(tags::TEMPLATE_IDENTIFIER, VR::CS, "1500"),
                    ])],
                ));
            }
        }
        Value::Code(c) => out.push(sq(tags::CONCEPT_CODE_SEQUENCE, vec![code_item(c)])),
        Value::Text(t) => out.push(s(tags::TEXT_VALUE, VR::UT, t)),
        Value::UidRef(u) => out.push(s(tags::UID, VR::UI, u)),
        Value::Image { class, instance, frame } => {
            let mut r = vec![s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class), s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, instance)];
            if let Some(f) = frame {
                r.push(s(tags::REFERENCED_FRAME_NUMBER, VR::IS, f.to_string()));
            }
            out.push(sq(tags::REFERENCED_SOP_SEQUENCE, vec![InMemDicomObject::from_element_iter(r)]));
        }
    }
    if !item.children.is_empty() {
        let items = item.children.into_iter().map(|c| InMemDicomObject::from_element_iter(content(c, false))).collect();
        out.push(sq(tags::CONTENT_SEQUENCE, items));
    }
    out
}

/// The study and patient attributes an SR (and the report's Encapsulated PDF) copies
/// from its source study.
pub const COPIED: [(Tag, VR); 9] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
];

pub(crate) fn da_tm(rfc3339: &str) -> (String, String) {
    let digits: String = rfc3339.chars().filter(char::is_ascii_digit).collect();
    let da = digits.get(..8).unwrap_or("19700101").to_string();
    let tm = digits.get(8..14).unwrap_or("000000").to_string();
    (da, tm)
}

fn eye_name(l: Laterality) -> &'static str {
    match l {
        Laterality::Right => "right eye",
        Laterality::Left => "left eye",
        Laterality::Unspecified => "eye not given",
    }
}

/// The UIDs and names an exam's SR is built around.
struct Identity {
    device_uid: String,
    sop_instance: String,
    series_uid: String,
    study_uid: String,
    date: String,
    time: String,
    software: String,
}

impl Identity {
    fn of(exam: &StoredExam, sources: &[ExamSource]) -> Self {
        let model = &exam.result.model;
        let (date, time) = da_tm(&exam.created_at);
        Self {
            device_uid: uid_from_name(&format!("drscreen-model:{}", model.sha256)),
            sop_instance: uid_from_name(&format!("drscreen-sr:{}", exam.id)),
            series_uid: uid_from_name(&format!("drscreen-sr-series:{}", exam.id)),
            study_uid: sources
                .first()
                .map(|s| s.study_uid.clone())
                .unwrap_or_else(|| uid_from_name(&format!("drscreen-study:{}", exam.id))),
            date,
            time,
            software: format!("drscreen {} model {} {}", env!("CARGO_PKG_VERSION"), model.name, model.version),
        }
    }
}

/// The SR document for an exam. `sources` are the exam's DICOM source images (empty for
/// exams submitted over HTTP); `source_study` is one source instance, whose patient and
/// study attributes are copied (without one, the SR gets a study of its own).
pub fn build(
    exam: &StoredExam,
    sources: &[ExamSource],
    source_study: Option<&InMemDicomObject>,
) -> Result<FileDicomObject<InMemDicomObject>, SrError> {
    build_with(exam, sources, source_study, &SrContext::default())
}

/// [`build`] with the grading policy and image views of `context`.
pub fn build_with(
    exam: &StoredExam,
    sources: &[ExamSource],
    source_study: Option<&InMemDicomObject>,
    context: &SrContext,
) -> Result<FileDicomObject<InMemDicomObject>, SrError> {
    let id = Identity::of(exam, sources);
    let mut obj = InMemDicomObject::new_empty();
    obj.put(s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    obj.put(s(tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_3D_SR));
    obj.put(s(tags::SOP_INSTANCE_UID, VR::UI, id.sop_instance.clone()));
    obj.put(s(tags::INSTANCE_CREATION_DATE, VR::DA, id.date.clone()));
    obj.put(s(tags::INSTANCE_CREATION_TIME, VR::TM, id.time.clone()));
    obj.put(s(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000"));
    put_patient_and_study(&mut obj, exam, &id, source_study);
    put_series_and_equipment(&mut obj, &exam.result, &id);
    put_document_general(&mut obj, &id, sources);
    for e in content(content_tree(exam, &id, sources, context), true) {
        obj.put(e);
    }
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(EXPLICIT_VR_LE)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name("DRSCREEN"),
    )
    .map_err(|e| SrError::Encode(e.to_string()))
}

/// TID 1500: language, the device observer (TID 1004), the image library, one
/// measurement group per eye and the qualitative evaluations (outcome, recall).
fn content_tree(exam: &StoredExam, id: &Identity, sources: &[ExamSource], context: &SrContext) -> Item {
    let result = &exam.result;
    let model = &result.model;
    let mut root = vec![
        item("HAS CONCEPT MOD", LANGUAGE, Value::Code(ENGLISH)),
        item("HAS OBS CONTEXT", OBSERVER_TYPE, Value::Code(DEVICE)),
        item("HAS OBS CONTEXT", DEVICE_UID, Value::UidRef(id.device_uid.clone())),
        item("HAS OBS CONTEXT", DEVICE_NAME, Value::Text(format!("{} {}", model.name, model.version))),
        item("HAS OBS CONTEXT", DEVICE_MANUFACTURER, Value::Text("drscreen".into())),
        item("HAS OBS CONTEXT", DEVICE_MODEL, Value::Text(model.name.clone())),
        item("HAS CONCEPT MOD", PROCEDURE_REPORTED, Value::Code(PROCEDURE)),
    ];
    let images: Vec<Item> = sources
        .iter()
        .map(|s| Item {
            relationship: "CONTAINS",
            concept: None,
            value: Value::Image {
                class: s.sop_class_uid.clone(),
                instance: s.sop_instance_uid.clone(),
                frame: (s.frame > 1).then_some(s.frame),
            },
            children: image_descriptors(s.idx, context),
        })
        .collect();
    let library = if images.is_empty() { vec![] } else { vec![container("CONTAINS", IMAGE_LIBRARY_GROUP, images)] };
    root.push(container("CONTAINS", IMAGE_LIBRARY, library));
    let groups = result.eyes.iter().map(|eye| eye_group(&exam.id, eye, result, context)).collect();
    root.push(container("CONTAINS", MEASUREMENTS, groups));
    let mut qualitative = vec![item("CONTAINS", OUTCOME, Value::Code(outcome_code(result.outcome)))];
    if let Some(m) = result.recall_months {
        qualitative.push(item("CONTAINS", RECALL, Value::Text(m.to_string())));
    }
    root.push(container("CONTAINS", QUALITATIVE, qualitative));
    container("", REPORT, root)
}

/// TID 1602 descriptors of one image library entry: its view, when known.
fn image_descriptors(idx: i64, context: &SrContext) -> Vec<Item> {
    let view = usize::try_from(idx).ok().and_then(|i| context.views.get(i)).and_then(|v| v.as_deref()).and_then(view_code);
    view.map(|code| item("HAS ACQ CONTEXT", IMAGE_VIEW, Value::Code(code))).into_iter().collect()
}

/// The TID 4019 Algorithm Parameters of one eye's findings, each `name=value`: the model
/// file's sha256, the preprocessing recipe of the eye's images, and (when the exam's
/// model is the one loaded) the grade rule, the model's operating thresholds and the
/// image-quality cut-offs that decided gradability.
fn algorithm_parameters(eye: &EyeResult, result: &ExamResult, context: &SrContext) -> Vec<String> {
    let mut params = vec![format!("model_sha256={}", result.model.sha256)];
    let mut recipes: Vec<&str> = eye.images.iter().filter_map(|&i| result.images.get(i)).map(|f| f.recipe.as_str()).collect();
    recipes.sort_unstable();
    recipes.dedup();
    params.extend(recipes.into_iter().map(|r| format!("preprocessing_recipe={r}")));
    if let Some(rule) = context.grade_rule {
        params.push(format!("grade_rule={rule}"));
    }
    if let Some(policy) = context.policy {
        let (t, q) = (&policy.thresholds, &policy.quality);
        params.extend([
            format!("threshold_referable_dr={}", t.referable_dr),
            format!("threshold_dme={}", t.dme),
            format!("threshold_gradable={}", t.gradable),
            format!("quality_min_fov_coverage={}", q.min_fov_coverage),
            format!("quality_min_brightness={}", q.min_brightness),
            format!("quality_max_brightness={}", q.max_brightness),
            format!("quality_max_clipped_fraction={}", q.max_clipped_fraction),
            format!("quality_min_contrast={}", q.min_contrast),
            format!("quality_min_focus={}", q.min_focus),
        ]);
    }
    params
}

/// TID 4019 for one eye's findings: the model's name and version, and its parameters
/// (one Algorithm Parameters item each), so a PACS or a registry can tell which locked
/// model, recipe and operating point produced the numbers.
fn algorithm_identification(eye: &EyeResult, result: &ExamResult, context: &SrContext) -> Vec<Item> {
    let model = &result.model;
    let mut items = vec![
        item("HAS CONCEPT MOD", ALGORITHM_NAME, Value::Text(model.name.clone())),
        item("HAS CONCEPT MOD", ALGORITHM_VERSION, Value::Text(model.version.clone())),
    ];
    for p in algorithm_parameters(eye, result, context) {
        items.push(item("HAS CONCEPT MOD", ALGORITHM_PARAMETERS, Value::Text(p)));
    }
    items
}

/// One eye's measurement group: tracking, finding site, the algorithm (TID 4019),
/// gradability, DR severity, DME.
fn eye_group(exam_id: &str, eye: &EyeResult, result: &ExamResult, context: &SrContext) -> Item {
    let mut g = vec![
        item("CONTAINS", TRACKING_ID, Value::Text(eye_name(eye.laterality).into())),
        item("CONTAINS", TRACKING_UID, Value::UidRef(uid_from_name(&format!("drscreen-eye:{exam_id}:{}", eye.laterality.as_str())))),
    ];
    let mut site = item("HAS CONCEPT MOD", FINDING_SITE, Value::Code(EYE));
    match eye.laterality {
        Laterality::Right => site.children.push(item("HAS CONCEPT MOD", LATERALITY, Value::Code(RIGHT))),
        Laterality::Left => site.children.push(item("HAS CONCEPT MOD", LATERALITY, Value::Code(LEFT))),
        Laterality::Unspecified => {}
    }
    g.push(site);
    g.extend(algorithm_identification(eye, result, context));
    g.push(item("CONTAINS", GRADABLE, Value::Code(if eye.gradable { YES } else { NO })));
    if let Some(grade) = eye.grade {
        let concept = match eye.laterality {
            Laterality::Right => DR_RIGHT,
            Laterality::Left => DR_LEFT,
            Laterality::Unspecified => DR_UNSPECIFIED,
        };
        g.push(item("CONTAINS", concept, Value::Code(ICDR[usize::from(grade.min(4))])));
    }
    if let Some(dme) = eye.dme {
        g.push(item("CONTAINS", DME, Value::Code(if dme { YES } else { NO })));
    }
    container("CONTAINS", MEASUREMENT_GROUP, g)
}

fn outcome_code(outcome: ExamOutcome) -> Code {
    match outcome {
        ExamOutcome::UrgentReferral => OUTCOMES[0],
        ExamOutcome::Referral => OUTCOMES[1],
        ExamOutcome::Rescreen => OUTCOMES[2],
        ExamOutcome::Ungradable => OUTCOMES[3],
    }
}

/// Patient and General Study modules: copied from the source study, else empty (type 2)
/// with the exam's patient reference and date.
fn put_patient_and_study(obj: &mut InMemDicomObject, exam: &StoredExam, id: &Identity, source_study: Option<&InMemDicomObject>) {
    copy_study_attributes(obj, source_study);
    if source_study.is_none() {
        if let Some(p) = &exam.patient_ref {
            obj.put(s(tags::PATIENT_ID, VR::LO, p.clone()));
        }
        obj.put(s(tags::STUDY_DATE, VR::DA, id.date.clone()));
        obj.put(s(tags::STUDY_TIME, VR::TM, id.time.clone()));
    }
    obj.put(s(tags::STUDY_INSTANCE_UID, VR::UI, id.study_uid.clone()));
}

/// Puts the [`COPIED`] patient and study attributes: the source study's values exactly,
/// empty (type 2) where it has none or there is no source.
pub fn copy_study_attributes(obj: &mut InMemDicomObject, source_study: Option<&InMemDicomObject>) {
    for (tag, vr) in COPIED {
        let copied =
            source_study.and_then(|o| o.get(tag)).and_then(|e| e.to_str().ok()).map(|v| v.trim_end_matches(['\0', ' ']).to_string());
        match copied {
            Some(v) if !v.is_empty() => obj.put(s(tag, vr, v)),
            _ => obj.put(empty(tag, vr)),
        };
    }
}

/// SR Document Series, General and Enhanced General Equipment, and the algorithm as
/// contributing (processing) equipment (IHE AI Results).
fn put_series_and_equipment(obj: &mut InMemDicomObject, result: &ExamResult, id: &Identity) {
    let model = &result.model;
    obj.put(s(tags::MODALITY, VR::CS, "SR"));
    obj.put(s(tags::SERIES_INSTANCE_UID, VR::UI, id.series_uid.clone()));
    obj.put(s(tags::SERIES_NUMBER, VR::IS, "9901"));
    obj.put(s(tags::SERIES_DESCRIPTION, VR::LO, SERIES_DESCRIPTION));
    obj.put(sq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![]));
    obj.put(s(tags::MANUFACTURER, VR::LO, "drscreen"));
    obj.put(s(tags::MANUFACTURER_MODEL_NAME, VR::LO, model.name.clone()));
    obj.put(s(tags::DEVICE_SERIAL_NUMBER, VR::LO, model.sha256.chars().take(16).collect::<String>()));
    obj.put(s(tags::SOFTWARE_VERSIONS, VR::LO, id.software.clone()));
    obj.put(sq(
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            sq(tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE, vec![code_item(("109102", "DCM", "Processing Equipment"))]),
            s(tags::MANUFACTURER, VR::LO, "drscreen"),
            s(tags::MANUFACTURER_MODEL_NAME, VR::LO, model.name.clone()),
            s(tags::SOFTWARE_VERSIONS, VR::LO, id.software.clone()),
            s(tags::DEVICE_UID, VR::UI, id.device_uid.clone()),
            s(tags::CONTRIBUTION_DATE_TIME, VR::DT, format!("{}{}", id.date, id.time)),
            s(tags::CONTRIBUTION_DESCRIPTION, VR::ST, "AI diabetic retinopathy screening result; not for diagnostic use"),
        ])],
    ));
}

/// SR Document General: flags, content date, the evidence (source images) and the
/// private coding scheme's declaration.
fn put_document_general(obj: &mut InMemDicomObject, id: &Identity, sources: &[ExamSource]) {
    obj.put(s(tags::INSTANCE_NUMBER, VR::IS, "1"));
    obj.put(s(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"));
    obj.put(s(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"));
    obj.put(s(tags::CONTENT_DATE, VR::DA, id.date.clone()));
    obj.put(s(tags::CONTENT_TIME, VR::TM, id.time.clone()));
    obj.put(sq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]));
    if !sources.is_empty() {
        obj.put(sq(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE, vec![evidence(&id.study_uid, sources)]));
    }
    obj.put(sq(
        tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            s(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PRIVATE_SCHEME),
            s(tags::CODING_SCHEME_NAME, VR::ST, "drscreen local codes"),
            s(tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION, VR::ST, "drscreen project"),
        ])],
    ));
}

fn evidence(study_uid: &str, sources: &[ExamSource]) -> InMemDicomObject {
    let mut series: Vec<(String, Vec<InMemDicomObject>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for src in sources {
        if !seen.insert(src.sop_instance_uid.clone()) {
            continue;
        }
        let sop = InMemDicomObject::from_element_iter([
            s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, src.sop_class_uid.clone()),
            s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, src.sop_instance_uid.clone()),
        ]);
        match series.iter_mut().find(|(uid, _)| *uid == src.series_uid) {
            Some((_, list)) => list.push(sop),
            None => series.push((src.series_uid.clone(), vec![sop])),
        }
    }
    let series = series
        .into_iter()
        .map(|(uid, sops)| {
            InMemDicomObject::from_element_iter([s(tags::SERIES_INSTANCE_UID, VR::UI, uid), sq(tags::REFERENCED_SOP_SEQUENCE, sops)])
        })
        .collect();
    InMemDicomObject::from_element_iter([s(tags::STUDY_INSTANCE_UID, VR::UI, study_uid), sq(tags::REFERENCED_SERIES_SEQUENCE, series)])
}

/// The SR as Part 10 bytes.
pub fn to_bytes(file: &FileDicomObject<InMemDicomObject>) -> Result<Vec<u8>, SrError> {
    let mut out = Vec::new();
    file.write_all(&mut out).map_err(|e| SrError::Encode(e.to_string()))?;
    Ok(out)
}
