//! The inference thread: the only owner of the ORT session. It blocks for the first
//! job, then collects more until the batch is full or the first job has waited
//! `max_queue_delay_ms`, drops jobs whose caller has gone, normalises the survivors into
//! its one reusable NCHW buffer, runs the model once and answers every job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{EngineConfig, EngineError, EngineStats, ImageOutputs, Job, Scored, Timings, Work};
use crate::model::ModelSession;
use crate::preprocess::Normaliser;

/// Marks the engine unhealthy when the thread ends for any reason, panics included.
struct HealthGuard(Arc<AtomicBool>);

impl Drop for HealthGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub(super) fn spawn(
    session: ModelSession,
    receiver: Receiver<Job>,
    normaliser: Normaliser,
    config: EngineConfig,
    stats: Arc<EngineStats>,
    healthy: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("drscreen-infer".into())
        .spawn(move || {
            let _guard = HealthGuard(healthy);
            run(session, receiver, normaliser, config, &stats);
        })
        .map(|_| ())
}

fn run(mut session: ModelSession, receiver: Receiver<Job>, normaliser: Normaliser, config: EngineConfig, stats: &EngineStats) {
    let image_len = session.image_len;
    let mut buffer = vec![0.0f32; config.max_batch * image_len];
    let delay = Duration::from_millis(config.max_queue_delay_ms);
    let mut batch: Vec<Job> = Vec::with_capacity(config.max_batch);
    while let Ok(first) = receiver.recv() {
        let deadline = first.queued + delay;
        batch.push(first);
        while batch.len() < config.max_batch {
            match receiver.recv_deadline(deadline) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let before = batch.len();
        batch.retain(|job| !job.work.is_abandoned());
        stats.pruned.fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        let started = Instant::now();
        for (job, slot) in batch.iter().zip(buffer.chunks_exact_mut(image_len)) {
            match &job.work {
                Work::Prepared(prepared, _) => normaliser.fill_chw(&prepared.rgb, slot),
                Work::Tensor(chw, _) => slot.copy_from_slice(chw),
            }
        }
        let result = session.run(&buffer[..n * image_len], n);
        let inference_ms = started.elapsed().as_secs_f64() * 1e3;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.images.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = stats.batch_size_counts.get(n) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(out) => {
                let cam_len = out.cam_shape.0 * out.cam_shape.1;
                for (i, job) in batch.drain(..).enumerate() {
                    let mut dr_logits = [0.0; 5];
                    dr_logits.copy_from_slice(&out.dr_logits[i * 5..i * 5 + 5]);
                    let outputs = ImageOutputs {
                        dr_logits,
                        dme_logit: out.dme_logit[i],
                        gradable_logit: out.gradable_logit[i],
                        cam: out.cam[i * cam_len..(i + 1) * cam_len].to_vec(),
                        cam_shape: out.cam_shape,
                    };
                    let preprocess = match &job.work {
                        Work::Prepared(p, _) => p.preprocess_ms,
                        Work::Tensor(..) => 0.0,
                    };
                    let total = job.submitted.elapsed().as_secs_f64() * 1e3;
                    let timings = Timings {
                        queue: (total - preprocess - inference_ms).max(0.0),
                        preprocess,
                        inference: inference_ms,
                        total,
                        batch_size: n,
                    };
                    // Free the admission slot before answering, so a client that sends its
                    // next request the moment this reply lands is not refused by a stale count.
                    let Job { work, _admission: admission, .. } = job;
                    drop(admission);
                    match work {
                        Work::Prepared(prepared, reply) => {
                            let _ = reply.send(Ok(Scored { prepared, outputs, timings }));
                        }
                        Work::Tensor(_, reply) => {
                            let _ = reply.send(Ok((outputs, timings)));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = n, "inference failed");
                for job in batch.drain(..) {
                    job.work.fail(EngineError::Inference(e.to_string()));
                }
            }
        }
    }
}
