//! The host API of a run: `console`, `Devpack` and `params`. Host functions collect into
//! [`HostState`]; every value they take from the script is bounded before it is copied
//! (log lines by the line and byte limits, action params together by the output limit).
//!
//! Host functions never hold the state borrowed while they call back into the engine:
//! formatting a value may run the script's own `toString` or `toJSON`, which may log.

use super::text::{self, Bounded, Text, MAX_DEPTH};
use crate::executor::engine::{
    ErrorCode, LogBuffer, QueuedAction, RunContext, RunError, RunLimits, RunRequest,
};
use rquickjs::function::{Opt, Rest};
use rquickjs::object::{Accessor, Property};
use rquickjs::{Ctx, Function, Object, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

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

/// Why queued actions fail a run that otherwise succeeded.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    TooMany,
    ParamsTooLarge,
    ParamsTooDeep,
}

impl Refusal {
    pub fn error(self, limits: &RunLimits) -> RunError {
        let (code, message) = match self {
            Self::TooMany => (
                ErrorCode::TooManyActions,
                format!("more than {} Devpack actions", limits.max_actions),
            ),
            Self::ParamsTooLarge => (
                ErrorCode::TooManyActions,
                format!(
                    "Devpack action params exceed the output limit of {} bytes together",
                    limits.output_bytes
                ),
            ),
            Self::ParamsTooDeep => (
                ErrorCode::ScriptError,
                format!("Devpack action params nest deeper than {MAX_DEPTH} levels"),
            ),
        };
        RunError { code, message }
    }
}

/// What host functions collect during one run.
#[derive(Default)]
pub struct HostState {
    pub logs: LogBuffer,
    pub actions: Vec<QueuedAction>,
    /// Bytes of action params queued so far (JSON text).
    action_bytes: usize,
    /// The first reason the queued actions fail the run, if any.
    pub refusal: Option<Refusal>,
}

/// Installs the host API. `text` was captured from this context before any script ran.
pub fn install<'js>(
    ctx: &Ctx<'js>,
    text: &Text<'js>,
    request: &RunRequest,
    params_json: &str,
    state: &Rc<RefCell<HostState>>,
) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    // Its callbacks are queued by the garbage collector, which may run during a later run
    // on this runtime: they would run there, inside another account's execution.
    globals.set("FinalizationRegistry", rquickjs::Undefined)?;
    let secrets = Rc::new(request.secrets.clone());
    let (state_ref, limits, log_text) = (state.clone(), request.limits, text.clone());
    // One function serves every level: they all append an entry the same way, and each
    // function made here is made again for every run.
    let log = Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
        log_entry(&ctx, &log_text, args.0, &state_ref, &secrets, &limits)
    })?;
    let console = Object::new(ctx.clone())?;
    for level in ["log", "info", "warn", "error", "debug"] {
        console.set(level, log.clone())?;
    }
    globals.set("console", console)?;
    // Built on first use (most functions never touch it), then fixed as a read-only value
    // so every access sees the same object.
    let (ids, limits, devpack_state) = (request.context.clone(), request.limits, state.clone());
    let devpack_text = text.clone();
    let lazy = Accessor::new_get(move |ctx: Ctx<'js>| {
        let devpack = devpack(&ctx, &devpack_text, &ids, limits, &devpack_state)?;
        ctx.globals()
            .prop("Devpack", Property::from(devpack.clone()))?;
        Ok::<_, rquickjs::Error>(devpack)
    })
    .configurable();
    globals.prop("Devpack", lazy)?;
    globals.set("params", ctx.json_parse(params_json)?)?;
    Ok(())
}

