//! The KServe v2 / Open Inference Protocol edge against a real `drscreen serve` process:
//! binary and JSON tensors, encoded images through the full pipeline, and Triton's own
//! Python client; metadata, health and errors in-process through the router. Expected values come from the in-process
//! engine over the same committed model.

mod common;

use serde_json::{Value, json};

const SIDE: usize = 512;
const PER_IMAGE: usize = 3 * SIDE * SIDE;
const TOLERANCE: f32 = 1e-4;

/// The normalised CHW tensor the engine would build for a fixture.
fn tensor(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(common::fixture(name)).unwrap();
    let pre = common::screener().engine.preprocessor();
    let rgb = pre.prepare(&bytes).unwrap().rgb;
    let mut slot = vec![0.0f32; PER_IMAGE];
    pre.normaliser.fill_chw(&rgb, &mut slot);
    slot
}

/// The in-process engine's outputs for a fixture, flattened per output name.
fn expected(name: &str) -> Vec<(&'static str, Vec<f32>)> {
    let bytes = std::fs::read(common::fixture(name)).unwrap();
    let o = common::screener().engine.score_blocking(bytes).unwrap().outputs;
    vec![
        ("dr_logits", o.dr_logits.to_vec()),
        ("dme_logit", vec![o.dme_logit]),
        ("gradable_logit", vec![o.gradable_logit]),
        ("referable_cam", o.cam.clone()),
    ]
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// POSTs a binary-extension request: JSON header followed by `tail`. No Content-Type,
/// as Triton's client sends none.
fn post_binary(url: &str, key: &str, header: &Value, tail: &[u8]) -> reqwest::blocking::Response {
    let mut body = serde_json::to_vec(header).unwrap();
    let header_length = body.len();
    body.extend_from_slice(tail);
    common::http()
        .post(url)
        .bearer_auth(key)
        .header("Inference-Header-Content-Length", header_length.to_string())
        .body(body)
        .send()
        .unwrap()
}

/// Parsed response: header JSON plus each output's values (decoded from binary or JSON).
struct Decoded {
    header: Value,
    fp32: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    bytes: std::collections::HashMap<String, Vec<Vec<u8>>>,
}

fn decode(response: reqwest::blocking::Response) -> Decoded {
    let status = response.status();
    let header_length = response.headers().get("inference-header-content-length").map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
    let body = response.bytes().unwrap();
    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
    let split = header_length.unwrap_or(body.len());
    let header: Value = serde_json::from_slice(&body[..split]).unwrap();
    let mut tail = &body[split..];
    let mut fp32 = std::collections::HashMap::new();
    let mut bytes = std::collections::HashMap::new();
    for out in header["outputs"].as_array().unwrap() {
        let name = out["name"].as_str().unwrap().to_string();
        let shape: Vec<usize> = out["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let datatype = out["datatype"].as_str().unwrap();
        if let Some(size) = out["parameters"]["binary_data_size"].as_u64() {
            let (raw, rest) = tail.split_at(size as usize);
            tail = rest;
            if datatype == "FP32" {
                let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                fp32.insert(name, (shape, values));
            } else {
                let mut elements = Vec::new();
                let mut raw = raw;
                while !raw.is_empty() {
                    let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
                    elements.push(raw[4..4 + len].to_vec());
                    raw = &raw[4 + len..];
                }
                bytes.insert(name, elements);
            }
        } else if datatype == "FP32" {
            let values = out["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            fp32.insert(name, (shape, values));
        } else {
            let elements = out["data"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().as_bytes().to_vec()).collect();
            bytes.insert(name, elements);
        }
    }
    assert!(tail.is_empty(), "{} unread bytes after the declared outputs", tail.len());
    Decoded { header, fp32, bytes }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOLERANCE, "{what}[{i}]: server {g} vs in-process {w}");
    }
}

/// Checks a batch's outputs against the in-process engine, image by image.
fn assert_matches(decoded: &Decoded, fixtures: &[&str]) {
    let n = fixtures.len();
    let cam = common::screener().engine.model().cam_shape;
    for (i, fixture) in fixtures.iter().enumerate() {
        for (name, want) in expected(fixture) {
            let (shape, values) = &decoded.fp32[name];
            let per = want.len();
            let expected_shape = match name {
                "dr_logits" => vec![n, 5],
                "referable_cam" => vec![n, 1, cam.0, cam.1],
                _ => vec![n, 1],
            };
            assert_eq!(shape, &expected_shape, "{name} shape");
            assert_close(&format!("{fixture} {name}"), &values[i * per..(i + 1) * per], &want);
        }
    }
}

const INFER: &str = "/v2/models/dr-synth/infer";

fn infer_url(server: &common::Server) -> String {
    format!("{}{INFER}", server.url)
}

#[test]
fn binary_tensor_batch_matches_the_in_process_engine() {
    let server = common::Server::start(&[]);
    let key = server.key("device");
    let fixtures = ["grade0_R.jpg", "grade4_L.jpg"];
    let mut batch = Vec::with_capacity(2 * PER_IMAGE);
    for f in fixtures {
        batch.extend(tensor(f));
    }
    let tail = le_bytes(&batch);
    let outputs =
        ["dr_logits", "dme_logit", "gradable_logit", "referable_cam"].map(|n| json!({"name": n, "parameters": {"binary_data": true}}));
    let header = json!({
        "id": "round-trip-1",
        "inputs": [{"name": "image", "shape": [2, 3, SIDE, SIDE], "datatype": "FP32", "parameters": {"binary_data_size": tail.len()}}],
        "outputs": outputs,
    });
    let response = post_binary(&infer_url(&server), &key, &header, &tail);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    let decoded = decode(response);
    assert_eq!(decoded.header["model_name"], "dr-synth");
    assert_eq!(decoded.header["model_version"], common::package().manifest.version.as_str());
    assert_eq!(decoded.header["id"], "round-trip-1");
    assert_eq!(decoded.fp32.len(), 4);
    assert_matches(&decoded, &fixtures);

    // The versioned route and top-level binary_data_output behave the same; a request for
    // a subset returns only that subset.
    let header = json!({
        "inputs": [{"name": "image", "shape": [1, 3, SIDE, SIDE], "datatype": "FP32", "parameters": {"binary_data_size": PER_IMAGE * 4}}],
        "outputs": [{"name": "dr_logits"}],
        "parameters": {"binary_data_output": true},
    });
    let url = format!("{}/v2/models/dr-synth/versions/{}/infer", server.url, common::package().manifest.version);
    let decoded = decode(post_binary(&url, &key, &header, &le_bytes(&batch[..PER_IMAGE])));
    assert_eq!(decoded.fp32.keys().collect::<Vec<_>>(), vec!["dr_logits"]);
    assert!(decoded.header["outputs"][0]["parameters"]["binary_data_size"].as_u64() == Some(20));
    assert_close("versioned dr_logits", &decoded.fp32["dr_logits"].1, &expected(fixtures[0])[0].1);

    // A declared size that disagrees with the bytes sent is a 400 with a code.
    let header = json!({
        "inputs": [{"name": "image", "shape": [2, 3, SIDE, SIDE], "datatype": "FP32", "parameters": {"binary_data_size": PER_IMAGE * 4}}],
    });
    let response = post_binary(&infer_url(&server), &key, &header, &le_bytes(&batch[..PER_IMAGE]));
    assert_eq!(response.status(), 400);
    let body: Value = response.json().unwrap();
    assert_eq!(body["code"], "invalid_tensor", "{body}");
}

#[test]
fn json_tensor_request_returns_json_outputs_of_the_declared_shapes() {
    let server = common::Server::start(&[]);
    let key = server.key("device");
    let image = tensor("grade2_R.jpg");
    let request = json!({
        "inputs": [{"name": "image", "shape": [1, 3, SIDE, SIDE], "datatype": "FP32", "data": image}],
    });
    let response = common::http().post(infer_url(&server)).bearer_auth(&key).json(&request).send().unwrap();
    assert!(response.headers().get("inference-header-content-length").is_none());
    assert_eq!(response.headers()["content-type"], "application/json");
    let decoded = decode(response);
    let names: Vec<&str> = decoded.header["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dr_logits", "dme_logit", "gradable_logit", "referable_cam"]);
    assert!(decoded.header.get("id").is_none());
    assert_matches(&decoded, &["grade2_R.jpg"]);

    // Nested data is accepted; a shape that disagrees with the data is a 400.
    let nested: Vec<Vec<f32>> = image.chunks(SIDE).map(<[f32]>::to_vec).collect();
    let request = json!({"inputs": [{"name": "image", "shape": [1, 3, SIDE, SIDE], "datatype": "FP32", "data": nested}],
                         "outputs": [{"name": "gradable_logit"}]});
    let decoded = decode(common::http().post(infer_url(&server)).bearer_auth(&key).json(&request).send().unwrap());
    assert_close("nested gradable_logit", &decoded.fp32["gradable_logit"].1, &expected("grade2_R.jpg")[2].1);
    for (shape, data) in [(json!([1, 3, 256, 256]), json!(&image[..3 * 256 * 256])), (json!([2, 3, SIDE, SIDE]), json!(image))] {
        let request = json!({"inputs": [{"name": "image", "shape": shape, "datatype": "FP32", "data": data}]});
        let response = common::http().post(infer_url(&server)).bearer_auth(&key).json(&request).send().unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().unwrap()["code"], "invalid_tensor");
    }
}

