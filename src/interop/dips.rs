//! DIPS RetinaIntegration (Norway's EHR for diabetic eye screening), implementation guide
//! 0.9.0, as published in the guide's built conformance resources (`docs/en/` of the
//! guide's repository; the file names below are those files):
//!
//! - `OperationDefinition-retina-by-date.json`: the AI side finds examinations waiting
//!   for it (`GET [base]/DiagnosticReport/$retina-by-date?start=&end=&pendingAI=true
//!   &_include=DiagnosticReport:result`); [`pending_examinations`] reads the answer.
//! - `OperationDefinition-append-retina-ai-result.json` (+ its page
//!   `OperationDefinition-append-retina-ai-result.md`, the state transition table): one
//!   result per examination, `POST [base]/DiagnosticReport/[id]/$append-retina-ai-result`
//!   with a `Parameters` body; [`append_parameters`] builds it.
//! - Code systems `CodeSystem-retina-conclusion-code-cs.json`,
//!   `CodeSystem-retina-ai-gradability-cs.json`, `CodeSystem-retina-image-quality-cs.json`,
//!   `CodeSystem-retina-image-view-cs.json`, `CodeSystem-retina-caution-cs.json`; value set
//!   `ValueSet-retina-append-ai-conclusion-vs.json` (what the append may ask for).
//!
//! Pure translation: JSON values in and out, no I/O, no clock.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::grading::{ExamOutcome, Laterality};
use crate::review::{Review, ReviewState};
use crate::store::StoredExam;

/// The guide version these constants and shapes follow.
pub const IG_VERSION: &str = "0.9.0";

/// `CodeSystem-retina-conclusion-code-cs.json` (1000 series: the examination's state).
pub const CONCLUSION_CS: &str = "http://dips.no/fhir/RetinaIntegration/CodeSystem/retina-conclusion-code-cs";
/// `ValueSet-retina-conclusion-code-vs.json` (all seven conclusion codes; binds
/// `DiagnosticReport.conclusionCode`).
pub const CONCLUSION_VS: &str = "http://dips.no/fhir/RetinaIntegration/ValueSet/retina-conclusion-code-vs";
/// `ValueSet-retina-append-ai-conclusion-vs.json`: "Goal states applicable for AI
/// integration conclusions" (1002, 1003, 1004); binds the append's `conclusion`.
pub const APPEND_CONCLUSION_VS: &str = "http://dips.no/fhir/RetinaIntegration/ValueSet/retina-append-ai-conclusion-vs";
/// `CodeSystem-retina-ai-gradability-cs.json`.
pub const GRADABILITY_CS: &str = "http://dips.no/fhir/RetinaIntegration/CodeSystem/retina-ai-gradability-cs";
/// `CodeSystem-retina-image-quality-cs.json` (2000 series).
pub const IMAGE_QUALITY_CS: &str = "http://dips.no/fhir/RetinaIntegration/CodeSystem/retina-image-quality-cs";
/// `CodeSystem-retina-image-view-cs.json` (6000 series).
pub const IMAGE_VIEW_CS: &str = "http://dips.no/fhir/RetinaIntegration/CodeSystem/retina-image-view-cs";
/// `CodeSystem-retina-caution-cs.json` (5000 series).
pub const CAUTION_CS: &str = "http://dips.no/fhir/RetinaIntegration/CodeSystem/retina-caution-cs";

/// Conclusion codes (`CodeSystem-retina-conclusion-code-cs.json`), with the guide's
/// (Norwegian) displays and English definitions.
pub mod conclusion {
    /// "This examination is waiting to be graded by the AI system."
    pub const AI_GRADING: &str = "1001";
    /// "This examinations is waiting to be graded by a primary grader."
    pub const PRIMARY_GRADING: &str = "1002";
    /// "This examination is waiting to be graded by a secondary grader."
    pub const SECONDARY_GRADING: &str = "1003";
    /// "Patient should be scheduled for a new routine eye examination graded by primary
    /// grader or AI."
    pub const NEW_PHOTO_CONTROL: &str = "1004";
    /// "Patient should be scheduled for a new routine eye examination but graded by
    /// secondary grader."
    pub const NEW_PHOTO_CONTROL_SECONDARY: &str = "1005";
    /// "Participation in the screening program is put on hold."
    pub const FOLLOW_UP_ON_HOLD: &str = "1006";
    /// "Patient is discharged from the screening program."
    pub const FOLLOW_UP_ENDED: &str = "1007";
}

/// Every conclusion code with its display, as `CodeSystem-retina-conclusion-code-cs.json`
/// spells it.
pub const CONCLUSION_CODES: [(&str, &str); 7] = [
    ("1001", "KI-gradering (basert på nåværende bilder)"),
    ("1002", "Primærgradering (basert på nåværende bilder)"),
    ("1003", "Sekundærgradering (basert på nåværende bilder)"),
    ("1004", "Ny fotokontroll (primærgradering)"),
    ("1005", "Ny fotokontroll (sekundærgradering)"),
    ("1006", "Oppfølging i programmet settes på vent"),
    ("1007", "Oppfølging i programmet avsluttes"),
];

/// The codes of `ValueSet-retina-append-ai-conclusion-vs.json`: the only conclusions an
/// append may ask for.
pub const APPEND_CONCLUSION_CODES: [&str; 3] = ["1002", "1003", "1004"];

/// `retina-ai-gradability-cs`: "The submitted set of images is sufficient for evaluation."
pub const GRADABILITY_GOOD: &str = "good-gradability";
/// `retina-ai-gradability-cs`: "The submitted set of images is insufficient for evaluation."
pub const GRADABILITY_NOT_GRADABLE: &str = "not-gradable";

/// Image quality codes (`CodeSystem-retina-image-quality-cs.json`).
pub const QUALITY_GOOD: (&str, &str) = ("2001", "Good");
pub const QUALITY_BARELY_GRADABLE: (&str, &str) = ("2002", "Barely gradable");
pub const QUALITY_NOT_GRADABLE: (&str, &str) = ("2003", "Not gradable");
pub const QUALITY_MISSING: (&str, &str) = ("2004", "Missing");

/// Image view codes (`CodeSystem-retina-image-view-cs.json`).
pub const VIEW_MACULA_CENTERED: (&str, &str) = ("6001", "Macula centered");
pub const VIEW_OPTIC_DISC_CENTERED: (&str, &str) = ("6002", "Optic disc centered");