/// One console entry: arguments joined by a space, formatted only while the entry still
/// has room; a full buffer only counts the entry. The entry's place is taken before any
/// argument is formatted, so a `toJSON` that logs cannot get past the line limit.
fn log_entry<'js>(
    ctx: &Ctx<'js>,
    text: &Text<'js>,
    args: Vec<Value<'js>>,
    state: &Rc<RefCell<HostState>>,
    secrets: &BTreeMap<String, String>,
    limits: &RunLimits,
) -> rquickjs::Result<()> {
    let Some(slot) = state.borrow_mut().logs.reserve(limits) else {
        return Ok(());
    };
    let budget = LogBuffer::capture_bytes(secrets, limits);
    let mut line = String::new();
    let mut cut = false;
    for (n, arg) in args.into_iter().enumerate() {
        if n > 0 {
            if line.len() >= budget {
                cut = true;
                break;
            }
            line.push(' ');
        }
        let Some(string) = text::display(ctx, arg) else {
            line.push_str("[unprintable]");
            continue;
        };
        match text.bounded(string, budget.saturating_sub(line.len()))? {
            Bounded::Whole(text) => line.push_str(&text),
            Bounded::Cut { prefix, .. } => {
                line.push_str(&prefix);
                cut = true;
                break;
            }
        }
    }
    let line = text::without_nul(line);
    state
        .borrow_mut()
        .logs
        .fill(slot, line, cut, secrets, limits);
    Ok(())
}

/// `Devpack`, built from host functions and frozen (a script cannot replace a method).
/// Built natively rather than from a JavaScript prelude: parsing a prelude in every fresh
/// context cost about a fifth of a small execution (docs/benchmarks.md).
fn devpack<'js>(
    ctx: &Ctx<'js>,
    text: &Text<'js>,
    ids: &RunContext,
    limits: RunLimits,
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
            let (state, text) = (state.clone(), text.clone());
            let queue = Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, params: Opt<Value<'js>>| {
                    enqueue(&ctx, &text, &state, kind, params.0, &limits)
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

/// Queues one action and returns `{id, type}`. Past the action limit, or when the params
/// of all actions together would pass the output limit, the run is marked to fail with
/// `too_many_actions` and nothing more is copied; params nested too deeply fail it too.
fn enqueue<'js>(
    ctx: &Ctx<'js>,
    text: &Text<'js>,
    state: &Rc<RefCell<HostState>>,
    kind: &str,
    params: Option<Value<'js>>,
    limits: &RunLimits,
) -> rquickjs::Result<Object<'js>> {
    let refused = |state: &mut HostState, refusal: Refusal| {
        state.refusal.get_or_insert(refusal);
        format!("action_{}", state.actions.len() + 1)
    };
    let full = {
        let state = state.borrow();
        state.refusal.is_some() || state.actions.len() >= limits.max_actions
    };
    let id = if full {
        refused(&mut state.borrow_mut(), Refusal::TooMany)
    } else {
        // May run the script's `toJSON` (which may queue actions itself): no borrow held.
        let json = match params {
            Some(value) if !value.is_undefined() => ctx.json_stringify(value)?,
            _ => None,
        };
        let room = limits
            .output_bytes
            .saturating_sub(state.borrow().action_bytes);
        let params = match json {
            None => Ok((serde_json::Value::Null, 0)),
            Some(json) => match text.bounded(json, room)? {
                Bounded::Whole(json) => match text::parse_json(&json) {
                    Ok(value) => Ok((value, json.len())),
                    Err(text::JsonError::TooDeep) => Err(Refusal::ParamsTooDeep),
                    // `JSON.stringify` output always parses; should it not, queue nothing.
                    Err(text::JsonError::Invalid(_)) => Ok((serde_json::Value::Null, 0)),
                },
                Bounded::Cut { .. } => Err(Refusal::ParamsTooLarge),
            },
        };
        let mut state = state.borrow_mut();
        match params {
            Err(refusal) => refused(&mut state, refusal),
            Ok(_) if state.actions.len() >= limits.max_actions => {
                refused(&mut state, Refusal::TooMany)
            }
            Ok((params, bytes)) => {
                let id = format!("action_{}", state.actions.len() + 1);
                state.action_bytes += bytes;
                state.actions.push(QueuedAction {
                    id: id.clone(),
                    kind: kind.to_owned(),
                    params,
                });
                id
            }
        }
    };
    let handle = Object::new(ctx.clone())?;
    handle.set("id", id)?;
    handle.set("type", kind)?;
    Ok(handle)
}
