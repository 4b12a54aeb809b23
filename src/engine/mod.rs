//! The batched inference engine: admission control, parallel preprocessing, and one
//! inference thread that owns the ONNX Runtime session and forms dynamic batches.
//!
//! A request is admitted only while fewer than `queue_capacity` requests are in flight
//! (otherwise `EngineError::QueueFull` at once, which the HTTP edge turns into 503).
//! Admitted bytes are preprocessed on a rayon pool; the prepared image then waits in a
//! queue that the inference thread drains with Triton's dynamic-batching semantics (up to
//! `max_batch` images, waiting at most `max_queue_delay` after the first one). Requests
//! whose caller has gone (dropped receiver) are skipped before preprocessing and again
//! before compute. Each reply travels on its own oneshot channel and carries queue,
//! preprocessing and inference times.

mod batcher;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::model::{ModelError, ModelIdentity, ModelPackage, ModelSession, RuntimeOptions, Thresholds};
use crate::preprocess::{DecodeLimits, Prepared, PreprocessError, Preprocessor};

/// Batching and admission settings (Triton's dynamic batcher, in spirit).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Largest batch the inference thread runs. The default, 1, is what the bundled model
    /// runs fastest per image on CPU: dr-synth 1.4.0 (1.3.0's graph, new weights) with one
    /// intra-op thread takes 1.8-2.1 ms at batch 1 and 2.1, 2.5 and 2.7 ms per image at batch
    /// 4, 8 and 16 (its full-resolution stem outgrows the cache), and the 2 MP pipeline
    /// bench streams 201-207 images/s at 1 against 180-194 at 2. A GPU wants 8-32.
    pub max_batch: usize,
    /// How long the first request of a batch may wait for others.
    pub max_queue_delay_ms: u64,
    /// Requests admitted at once (preprocessing + queued + running); beyond it, QueueFull.
    pub queue_capacity: usize,
    /// Threads preprocessing images (0 = one per core).
    pub preprocess_threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { max_batch: 1, max_queue_delay_ms: 5, queue_capacity: 64, preprocess_threads: 0 }
    }
}

/// Why a request was not scored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("the inference queue is full ({0} requests in flight); retry shortly")]
    QueueFull(usize),
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("inference failed: {0}")]
    Inference(String),
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::QueueFull(_) => "queue_full",
            Self::ShuttingDown => "shutting_down",
            Self::Preprocess(e) => e.code(),
            Self::Inference(_) => "inference_failed",
        }
    }
}

/// Raw model outputs for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOutputs {
    pub dr_logits: [f32; 5],
    pub dme_logit: f32,
    pub gradable_logit: f32,
    /// Activation map for referable DR, row-major `cam_shape`.
    pub cam: Vec<f32>,
    pub cam_shape: (usize, usize),
}

/// Where the time went for one request, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    /// Waiting for a preprocessing worker plus waiting for a batch.
    pub queue: f64,
    pub preprocess: f64,
    /// The batch's model run (shared by every image in it).
    pub inference: f64,
    pub total: f64,
    /// Images in the batch this one ran in.
    pub batch_size: usize,
}

/// A scored image: what preprocessing found, what the model said, and the timings.
#[derive(Debug, Clone)]
pub struct Scored {
    pub prepared: Prepared,
    pub outputs: ImageOutputs,
    pub timings: Timings,
}

/// The receiving end of one request.
pub type Ticket = oneshot::Receiver<Result<Scored, EngineError>>;

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub in_flight: AtomicUsize,
    pub batches: AtomicU64,
    pub images: AtomicU64,
    pub rejected: AtomicU64,
    pub pruned: AtomicU64,
    /// batch_size_counts[n] = batches that ran with n images.
    pub batch_size_counts: Vec<AtomicU64>,
}

/// What callers need to know about the model behind the engine.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub identity: ModelIdentity,
    pub thresholds: Thresholds,
    pub manifest: crate::model::Manifest,
    pub provider: crate::model::ExecutionProvider,
    pub cam_shape: (usize, usize),
    pub warm_up: Duration,
}

/// The receiving end of a raw-tensor request (KServe v2 tensor clients).
pub type TensorTicket = oneshot::Receiver<Result<(ImageOutputs, Timings), EngineError>>;

/// What a queued job carries and where its answer goes.
pub(crate) enum Work {
    /// A preprocessed image; normalised by the inference thread.
    Prepared(Prepared, oneshot::Sender<Result<Scored, EngineError>>),
    /// An already-normalised CHW tensor from a tensor client.
    Tensor(Vec<f32>, oneshot::Sender<Result<(ImageOutputs, Timings), EngineError>>),
}

impl Work {
    pub(crate) fn is_abandoned(&self) -> bool {
        match self {
            Self::Prepared(_, r) => r.is_closed(),
            Self::Tensor(_, r) => r.is_closed(),
        }
    }

    pub(crate) fn fail(self, e: EngineError) {
        match self {
            Self::Prepared(_, r) => {
                let _ = r.send(Err(e));
            }
            Self::Tensor(_, r) => {
                let _ = r.send(Err(e));
            }
        }
    }
}

pub(crate) struct Job {
    work: Work,
    submitted: Instant,
    queued: Instant,
    _admission: Admission,
}

/// Holds one admission slot; releasing it on drop keeps the count right on every path.
pub(crate) struct Admission(Arc<EngineStats>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn enqueue(queue: &crossbeam_channel::Sender<Job>, job: Job) {
    if let Err(crossbeam_channel::TrySendError::Full(job) | crossbeam_channel::TrySendError::Disconnected(job)) = queue.try_send(job) {
        job.work.fail(EngineError::ShuttingDown);
    }
}

/// The engine handle; cheap to clone and share between edges.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    model: ModelInfo,
    preprocessor: Arc<Preprocessor>,
    config: EngineConfig,
    pool: rayon::ThreadPool,
    queue: crossbeam_channel::Sender<Job>,
    stats: Arc<EngineStats>,
    healthy: Arc<AtomicBool>,
    accepting: AtomicBool,
}