/// `CodeSystem-retina-caution-cs.json`: the patient does not want an AI answer.
pub const CAUTION_NO_AI: &str = "5001";

/// Profiles (`StructureDefinition-*.json`).
pub const PROFILE_DIAGNOSTIC_REPORT: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/retina-diagnostic-report";
pub const PROFILE_DR_FINDING: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/retina-diabetic-retinopathy-finding";
pub const PROFILE_DME_FINDING: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/retina-diabetic-macular-edema-finding";
/// Spelled "asessment", as the guide spells it.
pub const PROFILE_IMAGE_QUALITY: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/retina-image-quality-asessment";
pub const PROFILE_IMAGE_PARAMETER: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/retina-image-parameter";
pub const PROFILE_AI_DEVICE: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/retina-ai-device";
pub const PROFILE_IMAGING_STUDY: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/retina-imagingstudy";

/// `StructureDefinition-days-until-next-examination-extension.json` (valueInteger, days).
pub const EXT_DAYS_UNTIL_NEXT_EXAMINATION: &str =
    "http://dips.no/fhir/RetinaIntegration/StructureDefinition/days-until-next-examination-extension";
/// `StructureDefinition-cautions-extension.json`.
pub const EXT_CAUTIONS: &str = "http://dips.no/fhir/RetinaIntegration/StructureDefinition/cautions-extension";
/// `StructureDefinition-previous-examination-conclusion-extension.json`.
pub const EXT_PREVIOUS_EXAMINATION_CONCLUSION: &str =
    "http://dips.no/fhir/RetinaIntegration/StructureDefinition/previous-examination-conclusion-extension";

/// `DiagnosticReport.identifier:retinaExaminationId` system (a GUID per examination;
/// `NamingSystem-retina-diagnostic-report-ns.json`).
pub const EXAMINATION_ID_SYSTEM: &str = "http://dips.no/fhir/RetinaIntegration/examination-id";
/// `ImagingStudy.identifier:sectraStudyId` system (`NamingSystem-retina-imaging-study-ns.json`:
/// "Sectra image study id. This is an identifier assigned by Sectra, e.g., `MMA94126079`").
pub const SECTRA_STUDY_ID_SYSTEM: &str = "http://dips.no/fhir/RetinaIntegration/sectra-image-study-id";

/// SNOMED CT, and the codes the guide's profiles fix.
pub const SNOMED: &str = "http://snomed.info/sct";
/// `retina-diabetic-retinopathy-finding`: Observation.code pattern.
pub const SCT_DIABETIC_RETINOPATHY: (&str, &str) = ("4855003", "Diabetic retinopathy");
/// `retina-diabetic-macular-edema-finding`: Observation.code pattern.
pub const SCT_DIABETIC_MACULAR_EDEMA: (&str, &str) = ("312912001", "Diabetic macular edema");
/// `retina-image-quality-asessment`: Observation.code pattern.
pub const SCT_IMAGE_QUALITY: (&str, &str) = ("133887000", "Computer assisted image analysis for image quality");
/// `ValueSet-retina-body-site-vs.json`: the only carrier of laterality.
pub const SCT_RETINA_RIGHT: (&str, &str) = ("5597008", "Retina of right eye");
pub const SCT_RETINA_LEFT: (&str, &str) = ("58443009", "Retina of left eye");

/// `ValueSet-retina-imaging-procedure-vs.json` (binds `DiagnosticReport.code`): the
/// Norwegian procedure code system and fundus photography.
pub const PROCEDURE_CS: &str = "http://ehelse.no/fhir/CodeSystem/no-kodeverk-7275";
pub const PROCEDURE_FUNDUS_PHOTOGRAPHY: (&str, &str) = ("CKDP10", "Fundusfotografi");

/// The product name delivered as the AI device's `deviceName` (type `model-name`).
pub const PRODUCT_NAME: &str = "drscreen";

/// Most entries [`pending_examinations`] reads from one Bundle.
pub const MAX_BUNDLE_ENTRIES: usize = 1000;
/// Longest id or identifier value accepted from DIPS.
const MAX_ID_CHARS: usize = 128;

/// The display of a conclusion code (`None` for a code outside the code system).
pub fn conclusion_display(code: &str) -> Option<&'static str> {
    CONCLUSION_CODES.iter().find(|(c, _)| *c == code).map(|(_, d)| *d)
}

/// A CodeableConcept with one coding.
pub fn concept(system: &str, (code, display): (&str, &str)) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}]})
}

/// The body site (retina of the right / left eye) for an eye; none for an unspecified eye.
pub fn body_site(laterality: Laterality) -> Option<Value> {
    match laterality {
        Laterality::Right => Some(concept(SNOMED, SCT_RETINA_RIGHT)),
        Laterality::Left => Some(concept(SNOMED, SCT_RETINA_LEFT)),
        Laterality::Unspecified => None,
    }
}

/// ICDR grade (0 none ... 4 proliferative) as the guide's DR decimal (0.0-5.0; DIPS reads
/// [0,1) no DR, [1,2) mild, [2,3) moderate, [3,4) severe NPDR, >= 4 PDR): grade g is
/// delivered as g.0, the lower bound of its band. Grades above 4 do not exist; clamped.
pub fn dr_decimal(grade: u8) -> f64 {
    f64::from(grade.min(4))
}

/// Days for a recall interval in months (a month is 365.25 / 12 days), for the report's
/// days-until-next-examination extension.
pub fn months_to_days(months: u32) -> i64 {
    (f64::from(months) * 365.25 / 12.0).round() as i64
}

/// Image quality code (2000 series) for an image's gradability verdict. drscreen's
/// quality check is binary: 2001 Good when gradable, 2003 Not gradable otherwise
/// (2002 Barely gradable and 2004 Missing are never produced).
pub fn image_quality(gradable: bool) -> (&'static str, &'static str) {
    if gradable { QUALITY_GOOD } else { QUALITY_NOT_GRADABLE }
}