/// BYTES elements, each prefixed by its 4-byte little-endian length.
fn bytes_tensor(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

#[test]
fn image_bytes_run_the_full_pipeline_and_return_findings() {
    let server = common::Server::start(&[]);
    let key = server.key("device");
    let fixtures = ["grade1_L.jpg", "grade3_R.jpg"];
    let images: Vec<Vec<u8>> = fixtures.iter().map(|f| std::fs::read(common::fixture(f)).unwrap()).collect();
    let tail = bytes_tensor(&images);
    let header = json!({
        "inputs": [{"name": "image_bytes", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": tail.len()}}],
        "parameters": {"binary_data_output": true},
    });
    let decoded = decode(post_binary(&infer_url(&server), &key, &header, &tail));
    let findings = &decoded.bytes["finding"];
    assert_eq!(findings.len(), 2);
    let sha = &common::package().manifest.file.sha256;
    for raw in findings {
        let finding: Value = serde_json::from_slice(raw).unwrap();
        assert!(finding["quality"]["gradable"].is_boolean(), "{finding}");
        assert_eq!(finding["model"]["sha256"].as_str().unwrap(), sha.as_str());
    }
    assert_eq!(decoded.header["outputs"][4]["shape"], json!([2]));
    assert_matches(&decoded, &fixtures);

    // A text file is not an image: a 4xx JSON error carrying the image's error code.
    let tail = bytes_tensor(&[std::fs::read(common::root().join("Cargo.toml")).unwrap()]);
    let header = json!({
        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": tail.len()}}],
    });
    let response = post_binary(&infer_url(&server), &key, &header, &tail);
    assert!(response.status().is_client_error(), "{}", response.status());
    let body: Value = response.json().unwrap();
    assert!(body["code"].as_str().is_some_and(|c| !c.is_empty()) && body["error"].is_string(), "{body}");

    // image_bytes as JSON data is refused with a message that points at the binary form,
    // and `finding` cannot be asked of a tensor input.
    let request = json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["not an image"]}]});
    let response = common::http().post(infer_url(&server)).bearer_auth(&key).json(&request).send().unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().unwrap()["error"].as_str().unwrap().contains("binary"));
    let header = json!({
        "inputs": [{"name": "image", "shape": [1, 3, SIDE, SIDE], "datatype": "FP32", "parameters": {"binary_data_size": PER_IMAGE * 4}}],
        "outputs": [{"name": "finding"}],
    });
    let response = post_binary(&infer_url(&server), &key, &header, &le_bytes(&vec![0.0; PER_IMAGE]));
    assert_eq!(response.status(), 400);
}

