//! Functions: user JavaScript stored per account and executed in the worker pool, with
//! secrets resolved at call time and every run recorded as an execution.
//!
//! Devpack actions a run queued are applied in the transaction that records it. What an
//! action creates belongs to other subsystems (jobs, triggers, later the gas bank and
//! oracle), which this module does not know: it sees each validated action as an
//! [`Effect`] that applies itself through its owner's API, made by an [`Actions`]
//! implementation wired in at start-up (`devpack`).

pub mod actions;
mod actor;
mod domain;
mod memory;
mod postgres;
mod service;

pub use actions::{Actions, Effect, EffectError, Fence, Refused, Scope};
pub use actor::{
    CreateFunction, DeleteFunction, ExecuteFunction, FunctionsActor, GetExecution, GetFunction,
    ListExecutions, ListFunctions, ReplaceFunction,
};
pub use domain::{
    ActionRecord, Execution, ExecutionStatus, Function, FunctionDraft, FunctionLimits, LimitMaxima,
};
pub use memory::MemoryFunctionStore;
pub use postgres::PgFunctionStore;
pub use service::{ExecDefaults, ExecOptions, FunctionsDeps, FunctionsService};

use crate::error::{Code, StoreError};
use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::Tx;
use chrono::{DateTime, Utc};
use std::sync::Arc;

crate::subsystem_error!(
    /// Why a functions request failed, or why an execution could not start (nothing is
    /// recorded then).
    FunctionsError {
        /// Every worker is busy and the queue (or the account's share) is full.
        #[error("all executors are busy and the queue is full; retry shortly")]
        ExecutorBusy => Code::ExecutorBusy,
    }
);

crate::handle_trait!(
    /// What the HTTP edge may ask of the functions subsystem.
    FunctionsHandle: CreateFunction,
    GetFunction,
    ListFunctions,
    ReplaceFunction,
    DeleteFunction,
    ExecuteFunction,
    ListExecutions,
    GetExecution,
);

#[async_trait::async_trait]
pub trait FunctionStore: Send + Sync + 'static {
    /// `NotFound` if the account does not exist.
    /// `LimitExceeded` when the account already holds `quota` functions.
    async fn create(&self, function: &Function, quota: Quota) -> Result<(), StoreError>;
    async fn get(&self, account: AccountId, id: FunctionId) -> Result<Function, StoreError>;
    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Function>, StoreError>;
    /// Replaces the function (PUT): version + 1; returns the new state.
    async fn replace(&self, function: &Function) -> Result<Function, StoreError>;
    /// Deletes the function and its executions (and, by cascade, its jobs and triggers).
    async fn delete(&self, account: AccountId, id: FunctionId) -> Result<(), StoreError>;
    /// Records an execution and, in the same transaction, the event it causes (the
    /// outbox: `function.execution.failed`) and the effects of its Devpack actions. If
    /// effect `i` is refused when applied nothing is written and the refusal says which.
    /// With a `fence`, nothing is written unless it still holds (`InvalidState`).
    async fn insert_execution(
        &self,
        execution: &Execution,
        event: Option<&Event>,
        fence: Option<&Arc<dyn Fence>>,
        effects: &[Box<dyn Effect>],
    ) -> Result<Option<Refused>, StoreError>;
    /// Newest first (`started_at`, then id, both descending); the page key is the last
    /// item seen, and the next page starts strictly before it.
    async fn list_executions(
        &self,
        account: AccountId,
        function: FunctionId,
        page: PageRequest,
    ) -> Result<Page<Execution>, StoreError>;
    /// Retention: deletes up to `limit` executions started before `started_before`,
    /// oldest first; how many went.
    async fn purge_executions(
        &self,
        started_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError>;
    /// One execution of the account (and of `function`, when given).
    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        function: Option<FunctionId>,
    ) -> Result<Execution, StoreError>;
}

/// Writes an execution record, its event and its effects inside `tx`, in that order;
/// the first refused effect stops it, and the caller then drops `tx` (rolling back).
async fn record(
    tx: &mut Tx<'_>,
    execution: &Execution,
    event: Option<&Event>,
    fence: Option<&dyn Fence>,
    effects: &[Box<dyn Effect>],
) -> Result<Option<Refused>, StoreError> {
    if let Some(fence) = fence {
        if !fence.settle(tx, execution).await? {
            return Err(actions::lease_lost());
        }
    }
    match tx {
        Tx::Memory(tx) => memory::insert_execution(tx, execution)?,
        Tx::Postgres(tx) => postgres::insert_execution(tx, execution).await?,
    }
    if let Some(event) = event {
        crate::events::insert(tx, event).await?;
    }
    for (index, effect) in effects.iter().enumerate() {
        match effect.apply(tx).await {
            Ok(()) => {}
            Err(EffectError::Refused(reason)) => return Ok(Some(Refused { index, reason })),
            Err(EffectError::Store(e)) => return Err(e),
        }
    }
    Ok(None)
}

/// Whether `function` exists in `account` (jobs and triggers check what they point at).
pub async fn owns_function(
    store: &dyn FunctionStore,
    account: AccountId,
    function: FunctionId,
) -> Result<bool, StoreError> {
    match store.get(account, function).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}
