//! The QuickJS-NG backend (`rquickjs`). One `Runtime` per worker thread; a fresh `Context`
//! per execution (no state survives between runs or accounts). The deadline is enforced by
//! the interrupt handler, the heap by the runtime's memory limit; a runtime that hit either
//! is reported as poisoned so the pool replaces it.
//!
//! Host API: `console.log/info/warn/error`, `Devpack` (an action queue plus helpers), the
//! `params` global (a copy), and the standard built-ins. No network, files, timers or
//! `require`.

use super::engine::RunContext;
use super::engine::{
    normalise_output, Engine, EngineRuntime, ErrorCode, LogBuffer, QueuedAction, RunError,
    RunOutput, RunRequest,
};
use rquickjs::function::{Opt, Rest};
use rquickjs::object::{Accessor, Property};
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Object, Runtime, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Native stack QuickJS may use; worker threads are spawned with more than this.
pub const MAX_STACK_BYTES: usize = 1 << 20;

/// Every fresh context leaves cyclic garbage (the built-ins reference each other) that
/// only the cycle collector frees. With QuickJS's default 256 KiB threshold the collector
/// ran during almost every context creation, about 30% of a small execution's
/// instructions (docs/benchmarks.md); collecting every few MiB amortises it.
const GC_THRESHOLD_BYTES: usize = 8 << 20;
/// Runs between explicit collections: about 1 MiB of context garbage. Counting is O(1);
/// asking QuickJS how much is allocated walks the whole heap (~20 µs per run).
const GC_EVERY_RUNS: u32 = 6;

/// `Devpack` namespaces and the action type each method queues.
const DEVPACK_ACTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "gasBank",
        &[
            ("ensureAccount", "gasbank.ensureAccount"),
            ("withdraw", "gasbank.withdraw"),
        ],
    ),
    ("oracle", &[("createRequest", "oracle.createRequest")]),
    ("triggers", &[("register", "triggers.register")]),
    ("automation", &[("schedule", "automation.schedule")]),
];

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
            runs_since_gc: 0,
            origin,
            deadline,
        }))
    }
}

struct QuickJsRuntime {
    runtime: Runtime,
    /// Runs since the last explicit collection (their cyclic garbage is still allocated).
    runs_since_gc: u32,
    origin: Instant,
    deadline: Arc<AtomicU64>,
}