/// Image view code (6000 series) for a stored view ("macula", "disc", ...); `None` when
/// the view is not known (the image parameter then carries only its quality coding:
/// `retina-image-parameter` binds `code` to quality-or-view and requires neither).
pub fn image_view(view: Option<&str>) -> Option<(&'static str, &'static str)> {
    let v = view?.trim().to_ascii_lowercase();
    match v.as_str() {
        "macula" | "macula centered" | "macula-centered" | "macula_centered" | "macular" | "6001" => Some(VIEW_MACULA_CENTERED),
        "disc" | "optic disc" | "disc centered" | "optic disc centered" | "disc-centered" | "disc_centered" | "optic-disc" | "6002" => {
            Some(VIEW_OPTIC_DISC_CENTERED)
        }
        _ => None,
    }
}

/// Which conclusion code each screening outcome asks DIPS for, configurable (e.g. as a
/// `[dips.conclusions]` settings table). The default follows the guide's "Event Catalog
/// for the AI integrator" (`OperationDefinition-append-retina-ai-result.md`, 0.9.0):
///
/// - 1002 "Primary grading current examination": "AI is not able to grade pictures"
///   (ungradable);
/// - 1003 "Secondary grading current examination": "AI grading indicates that something
///   is wrong." (referral, urgent referral);
/// - 1004 "New screening examination in X months": "Gradable AI grading, recall
///   interval", "No need for further grading in this examination." (rescreen; sent with
///   `monthsUntilNextExamination`, the exam's recall interval, which "must be a positive
///   integer greater than 1").
///
/// Whatever is configured, [`ConclusionMapping::conclusion`] asks for 1002 (primary
/// grading) when the input is for validation only ("If the validation parameter is set to
/// true, the next step will always be manual grading"), when 1004 would be sent without
/// a gradable eye ("A conclusion from the AI integrator that is based on AI grading
/// requires at least one gradable eye grading result") or without a recall interval > 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConclusionMapping {
    pub urgent_referral: String,
    pub referral: String,
    pub rescreen: String,
    pub ungradable: String,
}

impl Default for ConclusionMapping {
    fn default() -> Self {
        Self {
            urgent_referral: conclusion::SECONDARY_GRADING.into(),
            referral: conclusion::SECONDARY_GRADING.into(),
            rescreen: conclusion::NEW_PHOTO_CONTROL.into(),
            ungradable: conclusion::PRIMARY_GRADING.into(),
        }
    }
}

/// The conclusion an append asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    pub code: &'static str,
    pub display: &'static str,
    /// `monthsUntilNextExamination`: present exactly when `code` is 1004.
    pub months: Option<u32>,
}

impl ConclusionMapping {
    /// Every code must be in `retina-append-ai-conclusion-vs` (1002, 1003, 1004), and a
    /// referable or ungradable outcome must never ask for 1004 (routine recall: "No need
    /// for further grading in this examination").
    pub fn validate(&self) -> Result<(), String> {
        for (outcome, code) in self.entries() {
            if !APPEND_CONCLUSION_CODES.contains(&code) {
                return Err(format!(
                    "dips conclusion for {}: '{code}' is not in retina-append-ai-conclusion-vs (allowed: {})",
                    outcome.as_str(),
                    APPEND_CONCLUSION_CODES.join(", ")
                ));
            }
            if code == conclusion::NEW_PHOTO_CONTROL && outcome != ExamOutcome::Rescreen {
                return Err(format!(
                    "dips conclusion for {}: 1004 (new photo control) is only for rescreen; a {} exam needs manual grading (1002 or 1003)",
                    outcome.as_str(),
                    outcome.as_str()
                ));
            }
        }
        Ok(())
    }

    fn entries(&self) -> [(ExamOutcome, &str); 4] {
        [
            (ExamOutcome::UrgentReferral, self.urgent_referral.as_str()),
            (ExamOutcome::Referral, self.referral.as_str()),
            (ExamOutcome::Rescreen, self.rescreen.as_str()),
            (ExamOutcome::Ungradable, self.ungradable.as_str()),
        ]
    }

    /// The conclusion for an outcome. `any_gradable_eye`: whether the delivered payload
    /// holds at least one gradable eye; `recall_months`: the exam's recall interval.
    pub fn conclusion(&self, outcome: ExamOutcome, recall_months: Option<u32>, any_gradable_eye: bool, validation: bool) -> Conclusion {
        let primary = Conclusion { code: conclusion::PRIMARY_GRADING, display: display_of(conclusion::PRIMARY_GRADING), months: None };
        if validation {
            return primary;
        }
        let wanted = self.entries().into_iter().find(|(o, _)| *o == outcome).map(|(_, c)| c).unwrap_or_default();
        let Some(code) = APPEND_CONCLUSION_CODES.iter().copied().find(|c| *c == wanted) else {
            return primary;
        };
        if code == conclusion::NEW_PHOTO_CONTROL {
            return match recall_months {
                Some(m) if m > 1 && any_gradable_eye => Conclusion { code, display: display_of(code), months: Some(m) },
                _ => primary,
            };
        }
        Conclusion { code, display: display_of(code), months: None }
    }
}

fn display_of(code: &'static str) -> &'static str {
    conclusion_display(code).unwrap_or(code)
}

/// Why a `$retina-by-date` answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DipsError {
    #[error("not a FHIR Bundle: {0}")]
    NotABundle(String),
    #[error("the Bundle holds {0} entries; at most {MAX_BUNDLE_ENTRIES} are read")]
    TooManyEntries(usize),
    #[error("invalid Bundle: {0}")]
    Invalid(String),
}

/// One examination waiting for an AI result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingExamination {
    /// The DiagnosticReport's logical id: the `[id]` of the append URL.
    pub report_id: String,
    /// `DiagnosticReport.identifier` with system [`EXAMINATION_ID_SYSTEM`] (a GUID).
    pub examination_id: Option<String>,
    /// The Sectra study ids of the report's imaging studies: `DiagnosticReport.imagingStudy`
    /// references `ImagingStudy` resources (profile `retina-imagingstudy`, included in the
    /// searchset Bundle as `Bundle-Bundle-SingleExamination-Example.json` shows, or
    /// contained), whose `identifier:sectraStudyId` has system [`SECTRA_STUDY_ID_SYSTEM`].
    pub sectra_study_ids: Vec<String>,
}

/// A FHIR logical id: `[A-Za-z0-9\-\.]{1,64}` (it goes into the append URL's path).
pub fn is_fhir_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn bounded_str<'v>(v: &'v Value, what: &str) -> Result<Option<&'v str>, DipsError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= MAX_ID_CHARS && !s.trim().is_empty() => Ok(Some(s.as_str())),
        Value::String(_) => Err(DipsError::Invalid(format!("{what} is empty or longer than {MAX_ID_CHARS} characters"))),
        _ => Err(DipsError::Invalid(format!("{what} is not a string"))),
    }
}

