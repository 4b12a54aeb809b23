//! Service metrics, recorded where the work happens (the service's own calls), so every
//! edge is counted: images by gradability, queue/preprocess/inference/total latency
//! histograms, and stored exams by outcome and by the channel they arrived through
//! (HTTP upload, STOW-RS, DICOM C-STORE). Rendered in the Prometheus text exposition
//! format together with the engine's gauges; the HTTP edge adds its request counters
//! and only serves the text. Hand-rolled: a few atomics and maps.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::{Engine, Timings};
use crate::grading::{ExamOutcome, ExamResult};

/// How an exam reached drscreen (the `channel` label of the exam counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    /// `POST /v1/exams`.
    Http,
    /// A study whose instances all came by STOW-RS.
    Stow,
    /// A study with instances received by DICOM C-STORE.
    Dicom,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Stow => "stow",
            Self::Dicom => "dicom",
        }
    }
}

const LATENCY_BUCKETS_MS: [f64; 14] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0];

struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    fn observe(&self, ms: f64) {
        for (bound, count) in LATENCY_BUCKETS_MS.iter().zip(&self.counts) {
            if ms <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in LATENCY_BUCKETS_MS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {}", bound / 1000.0, count.load(Ordering::Relaxed));
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Counters and histograms of the screening work.
pub struct ServiceMetrics {
    outcomes: Mutex<BTreeMap<ExamOutcome, u64>>,
    exams_by_channel: Mutex<BTreeMap<Channel, u64>>,
    ungradable_images: AtomicU64,
    queue: Histogram,
    preprocess: Histogram,
    inference: Histogram,
    total: Histogram,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self {
            outcomes: Mutex::default(),
            exams_by_channel: Mutex::default(),
            ungradable_images: AtomicU64::new(0),
            queue: Histogram::new(),
            preprocess: Histogram::new(),
            inference: Histogram::new(),
            total: Histogram::new(),
        }
    }
}

impl ServiceMetrics {
    /// One graded image.
    pub fn observe_image(&self, t: &Timings, gradable: bool) {
        self.queue.observe(t.queue);
        self.preprocess.observe(t.preprocess);
        self.inference.observe(t.inference);
        self.total.observe(t.total);
        if !gradable {
            self.ungradable_images.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One stored exam and its images.
    pub fn observe_exam(&self, channel: Channel, result: &ExamResult) {
        for image in &result.images {
            self.observe_image(&image.timings_ms, image.quality.gradable);
        }
        if let Ok(mut m) = self.outcomes.lock() {
            *m.entry(result.outcome).or_default() += 1;
        }
        if let Ok(mut m) = self.exams_by_channel.lock() {
            *m.entry(channel).or_default() += 1;
        }
    }

    /// The exposition text of these metrics and the engine's.
    pub fn render(&self, engine: &Engine) -> String {
        let mut out = String::new();
        render_engine(&mut out, engine);
        self.queue.render(&mut out, "drscreen_queue_seconds", "Time waiting for a worker and a batch.");
        self.preprocess.render(&mut out, "drscreen_preprocess_seconds", "Decode, crop, resize and quality measures.");
        self.inference.render(&mut out, "drscreen_inference_seconds", "Model run of the image's batch.");
        self.total.render(&mut out, "drscreen_total_seconds", "Admission to answer.");
        out.push_str("# HELP drscreen_exam_outcomes_total Stored exams by outcome.\n# TYPE drscreen_exam_outcomes_total counter\n");
        if let Ok(m) = self.outcomes.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(out, "drscreen_exam_outcomes_total{{outcome=\"{}\"}} {n}", outcome.as_str());
            }
        }
        out.push_str(
            "# HELP drscreen_exams_total Stored exams by the channel they arrived through.\n# TYPE drscreen_exams_total counter\n",
        );
        if let Ok(m) = self.exams_by_channel.lock() {
            for (channel, n) in m.iter() {
                let _ = writeln!(out, "drscreen_exams_total{{channel=\"{}\"}} {n}", channel.as_str());
            }
        }
        let _ = writeln!(
            out,
            "# HELP drscreen_ungradable_images_total Images judged ungradable.\n# TYPE drscreen_ungradable_images_total counter\ndrscreen_ungradable_images_total {}",
            self.ungradable_images.load(Ordering::Relaxed)
        );
        out
    }
}

/// Queue depth, refusals and batch sizes, read from the engine's own counters.
fn render_engine(out: &mut String, engine: &Engine) {
    let stats = engine.stats();
    let _ = writeln!(
        out,
        "# HELP drscreen_queue_depth Images admitted and not yet answered.\n# TYPE drscreen_queue_depth gauge\ndrscreen_queue_depth {}",
        engine.in_flight()
    );
    let _ = writeln!(
        out,
        "# HELP drscreen_rejected_total Requests refused because the queue was full.\n# TYPE drscreen_rejected_total counter\ndrscreen_rejected_total {}",
        stats.rejected.load(Ordering::Relaxed)
    );
    out.push_str("# HELP drscreen_batch_size Images per inference batch.\n# TYPE drscreen_batch_size histogram\n");
    let (mut cumulative, mut sum) = (0u64, 0u64);
    for (size, count) in stats.batch_size_counts.iter().enumerate().skip(1) {
        let c = count.load(Ordering::Relaxed);
        cumulative += c;
        sum += c * size as u64;
        let _ = writeln!(out, "drscreen_batch_size_bucket{{le=\"{size}\"}} {cumulative}");
    }
    let _ = writeln!(
        out,
        "drscreen_batch_size_bucket{{le=\"+Inf\"}} {cumulative}\ndrscreen_batch_size_sum {sum}\ndrscreen_batch_size_count {cumulative}"
    );
}
