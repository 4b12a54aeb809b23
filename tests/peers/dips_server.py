#!/usr/bin/env python3
"""A stand-in DIPS RetinaIntegration FHIR server for drscreen's tests (no DIPS can be
installed). It implements the two operations of the DIPS RetinaIntegration implementation
guide 0.9.0 as its conformance resources define them:

- OperationDefinition-retina-by-date.json:
  GET /DiagnosticReport/$retina-by-date?start=&end=&pendingAI=true&_include=DiagnosticReport:result
  start/end (dateTime, 0..1) and pendingAI (boolean, 0..1; may be given without a value).
  Answers a searchset Bundle: the DiagnosticReports (retina-diagnostic-report, as
  DiagnosticReport-RetinaDiagnosticReport-Example-PendingAI.json) dated in the window,
  plus the included ImagingStudy (retina-imagingstudy) that carries the Sectra study id
  (identifier system http://dips.no/fhir/RetinaIntegration/sectra-image-study-id), as
  Bundle-Bundle-SingleExamination-Example.json shows.
- OperationDefinition-append-retina-ai-result.json (+ its page's HTTP response codes):
  POST /DiagnosticReport/{id}/$append-retina-ai-result with a Parameters body.
  204 done; 400 malformed (OperationOutcome names the problem); 401 no/bad token;
  404 unknown id; 409 already graded, or sectraStudyId linked to another examination;
  422 business rule broken (configured per examination: "reject422": true); 500 injected.

CLI: --port 0 (127.0.0.1; prints "LISTENING <port>" as its first stdout line), --token T
(requires "Authorization: Bearer T"), --examinations FILE (JSON list of objects:
report_id, examination_id (GUID), sectra_study_id, date (YYYY-MM-DD or dateTime),
optional reject422 (bool), fail_first (list of statuses answered to the first appends
before validation)). GET /_test/searches counts the
searches answered; GET /_test/appends lists every append received (report_id, status,
body) so tests can assert exactly-once delivery.

Every Parameters body is validated with fhir.resources (R4B models; the guide is FHIR
4.0.1 and these resources are the same in R4 and R4B) and then against the operation's
parameters: names, cardinalities, types, bindings.
"""

import argparse
import base64
import datetime
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.parameters import Parameters

BASE = "http://dips.no/fhir/RetinaIntegration"
CONCLUSION_CS = BASE + "/CodeSystem/retina-conclusion-code-cs"
GRADABILITY = {"good-gradability", "not-gradable"}  # retina-ai-gradability-vs
APPEND_CONCLUSIONS = {"1002", "1003", "1004"}  # retina-append-ai-conclusion-vs
QUALITY_CS = BASE + "/CodeSystem/retina-image-quality-cs"
QUALITY = {"2001", "2002", "2003", "2004"}
VIEW_CS = BASE + "/CodeSystem/retina-image-view-cs"
VIEW = {"6001", "6002"}
PROFILE_IMAGE_PARAMETER = BASE + "/StructureDefinition/retina-image-parameter"
PROFILE_AI_DEVICE = BASE + "/StructureDefinition/retina-ai-device"
PROFILE_CAMERA_DEVICE = BASE + "/StructureDefinition/retina-camera-device"
EXAMINATION_ID = BASE + "/examination-id"
SECTRA_ID = BASE + "/sectra-image-study-id"
MAX_BODY = 64 * 1024 * 1024

# OperationDefinition-append-retina-ai-result.json (0.9.0): name -> (min, max, type).
APPEND_PARAMETERS = {
    "sectraStudyId": (0, 1, "string"),
    "conclusion": (1, 1, "CodeableConcept"),
    "monthsUntilNextExamination": (0, 1, "integer"),
    "leftGradability": (0, 1, "code"),
    "rightGradability": (0, 1, "code"),
    "leftDiabeticRetinopathy": (0, 1, "decimal"),
    "leftDiabeticMacularEdema": (0, 1, "boolean"),
    "rightDiabeticRetinopathy": (0, 1, "decimal"),
    "rightDiabeticMacularEdema": (0, 1, "boolean"),
    "rightEyeImage": (0, None, "Observation"),
    "leftEyeImage": (0, None, "Observation"),
    "aiDevice": (0, 1, "Device"),
    "performedDateTime": (0, 1, "dateTime"),
    "cameraDevice": (0, 1, "Device"),
    "fullReport": (1, 1, "Attachment"),
    "validation": (1, 1, "boolean"),
}
VALUE_KEY = {
    "string": "valueString",
    "CodeableConcept": "valueCodeableConcept",
    "integer": "valueInteger",
    "code": "valueCode",
    "decimal": "valueDecimal",
    "boolean": "valueBoolean",
    "dateTime": "valueDateTime",
    "Attachment": "valueAttachment",
}
DATE_RE = re.compile(
    r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$"
)