impl Engine {
    /// Loads the session on a new inference thread, warms it up at every batch size it
    /// will use, and returns once it is ready.
    pub fn start(package: &ModelPackage, runtime: &RuntimeOptions, limits: DecodeLimits, config: EngineConfig) -> Result<Self, ModelError> {
        let config = EngineConfig { max_batch: config.max_batch.clamp(1, 256), queue_capacity: config.queue_capacity.max(1), ..config };
        let mut session = ModelSession::new(package, runtime)?;
        let sizes: Vec<usize> = (1..=config.max_batch).collect();
        let warm_up = session.warm_up(&sizes)?;
        let manifest = package.manifest.clone();
        let model = ModelInfo {
            identity: package.identity(),
            thresholds: manifest.thresholds,
            provider: session.provider,
            cam_shape: session.cam_shape,
            manifest,
            warm_up,
        };
        let preprocessor = Arc::new(Preprocessor::from_manifest(&model.manifest, limits));
        let threads = if config.preprocess_threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            config.preprocess_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("drscreen-prep-{i}"))
            .build()
            .map_err(|e| ModelError::Runtime(format!("preprocessing pool: {e}")))?;
        let stats =
            Arc::new(EngineStats { batch_size_counts: (0..=config.max_batch).map(|_| AtomicU64::new(0)).collect(), ..Default::default() });
        let healthy = Arc::new(AtomicBool::new(true));
        let (queue, receiver) = crossbeam_channel::bounded(config.queue_capacity);
        batcher::spawn(session, receiver, preprocessor.normaliser.clone(), config, stats.clone(), healthy.clone())
            .map_err(|e| ModelError::Runtime(format!("cannot start the inference thread: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { model, preprocessor, config, pool, queue, stats, healthy, accepting: AtomicBool::new(true) }) })
    }

    pub fn model(&self) -> &ModelInfo {
        &self.inner.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.inner.preprocessor
    }

    /// True while the inference thread is alive and the engine accepts work.
    pub fn is_ready(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire) && self.inner.accepting.load(Ordering::Acquire)
    }

    /// Stops admitting new requests; those already admitted still complete.
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::Release);
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.inner.stats.in_flight.load(Ordering::Acquire)
    }

    fn admit(&self) -> Result<Admission, EngineError> {
        if !self.inner.accepting.load(Ordering::Acquire) || !self.inner.healthy.load(Ordering::Acquire) {
            return Err(EngineError::ShuttingDown);
        }
        let stats = &self.inner.stats;
        let capacity = self.inner.config.queue_capacity;
        let admitted = stats.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1));
        match admitted {
            Ok(_) => Ok(Admission(stats.clone())),
            Err(n) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(EngineError::QueueFull(n))
            }
        }
    }

    /// Admits one encoded image, or refuses at once when the engine is full.
    pub fn submit(&self, bytes: impl AsRef<[u8]> + Send + 'static) -> Result<Ticket, EngineError> {
        self.submit_with(move |p| p.prepare(bytes.as_ref()))
    }

    /// Admits pixels an edge has already decoded (native DICOM frames): they skip the
    /// decoder and follow the same recipe from field-of-view location on.
    pub fn submit_decoded(&self, decoded: Arc<crate::preprocess::decode::Decoded>) -> Result<Ticket, EngineError> {
        self.submit_with(move |p| p.prepare_decoded(&decoded))
    }

    fn submit_with(
        &self,
        prepare: impl FnOnce(&Preprocessor) -> Result<Prepared, PreprocessError> + Send + 'static,
    ) -> Result<Ticket, EngineError> {
        let admission = self.admit()?;
        let (reply, ticket) = oneshot::channel();
        let submitted = Instant::now();
        let preprocessor = self.inner.preprocessor.clone();
        let queue = self.inner.queue.clone();
        let stats = self.inner.stats.clone();
        self.inner.pool.spawn(move || {
            if reply.is_closed() {
                stats.pruned.fetch_add(1, Ordering::Relaxed);
                return;
            }
            match prepare(&preprocessor) {
                Ok(prepared) => {
                    enqueue(&queue, Job { work: Work::Prepared(prepared, reply), submitted, queued: Instant::now(), _admission: admission })
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            }
        });
        Ok(ticket)
    }

    /// Admits an already-normalised CHW tensor of the model's input size (tensor clients
    /// that do their own preprocessing); it joins the same batches as images.
    pub fn submit_tensor(&self, chw: Vec<f32>) -> Result<TensorTicket, EngineError> {
        let expected = 3 * self.inner.preprocessor.input_size as usize * self.inner.preprocessor.input_size as usize;
        if chw.len() != expected {
            return Err(EngineError::Inference(format!("tensor has {} values, expected {expected}", chw.len())));
        }
        let admission = self.admit()?;
        let (reply, ticket) = oneshot::channel();
        let now = Instant::now();
        enqueue(&self.inner.queue, Job { work: Work::Tensor(chw, reply), submitted: now, queued: now, _admission: admission });
        Ok(ticket)
    }

    /// Submits and waits, for synchronous callers (CLI, tests, benchmarks).
    pub fn score_blocking(&self, bytes: impl AsRef<[u8]> + Send + 'static) -> Result<Scored, EngineError> {
        let ticket = self.submit(bytes)?;
        ticket.blocking_recv().map_err(|_| EngineError::ShuttingDown)?
    }
}
