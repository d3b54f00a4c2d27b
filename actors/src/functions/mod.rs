//! Functions: user JavaScript stored per account and executed in the isolate pool, with
//! secrets resolved at call time and every run recorded as an execution.

pub mod actions;
mod actor;
mod domain;
mod memory;
mod postgres;
mod service;

pub use actor::{
    CreateFunction, DeleteFunction, ExecuteFunction, FunctionsActor, GetExecution, GetFunction,
    ListExecutions, ListFunctions, ReplaceFunction,
};
pub use domain::{
    ActionRecord, Execution, ExecutionStatus, Function, FunctionDraft, FunctionLimits, LimitMaxima,
};
pub use memory::MemoryFunctionStore;
pub use postgres::PgFunctionStore;
pub use service::{ExecDefaults, ExecOptions, ExecuteError, FunctionsService};

use crate::error::StoreError;
use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Page, PageRequest};

#[async_trait::async_trait]
pub trait FunctionStore: Send + Sync + 'static {
    /// `NotFound` if the account does not exist.
    async fn create(&self, function: &Function) -> Result<(), StoreError>;
    async fn get(&self, account: AccountId, id: FunctionId) -> Result<Function, StoreError>;
    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Function>, StoreError>;
    /// Replaces the function (PUT): version + 1; returns the new state.
    async fn replace(&self, function: &Function) -> Result<Function, StoreError>;
    /// Deletes the function and its executions.
    async fn delete(&self, account: AccountId, id: FunctionId) -> Result<(), StoreError>;
    /// Records an execution and, in the same transaction, the event it causes (the
    /// outbox: `function.execution.failed`) and the effects of its Devpack actions. If
    /// effect `i` breaks a uniqueness rule nothing is written and the refusal says which.
    async fn insert_execution(
        &self,
        execution: &Execution,
        event: Option<&Event>,
        effects: &[actions::Effect],
    ) -> Result<Option<actions::Refused>, StoreError>;
    /// Newest first (`started_at`, then id, both descending); the page key is the last
    /// item seen, and the next page starts strictly before it.
    async fn list_executions(
        &self,
        account: AccountId,
        function: FunctionId,
        page: PageRequest,
    ) -> Result<Page<Execution>, StoreError>;
    /// One execution of the account (and of `function`, when given).
    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        function: Option<FunctionId>,
    ) -> Result<Execution, StoreError>;
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