/// Routing, metadata, auth and errors need no process: in-process through the router.
#[test]
fn metadata_health_and_errors() {
    use common::Api;
    let app = common::App::new();
    let key = app.key("device");
    let get = |path: &str, key: Option<&str>| common::get(&app, path, key);
    let post = |path: &str, key: Option<&str>, body: &str| {
        app.send(common::request(axum::http::Method::POST, path, key).body(body.as_bytes().to_vec()).unwrap())
    };
    for path in ["/v2/health/live", "/v2/health/ready", "/v2/models/dr-synth/ready"] {
        assert_eq!(get(path, None).status, 200, "{path}");
    }
    let server_meta: Value = get("/v2", Some(&key)).json();
    assert_eq!(server_meta["name"], "drscreen");
    assert_eq!(server_meta["extensions"], json!(["binary_tensor_data"]));

    let manifest = &common::package().manifest;
    let meta: Value = get("/v2/models/dr-synth", Some(&key)).json();
    assert_eq!(meta["name"], "dr-synth");
    assert_eq!(meta["versions"], json!([manifest.version]));
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    assert_eq!(meta["inputs"][0], json!({"name": "image", "datatype": "FP32", "shape": [-1, 3, 512, 512]}));
    assert_eq!(meta["inputs"][1], json!({"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}));
    let outputs: Vec<(String, Value)> =
        meta["outputs"].as_array().unwrap().iter().map(|o| (o["name"].as_str().unwrap().to_string(), o["shape"].clone())).collect();
    assert_eq!(
        outputs,
        vec![
            ("dr_logits".into(), json!([-1, 5])),
            ("dme_logit".into(), json!([-1, 1])),
            ("gradable_logit".into(), json!([-1, 1])),
            ("referable_cam".into(), json!([-1, 1, 16, 16])),
            ("finding".into(), json!([-1])),
        ]
    );
    let versioned: Value = get(&format!("/v2/models/dr-synth/versions/{}", manifest.version), Some(&key)).json();
    assert_eq!(versioned, meta);

    for path in ["/v2/models/nope", "/v2/models/dr-synth/versions/9.9.9", "/v2/models/nope/ready"] {
        let response = get(path, Some(&key));
        assert_eq!(response.status, 404, "{path}");
        assert!(response.json()["code"].is_string());
    }
    let response = post("/v2/models/nope/infer", Some(&key), "{}");
    assert_eq!(response.status, 404);

    // Metadata and inference need a key; a malformed request with a key is a JSON 400.
    assert_eq!(get("/v2/models/dr-synth", None).status, 401);
    let response = post(INFER, None, r#"{"inputs": []}"#);
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["code"], "unauthenticated");
    let response = post(INFER, Some(&key), "not json");
    assert_eq!(response.status, 400);
    assert!(response.json()["error"].is_string());
}

#[test]
fn tritons_python_client_gets_the_in_process_results() {
    let server = common::Server::start(&[]);
    let key = server.key("device");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.f32");
    std::fs::write(&input, le_bytes(&tensor("dme_R.jpg"))).unwrap();
    let out = std::process::Command::new("python3")
        .arg(common::root().join("tests/peers/triton_client.py"))
        .arg(&server.url)
        .arg(&key)
        .arg(&input)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "Triton's Python client failed (CI must install it: python3 -m pip install \"tritonclient[http]==2.73.0\"):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["live"], true);
    assert_eq!(result["metadata"]["name"], "dr-synth");
    let cam = common::screener().engine.model().cam_shape;
    for (name, want) in expected("dme_R.jpg") {
        let output = &result["outputs"][name];
        let got: Vec<f32> = output["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let shape = match name {
            "dr_logits" => json!([1, 5]),
            "referable_cam" => json!([1, 1, cam.0, cam.1]),
            _ => json!([1, 1]),
        };
        assert_eq!(output["shape"], shape, "{name}");
        assert_close(&format!("triton {name}"), &got, &want);
    }
}
