//! The function executor: JavaScript runs in a pool of confined worker processes behind
//! the `executor` actor, never in the server process (CONTRACT.md §3.1, Isolation).
//!
//! - `engine.rs`: the narrow `Engine`/`EngineRuntime` seam and the plain-data run types;
//!   `quickjs.rs` and `mock.rs` implement it.
//! - `worker.rs` + `sandbox.rs`: the worker process (`appserver --executor-worker`):
//!   confines itself, then serves runs over its pipes (`protocol.rs`).
//! - `process.rs`: one worker as the server sees it (spawn, call with a deadline, kill).
//! - `pool.rs`, `queue.rs`, `admission.rs`: slots and deadlines, the queue that serves
//!   accounts in turn, the per-account share.
//!
//! The actor owns the pool; stopping the actor drops it, which kills the workers.

mod admission;
mod engine;
mod mock;
mod pool;
mod process;
mod protocol;
mod queue;
mod quickjs;
pub mod sandbox;
pub mod worker;

pub use admission::Busy;
pub use engine::{
    normalise_output, redact, Disposal, Engine, EngineRuntime, ErrorCode, QueuedAction, RunContext,
    RunError, RunLimits, RunOutput, RunRequest,
};
pub use mock::MockEngine;
pub use pool::{Backend, Pool, PoolConfig};
pub use process::WorkerSpec;
pub use quickjs::QuickJs;

use crate::supervisor::{ExitGuard, Traced};
use actix::prelude::*;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::collections::BTreeMap;

/// Executor metrics (no tenant labels).
#[derive(Clone, Debug)]
pub struct ExecutorMetrics {
    pub busy: IntGauge,
    pub queued: IntGauge,
    pub rejections: IntCounter,
    /// Runtimes or worker processes replaced, by reason: `timeout`, `memory_limit` and
    /// `pending_jobs` (runtime replaced inside its worker), `killed` (worker killed at
    /// the deadline), `died` (worker died), `protocol` (worker broke the protocol).
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
                    "Executions refused because the pool and queue, or the account's share, were full",
                )
                .namespace(ns),
            )?,
            terminations: IntCounterVec::new(
                Opts::new(
                    "executor_terminations_total",
                    "JavaScript runtimes and worker processes replaced, by reason",
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

/// What a start-up check of the worker found.
#[derive(Debug, Clone)]
pub struct SandboxCheck {
    /// Every confinement step succeeded and the probe was refused everything.
    pub confined: bool,
    /// Why not, when not.
    pub problems: Vec<String>,
    /// What the worker was refused or allowed when it tried to escape (`open`, `socket`,
    /// `spawn` → `refused: <error>` or `allowed`).
    pub probe: BTreeMap<String, String>,
}

/// Starts one worker, asks it to try what confinement must refuse, and stops it. An
/// error means no worker can run at all (a broken binary or a worker memory limit too
/// small to start).
pub async fn check_sandbox(spec: &WorkerSpec) -> Result<SandboxCheck, String> {
    let (mut worker, confinement) = process::Worker::spawn(spec).await?;
    let report: BTreeMap<String, String> = worker.probe().await?;
    worker.kill().await;
    let mut problems = confinement.problems;
    problems.extend(
        report
            .iter()
            .filter(|(_, outcome)| !outcome.starts_with("refused"))
            .map(|(what, outcome)| format!("{what} was {outcome}")),
    );
    Ok(SandboxCheck {
        confined: problems.is_empty(),
        problems,
        probe: report,
    })
}

pub struct ExecutorActor {
    config: PoolConfig,
    metrics: ExecutorMetrics,
    /// The slots and their workers; made when the actor starts on its arbiter and dropped
    /// (workers killed) with the actor.
    pool: Option<Pool>,
    _exit: ExitGuard,
}

impl ExecutorActor {
    pub fn new(config: PoolConfig, metrics: ExecutorMetrics, exit: ExitGuard) -> Self {
        Self {
            config,
            metrics,
            pool: None,
            _exit: exit,
        }
    }
}

impl Actor for ExecutorActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        let backend = match &self.config.backend {
            Backend::Workers(spec) => spec.engine,
            Backend::InProcess(engine) => engine.name(),
        };
        tracing::info!(
            engine = backend,
            workers = self.config.size,
            queue = self.config.queue,
            per_account = self.config.max_per_account,
            "executor pool starting"
        );
        self.pool = Some(Pool::start(self.config.clone(), self.metrics.clone()));
    }
}

stop_on_request!(ExecutorActor);

/// Runs one request. With `wait: false` (HTTP) it is refused at once (`Busy`) when the
/// pool and queue, or the account's share, are full; with `wait: true` (background work)
/// it waits for room.
#[derive(Message)]
#[rtype(result = "Result<RunOutput, Busy>")]
pub struct Execute {
    pub request: RunRequest,
    pub wait: bool,
}

impl Handler<Traced<Execute>> for ExecutorActor {
    type Result = ResponseFuture<Result<RunOutput, Busy>>;

    fn handle(&mut self, msg: Traced<Execute>, _: &mut Self::Context) -> Self::Result {
        let Some(pool) = &self.pool else {
            return Box::pin(async { Err(Busy) });
        };
        let Execute { request, wait } = msg.msg;
        if !wait {
            let submitted = pool.try_submit(request);
            return Box::pin(async move { Ok(submitted?.await.unwrap_or_else(|_| stopped())) });
        }
        // Waits for room outside the mailbox, then queues like any other run.
        let (admission, jobs, metrics) = (pool.admission(), pool.sender(), self.metrics.clone());
        Box::pin(async move {
            let permit = admission.admit(&request.context.account_id).await;
            let receiver = pool::enqueue(&jobs, &metrics, request, permit)?;
            Ok(receiver.await.unwrap_or_else(|_| stopped()))
        })
    }
}

fn stopped() -> RunOutput {
    RunOutput::failed(ErrorCode::Internal, "executor stopped during the run")
}
