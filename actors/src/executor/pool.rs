//! The isolate pool: `size` worker threads, each owning one engine runtime for its whole
//! life, fed from one queue. Admission is bounded: at most `size + queue` runs may be
//! outstanding; beyond that `try_submit` refuses at once (the HTTP layer answers 503
//! `executor_busy`) and nothing is queued.
//!
//! Lifecycle: dropping the pool closes the queue; each worker finishes the run it has,
//! drains nothing further, and exits.

use super::engine::{Engine, EngineRuntime, ErrorCode, RunOutput, RunRequest};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Native stack of a worker thread: well above the engine's own stack limit, so deep
/// recursion in user code fails inside the engine, never in the thread.
const WORKER_STACK_BYTES: usize = 8 << 20;

/// Executor metrics (no tenant labels).
#[derive(Clone, Debug)]
pub struct ExecutorMetrics {
    pub busy: IntGauge,
    pub queued: IntGauge,
    pub rejections: IntCounter,
    /// Runtimes disposed after a limit, by reason (`timeout`, `memory_limit`).
    pub terminations: IntCounterVec,
    pub executions: IntCounterVec,
    pub duration: HistogramVec,
}

impl ExecutorMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ns = "service_layer";
        let m = Self {
            busy: IntGauge::with_opts(
                Opts::new("executor_busy", "Workers running an execution").namespace(ns),
            )?,
            queued: IntGauge::with_opts(
                Opts::new("executor_queued", "Executions waiting for a worker").namespace(ns),
            )?,
            rejections: IntCounter::with_opts(
                Opts::new(
                    "executor_rejections_total",
                    "Executions refused because the pool and queue were full",
                )
                .namespace(ns),
            )?,
            terminations: IntCounterVec::new(
                Opts::new(
                    "executor_terminations_total",
                    "Runtimes disposed after hitting a limit",
                )
                .namespace(ns),
                &["reason"],
            )?,
            executions: IntCounterVec::new(
                Opts::new(
                    "functions_executions_total",
                    "Function executions by outcome",
                )
                .namespace(ns),
                &["status", "error_code"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "functions_execution_duration_seconds",
                    "Function execution duration",
                )
                .namespace(ns),
                &["status"],
            )?,
        };
        registry.register(Box::new(m.busy.clone()))?;
        registry.register(Box::new(m.queued.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.terminations.clone()))?;
        registry.register(Box::new(m.executions.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        Ok(m)
    }
}

struct Job {
    request: RunRequest,
    reply: oneshot::Sender<RunOutput>,
}

/// The pool and queue are full.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("executor busy")]
pub struct Busy;

pub struct Pool {
    /// Closing it (dropping the pool) tells the workers to exit.
    jobs: Sender<Job>,
    outstanding: Arc<AtomicUsize>,
    capacity: usize,
    metrics: ExecutorMetrics,
}

impl Pool {
    pub fn start(
        engine: Arc<dyn Engine>,
        size: usize,
        queue: usize,
        metrics: ExecutorMetrics,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let outstanding = Arc::new(AtomicUsize::new(0));
        for n in 0..size.max(1) {
            let (engine, receiver, outstanding, metrics) = (
                engine.clone(),
                receiver.clone(),
                outstanding.clone(),
                metrics.clone(),
            );
            std::thread::Builder::new()
                .name(format!("js-worker-{n}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || worker(engine, receiver, outstanding, metrics))?;
        }
        Ok(Self {
            jobs,
            outstanding,
            capacity: size.max(1) + queue,
            metrics,
        })
    }

    /// Queues a run if there is room; the receiver yields its output.
    pub fn try_submit(&self, request: RunRequest) -> Result<oneshot::Receiver<RunOutput>, Busy> {
        let admitted = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.metrics.rejections.inc();
            return Err(Busy);
        }
        let (reply, receiver) = oneshot::channel();
        self.metrics.queued.inc();
        if self.jobs.send(Job { request, reply }).is_err() {
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            self.metrics.queued.dec();
            return Err(Busy);
        }
        Ok(receiver)
    }
}

fn worker(
    engine: Arc<dyn Engine>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    outstanding: Arc<AtomicUsize>,
    metrics: ExecutorMetrics,
) {
    let mut runtime: Option<Box<dyn EngineRuntime>> = None;
    loop {
        // Holding the lock only while waiting: one idle worker takes the next job.
        let job = match receiver.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        metrics.queued.dec();
        metrics.busy.inc();
        if runtime.is_none() {
            runtime = match engine.new_runtime() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(engine = engine.name(), error = %e, "cannot create a runtime");
                    None
                }
            };
        }
        let output = match runtime.as_mut() {
            Some(rt) => rt.run(&job.request),
            None => RunOutput::failed(ErrorCode::Internal, "no JavaScript runtime available"),
        };
        if output.poisoned {
            // A runtime that hit a hard limit may hold garbage or a broken heap: replace it.
            let reason = output
                .result
                .as_ref()
                .err()
                .map_or("internal", |e| e.code.as_str());
            metrics.terminations.with_label_values(&[reason]).inc();
            runtime = None;
        }
        metrics.busy.dec();
        outstanding.fetch_sub(1, Ordering::AcqRel);
        // The caller may have gone away (client disconnected); the run still counted.
        let _ = job.reply.send(output);
    }
}
