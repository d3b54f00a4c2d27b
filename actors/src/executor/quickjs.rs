//! The QuickJS-NG backend (`rquickjs`). One `Runtime` per worker; a fresh `Context` per
//! execution (no state survives between runs or accounts). The deadline is enforced by
//! the interrupt handler (and, for C code that never calls it, by the server killing the
//! worker process), the heap by the runtime's memory limit; a runtime that hit either, or
//! that a run left with queued microtasks, is reported as disposed so the worker replaces
//! it.
//!
//! Host API (`host.rs`): `console.log/info/warn/error`, `Devpack` (an action queue plus
//! helpers), the `params` global (a copy), and the standard built-ins except
//! `FinalizationRegistry`. No network, files, timers or `require`. Every value handed to
//! Rust is bounded by the run's limits before it is copied (`text.rs`).

mod host;
mod text;

use super::engine::{
    normalise_output, Disposal, Engine, EngineRuntime, ErrorCode, RunError, RunOutput, RunRequest,
};
use host::HostState;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Object, Runtime, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use text::Text;

/// Native stack QuickJS may use; the worker's main thread has more than this.
pub const MAX_STACK_BYTES: usize = 1 << 20;

/// Every fresh context leaves cyclic garbage (the built-ins reference each other) that
/// only the cycle collector frees. With QuickJS's default 256 KiB threshold the collector
/// ran during almost every context creation, about 30% of a small execution's
/// instructions (docs/benchmarks.md); collecting every few MiB amortises it.
const GC_THRESHOLD_BYTES: usize = 8 << 20;
/// Runs between explicit collections: about 1 MiB of context garbage. Counting is O(1);
/// asking QuickJS how much is allocated walks the whole heap (~20 µs per run).
const GC_EVERY_RUNS: u32 = 6;
/// A run this long may have left much more: cyclic garbage up to its memory limit, or an
/// atom table grown by millions of property names (QuickJS never shrinks it). Its
/// runtime is replaced rather than handed to the next run, which would pay for it. Short
/// runs cannot allocate enough to matter; replacing a runtime costs far less than this.
const RECYCLE_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Debug, Default)]
pub struct QuickJs;

impl Engine for QuickJs {
    fn name(&self) -> &'static str {
        "quickjs"
    }

    fn new_runtime(&self) -> Result<Box<dyn EngineRuntime>, String> {
        let runtime =
            Runtime::new().map_err(|e| format!("cannot create a QuickJS runtime: {e}"))?;
        runtime.set_max_stack_size(MAX_STACK_BYTES);
        runtime.set_gc_threshold(GC_THRESHOLD_BYTES);
        let origin = Instant::now();
        // Nanoseconds since `origin` after which the running script is interrupted.
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            origin.elapsed().as_nanos() as u64 > watched.load(Ordering::Relaxed)
        })));
        Ok(Box::new(QuickJsRuntime {
            runtime,
            spare: None,
            runs_since_gc: 0,
            origin,
            deadline,
        }))
    }
}

struct QuickJsRuntime {
    runtime: Runtime,
    /// A fresh, unused context made between runs (`prepare`), taken by the next run.
    spare: Option<Context>,
    /// Runs since the last explicit collection (their cyclic garbage is still allocated).
    runs_since_gc: u32,
    origin: Instant,
    deadline: Arc<AtomicU64>,
}

impl EngineRuntime for QuickJsRuntime {
    /// Garbage left over from earlier runs must never fail a run: if a run hits the memory
    /// limit while such garbage may be allocated, the heap is collected and the run is
    /// given one clean retry within its original deadline. Each run has a fresh context
    /// and a failed run's logs and actions are discarded, so the retry is invisible.
    fn run(&mut self, request: &RunRequest) -> RunOutput {
        if self.runs_since_gc >= GC_EVERY_RUNS {
            self.collect();
        }
        let started = self.origin.elapsed();
        let deadline = started + request.limits.timeout;
        let carried_garbage = self.runs_since_gc > 0;
        let mut output = self.run_once(request, deadline);
        self.runs_since_gc += 1;
        let out_of_memory = matches!(&output.result, Err(e) if e.code == ErrorCode::MemoryLimit);
        if out_of_memory && carried_garbage {
            self.collect();
            output = self.run_once(request, deadline);
            self.runs_since_gc += 1;
            // The heap did run out once: start the next run on a fresh runtime anyway.
            output.disposed = output.disposed.or(Some(Disposal::MemoryLimit));
        }
        if output.disposed.is_none() && self.origin.elapsed() - started >= RECYCLE_AFTER {
            output.disposed = Some(Disposal::Recycled);
        }
        output
    }

