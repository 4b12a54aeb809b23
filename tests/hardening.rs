//! A hostile client and a broken PACS against a real server process: every input has a
//! limit, every wait a timeout, and the refusals are the documented JSON errors or DICOM
//! statuses. Each test here failed before its fix (issue 18).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, fixture, http};
use reqwest::blocking::multipart::{Form, Part};

/// Reads what the server sends until it closes the connection (or `limit` passes,
/// which fails the test: the server must not hold a connection it should drop).
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server held the connection for {:?}: {e}", started.elapsed()),
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn connect(url: &str) -> TcpStream {
    TcpStream::connect(url.trim_start_matches("http://")).unwrap()
}

#[test]
fn slow_and_lying_http_clients_are_cut_off() {
    let server = Server::start(&[
        "--http-header-read-secs",
        "1",
        "--http-body-idle-secs",
        "1",
        "--http-min-body-bytes-per-sec",
        "1000",
        "--dicom-enabled",
        "false",
    ]);
    let key = server.key("device");

    // Half-sent headers: closed after the header read timeout.
    let mut s = connect(&server.url);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A 10 GB Content-Length with 10 bytes behind it: 413 at once, not a wait.
    let mut s = connect(&server.url);
    let head = format!(
        "POST /v1/grade HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: image/jpeg\r\nContent-Length: 10000000000\r\n\r\n0123456789"
    );
    s.write_all(head.as_bytes()).unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // A body that stalls: 408 with the JSON error once it has been idle too long.
    let mut s = connect(&server.url);
    let head = format!(
        "POST /v1/grade HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&[0xFF, 0xD8, 0xFF]).unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    // A body that trickles 10 bytes every 300 ms (never idle long enough for the idle
    // timeout): 408 once its average falls under 1000 bytes/s after the 1 s grace.
    let mut s = connect(&server.url);
    let head = format!(
        "POST /v1/grade HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut first = Vec::new();
    for _ in 0..60 {
        if s.write_all(b"0123456789").is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(n) => {
                first.extend_from_slice(&buf[..n]);
                break;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let answer = String::from_utf8_lossy(&first).to_string() + &read_until_closed(&mut s, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_too_slow"), "{answer}");

    // The server still answers.
    assert_eq!(http().get(format!("{}/readyz", server.url)).send().unwrap().status(), 200);
}

#[test]
fn open_connections_are_capped() {
    let server = Server::start(&["--http-max-connections", "3", "--dicom-enabled", "false"]);
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&server.url)).collect();
    // Give the accept loop time to take the three slots.
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = connect(&server.url);
    extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").ok();
    assert_eq!(read_until_closed(&mut extra, Duration::from_secs(10)), "", "the fourth connection is closed unanswered");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http().get(format!("{}/healthz", server.url)).send().unwrap().status(), 200);
}

fn exam(parts: Vec<(&str, Part)>) -> Form {
    parts.into_iter().fold(Form::new(), |f, (name, part)| f.part(name.to_string(), part))
}

fn image_part(name: &str, mime: &str) -> Part {
    Part::bytes(std::fs::read(fixture(name)).unwrap()).file_name(name.to_string()).mime_str(mime).unwrap()
}

fn metadata(json: &str) -> Part {
    Part::text(json.to_string()).mime_str("application/json").unwrap()
}

#[test]
fn exam_inputs_are_bounded_and_images_are_served_as_what_they_are() {
    let server = Server::start(&["--max-images-per-exam", "4", "--dicom-enabled", "false"]);
    let key = server.key("device");
    let c = http();
    let post = |form: Form| c.post(format!("{}/v1/exams", server.url)).bearer_auth(&key).multipart(form).send().unwrap();
    let code = |r: reqwest::blocking::Response| -> (u16, String) {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap();
        (status, body["code"].as_str().unwrap_or_default().to_string())
    };

    // Five images where four are allowed.
    let five = (0..5).map(|_| ("right", image_part("grade0_R.jpg", "image/jpeg"))).collect();
    assert_eq!(code(post(exam(five))), (400, "too_many_images".into()));

    // References: too long, or with control or direction-override characters.
    for bad in [format!("\"{}\"", "P".repeat(300)), "\"P\\u0000X\"".into(), "\"P\\u001b[31mX\"".into(), "\"P\\u202eX\"".into()] {
        let form =
            exam(vec![("right", image_part("grade0_R.jpg", "image/jpeg")), ("metadata", metadata(&format!("{{\"patient_ref\":{bad}}}")))]);
        assert_eq!(code(post(form)), (400, "invalid_metadata".into()), "{bad}");
    }

    // A JPEG uploaded as text/html is served back as image/jpeg, never sniffed.
    let form = exam(vec![("right", image_part("grade0_R.jpg", "text/html"))]);
    let r = post(form);
    assert_eq!(r.status(), 201);
    let stored: serde_json::Value = r.json().unwrap();
    let image = stored["image_ids"][0].as_str().unwrap();
    let r = c.get(format!("{}/v1/images/{image}", server.url)).bearer_auth(&key).send().unwrap();
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // Query-string errors are the JSON error shape.
    let r = c.get(format!("{}/v1/exams?limit=-1", server.url)).bearer_auth(&key).send().unwrap();
    assert_eq!(code(r), (400, "invalid_query".into()));
}

#[test]
fn silent_dicom_connections_are_closed_and_capped_per_host() {
    let server = Server::start(&["--dicom-artim-timeout-secs", "1", "--dicom-max-connections-per-host", "2"]);
    let addr = format!("127.0.0.1:{}", server.dicom_port.unwrap());
    // Two silent connections take this host's slots; a third is closed at once.
    let mut silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(&addr).unwrap();
    assert_eq!(read_until_closed(&mut third, Duration::from_secs(5)), "");
    // No A-ASSOCIATE-RQ within the ARTIM time: both are closed.
    for s in &mut silent {
        read_until_closed(s, Duration::from_secs(20));
    }
    // And a real peer associates again.
    let o = std::process::Command::new("echoscu")
        .args(["-aec", "DRSCREEN", "127.0.0.1", &server.dicom_port.unwrap().to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
