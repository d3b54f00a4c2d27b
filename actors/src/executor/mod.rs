//! The function executor: a pool of sandboxed JavaScript runtimes behind the `executor`
//! actor. The actor owns the pool; stopping the actor drops it, and its workers finish
//! their current run and exit.

mod engine;
mod mock;
mod pool;
mod quickjs;

pub use engine::{
    normalise_output, Engine, EngineRuntime, ErrorCode, QueuedAction, RunContext, RunError,
    RunLimits, RunOutput, RunRequest,
};
pub use mock::MockEngine;
pub use pool::{Busy, ExecutorMetrics, Pool};
pub use quickjs::QuickJs;

use crate::supervisor::{ExitGuard, Traced};
use actix::prelude::*;
use std::sync::Arc;

/// How the pool is built.
#[derive(Clone)]
pub struct ExecutorConfig {
    pub engine: Arc<dyn Engine>,
    pub pool_size: usize,
    pub queue_size: usize,
}

pub struct ExecutorActor {
    /// The workers; dropped (and so stopped) with the actor. An error means the worker
    /// threads could not be spawned: the actor stops and the supervisor retries.
    pool: std::io::Result<Pool>,
    _exit: ExitGuard,
}

impl ExecutorActor {
    pub fn new(config: &ExecutorConfig, metrics: ExecutorMetrics, exit: ExitGuard) -> Self {
        tracing::info!(
            engine = config.engine.name(),
            workers = config.pool_size,
            queue = config.queue_size,
            "executor pool starting"
        );
        Self {
            pool: Pool::start(
                config.engine.clone(),
                config.pool_size,
                config.queue_size,
                metrics,
            ),
            _exit: exit,
        }
    }
}

impl Actor for ExecutorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Err(e) = &self.pool {
            tracing::error!(error = %e, "cannot start executor workers");
            ctx.stop();
        }
    }
}

stop_on_request!(ExecutorActor);

/// Runs one request; `Busy` at once when the pool and its queue are full.
#[derive(Message)]
#[rtype(result = "Result<RunOutput, Busy>")]
pub struct Execute(pub RunRequest);

impl Handler<Traced<Execute>> for ExecutorActor {
    type Result = ResponseFuture<Result<RunOutput, Busy>>;

    fn handle(&mut self, msg: Traced<Execute>, _: &mut Self::Context) -> Self::Result {
        let submitted = match &self.pool {
            Ok(pool) => pool.try_submit(msg.msg.0),
            Err(_) => Err(Busy),
        };
        Box::pin(async move {
            let receiver = submitted?;
            Ok(receiver.await.unwrap_or_else(|_| {
                RunOutput::failed(ErrorCode::Internal, "worker stopped during the run")
            }))
        })
    }
}
