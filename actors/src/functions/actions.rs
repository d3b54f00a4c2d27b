//! Devpack actions as the functions subsystem sees them. After a successful run its queued
//! actions are validated in order by an [`Actions`] implementation into [`Effect`]s, which
//! are applied in the transaction that records the execution, all or nothing. What an
//! effect creates belongs to another subsystem; only the `devpack` module, wired in at
//! start-up, knows which.

use super::ActionRecord;
use crate::error::StoreError;
use crate::executor::QueuedAction;
use crate::ids::{AccountId, FunctionId};
use crate::store::Tx;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Whose actions these are, and the time they are applied at.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub account: AccountId,
    pub function: FunctionId,
    pub now: DateTime<Utc>,
}

/// Which actions could not be applied: the one at `index` failed with `reason`; every
/// other action is `aborted` and nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    pub reason: String,
}

/// A validated action, applied through its owner's API inside the execution's
/// transaction.
#[async_trait::async_trait]
pub trait Effect: Send + Sync + std::fmt::Debug {
    /// The action's `result` once applied.
    fn result(&self) -> Value;
    /// Applies the effect inside `tx`. A refusal (a uniqueness rule, a quota) rolls the
    /// whole transaction back.
    async fn apply(&self, tx: &mut Tx<'_>) -> Result<(), EffectError>;
}

/// The work an execution runs for (a job attempt, a trigger firing), held under a lease
/// by the caller. Checked inside the transaction that records the execution, before its
/// effects: an attempt whose lease was lost (renewal failed, another replica took it
/// over) commits neither its record nor its effects, so exactly one attempt's effects
/// exist.
#[async_trait::async_trait]
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// Whether the lease is still held; may lock the leased row until `tx` ends.
    async fn holds(&self, tx: &mut Tx<'_>) -> Result<bool, StoreError>;

    /// As [`Fence::holds`], and records in the same transaction what `execution` means
    /// for the leased work (a job attempt's outcome), saving the lease holder a second
    /// transaction. `false`: the lease was lost and nothing may commit. The default only
    /// checks.
    async fn settle(
        &self,
        tx: &mut Tx<'_>,
        execution: &super::Execution,
    ) -> Result<bool, StoreError> {
        let _ = execution;
        self.holds(tx).await
    }
}

/// What a lost lease makes of the recording.
pub fn lease_lost() -> StoreError {
    StoreError::InvalidState("the lease on this work was lost; nothing recorded".to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns queued actions into effects, validating each like the HTTP route it mirrors.
pub trait Actions: Send + Sync + 'static {
    /// Every action in order; the first that cannot be applied refuses them all.
    fn prepare(
        &self,
        queued: &[QueuedAction],
        scope: Scope,
    ) -> Result<Vec<Box<dyn Effect>>, Refused>;
}

/// What became of a run's actions.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// All applied: each `succeeded` with its result.
    Applied(&'a [Box<dyn Effect>]),
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
                    effects.get(i).map_or(Value::Null, |e| e.result()),
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