/// What host functions collect during one run.
#[derive(Default)]
struct HostState {
    logs: LogBuffer,
    actions: Vec<QueuedAction>,
    too_many_actions: bool,
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
        let deadline = self.origin.elapsed() + request.limits.timeout;
        let carried_garbage = self.runs_since_gc > 0;
        let output = self.run_once(request, deadline);
        self.runs_since_gc += 1;
        let out_of_memory = matches!(&output.result, Err(e) if e.code == ErrorCode::MemoryLimit);
        if !(out_of_memory && carried_garbage) {
            return output;
        }
        self.collect();
        let retry = self.run_once(request, deadline);
        self.runs_since_gc += 1;
        retry
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
        let result = match Context::full(&self.runtime) {
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
        let poisoned = matches!(&result, Err(e) if matches!(e.code, ErrorCode::Timeout | ErrorCode::MemoryLimit));
        // Host closures live in the context's heap until the next GC, so move the state out
        // rather than waiting for the last reference to go.
        let state = std::mem::take(&mut *state.borrow_mut());
        let result = match result {
            Ok(_) if state.too_many_actions => Err(RunError {
                code: ErrorCode::TooManyActions,
                message: format!("more than {} Devpack actions", request.limits.max_actions),
            }),
            other => other,
        };
        RunOutput {
            result,
            logs: state.logs.finish(),
            actions: state.actions,
            poisoned,
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
/// whether the deadline passed.
///
/// When the heap is so full that QuickJS cannot even allocate the `InternalError`, it
/// throws `null` instead; a thrown `null` is therefore reported as `memory_limit` (a
/// script that itself throws `null` is reported the same way: docs/api.md).
fn caught(error: CaughtError<'_>) -> RunError {
    if matches!(&error, CaughtError::Value(v) if v.is_null()) {
        return memory_limit();
    }
    let (name, message) = match &error {
        CaughtError::Exception(exception) => (
            exception
                .as_object()
                .get::<_, String>("name")
                .unwrap_or_else(|_| "Error".to_owned()),
            exception.message().unwrap_or_default(),
        ),
        CaughtError::Value(value) => {
            let text = value
                .get::<rquickjs::convert::Coerced<String>>()
                .map(|c| c.0)
                .unwrap_or_else(|_| "a non-error value".to_owned());
            return script_error(format!("Uncaught {text}"));
        }
        CaughtError::Error(e) => ("Error".to_owned(), e.to_string()),
    };
    if message == "out of memory" {
        return memory_limit();
    }
    script_error(format!("Uncaught {name}: {message}"))
}

fn run_in<'js>(
    ctx: &Ctx<'js>,
    request: &RunRequest,
    state: &Rc<RefCell<HostState>>,
) -> Result<serde_json::Value, RunError> {
    // Serialised once: parsed for the `params` global and again for the argument, so
    // each is its own copy.
    let params_json = request.params.to_string();
    install_host(ctx, request, &params_json, state)
        .catch(ctx)
        .map_err(caught)?;
    let source: Value = ctx
        .eval(request.source.as_bytes())
        .catch(ctx)
        .map_err(caught)?;
    let mut value = source;
    if let Some(function) = value.as_function() {
        let params = ctx
            .json_parse(params_json.as_str())
            .catch(ctx)
            .map_err(caught)?;
        let secrets = Object::new(ctx.clone()).catch(ctx).map_err(caught)?;
        for (name, plaintext) in &request.secrets {
            secrets
                .set(name.as_str(), plaintext.as_str())
                .catch(ctx)
                .map_err(caught)?;
        }
        value = function
            .call((params, secrets))
            .catch(ctx)
            .map_err(caught)?;
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
            Some(settled) => value = settled.catch(ctx).map_err(caught)?,
        }
    }
    if value.is_undefined() {
        return Ok(serde_json::json!({}));
    }
    let text = match ctx.json_stringify(value).catch(ctx).map_err(caught)? {
        Some(text) => text
            .to_string()
            .map_err(|e| script_error(format!("output is not valid text: {e}")))?,
        None => return Err(script_error("output is not JSON-serialisable".to_owned())),
    };
    if text.len() > request.limits.output_bytes {
        return Err(RunError {
            code: ErrorCode::OutputTooLarge,
            message: format!(
                "output is {} bytes; the limit is {} bytes",
                text.len(),
                request.limits.output_bytes
            ),
        });
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| script_error(format!("output is not valid JSON: {e}")))?;
    Ok(normalise_output(value))
}

/// One console entry: strings as-is, other values as JSON, else `String(v)`.
fn format_arg<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> String {
    if let Some(s) = value.as_string() {
        return s.to_string().unwrap_or_default();
    }
    if let Ok(Some(json)) = ctx.json_stringify(value.clone()) {
        if let Ok(text) = json.to_string() {
            return text;
        }
    }
    value
        .get::<rquickjs::convert::Coerced<String>>()
        .map(|c| c.0)
        .unwrap_or_else(|_| "[unprintable]".to_owned())
}

fn install_host<'js>(
    ctx: &Ctx<'js>,
    request: &RunRequest,
    params_json: &str,
    state: &Rc<RefCell<HostState>>,
) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    let secrets = Rc::new(request.secrets.clone());
    let console = Object::new(ctx.clone())?;
    for level in ["log", "info", "warn", "error", "debug"] {
        let (state, secrets, limits) = (state.clone(), secrets.clone(), request.limits);
        let log = Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
            let line = args
                .0
                .into_iter()
                .map(|v| format_arg(&ctx, v))
                .collect::<Vec<_>>()
                .join(" ");
            state.borrow_mut().logs.push(line, &secrets, &limits);
        })?;
        console.set(level, log)?;
    }
    globals.set("console", console)?;
    // Built on first use (most functions never touch it), then fixed as a read-only value
    // so every access sees the same object.
    let (ids, max_actions, devpack_state) = (
        request.context.clone(),
        request.limits.max_actions,
        state.clone(),
    );
    let lazy = Accessor::new_get(move |ctx: Ctx<'js>| {
        let devpack = devpack(&ctx, &ids, max_actions, &devpack_state)?;
        ctx.globals()
            .prop("Devpack", Property::from(devpack.clone()))?;
        Ok::<_, rquickjs::Error>(devpack)
    })
    .configurable();
    globals.prop("Devpack", lazy)?;
    globals.set("params", ctx.json_parse(params_json)?)?;
    Ok(())
}