    /// Building a context is most of a small run's work (docs/benchmarks.md); done here it
    /// overlaps with the server's handling of the previous reply.
    /// The periodic collection happens here too, before the spare exists, so it is off
    /// the next run's clock and does not walk the spare.
    fn prepare(&mut self) {
        if self.runs_since_gc >= GC_EVERY_RUNS {
            self.collect();
        }
        if self.spare.is_none() {
            self.spare = Context::full(&self.runtime).ok();
        }
    }
}

impl QuickJsRuntime {
    fn collect(&mut self) {
        self.runtime.run_gc();
        self.runs_since_gc = 0;
    }

    /// One run in a fresh context, interrupted at `deadline` (time since `origin`).
    fn run_once(&mut self, request: &RunRequest, deadline: std::time::Duration) -> RunOutput {
        self.runtime.set_memory_limit(request.limits.memory_bytes);
        self.deadline
            .store(deadline.as_nanos() as u64, Ordering::Relaxed);
        let state = Rc::new(RefCell::new(HostState::default()));
        let context = match self.spare.take() {
            Some(context) => Ok(context),
            None => Context::full(&self.runtime),
        };
        let result = match context {
            Ok(context) => context.with(|ctx| run_in(&ctx, request, &state)),
            Err(e) => Err(RunError {
                code: ErrorCode::MemoryLimit,
                message: format!("cannot create a context: {e}"),
            }),
        };
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        let timed_out = self.origin.elapsed() > deadline;
        let result = match result {
            Err(e) if timed_out && e.code == ErrorCode::ScriptError => Err(RunError {
                code: ErrorCode::Timeout,
                message: format!(
                    "execution exceeded its {} ms timeout",
                    request.limits.timeout.as_millis()
                ),
            }),
            other => other,
        };
        let disposed = match &result {
            Err(e) if e.code == ErrorCode::Timeout => Some(Disposal::Timeout),
            Err(e) if e.code == ErrorCode::MemoryLimit => Some(Disposal::MemoryLimit),
            // Microtasks a run queued but did not wait for (a plain return value, or an
            // error) would otherwise run in the next run that awaits, on its deadline.
            // QuickJS cannot drop queued jobs, so the runtime goes with them.
            _ if self.runtime.is_job_pending() => Some(Disposal::PendingJobs),
            _ => None,
        };
        // Host closures live in the context's heap until the next GC, so move the state out
        // rather than waiting for the last reference to go.
        let state = std::mem::take(&mut *state.borrow_mut());
        let result = match (result, state.refusal) {
            (Ok(_), Some(refusal)) => Err(refusal.error(&request.limits)),
            (other, _) => other,
        };
        RunOutput {
            result,
            logs: state.logs.finish(),
            actions: state.actions,
            disposed,
        }
    }
}

fn script_error(message: String) -> RunError {
    RunError {
        code: ErrorCode::ScriptError,
        message,
    }
}

fn memory_limit() -> RunError {
    RunError {
        code: ErrorCode::MemoryLimit,
        message: "execution exceeded its memory limit".to_owned(),
    }
}