/// The values of the identifiers with `system` in a resource.
fn identifiers(resource: &Value, system: &str, what: &str) -> Result<Vec<String>, DipsError> {
    let mut out = Vec::new();
    let Some(list) = resource.get("identifier") else { return Ok(out) };
    let list = list.as_array().ok_or_else(|| DipsError::Invalid(format!("{what}.identifier is not a list")))?;
    for identifier in list.iter().filter(|i| i.get("system").and_then(Value::as_str) == Some(system)) {
        let value = bounded_str(identifier.get("value").unwrap_or(&Value::Null), &format!("{what}.identifier.value"))?;
        if let Some(value) = value.filter(|v| !out.iter().any(|o| o == v)) {
            out.push(value.to_string());
        }
    }
    Ok(out)
}

/// Reads a `$retina-by-date` answer (a searchset Bundle of DiagnosticReports with the
/// included resources; `OperationDefinition-retina-by-date.json`): one entry per
/// DiagnosticReport, in Bundle order. Refuses what is not a Bundle, a Bundle of more
/// than [`MAX_BUNDLE_ENTRIES`] entries, a report without a valid logical id, and
/// identifier values that are not bounded strings.
pub fn pending_examinations(bundle: &Value) -> Result<Vec<PendingExamination>, DipsError> {
    let kind = bundle.get("resourceType").and_then(Value::as_str).unwrap_or("(none)");
    if kind != "Bundle" {
        return Err(DipsError::NotABundle(format!("resourceType is {kind}")));
    }
    let entries = match bundle.get("entry") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(DipsError::Invalid("entry is not a list".into())),
    };
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(DipsError::TooManyEntries(entries.len()));
    }
    let resources: Vec<(Option<&str>, &Value)> =
        entries.iter().filter_map(|e| e.get("resource").map(|r| (e.get("fullUrl").and_then(Value::as_str), r))).collect();
    // An ImagingStudy reference resolves against the included resources: by
    // "ImagingStudy/<id>" (also as the tail of an absolute URL) or by fullUrl.
    let study = |reference: &str| -> Option<&Value> {
        resources.iter().find_map(|(full_url, r)| {
            if r.get("resourceType").and_then(Value::as_str) != Some("ImagingStudy") {
                return None;
            }
            let id = r.get("id").and_then(Value::as_str)?;
            let relative = format!("ImagingStudy/{id}");
            let hit = reference == relative || reference.ends_with(&format!("/{relative}")) || *full_url == Some(reference);
            hit.then_some(*r)
        })
    };
    let mut out = Vec::new();
    for (_, report) in resources.iter().filter(|(_, r)| r.get("resourceType").and_then(Value::as_str) == Some("DiagnosticReport")) {
        let id = report.get("id").and_then(Value::as_str).unwrap_or_default();
        if !is_fhir_id(id) {
            return Err(DipsError::Invalid(format!("a DiagnosticReport has no valid logical id ({id:?})")));
        }
        let what = format!("DiagnosticReport/{id}");
        let examination_id = identifiers(report, EXAMINATION_ID_SYSTEM, &what)?.into_iter().next();
        let mut sectra_study_ids: Vec<String> = Vec::new();
        let refs = match report.get("imagingStudy") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(refs)) => refs.as_slice(),
            Some(_) => return Err(DipsError::Invalid(format!("{what}.imagingStudy is not a list"))),
        };
        for reference in refs.iter().filter_map(|r| r.get("reference").and_then(Value::as_str)) {
            let resolved = match reference.strip_prefix('#') {
                Some(local) => report
                    .get("contained")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|r| r.get("id").and_then(Value::as_str) == Some(local))),
                None => study(reference),
            };
            if let Some(study) = resolved {
                for value in identifiers(study, SECTRA_STUDY_ID_SYSTEM, "ImagingStudy")? {
                    if !sectra_study_ids.contains(&value) {
                        sectra_study_ids.push(value);
                    }
                }
            }
        }
        out.push(PendingExamination { report_id: id.to_string(), examination_id, sectra_study_ids });
    }
    Ok(out)
}

/// What one `$append-retina-ai-result` delivers.
#[derive(Debug, Clone, Copy)]
pub struct AppendInput<'a> {
    pub exam: &'a StoredExam,
    /// The exam's latest review; only a signed one counts: its grades, DME verdicts and
    /// outcome replace the AI's (a clinician's signed override wins).
    pub review: Option<&'a Review>,
    /// The Sectra study the images came from (`sectraStudyId`).
    pub sectra_study_id: Option<&'a str>,
    /// The stored view of each image, by index into `exam.result.images` (as
    /// `store::ExamImage::view`); missing or unknown entries send no view coding.
    pub image_views: &'a [Option<String>],
    /// The human-readable report (`fullReport`), a PDF.
    pub pdf: &'a [u8],
    /// `validation`: "Set true if the AI result is for validation purposes only and will
    /// not be used in clinical decision making."
    pub validation: bool,
    pub mapping: &'a ConclusionMapping,
    /// The clinic's recall interval for a `rescreen` outcome, months (for a signed
    /// rescreen that overrides a referral).
    pub rescreen_recall_months: u32,
}

/// One eye as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EyeOut {
    gradable: bool,
    grade: Option<u8>,
    dme: Option<bool>,
}