class Problem(Exception):
    def __init__(self, status, text, code="invalid"):
        super().__init__(text)
        self.status, self.text, self.code = status, text, code


def outcome(text, code="invalid", severity="error"):
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


def parse_datetime(value, name, end=False):
    """A FHIR dateTime (partial dates allowed) as an aware datetime: the start of the
    period it names, or its end (exclusive) for `end`."""
    if not DATE_RE.match(value):
        raise Problem(400, f"parameter {name}: '{value}' is not a FHIR dateTime")
    if "T" in value:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    parts = [int(p) for p in value.split("-")]
    y, m, d = parts + [1] * (3 - len(parts))
    start = datetime.datetime(y, m, d, tzinfo=datetime.timezone.utc)
    if not end:
        return start
    if len(parts) == 3:
        return start + datetime.timedelta(days=1)
    if len(parts) == 2:
        return datetime.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=datetime.timezone.utc)
    return datetime.datetime(y + 1, 1, 1, tzinfo=datetime.timezone.utc)


class State:
    def __init__(self, examinations, token):
        self.lock = threading.Lock()
        self.token = token
        self.exams = {}
        for e in examinations:
            self.exams[e["report_id"]] = {
                "report_id": e["report_id"],
                "examination_id": e["examination_id"],
                "sectra_study_id": e.get("sectra_study_id"),
                "date": e.get("date", "2026-06-10"),
                "reject422": bool(e.get("reject422", False)),
                "fail_first": list(e.get("fail_first", [])),
                "pending": True,
                "result": None,
            }
        self.appends = []
        self.searches = 0


def report_resource(e):
    return {
        "resourceType": "DiagnosticReport",
        "id": e["report_id"],
        "meta": {"profile": [BASE + "/StructureDefinition/retina-diagnostic-report"]},
        "identifier": [{"system": EXAMINATION_ID, "value": e["examination_id"]}],
        "status": "preliminary" if e["pending"] else "final",
        "code": {"coding": [{"system": "http://ehelse.no/fhir/CodeSystem/no-kodeverk-7275", "code": "CKDP10", "display": "Fundusfotografi"}]},
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "01015549145"}},
        "effectiveDateTime": e["date"],
        "imagingStudy": [{"reference": f"ImagingStudy/study-{e['report_id']}"}] if e["sectra_study_id"] else None,
        "conclusionCode": [
            {"coding": [{"system": CONCLUSION_CS, "code": "1001" if e["pending"] else e["result"], "display": "KI-gradering (basert på nåværende bilder)" if e["pending"] else None}]}
        ],
    }


def study_resource(e):
    return {
        "resourceType": "ImagingStudy",
        "id": f"study-{e['report_id']}",
        "meta": {"profile": [BASE + "/StructureDefinition/retina-imagingstudy"]},
        "identifier": [{"system": SECTRA_ID, "value": e["sectra_study_id"]}],
        "status": "registered",
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "01015549145"}},
    }


