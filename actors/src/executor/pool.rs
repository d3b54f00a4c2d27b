//! The worker pool: `size` slots fed from one queue that serves accounts in turn
//! (`queue.rs`), behind bounded admission (`admission.rs`). Each slot owns one worker process (`process.rs`) for as long as it
//! lives, replaces it when it is killed or dies, and owns every run's deadline: a run not
//! answered `kill_grace` after its timeout has its worker killed and is recorded
//! `timeout`, whatever the worker was doing.
//!
//! In mock mode (no JavaScript) the slots run the mock engine in this thread instead.
//!
//! Lifecycle: the slots are tasks on the executor actor's arbiter. Dropping the pool
//! aborts them, which drops their workers, which kills the processes.

use super::admission::{Admission, Busy, Permit};
use super::engine::{Disposal, Engine, EngineRuntime, ErrorCode, RunLimits, RunOutput, RunRequest};
use super::process::{Failure, Worker, WorkerSpec};
use super::protocol::{self, Reply, Request};
use super::queue::FairQueue;
use super::ExecutorMetrics;
use crate::health::{Health, Sandbox};
use actix_rt::task::JoinHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Where runs happen.
#[derive(Clone)]
pub enum Backend {
    /// In confined worker processes (JavaScript).
    Workers(WorkerSpec),
    /// In this process (the mock engine: no untrusted code).
    InProcess(Arc<dyn Engine>),
}

#[derive(Clone)]
pub struct PoolConfig {
    pub backend: Backend,
    pub size: usize,
    pub queue: usize,
    pub max_per_account: usize,
    pub kill_grace: Duration,
    /// Where a worker that could not confine itself is reported (`/readyz` `sandbox`).
    pub health: Arc<Health>,
}

pub struct Job {
    request: RunRequest,
    reply: oneshot::Sender<RunOutput>,
    /// Held until the run has ended; frees the admission slot when dropped.
    permit: Permit,
}

impl Job {
    fn finish(self, output: RunOutput) {
        let Job { reply, permit, .. } = self;
        drop(permit);
        // The caller may have gone away (client disconnected); the run still counted.
        let _ = reply.send(output);
    }
}

/// The queue, shared by the pool (which fills it) and its slots (which take from it).
/// Unbounded as a structure, bounded by admission: at most `size + queue` jobs exist.
pub type Jobs = Arc<FairQueue<Job>>;

pub struct Pool {
    admission: Arc<Admission>,
    jobs: Jobs,
    metrics: ExecutorMetrics,
    slots: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.close();
        for slot in &self.slots {
            slot.abort();
        }
    }
}

impl Pool {
    /// Starts the slots; must run on the arbiter that will own them.
    pub fn start(config: PoolConfig, metrics: ExecutorMetrics) -> Self {
        let size = config.size.max(1);
        let admission = Admission::new(size + config.queue, config.max_per_account);
        let jobs: Jobs = Arc::default();
        let slots = (0..size)
            .map(|n| {
                let (queue, metrics) = (jobs.clone(), metrics.clone());
                match &config.backend {
                    Backend::Workers(spec) => actix_rt::spawn(worker_slot(
                        n,
                        spec.clone(),
                        config.kill_grace,
                        config.health.clone(),
                        queue,
                        metrics,
                    )),
                    Backend::InProcess(engine) => {
                        actix_rt::spawn(in_process_slot(engine.clone(), queue, metrics))
                    }
                }
            })
            .collect();
        Self {
            admission,
            jobs,
            metrics,
            slots,
        }
    }

    /// Queues a run if there is room for it (in the pool and in its account's share);
    /// the receiver yields its output.
    pub fn try_submit(&self, request: RunRequest) -> Result<oneshot::Receiver<RunOutput>, Busy> {
        match self.admission.try_admit(&request.context.account_id) {
            Ok(permit) => enqueue(&self.jobs, &self.metrics, request, permit),
            Err(busy) => {
                self.metrics.rejections.inc();
                Err(busy)
            }
        }
    }

    /// The admission, for callers that wait for room ([`enqueue`] once admitted).
    pub fn admission(&self) -> Arc<Admission> {
        self.admission.clone()
    }

    /// The queue's sending side, for [`enqueue`].
    pub fn sender(&self) -> Jobs {
        self.jobs.clone()
    }
}

/// Queues an admitted run; `Busy` only if the pool has stopped.
pub fn enqueue(
    jobs: &Jobs,
    metrics: &ExecutorMetrics,
    request: RunRequest,
    permit: Permit,
) -> Result<oneshot::Receiver<RunOutput>, Busy> {
    let (reply, receiver) = oneshot::channel();
    metrics.queued.inc();
    let account = request.context.account_id.clone();
    let job = Job {
        request,
        reply,
        permit,
    };
    if jobs.push(&account, job).is_err() {
        metrics.queued.dec();
        return Err(Busy);
    }
    Ok(receiver)
}

async fn next_job(queue: &Jobs, metrics: &ExecutorMetrics) -> Option<Job> {
    let job = queue.pop().await?;
    metrics.queued.dec();
    Some(job)
}

/// Back-off before starting a worker after `failures` consecutive deaths or failed starts.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(5))
}