/// The `Parameters` body of `$append-retina-ai-result`
/// (`OperationDefinition-append-retina-ai-result.json`, 0.9.0), parameters in the
/// definition's order: sectraStudyId, conclusion, monthsUntilNextExamination,
/// left/rightGradability, left/rightDiabeticRetinopathy (ICDR grade g as the decimal g.0,
/// see [`dr_decimal`]), left/rightDiabeticMacularEdema, right/leftEyeImage
/// (`retina-image-parameter` Observations: one 2000-series quality coding plus a
/// 6000-series view coding when the view is known; no identifier, no effective[x]),
/// aiDevice (`retina-ai-device`), performedDateTime, fullReport (application/pdf),
/// validation. Images and results of an eye sent without laterality are not delivered:
/// the operation has right and left parameters only.
pub fn append_parameters(input: &AppendInput) -> Value {
    let exam = input.exam;
    let result = &exam.result;
    let signed = input.review.filter(|r| r.state == ReviewState::Signed);
    let eye = |laterality: Laterality| -> Option<EyeOut> {
        match signed {
            Some(review) => review.eyes.get(laterality.as_str()).map(|e| EyeOut {
                gradable: e.grade.is_some(),
                grade: e.grade,
                dme: e.grade.and(e.dme),
            }),
            None => result.eyes.iter().find(|e| e.laterality == laterality).map(|e| EyeOut {
                gradable: e.gradable && e.grade.is_some(),
                grade: e.grade,
                dme: e.grade.and(e.dme),
            }),
        }
    };
    let (right, left) = (eye(Laterality::Right), eye(Laterality::Left));
    let any_gradable = [right, left].iter().flatten().any(|e| e.gradable);
    let outcome = signed.and_then(|r| r.outcome).unwrap_or(result.outcome);
    // A clinician who signs `rescreen` over a referral sets the clinic's routine recall
    // (the model's result has no interval then).
    let recall = result.recall_months.or((outcome == ExamOutcome::Rescreen).then_some(input.rescreen_recall_months));
    let chosen = input.mapping.conclusion(outcome, recall, any_gradable, input.validation);

    let mut p: Vec<Value> = Vec::new();
    if let Some(id) = input.sectra_study_id {
        p.push(json!({"name": "sectraStudyId", "valueString": id}));
    }
    p.push(json!({"name": "conclusion", "valueCodeableConcept": concept(CONCLUSION_CS, (chosen.code, chosen.display))}));
    if let Some(m) = chosen.months {
        p.push(json!({"name": "monthsUntilNextExamination", "valueInteger": m}));
    }
    for (side, e) in [("left", left), ("right", right)] {
        if let Some(e) = e {
            let code = if e.gradable { GRADABILITY_GOOD } else { GRADABILITY_NOT_GRADABLE };
            p.push(json!({"name": format!("{side}Gradability"), "valueCode": code}));
        }
    }
    for (side, e) in [("left", left), ("right", right)] {
        let Some(e) = e else { continue };
        if let Some(g) = e.grade {
            p.push(json!({"name": format!("{side}DiabeticRetinopathy"), "valueDecimal": dr_decimal(g)}));
        }
        if let Some(dme) = e.dme {
            p.push(json!({"name": format!("{side}DiabeticMacularEdema"), "valueBoolean": dme}));
        }
    }
    for (laterality, name) in [(Laterality::Right, "rightEyeImage"), (Laterality::Left, "leftEyeImage")] {
        for (i, image) in result.images.iter().enumerate().filter(|(_, im)| im.laterality == laterality) {
            let mut coding = vec![];
            let view = input.image_views.get(i).and_then(|v| image_view(v.as_deref()));
            if let Some((code, display)) = view {
                coding.push(json!({"system": IMAGE_VIEW_CS, "code": code, "display": display}));
            }
            let (code, display) = image_quality(image.quality.gradable);
            coding.push(json!({"system": IMAGE_QUALITY_CS, "code": code, "display": display}));
            p.push(json!({"name": name, "resource": {
                "resourceType": "Observation",
                "id": format!("{}-image-{i}", laterality.as_str()),
                "meta": {"profile": [PROFILE_IMAGE_PARAMETER]},
                "status": "final",
                "code": {"coding": coding},
            }}));
        }
    }
    p.push(json!({"name": "aiDevice", "resource": ai_device("ai-device", exam)}));
    p.push(json!({"name": "performedDateTime", "valueDateTime": exam.created_at}));
    let creation = signed.and_then(|r| r.signed_at.clone()).unwrap_or_else(|| exam.created_at.clone());
    p.push(json!({"name": "fullReport", "valueAttachment": {
        "contentType": "application/pdf",
        "data": base64(input.pdf),
        "title": format!("drscreen screening report, exam {}", exam.id),
        "creation": creation,
    }}));
    p.push(json!({"name": "validation", "valueBoolean": input.validation}));
    json!({"resourceType": "Parameters", "parameter": p})
}

/// The AI device as `StructureDefinition-retina-ai-device.json` wants it: one deviceName
/// of type `model-name` (the product name), the `algorithmVersion` slice (type code
/// `model-number`: the model's name and version) and the `protocol` slice (type code
/// `software`: the preprocessing recipe the images went through), no status.
pub fn ai_device(id: &str, exam: &StoredExam) -> Value {
    let model = &exam.result.model;
    let mut version = vec![json!({"type": {"coding": [{"code": "model-number"}]}, "value": format!("{} {}", model.name, model.version)})];
    let mut recipes: Vec<&str> = exam.result.images.iter().map(|i| i.recipe.as_str()).filter(|r| !r.is_empty()).collect();
    recipes.dedup();
    if !recipes.is_empty() {
        version.push(json!({"type": {"coding": [{"code": "software"}]}, "value": recipes.join(", ")}));
    }
    json!({
        "resourceType": "Device",
        "id": id,
        "meta": {"profile": [PROFILE_AI_DEVICE]},
        "deviceName": [{"name": PRODUCT_NAME, "type": "model-name"}],
        "version": version,
    })
}

