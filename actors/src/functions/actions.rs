//! Devpack actions: what a successful script queued, validated like the HTTP routes and
//! turned into effects that the functions store applies in the execution's transaction,
//! all or nothing. `triggers.register` (cron or event, for the calling function) and
//! `automation.schedule` (a job for the calling function) are applied; the gas bank and
//! oracle actions are refused until those subsystems exist.

use super::ActionRecord;
use crate::automation::{Job, OverlapPolicy};
use crate::executor::QueuedAction;
use crate::ids::{AccountId, FunctionId, JobId, TriggerId};
use crate::schedule::Schedule;
use crate::triggers::{normalize_config, Trigger, TriggerType};
use crate::validate;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A validated action, ready to be written with the execution.
#[derive(Debug, Clone)]
pub enum Effect {
    Job(Job),
    Trigger(Trigger),
}

impl Effect {
    /// The action's `result` once applied.
    fn result(&self) -> Value {
        match self {
            Self::Job(job) => json!({"job_id": job.id.to_string()}),
            Self::Trigger(trigger) => json!({"trigger_id": trigger.id.to_string()}),
        }
    }
}

/// Whose actions these are, and the defaults they need.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub account: AccountId,
    pub function: FunctionId,
    pub now: DateTime<Utc>,
    pub max_attempts: i32,
}

/// Which actions could not be applied: the one at `index` failed with `reason`; every
/// other action is `aborted` and nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    #[serde(rename = "type")]
    kind: Option<String>,
    rule: Option<String>,
    config: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleJob {
    name: Option<String>,
    schedule: Option<String>,
    description: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, String> {
    serde_json::from_value(params.clone()).map_err(|e| format!("invalid params: {e}"))
}

fn register(params: &Value, scope: Scope) -> Result<Effect, String> {
    let p: Register = parse(params)?;
    let kind = match p.kind.as_deref().map(TriggerType::parse) {
        None => TriggerType::Cron,
        Some(Some(k @ (TriggerType::Cron | TriggerType::Event))) => k,
        Some(_) => return Err("type: must be cron or event".to_owned()),
    };
    let (rule, schedule) =
        crate::triggers::service::rule_for(kind, p.rule.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
    let enabled = p.enabled.unwrap_or(true);
    Ok(Effect::Trigger(Trigger {
        id: TriggerId::generate(),
        account_id: scope.account,
        function_id: scope.function,
        kind,
        rule,
        config: normalize_config(p.config.unwrap_or_default()).map_err(|e| e.to_string())?,
        enabled,
        next_run: schedule
            .filter(|_| enabled)
            .and_then(|s| s.next_after(scope.now)),
        last_fired_at: None,
        created_at: scope.now,
        updated_at: scope.now,
    }))
}

fn schedule_job(params: &Value, scope: Scope) -> Result<Effect, String> {
    let p: ScheduleJob = parse(params)?;
    let name = validate::trimmed("name", p.name.as_deref().unwrap_or_default(), 1, 128)
        .map_err(|e| e.to_string())?;
    let description = validate::trimmed(
        "description",
        p.description.as_deref().unwrap_or_default(),
        0,
        1024,
    )
    .map_err(|e| e.to_string())?;
    let schedule = match p.schedule.as_deref().map(str::trim) {
        None | Some("") => return Err("schedule: is required".to_owned()),
        Some(text) => Schedule::parse(text).map_err(|e| format!("schedule: {e}"))?,
    };
    Ok(Effect::Job(Job {
        id: JobId::generate(),
        account_id: scope.account,
        function_id: scope.function,
        name,
        description,
        next_run: schedule.next_after(scope.now),
        schedule: schedule.to_string(),
        enabled: true,
        overlap_policy: OverlapPolicy::Skip,
        max_attempts: scope.max_attempts,
        last_run: None,
        created_at: scope.now,
        updated_at: scope.now,
    }))
}

/// Validates every action in order; the first that cannot be applied refuses them all.
pub fn prepare(actions: &[QueuedAction], scope: Scope) -> Result<Vec<Effect>, Refused> {
    actions
        .iter()
        .enumerate()
        .map(|(index, action)| {
            let effect = match action.kind.as_str() {
                "triggers.register" => register(&action.params, scope),
                "automation.schedule" => schedule_job(&action.params, scope),
                "gasbank.ensureAccount" | "gasbank.withdraw" => Err(unavailable("gas bank")),
                "oracle.createRequest" => Err(unavailable("oracle")),
                other => Err(format!("unknown action type {other:?}")),
            };
            effect.map_err(|reason| Refused { index, reason })
        })
        .collect()
}

fn unavailable(subsystem: &str) -> String {
    format!(
        "not available: the {subsystem} subsystem does not apply Devpack actions in this build yet"
    )
}

/// What became of a run's actions.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// All applied: each `succeeded` with its result.
    Applied(&'a [Effect]),
    /// One `failed`, every other `aborted`; nothing applied.
    Refused(&'a Refused),
    /// The script failed: all `aborted`.
    ScriptFailed,
}

/// The action records of an execution.
pub fn records(actions: &[QueuedAction], outcome: Outcome<'_>) -> Vec<ActionRecord> {
    actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let (status, result, error) = match outcome {
                Outcome::Applied(effects) => (
                    "succeeded",
                    effects.get(i).map_or(Value::Null, Effect::result),
                    None,
                ),
                Outcome::Refused(refused) if refused.index == i => {
                    ("failed", Value::Null, Some(refused.reason.clone()))
                }
                Outcome::Refused(_) | Outcome::ScriptFailed => ("aborted", Value::Null, None),
            };
            ActionRecord {
                id: action.id.clone(),
                kind: action.kind.clone(),
                params: action.params.clone(),
                status: status.to_owned(),
                result,
                error,
            }
        })
        .collect()
}

/// The execution's error when an action was refused.
pub fn failure_message(actions: &[QueuedAction], refused: &Refused) -> String {
    match actions.get(refused.index) {
        Some(action) => format!(
            "devpack action {} ({}) failed: {}",
            action.id, action.kind, refused.reason
        ),
        None => refused.reason.clone(),
    }
}