/// Maps a caught exception: `out of memory` is the heap limit, anything else the script's
/// own error (`Uncaught Error: boom`). Timeouts are recognised by the caller, which knows
/// whether the deadline passed. The name and message are read with a bound
/// (`text::ERROR_BYTES`): a script cannot make the server copy a huge message.
///
/// When the heap is so full that QuickJS cannot even allocate the `InternalError`, it
/// throws `null` instead; a thrown `null` is therefore reported as `memory_limit` (a
/// script that itself throws `null` is reported the same way: docs/api.md).
fn caught<'js>(ctx: &Ctx<'js>, text: &Text<'js>, error: CaughtError<'js>) -> RunError {
    let shown = |value: Value<'js>| text.redacted_display(ctx, value, text::ERROR_BYTES).ok();
    let (name, message) = match error {
        CaughtError::Value(value) if value.is_null() => return memory_limit(),
        CaughtError::Exception(exception) => {
            let object = exception.as_object();
            let name = object.get::<_, Value>("name").ok().and_then(shown);
            let message = object.get::<_, Value>("message").ok().and_then(shown);
            (
                name.unwrap_or_else(|| "Error".to_owned()),
                message.unwrap_or_default(),
            )
        }
        CaughtError::Value(value) => {
            let shown = shown(value).unwrap_or_else(|| "a non-error value".to_owned());
            return script_error(text::without_nul(format!("Uncaught {shown}")));
        }
        CaughtError::Error(e) => ("Error".to_owned(), e.to_string()),
    };
    if message == "out of memory" {
        return memory_limit();
    }
    script_error(text::without_nul(format!("Uncaught {name}: {message}")))
}

/// `.catch(ctx).map_err(…)` in one step.
trait Caught<'js, T> {
    fn or_run_error(self, ctx: &Ctx<'js>, text: &Text<'js>) -> Result<T, RunError>;
}

impl<'js, T> Caught<'js, T> for rquickjs::Result<T> {
    fn or_run_error(self, ctx: &Ctx<'js>, text: &Text<'js>) -> Result<T, RunError> {
        self.catch(ctx).map_err(|e| caught(ctx, text, e))
    }
}

fn run_in<'js>(
    ctx: &Ctx<'js>,
    request: &RunRequest,
    state: &Rc<RefCell<HostState>>,
) -> Result<serde_json::Value, RunError> {
    // The params text is parsed for the `params` global and again for the argument, so
    // each is its own copy. Setting up fails only when the heap is already full.
    let params_json = request.params.get();
    let text = Text::capture(ctx, &request.secrets).map_err(|_| memory_limit())?;
    let _release = text.releasing();
    let text = &text;
    host::install(ctx, text, request, params_json, state).map_err(|_| memory_limit())?;
    let source: Value = ctx
        .eval(request.source.as_bytes())
        .or_run_error(ctx, text)?;
    let mut value = source;
    if let Some(function) = value.as_function() {
        let params = ctx.json_parse(params_json).or_run_error(ctx, text)?;
        let secrets = Object::new(ctx.clone()).or_run_error(ctx, text)?;
        for (name, plaintext) in &request.secrets {
            secrets
                .set(name.as_str(), plaintext.as_str())
                .or_run_error(ctx, text)?;
        }
        value = function.call((params, secrets)).or_run_error(ctx, text)?;
    }
    if let Some(promise) = value.as_promise().cloned() {
        // Drain microtasks; no timers exist, so a promise still pending afterwards can
        // never settle.
        while ctx.execute_pending_job() {}
        match promise.result::<Value>() {
            None => {
                return Err(script_error(
                    "function returned a promise that did not settle".to_owned(),
                ))
            }
            Some(settled) => value = settled.or_run_error(ctx, text)?,
        }
    }
    if value.is_undefined() {
        return Ok(serde_json::json!({}));
    }
    let json = match ctx.json_stringify(value).or_run_error(ctx, text)? {
        Some(json) => json,
        None => return Err(script_error("output is not JSON-serialisable".to_owned())),
    };
    // Measured inside the engine's heap; copied out only when it fits.
    let json = match text
        .bounded(json, request.limits.output_bytes)
        .or_run_error(ctx, text)?
    {
        text::Bounded::Whole(json) => json,
        text::Bounded::Cut { total, .. } => {
            return Err(RunError {
                code: ErrorCode::OutputTooLarge,
                message: format!(
                    "output is {total} bytes; the limit is {} bytes",
                    request.limits.output_bytes
                ),
            })
        }
    };
    match text::parse_json(&json) {
        Ok(value) => Ok(normalise_output(value)),
        Err(text::JsonError::TooDeep) => Err(script_error(format!(
            "output nests deeper than {} levels",
            text::MAX_DEPTH
        ))),
        Err(text::JsonError::Invalid(e)) => {
            Err(script_error(format!("output is not valid JSON: {e}")))
        }
    }
}

#[cfg(test)]
mod tests;