def strip_none(v):
    if isinstance(v, dict):
        return {k: strip_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [strip_none(x) for x in v]
    return v


def check_coding_in(cc, system, codes, where):
    codings = (cc or {}).get("coding") or []
    hits = [c for c in codings if c.get("system") == system]
    if len(hits) != 1 or hits[0].get("code") not in codes:
        raise Problem(400, f"{where}: needs exactly one coding from {system} with a code in {sorted(codes)}")
    return hits[0]["code"]


def validate_append(body):
    """Returns the parameters by name, or raises Problem(400)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Problem(400, "the body must be a FHIR Parameters resource")
    try:
        Parameters.model_validate(body)
    except Exception as e:  # pydantic's ValidationError names every problem
        raise Problem(400, f"Parameters does not validate (fhir.resources R4B): {e}")
    by_name = {}
    for p in body.get("parameter") or []:
        name = p.get("name")
        if name not in APPEND_PARAMETERS:
            raise Problem(400, f"unknown parameter '{name}'")
        by_name.setdefault(name, []).append(p)
    for name, (lo, hi, kind) in APPEND_PARAMETERS.items():
        got = by_name.get(name, [])
        if len(got) < lo:
            raise Problem(400, f"parameter {name} is required ({lo}..{hi or '*'})")
        if hi is not None and len(got) > hi:
            raise Problem(400, f"parameter {name} given {len(got)} times (at most {hi})")
        for p in got:
            if kind in ("Observation", "Device"):
                r = p.get("resource")
                if not isinstance(r, dict) or r.get("resourceType") != kind or any(k.startswith("value") for k in p):
                    raise Problem(400, f"parameter {name} must carry a {kind} resource")
            else:
                keys = [k for k in p if k.startswith("value")]
                if keys != [VALUE_KEY[kind]] or "resource" in p:
                    raise Problem(400, f"parameter {name} must have {VALUE_KEY[kind]} (type {kind}), got {keys or 'none'}")
    one = lambda n: by_name[n][0][VALUE_KEY[APPEND_PARAMETERS[n][2]]] if n in by_name else None  # noqa: E731

    conclusion = one("conclusion")
    codings = conclusion.get("coding") or []
    if len(codings) != 1:
        raise Problem(400, "conclusion: MUST be a single code from the 1000 series")
    code = check_coding_in(conclusion, CONCLUSION_CS, APPEND_CONCLUSIONS, "conclusion (retina-append-ai-conclusion-vs)")
    months = one("monthsUntilNextExamination")
    if code in ("1004", "1005") and months is None:
        raise Problem(400, f"monthsUntilNextExamination must be included when the conclusion is {code}")
    if months is not None and (isinstance(months, bool) or not isinstance(months, int) or months <= 1):
        raise Problem(400, "monthsUntilNextExamination must be a positive integer greater than 1")
    for side in ("left", "right"):
        g = one(f"{side}Gradability")
        if g is not None and g not in GRADABILITY:
            raise Problem(400, f"{side}Gradability: '{g}' is not in retina-ai-gradability-vs")
        dr = one(f"{side}DiabeticRetinopathy")
        if dr is not None and (isinstance(dr, bool) or not isinstance(dr, (int, float)) or not 0.0 <= dr <= 5.0):
            raise Problem(400, f"{side}DiabeticRetinopathy must be a decimal between 0.0 and 5.0")
        dme = one(f"{side}DiabeticMacularEdema")
        if dme is not None and not isinstance(dme, bool):
            raise Problem(400, f"{side}DiabeticMacularEdema must be a boolean")
    for name in ("rightEyeImage", "leftEyeImage"):
        for p in by_name.get(name, []):
            r = p["resource"]
            try:
                Observation.model_validate(r)
            except Exception as e:
                raise Problem(400, f"{name}: Observation does not validate: {e}")
            for banned in ("identifier", "implicitRules", "modifierExtension"):
                if banned in r:
                    raise Problem(400, f"{name}: retina-image-parameter forbids {banned}")
            if any(k.startswith("effective") for k in r):
                raise Problem(400, f"{name}: retina-image-parameter forbids effective[x]")
            codings = (r.get("code") or {}).get("coding") or []
            allowed = {(QUALITY_CS, c) for c in QUALITY} | {(VIEW_CS, c) for c in VIEW}
            if not codings or any((c.get("system"), c.get("code")) not in allowed for c in codings):
                raise Problem(400, f"{name}: code must hold codes from retina-image-parameter-vs (2000 / 6000 series)")
            if sum(c.get("system") == QUALITY_CS for c in codings) > 1 or sum(c.get("system") == VIEW_CS for c in codings) > 1:
                raise Problem(400, f"{name}: at most one image quality and one view coding")
    if "aiDevice" in by_name:
        d = by_name["aiDevice"][0]["resource"]
        try:
            Device.model_validate(d)
        except Exception as e:
            raise Problem(400, f"aiDevice: Device does not validate: {e}")
        if "status" in d or "implicitRules" in d or "modifierExtension" in d:
            raise Problem(400, "aiDevice: retina-ai-device forbids status, implicitRules and modifierExtension")
        names = d.get("deviceName") or []
        if len(names) != 1 or names[0].get("type") != "model-name" or not names[0].get("name"):
            raise Problem(400, "aiDevice: exactly one deviceName of type model-name (the AI product name)")
        versions = d.get("version") or []
        typed = lambda code: [v for v in versions if ((v.get("type") or {}).get("coding") or [{}])[0].get("code") == code]  # noqa: E731
        if len(typed("model-number")) != 1:
            raise Problem(400, "aiDevice: exactly one version of type model-number (the algorithm version)")
        if len(typed("software")) > 1:
            raise Problem(400, "aiDevice: at most one version of type software (the protocol)")
        for v in typed("model-number") + typed("software"):
            t = v.get("type") or {}
            if "text" in t or "extension" in t or "id" in t or not v.get("value"):
                raise Problem(400, "aiDevice: version type has no text/extension/id and a value")
    if "cameraDevice" in by_name:
        d = by_name["cameraDevice"][0]["resource"]
        try:
            Device.model_validate(d)
        except Exception as e:
            raise Problem(400, f"cameraDevice: Device does not validate: {e}")
        if not d.get("serialNumber"):
            raise Problem(400, "cameraDevice: serialNumber is required (retina-camera-device)")
    performed = one("performedDateTime")
    if performed is not None and not DATE_RE.match(performed):
        raise Problem(400, "performedDateTime is not a FHIR dateTime")
    report = one("fullReport")
    if not report.get("contentType") or not report.get("data"):
        raise Problem(400, "fullReport: an Attachment with contentType and data")
    try:
        base64.b64decode(report["data"], validate=True)
    except Exception:
        raise Problem(400, "fullReport.data is not base64")
    return by_name, code


class Handler(BaseHTTPRequestHandler):
    server_version = "dips-standin/0.9.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; stderr stays for tracebacks
        pass

    def send_json(self, status, body=None, content_type="application/fhir+json"):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorised(self):
        state = self.server.state
        if state.token is None or self.headers.get("Authorization") == f"Bearer {state.token}":
            return True
        self.send_json(401, outcome("missing or wrong bearer token", "login"))
        return False

    def do_GET(self):
        url = urlsplit(self.path)
        state = self.server.state
        if url.path == "/_test/appends":
            with state.lock:
                return self.send_json(200, state.appends, "application/json")
        if url.path == "/_test/searches":
            with state.lock:
                return self.send_json(200, {"searches": state.searches}, "application/json")
        if not self.authorised():
            return
        if url.path != "/DiagnosticReport/$retina-by-date":
            return self.send_json(404, outcome(f"no such endpoint {url.path}", "not-found"))
        try:
            q = parse_qs(url.query, keep_blank_values=True)
            for name in q:
                if name not in ("start", "end", "pendingAI", "_include"):
                    raise Problem(400, f"unknown parameter {name}")
                if len(q[name]) > 1:
                    raise Problem(400, f"parameter {name} given more than once")
            start = parse_datetime(q["start"][0], "start") if "start" in q else None
            end = parse_datetime(q["end"][0], "end", end=True) if "end" in q else None
            pending_only = False
            if "pendingAI" in q:
                v = q["pendingAI"][0]
                if v not in ("", "true", "false"):
                    raise Problem(400, f"pendingAI: '{v}' is not a boolean")
                pending_only = v in ("", "true")
            if "_include" in q and q["_include"][0] != "DiagnosticReport:result":
                raise Problem(400, f"_include: '{q['_include'][0]}' is not supported")
        except Problem as p:
            return self.send_json(p.status, outcome(p.text, p.code))
        entries = []
        with state.lock:
            for e in state.exams.values():
                when = parse_datetime(e["date"], "date")
                if (start and when < start) or (end and when >= end) or (pending_only and not e["pending"]):
                    continue
                entries.append({"fullUrl": f"DiagnosticReport/{e['report_id']}", "resource": strip_none(report_resource(e)), "search": {"mode": "match"}})
                if e["sectra_study_id"]:
                    entries.append({"fullUrl": f"ImagingStudy/study-{e['report_id']}", "resource": study_resource(e), "search": {"mode": "include"}})
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": sum(x["search"]["mode"] == "match" for x in entries), "entry": entries}
        Bundle.model_validate(bundle)
        with state.lock:
            state.searches += 1
        self.send_json(200, bundle)

    def do_POST(self):
        url = urlsplit(self.path)
        state = self.server.state
        m = re.fullmatch(r"/DiagnosticReport/([A-Za-z0-9\-\.]{1,64})/\$append-retina-ai-result", url.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.send_json(413, outcome("body too large", "too-long"))
        raw = self.rfile.read(length)
        if not self.authorised():
            return
        if not m:
            return self.send_json(404, outcome(f"no such endpoint {url.path}", "not-found"))
        report_id = m.group(1)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with state.lock:
            e = state.exams.get(report_id)
            status, problem = None, None
            if e is None:
                status, problem = 404, outcome(f"no DiagnosticReport {report_id}", "not-found")
            elif e["fail_first"]:
                status = e["fail_first"].pop(0)
                problem = outcome(f"injected failure {status}", "transient")
            else:
                try:
                    if body is None:
                        raise Problem(400, "the body is not JSON")
                    by_name, code = validate_append(body)
                    sectra = by_name["sectraStudyId"][0]["valueString"] if "sectraStudyId" in by_name else None
                    if not e["pending"]:
                        raise Problem(409, f"DiagnosticReport {report_id} already has a grading", "conflict")
                    other = [x for x in state.exams.values() if x is not e and sectra and x["sectra_study_id"] == sectra]
                    if other:
                        raise Problem(409, f"sectraStudyId {sectra} is linked to another examination", "conflict")
                    if e["reject422"]:
                        raise Problem(422, "business rule broken (configured for this examination)", "business-rule")
                    e["pending"], e["result"] = False, code
                    status = 204
                except Problem as p:
                    status, problem = p.status, outcome(p.text, p.code)
            state.appends.append({"report_id": report_id, "status": status, "body": body})
        self.send_json(status, problem)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None)
    ap.add_argument("--examinations", default=None)
    args = ap.parse_args()
    examinations = []
    if args.examinations:
        with open(args.examinations, encoding="utf-8") as f:
            examinations = json.load(f)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(examinations, args.token)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
