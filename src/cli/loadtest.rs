//! `drscreen loadtest`: a closed-loop load generator a hospital can point at any drscreen.
//! N workers post images from a folder to `/v1/grade` back to back, after a warm-up that
//! is not counted; it stops after the duration or request count. Reports requests/s,
//! images/s, latency percentiles from an HDR histogram, errors by status, and the
//! server's own queue/preprocess/inference split from the timing headers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::sync::Mutex;

#[derive(Args)]
pub struct LoadtestArgs {
    /// Base URL of the drscreen service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Folder of JPEG/PNG/TIFF images to send (cycled).
    #[arg(long, default_value = "fixtures")]
    pub images: PathBuf,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measurement duration in seconds (ignored when --requests is set).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Stop after this many measured requests instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// API key with the device role.
    #[arg(long, env = "DRSCREEN_API_KEY")]
    pub key: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Tally {
    latency: Option<hdrhistogram::Histogram<u64>>,
    /// Latency of refused (503) answers alone: how fast overload is signalled.
    rejected: Option<hdrhistogram::Histogram<u64>>,
    statuses: BTreeMap<String, u64>,
    server_ms: [f64; 3],
    with_timings: u64,
}

fn load_images(dir: &PathBuf) -> anyhow::Result<Vec<(bytes::Bytes, &'static str)>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let media = match p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jpg" | "jpeg") => "image/jpeg",
            Some("png") => "image/png",
            Some("tif" | "tiff") => "image/tiff",
            _ => continue,
        };
        out.push((bytes::Bytes::from(std::fs::read(&p)?), media));
    }
    anyhow::ensure!(!out.is_empty(), "no images in {}", dir.display());
    Ok(out)
}

pub fn run(args: LoadtestArgs) -> anyhow::Result<ExitCode> {
    let images = Arc::new(load_images(&args.images)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = runtime.block_on(drive(args.url.trim_end_matches('/').to_string(), args.key.clone(), images, &args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let s = &summary;
        println!(
            "{} requests in {:.1} s: {:.1} requests/s, {:.1} images/s",
            s["requests"],
            s["seconds"].as_f64().unwrap_or(0.0),
            s["requests_per_s"].as_f64().unwrap_or(0.0),
            s["images_per_s"].as_f64().unwrap_or(0.0)
        );
        println!(
            "latency ms: p50 {} p90 {} p99 {} max {}",
            s["latency_ms"]["p50"], s["latency_ms"]["p90"], s["latency_ms"]["p99"], s["latency_ms"]["max"]
        );
        println!("statuses: {}", s["statuses"]);
        println!("server split ms (mean): {}", s["server_ms_mean"]);
        if !s["rejected_latency_ms"].is_null() {
            println!("503 answers ms: {}", s["rejected_latency_ms"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn drive(
    url: String,
    key: String,
    images: Arc<Vec<(bytes::Bytes, &'static str)>>,
    args: &LoadtestArgs,
) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let endpoint = format!("{url}/v1/grade");
    let warm_until = Instant::now() + Duration::from_secs(args.warmup);
    let stop_at = warm_until + Duration::from_secs(args.duration);
    let tally = Arc::new(Mutex::new(Tally {
        latency: Some(hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)?),
        rejected: Some(hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)?),
        ..Default::default()
    }));
    let counter = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(AtomicU64::new(0));
    let limit = args.requests;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, endpoint, key, images, tally, counter, measured) =
            (client.clone(), endpoint.clone(), key.clone(), images.clone(), tally.clone(), counter.clone(), measured.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let now = Instant::now();
                let warming = now < warm_until;
                if !warming && (limit.is_none() && now >= stop_at) {
                    break;
                }
                if !warming
                    && let Some(n) = limit
                    && measured.fetch_add(1, Ordering::AcqRel) >= n
                {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed) as usize % images.len();
                let (body, media) = images[i].clone();
                let started = Instant::now();
                let result = client.post(&endpoint).bearer_auth(&key).header("content-type", media).body(body).send().await;
                let (status, timings) = match result {
                    Ok(r) => {
                        let header = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
                        let t = [header("x-drscreen-queue-ms"), header("x-drscreen-preprocess-ms"), header("x-drscreen-inference-ms")];
                        let status = r.status().as_u16().to_string();
                        let _ = r.bytes().await;
                        (status, t)
                    }
                    Err(e) => (if e.is_timeout() { "timeout".into() } else { "connection_error".into() }, [None; 3]),
                };
                let micros = started.elapsed().as_micros().max(1) as u64;
                if warming {
                    continue;
                }
                let mut t = tally.lock().await;
                if let Some(h) = t.latency.as_mut() {
                    let _ = h.record(micros);
                }
                if status == "503"
                    && let Some(h) = t.rejected.as_mut()
                {
                    let _ = h.record(micros);
                }
                *t.statuses.entry(status).or_default() += 1;
                if let [Some(q), Some(p), Some(inf)] = timings {
                    t.server_ms[0] += q;
                    t.server_ms[1] += p;
                    t.server_ms[2] += inf;
                    t.with_timings += 1;
                }
            }
        }));
    }
    let measure_start = warm_until;
    for w in workers {
        w.await?;
    }
    let seconds = measure_start.elapsed().as_secs_f64().max(1e-9);
    let t = tally.lock().await;
    let h = t.latency.as_ref().context("histogram")?;
    let requests = h.len();
    let ok = t.statuses.get("200").copied().unwrap_or(0);
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let n = t.with_timings.max(1) as f64;
    let rejected = t.rejected.as_ref().context("histogram")?;
    let rejected_ms = (!rejected.is_empty()).then(|| {
        serde_json::json!({"count": rejected.len(), "p50": rejected.value_at_quantile(0.5) as f64 / 1000.0,
                           "p99": rejected.value_at_quantile(0.99) as f64 / 1000.0, "max": rejected.max() as f64 / 1000.0})
    });
    Ok(serde_json::json!({
        "url": url, "concurrency": args.concurrency, "seconds": seconds, "requests": requests,
        "requests_per_s": requests as f64 / seconds, "images_per_s": ok as f64 / seconds,
        "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": h.max() as f64 / 1000.0},
        "statuses": t.statuses,
        "rejected_latency_ms": rejected_ms,
        "server_ms_mean": {"queue": t.server_ms[0] / n, "preprocess": t.server_ms[1] / n, "inference": t.server_ms[2] / n},
    }))
}