/// Standard base64 with padding (RFC 4648 section 4), as FHIR's `base64Binary` wants.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::grading::{DmeFinding, DrFinding, ExamResult, EyeResult, ImageDecision, ImageFinding, Quality};
    use crate::model::ModelIdentity;
    use crate::review::EyeReview;

    fn image(laterality: Laterality, gradable: bool, grade: u8, dme: bool) -> ImageFinding {
        ImageFinding {
            source: None,
            laterality,
            quality: Quality {
                gradable,
                score: 0.9,
                reasons: if gradable { vec![] } else { vec!["focus".into()] },
                measures: crate::preprocess::QualityMeasures {
                    fov_coverage: 1.0,
                    brightness: 100.0,
                    clipped_fraction: 0.0,
                    contrast: 20.0,
                    focus: 1.0,
                },
            },
            dr: gradable.then(|| DrFinding { grade, label: "x".into(), probabilities: [0.2; 5], referable_probability: 0.1 }),
            dme: gradable.then_some(DmeFinding { present: dme, probability: 0.1 }),
            decision: ImageDecision::NotReferable,
            model: model(),
            timings_ms: Default::default(),
            image: crate::preprocess::SourceInfo { format: crate::preprocess::Format::Jpeg, width: 1, height: 1, scale_denominator: 1 },
            recipe: "fundus-v1".into(),
            laterality_check: None,
        }
    }

    fn model() -> ModelIdentity {
        ModelIdentity { name: "dr-synth".into(), version: "0.1.0".into(), sha256: "ab".into() }
    }

    /// Right eye grade `r` (gradable), left eye as given; outcome and recall as given.
    fn exam(outcome: ExamOutcome, recall: Option<u32>, right: Option<(u8, bool)>, left: Option<(u8, bool)>) -> StoredExam {
        let mut images = vec![];
        let mut eyes = vec![];
        for (lat, eye) in [(Laterality::Right, right), (Laterality::Left, left)] {
            let idx = images.len();
            match eye {
                Some((g, d)) => {
                    images.push(image(lat, true, g, d));
                    eyes.push(EyeResult { laterality: lat, gradable: true, grade: Some(g), dme: Some(d), images: vec![idx] });
                }
                None => {
                    images.push(image(lat, false, 0, false));
                    eyes.push(EyeResult { laterality: lat, gradable: false, grade: None, dme: None, images: vec![idx] });
                }
            }
        }
        StoredExam {
            id: "e1".into(),
            created_at: "2026-06-10T10:00:00.000Z".into(),
            submitted_by: "k".into(),
            external_exam_ref: None,
            patient_ref: None,
            outcome,
            flagged: outcome != ExamOutcome::Rescreen,
            reviewed: false,
            image_ids: vec!["i0".into(), "i1".into()],
            result: ExamResult {
                outcome,
                recall_months: recall,
                flagged: false,
                explanation: "x".into(),
                eyes,
                images,
                model: model(),
                laterality_warnings: None,
            },
        }
    }

    fn params<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
        p["parameter"].as_array().unwrap().iter().filter(|x| x["name"] == name).collect()
    }

    fn one<'a>(p: &'a Value, name: &str) -> &'a Value {
        let all = params(p, name);
        assert_eq!(all.len(), 1, "{name} once in {p}");
        all[0]
    }

    fn input<'a>(exam: &'a StoredExam, mapping: &'a ConclusionMapping) -> AppendInput<'a> {
        AppendInput {
            exam,
            review: None,
            sectra_study_id: Some("MMA94126079"),
            image_views: &[],
            pdf: b"%PDF-1.4",
            validation: false,
            mapping,
            rescreen_recall_months: 12,
        }
    }

    #[test]
    fn default_mapping_follows_the_event_catalog_and_validates() {
        let m = ConclusionMapping::default();
        assert!(m.validate().is_ok());
        assert_eq!(
            m.conclusion(ExamOutcome::Rescreen, Some(12), true, false),
            Conclusion { code: "1004", display: "Ny fotokontroll (primærgradering)", months: Some(12) }
        );
        assert_eq!(m.conclusion(ExamOutcome::Referral, Some(12), true, false).code, "1003");
        assert_eq!(m.conclusion(ExamOutcome::UrgentReferral, None, true, false).code, "1003");
        assert_eq!(m.conclusion(ExamOutcome::Ungradable, None, false, false).code, "1002");
        // Validation only: always manual (primary) grading, never a recall.
        for o in [ExamOutcome::Rescreen, ExamOutcome::Referral, ExamOutcome::UrgentReferral, ExamOutcome::Ungradable] {
            assert_eq!(
                m.conclusion(o, Some(12), true, true),
                Conclusion { code: "1002", display: conclusion_display("1002").unwrap(), months: None }
            );
        }
        // 1004 needs a gradable eye and a recall interval > 1.
        assert_eq!(m.conclusion(ExamOutcome::Rescreen, Some(12), false, false).code, "1002");
        assert_eq!(m.conclusion(ExamOutcome::Rescreen, Some(1), true, false).code, "1002");
        assert_eq!(m.conclusion(ExamOutcome::Rescreen, None, true, false).code, "1002");
    }

    #[test]
    fn mapping_rejects_codes_outside_the_append_value_set() {
        for bad in ["1001", "1005", "1006", "1007", "9999", ""] {
            let m = ConclusionMapping { referral: bad.into(), ..Default::default() };
            let e = m.validate().unwrap_err();
            assert!(e.contains("retina-append-ai-conclusion-vs"), "{e}");
        }
        let m = ConclusionMapping { ungradable: "1004".into(), ..Default::default() };
        assert!(m.validate().unwrap_err().contains("only for rescreen"));
        let ok = ConclusionMapping { referral: "1002".into(), urgent_referral: "1002".into(), ..Default::default() };
        assert!(ok.validate().is_ok());
        // An unvalidated bad code still never reaches DIPS: primary grading instead.
        let m = ConclusionMapping { referral: "1007".into(), ..Default::default() };
        assert_eq!(m.conclusion(ExamOutcome::Referral, None, true, false).code, "1002");
    }

    #[test]
    fn mapping_deserialises_with_defaults_and_refuses_unknown_keys() {
        let m: ConclusionMapping = serde_json::from_value(json!({"referral": "1002"})).unwrap();
        assert_eq!(m, ConclusionMapping { referral: "1002".into(), ..Default::default() });
        assert!(serde_json::from_value::<ConclusionMapping>(json!({"refferal": "1002"})).is_err());
    }

    #[test]
    fn rescreen_exam_parameters() {
        let e = exam(ExamOutcome::Rescreen, Some(12), Some((0, false)), Some((1, false)));
        let m = ConclusionMapping::default();
        let views = vec![Some("macula".to_string()), None];
        let p = append_parameters(&AppendInput { image_views: &views, ..input(&e, &m) });
        assert_eq!(p["resourceType"], "Parameters");
        assert_eq!(one(&p, "sectraStudyId")["valueString"], "MMA94126079");
        let c = &one(&p, "conclusion")["valueCodeableConcept"]["coding"][0];
        assert_eq!((c["system"].as_str(), c["code"].as_str()), (Some(CONCLUSION_CS), Some("1004")));
        assert_eq!(one(&p, "monthsUntilNextExamination")["valueInteger"], 12);
        assert_eq!(one(&p, "rightGradability")["valueCode"], "good-gradability");
        assert_eq!(one(&p, "leftGradability")["valueCode"], "good-gradability");
        assert_eq!(one(&p, "rightDiabeticRetinopathy")["valueDecimal"], json!(0.0));
        assert_eq!(one(&p, "leftDiabeticRetinopathy")["valueDecimal"], json!(1.0));
        assert_eq!(one(&p, "leftDiabeticMacularEdema")["valueBoolean"], false);
        // Decimals serialise with a fraction (FHIR decimal), 2 -> 2.0.
        assert!(p.to_string().contains("\"valueDecimal\":1.0"), "{p}");
        let right = &one(&p, "rightEyeImage")["resource"];
        assert_eq!(right["resourceType"], "Observation");
        assert_eq!(right["status"], "final");
        assert!(right.get("identifier").is_none() && right.get("effectiveDateTime").is_none());
        let codes: Vec<&str> = right["code"]["coding"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["6001", "2001"]);
        // Unknown view: the quality coding alone.
        let left = &one(&p, "leftEyeImage")["resource"];
        let codes: Vec<&str> = left["code"]["coding"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["2001"]);
        let device = &one(&p, "aiDevice")["resource"];
        assert_eq!(device["deviceName"], json!([{"name": "drscreen", "type": "model-name"}]));
        assert_eq!(device["version"][0], json!({"type": {"coding": [{"code": "model-number"}]}, "value": "dr-synth 0.1.0"}));
        assert_eq!(device["version"][1], json!({"type": {"coding": [{"code": "software"}]}, "value": "fundus-v1"}));
        assert!(device.get("status").is_none());
        assert_eq!(one(&p, "performedDateTime")["valueDateTime"], "2026-06-10T10:00:00.000Z");
        let report = &one(&p, "fullReport")["valueAttachment"];
        assert_eq!(report["contentType"], "application/pdf");
        assert_eq!(report["data"], "JVBERi0xLjQ=");
        assert!(report["title"].as_str().unwrap().contains("e1"));
        assert_eq!(one(&p, "validation")["valueBoolean"], false);
        // The definition's order.
        let names: Vec<&str> = p["parameter"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
        assert_eq!(names[..3], ["sectraStudyId", "conclusion", "monthsUntilNextExamination"]);
        assert_eq!(names[names.len() - 2..], ["fullReport", "validation"]);
    }

    #[test]
    fn referral_and_ungradable_parameters() {
        let m = ConclusionMapping::default();
        let e = exam(ExamOutcome::Referral, None, Some((2, true)), None);
        let p = append_parameters(&input(&e, &m));
        assert_eq!(one(&p, "conclusion")["valueCodeableConcept"]["coding"][0]["code"], "1003");
        assert!(params(&p, "monthsUntilNextExamination").is_empty());
        assert_eq!(one(&p, "rightDiabeticRetinopathy")["valueDecimal"], json!(2.0));
        assert_eq!(one(&p, "rightDiabeticMacularEdema")["valueBoolean"], true);
        assert_eq!(one(&p, "leftGradability")["valueCode"], "not-gradable");
        assert!(params(&p, "leftDiabeticRetinopathy").is_empty() && params(&p, "leftDiabeticMacularEdema").is_empty());
        let left = &one(&p, "leftEyeImage")["resource"]["code"]["coding"][0];
        assert_eq!(left["code"], "2003");

        let e = exam(ExamOutcome::Ungradable, None, None, None);
        let p = append_parameters(&AppendInput { sectra_study_id: None, ..input(&e, &m) });
        assert_eq!(one(&p, "conclusion")["valueCodeableConcept"]["coding"][0]["code"], "1002");
        assert!(params(&p, "sectraStudyId").is_empty());
    }

    #[test]
    fn validation_only_asks_for_manual_grading() {
        let m = ConclusionMapping::default();
        let e = exam(ExamOutcome::Rescreen, Some(12), Some((0, false)), Some((0, false)));
        let p = append_parameters(&AppendInput { validation: true, ..input(&e, &m) });
        assert_eq!(one(&p, "conclusion")["valueCodeableConcept"]["coding"][0]["code"], "1002");
        assert!(params(&p, "monthsUntilNextExamination").is_empty());
        assert_eq!(one(&p, "validation")["valueBoolean"], true);
        // The findings still go.
        assert_eq!(one(&p, "rightDiabeticRetinopathy")["valueDecimal"], json!(0.0));
        // AI said referral (no recall); the clinician signed rescreen: the clinic's recall.
        let e = exam(ExamOutcome::Referral, None, Some((2, false)), Some((0, false)));
        let r = review(ReviewState::Signed, &[("right", Some(0), Some(false)), ("left", Some(0), Some(false))], ExamOutcome::Rescreen);
        let p = append_parameters(&AppendInput { review: Some(&r), rescreen_recall_months: 24, ..input(&e, &m) });
        assert_eq!(one(&p, "conclusion")["valueCodeableConcept"]["coding"][0]["code"], "1004");
        assert_eq!(one(&p, "monthsUntilNextExamination")["valueInteger"], 24);
    }

    fn review(state: ReviewState, eyes: &[(&str, Option<u8>, Option<bool>)], outcome: ExamOutcome) -> Review {
        Review {
            exam_id: "e1".into(),
            version: 1,
            state,
            reviewer: "k".into(),
            reviewer_name: None,
            created_at: "2026-06-11T09:00:00.000Z".into(),
            updated_at: "2026-06-11T09:00:00.000Z".into(),
            signed_at: (state == ReviewState::Signed).then(|| "2026-06-11T09:05:00.000Z".into()),
            amends: None,
            amendment_reason: None,
            eyes: eyes.iter().map(|(k, g, d)| (k.to_string(), EyeReview { grade: *g, dme: *d })).collect::<BTreeMap<_, _>>(),
            outcome: Some(outcome),
            outcome_by_rule: outcome,
            note: String::new(),
            outcome_reason: None,
        }
    }

    #[test]
    fn a_signed_review_overrides_the_ai() {
        let m = ConclusionMapping::default();
        // AI said rescreen; the clinician signed moderate NPDR with DME in the left eye.
        let e = exam(ExamOutcome::Rescreen, Some(12), Some((0, false)), Some((0, false)));
        let r = review(ReviewState::Signed, &[("right", Some(0), Some(false)), ("left", Some(2), Some(true))], ExamOutcome::Referral);
        let p = append_parameters(&AppendInput { review: Some(&r), ..input(&e, &m) });
        assert_eq!(one(&p, "conclusion")["valueCodeableConcept"]["coding"][0]["code"], "1003");
        assert!(params(&p, "monthsUntilNextExamination").is_empty());
        assert_eq!(one(&p, "leftDiabeticRetinopathy")["valueDecimal"], json!(2.0));
        assert_eq!(one(&p, "leftDiabeticMacularEdema")["valueBoolean"], true);
        assert_eq!(one(&p, "fullReport")["valueAttachment"]["creation"], "2026-06-11T09:05:00.000Z");
        // A clinician who could not grade an eye: not gradable, no DR/DME for it.
        let r = review(ReviewState::Signed, &[("right", None, None), ("left", Some(1), Some(false))], ExamOutcome::Rescreen);
        let p = append_parameters(&AppendInput { review: Some(&r), ..input(&e, &m) });
        assert_eq!(one(&p, "rightGradability")["valueCode"], "not-gradable");
        assert!(params(&p, "rightDiabeticRetinopathy").is_empty());
        assert_eq!(one(&p, "conclusion")["valueCodeableConcept"]["coding"][0]["code"], "1004");
        // A draft does not count.
        let r = review(ReviewState::Draft, &[("right", Some(4), Some(true)), ("left", Some(4), Some(true))], ExamOutcome::UrgentReferral);
        let p = append_parameters(&AppendInput { review: Some(&r), ..input(&e, &m) });
        assert_eq!(one(&p, "conclusion")["valueCodeableConcept"]["coding"][0]["code"], "1004");
        assert_eq!(one(&p, "rightDiabeticRetinopathy")["valueDecimal"], json!(0.0));
    }

    fn bundle() -> Value {
        json!({
            "resourceType": "Bundle", "type": "searchset", "total": 3,
            "entry": [
                {"resource": {"resourceType": "DiagnosticReport", "id": "550e8400-e29b-41d4-a716-446655440000",
                    "identifier": [{"system": EXAMINATION_ID_SYSTEM, "value": "550e8400-e29b-41d4-a716-446655440000"}],
                    "status": "partial",
                    "imagingStudy": [{"reference": "ImagingStudy/RegisteredImagingStudy-1"}],
                    "result": [{"reference": "Observation/HbA1cObservation-1"}]},
                 "search": {"mode": "match"}},
                {"resource": {"resourceType": "Observation", "id": "HbA1cObservation-1"}, "search": {"mode": "include"}},
                {"resource": {"resourceType": "ImagingStudy", "id": "RegisteredImagingStudy-1",
                    "identifier": [{"system": "urn:other", "value": "x"}, {"system": SECTRA_STUDY_ID_SYSTEM, "value": "MMA94126111"}],
                    "status": "registered"},
                 "search": {"mode": "include"}},
                {"resource": {"resourceType": "DiagnosticReport", "id": "r2", "status": "partial"}, "search": {"mode": "match"}},
            ]
        })
    }

    #[test]
    fn pending_examinations_read_the_sectra_id_from_the_imaging_study() {
        let p = pending_examinations(&bundle()).unwrap();
        assert_eq!(
            p,
            [
                PendingExamination {
                    report_id: "550e8400-e29b-41d4-a716-446655440000".into(),
                    examination_id: Some("550e8400-e29b-41d4-a716-446655440000".into()),
                    sectra_study_ids: vec!["MMA94126111".into()],
                },
                PendingExamination { report_id: "r2".into(), examination_id: None, sectra_study_ids: vec![] },
            ]
        );
        // Absolute references and contained studies resolve too.
        let mut b = bundle();
        b["entry"][0]["resource"]["imagingStudy"][0]["reference"] =
            json!("http://127.0.0.1:8080/fhir/ImagingStudy/RegisteredImagingStudy-1");
        assert_eq!(pending_examinations(&b).unwrap()[0].sectra_study_ids, ["MMA94126111"]);
        let mut b = bundle();
        b["entry"][0]["resource"]["imagingStudy"][0]["reference"] = json!("#s");
        b["entry"][0]["resource"]["contained"] =
            json!([{"resourceType": "ImagingStudy", "id": "s", "identifier": [{"system": SECTRA_STUDY_ID_SYSTEM, "value": "MMA1"}]}]);
        assert_eq!(pending_examinations(&b).unwrap()[0].sectra_study_ids, ["MMA1"]);
        // An empty searchset.
        assert!(pending_examinations(&json!({"resourceType": "Bundle", "type": "searchset"})).unwrap().is_empty());
    }

    #[test]
    fn pending_examinations_refuse_what_is_not_a_bounded_bundle() {
        assert!(matches!(pending_examinations(&json!({"resourceType": "OperationOutcome"})), Err(DipsError::NotABundle(_))));
        assert!(matches!(pending_examinations(&json!([1, 2])), Err(DipsError::NotABundle(_))));
        let many = json!({"resourceType": "Bundle", "entry": vec![json!({}); MAX_BUNDLE_ENTRIES + 1]});
        assert_eq!(pending_examinations(&many), Err(DipsError::TooManyEntries(MAX_BUNDLE_ENTRIES + 1)));
        for bad_id in [json!("../x"), json!(""), json!(7), json!("a".repeat(65))] {
            let mut b = bundle();
            b["entry"][0]["resource"]["id"] = bad_id;
            assert!(matches!(pending_examinations(&b), Err(DipsError::Invalid(_))));
        }
        let mut b = bundle();
        b["entry"][2]["resource"]["identifier"][1]["value"] = json!("x".repeat(200));
        assert!(matches!(pending_examinations(&b), Err(DipsError::Invalid(_))));
        let mut b = bundle();
        b["entry"] = json!({"not": "a list"});
        assert!(matches!(pending_examinations(&b), Err(DipsError::Invalid(_))));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn small_mappings() {
        assert_eq!(dr_decimal(2), 2.0);
        assert_eq!(dr_decimal(9), 4.0);
        assert_eq!(months_to_days(12), 365);
        assert_eq!(image_view(Some("Disc")), Some(VIEW_OPTIC_DISC_CENTERED));
        assert_eq!(image_view(Some("macula")), Some(VIEW_MACULA_CENTERED));
        assert_eq!(image_view(Some("peripheral")), None);
        assert_eq!(image_view(None), None);
        assert_eq!(image_quality(false), QUALITY_NOT_GRADABLE);
        assert!(body_site(Laterality::Unspecified).is_none());
        assert_eq!(body_site(Laterality::Left).unwrap()["coding"][0]["code"], "58443009");
    }
}