/// `Devpack`, built from host functions and frozen (a script cannot replace a method).
/// Built natively rather than from a JavaScript prelude: parsing a prelude in every fresh
/// context cost about a fifth of a small execution (docs/benchmarks.md).
fn devpack<'js>(
    ctx: &Ctx<'js>,
    ids: &RunContext,
    max_actions: usize,
    state: &Rc<RefCell<HostState>>,
) -> rquickjs::Result<Object<'js>> {
    let freeze: Function = ctx.globals().get::<_, Object>("Object")?.get("freeze")?;
    let frozen = |object: Object<'js>| -> rquickjs::Result<Object<'js>> {
        freeze.call::<_, Value>((object.clone(),))?;
        Ok(object)
    };
    let devpack = Object::new(ctx.clone())?;
    devpack.set("version", "0.1.0")?;
    let context = Object::new(ctx.clone())?;
    context.set("functionId", ids.function_id.as_str())?;
    context.set("accountId", ids.account_id.as_str())?;
    context.set("executionId", ids.execution_id.as_str())?;
    devpack.set("context", frozen(context)?)?;
    for (namespace, methods) in DEVPACK_ACTIONS {
        let object = Object::new(ctx.clone())?;
        for (method, kind) in *methods {
            let state = state.clone();
            let queue = Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, params: Opt<Value<'js>>| {
                    enqueue(&ctx, &state, kind, params.0, max_actions)
                },
            )?;
            object.set(*method, queue)?;
        }
        devpack.set(*namespace, frozen(object)?)?;
    }
    let respond = Object::new(ctx.clone())?;
    for (method, success, key) in [("success", true, "data"), ("failure", false, "error")] {
        let reply = Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, value: Opt<Value<'js>>, meta: Opt<Value<'js>>| {
                let undefined = || Value::new_undefined(ctx.clone());
                let out = Object::new(ctx.clone())?;
                out.set("success", success)?;
                out.set(key, value.0.unwrap_or_else(undefined))?;
                out.set("meta", meta.0.unwrap_or_else(undefined))?;
                Ok::<_, rquickjs::Error>(out)
            },
        )?;
        respond.set(method, reply)?;
    }
    devpack.set("respond", frozen(respond)?)?;
    frozen(devpack)
}

/// Queues one action and returns `{id, type}`; past the limit, the run is marked to fail
/// with `too_many_actions`.
fn enqueue<'js>(
    ctx: &Ctx<'js>,
    state: &Rc<RefCell<HostState>>,
    kind: &str,
    params: Option<Value<'js>>,
    max_actions: usize,
) -> rquickjs::Result<Object<'js>> {
    let mut state = state.borrow_mut();
    let id = format!("action_{}", state.actions.len() + 1);
    if state.actions.len() >= max_actions {
        state.too_many_actions = true;
    } else {
        let params = match params {
            Some(value) if !value.is_undefined() => ctx
                .json_stringify(value)?
                .map(|s| s.to_string())
                .transpose()?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        };
        state.actions.push(QueuedAction {
            id: id.clone(),
            kind: kind.to_owned(),
            params,
        });
    }
    let handle = Object::new(ctx.clone())?;
    handle.set("id", id)?;
    handle.set("type", kind)?;
    Ok(handle)
}

#[cfg(test)]
mod tests;