/// Largest reply a run may produce: output and action params (each within the output
/// limit) and the logs, with room for JSON escapes (at most six bytes per input byte).
fn reply_limit(limits: &RunLimits) -> usize {
    let logs = limits
        .log_lines
        .saturating_add(1)
        .saturating_mul(limits.log_line_bytes.saturating_add(64));
    limits
        .output_bytes
        .saturating_mul(2)
        .saturating_add(logs)
        .saturating_mul(6)
        .saturating_add(1 << 20)
}

fn timed_out(limits: &RunLimits) -> RunOutput {
    RunOutput::failed(
        ErrorCode::Timeout,
        format!(
            "execution exceeded its {} ms timeout",
            limits.timeout.as_millis()
        ),
    )
}

/// One slot: one worker process at a time, replaced when killed or dead.
async fn worker_slot(
    n: usize,
    spec: WorkerSpec,
    kill_grace: Duration,
    health: Arc<Health>,
    queue: Jobs,
    metrics: ExecutorMetrics,
) {
    let mut worker: Option<Worker> = None;
    // Consecutive deaths or failed starts; a run killed at its deadline is the script's
    // doing, not the worker's, and is replaced at once.
    let mut failures = 0u32;
    loop {
        if worker.is_none() {
            if failures > 0 {
                actix_rt::time::sleep(backoff(failures)).await;
            }
            match Worker::spawn(&spec).await {
                Ok((started, confinement)) => {
                    tracing::debug!(slot = n, pid = started.pid(), "executor worker started");
                    // The start-up check saw a confined worker; this one is not.
                    if !confinement.confined() && health.sandbox() == Sandbox::Confined {
                        tracing::warn!(slot = n, problems = %confinement.problems.join("; "), "an executor worker could not confine itself");
                        health.set_sandbox(Sandbox::Degraded);
                    }
                    worker = Some(started);
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(slot = n, error = %e, "cannot start an executor worker");
                }
            }
        }
        let Some(job) = next_job(&queue, &metrics).await else {
            return;
        };
        let Some(current) = worker.as_mut() else {
            job.finish(RunOutput::failed(
                ErrorCode::Internal,
                "no executor worker could be started",
            ));
            continue;
        };
        metrics.busy.inc();
        let limits = job.request.limits;
        // The deadline starts when the run reaches its worker, not when it was queued.
        let deadline = tokio::time::Instant::now() + limits.timeout + kill_grace;
        let result = match protocol::encode(&Request::Run(&job.request)) {
            Ok(frame) => current.call(&frame, reply_limit(&limits), deadline).await,
            Err(e) => Err(Failure::Protocol(format!("cannot encode the request: {e}"))),
        };
        metrics.busy.dec();
        let output = match result {
            Ok(Reply::Done(output)) => {
                failures = 0;
                match output.disposed {
                    None | Some(Disposal::Recycled) => {}
                    Some(disposal) => metrics
                        .terminations
                        .with_label_values(&[disposal.as_str()])
                        .inc(),
                }
                output
            }
            Ok(_) => {
                current.kill().await;
                worker = None;
                failures += 1;
                metrics.terminations.with_label_values(&["protocol"]).inc();
                RunOutput::failed(ErrorCode::Internal, "executor worker broke the protocol")
            }
            Err(Failure::Deadline) => {
                tracing::warn!(
                    slot = n,
                    pid = current.pid(),
                    timeout_ms = limits.timeout.as_millis() as u64,
                    "run overstayed its deadline; executor worker killed"
                );
                worker = None;
                metrics.terminations.with_label_values(&["killed"]).inc();
                timed_out(&limits)
            }
            Err(Failure::Died(how)) => {
                tracing::warn!(slot = n, pid = current.pid(), ended = %how, "executor worker died during a run");
                worker = None;
                failures += 1;
                metrics.terminations.with_label_values(&["died"]).inc();
                RunOutput::failed(ErrorCode::Internal, format!("executor worker died: {how}"))
            }
            Err(Failure::Protocol(e)) => {
                tracing::error!(slot = n, error = %e, "executor worker broke the protocol; killed");
                worker = None;
                failures += 1;
                metrics.terminations.with_label_values(&["protocol"]).inc();
                RunOutput::failed(ErrorCode::Internal, "executor worker broke the protocol")
            }
        };
        job.finish(output);
    }
}

/// The mock engine runs here: it runs no untrusted code and finishes at once.
async fn in_process_slot(engine: Arc<dyn Engine>, queue: Jobs, metrics: ExecutorMetrics) {
    let mut runtime: Option<Box<dyn EngineRuntime>> = None;
    while let Some(job) = next_job(&queue, &metrics).await {
        if runtime.is_none() {
            runtime = engine.new_runtime().ok();
        }
        let output = match runtime.as_mut() {
            Some(rt) => rt.run(&job.request),
            None => RunOutput::failed(ErrorCode::Internal, "no runtime available"),
        };
        if output.disposed.is_some() {
            runtime = None;
        }
        job.finish(output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(6), Duration::from_millis(3200));
        assert_eq!(backoff(7), Duration::from_secs(5));
        assert_eq!(backoff(60), Duration::from_secs(5));
    }
}
