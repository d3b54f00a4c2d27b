//! Triggers: cron, event and webhook triggers that run a function, the firings they
//! produce, and delivery of internal events to event triggers.
//!
//! Every firing is a stored row before anything runs (a webhook is answered 202 only once
//! its firing is stored), worked under a lease by the `events` actor's worker. Cron
//! firings are inserted by the same actor every `AUTOMATION_TICK`, unique per (trigger,
//! tick); event firings by event delivery, unique per (trigger, event).

mod actor;
mod domain;
mod memory;
mod postgres;
mod service;
#[cfg(test)]
mod tests;
mod worker;

pub use actor::{
    AcceptWebhook, CreateTrigger, DeleteTrigger, GetTrigger, ListTriggers, TriggersActor,
    UpdateTrigger, VerifyWebhook,
};
pub use domain::{
    normalize_config, ClaimedFiring, EventName, Firing, FiringStatus, NewTrigger, Trigger,
    TriggerInput, TriggerPatch, TriggerPatchInput, TriggerRule, TriggerType, TriggerWithSecret,
};
pub use memory::MemoryTriggerStore;
pub use postgres::PgTriggerStore;
pub use service::{webhook_signature, TriggersService, VerifiedWebhook, WebhookAccepted};
pub use worker::{EventsActor, TriggerMetrics, TriggerWorker, WorkerConfig};

use crate::error::{Code, StoreError, ValidationError};
use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FiringId, TriggerId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::Tx;
use chrono::{DateTime, Utc};

crate::subsystem_error!(
    /// Why a trigger request or a webhook call failed.
    TriggersError {
        /// The webhook's `X-Webhook-Signature` is missing or wrong.
        #[error("webhook signature missing or wrong")]
        InvalidSignature => Code::InvalidSignature,
        /// The trigger already has `MAX_PENDING_FIRINGS_PER_TRIGGER` firings waiting.
        #[error("{0}; retry later")]
        Backlogged(String) => Code::Backlogged,
    }
);

crate::handle_trait!(
    /// What the HTTP edge may ask of the triggers subsystem.
    TriggersHandle: CreateTrigger,
    GetTrigger,
    ListTriggers,
    UpdateTrigger,
    DeleteTrigger,
    VerifyWebhook,
    AcceptWebhook,
);

/// Inserts a trigger inside the caller's transaction (a Devpack `triggers.register`):
/// `NotFound` unless its function exists in its account.
pub async fn insert_trigger(
    tx: &mut Tx<'_>,
    trigger: &Trigger,
    quota: Quota,
) -> Result<(), StoreError> {
    match tx {
        Tx::Memory(tx) => memory::insert_trigger(tx, trigger, None, quota),
        Tx::Postgres(tx) => postgres::insert_trigger(tx, trigger, None, quota).await,
    }
}

/// The lease of a firing, as the fence of its execution (see `functions::Fence`).
#[derive(Debug)]
pub struct FiringLease {
    pub firing: FiringId,
    pub owner: std::sync::Arc<str>,
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

#[async_trait::async_trait]
impl crate::functions::Fence for FiringLease {
    async fn holds(&self, tx: &mut Tx<'_>) -> Result<bool, StoreError> {
        let now = self.clock.now();
        match tx {
            Tx::Memory(tx) => Ok(memory::holds_firing(tx, self.firing, &self.owner, now)),
            Tx::Postgres(tx) => postgres::holds_firing(tx, self.firing, &self.owner, now).await,
        }
    }

    /// Records the firing's outcome with the execution: one transaction per firing.
    async fn settle(
        &self,
        tx: &mut Tx<'_>,
        execution: &crate::functions::Execution,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let status = match execution.status {
            crate::functions::ExecutionStatus::Succeeded => FiringStatus::Succeeded,
            crate::functions::ExecutionStatus::Failed => FiringStatus::Failed,
        };
        let outcome = (status, Some(execution.id), execution.error.as_deref());
        match tx {
            Tx::Memory(tx) => Ok(memory::settle_firing(
                tx,
                self.firing,
                &self.owner,
                now,
                outcome,
            )),
            Tx::Postgres(tx) => {
                postgres::settle_firing(tx, self.firing, &self.owner, now, outcome).await
            }
        }
    }
}

/// What a due cron tick becomes: decided by the worker, applied by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickDispatch {
    /// `skipped` instead of `pending`: an earlier firing is still open.
    pub skip: bool,
    /// The trigger's `next_run` after this tick.
    pub next_run: Option<DateTime<Utc>>,
}

/// The worker's decision for one due cron trigger: `(trigger, a firing is open)`.
pub type TickPlan = dyn Fn(&Trigger, bool) -> TickDispatch + Send + Sync;

/// What advancing due cron triggers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdvancedCron {
    pub pending: usize,
    pub skipped: usize,
}

/// A PATCH of a trigger, applied to it as it is now (under its row lock), or refused.
pub type TriggerChange<'c> =
    &'c (dyn for<'t> Fn(&'t Trigger) -> Result<Trigger, ValidationError> + Sync);

#[async_trait::async_trait]
pub trait TriggerStore: Send + Sync + 'static {
    /// `NotFound` if the account or the function is gone; `LimitExceeded` when the
    /// account already holds `quota` triggers.
    async fn create(
        &self,
        trigger: &Trigger,
        sealed_secret: Option<&str>,
        quota: Quota,
    ) -> Result<(), StoreError>;
    async fn get(&self, account: AccountId, id: TriggerId) -> Result<Trigger, StoreError>;
    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Trigger>, StoreError>;
    /// Applies `change` to the trigger as it is now, under its row lock (so a concurrent
    /// PATCH, or the worker's advance of `next_run`, is never undone by a stale read),
    /// and saves what it returns (every field but `last_fired_at`, the worker's),
    /// replacing the webhook secret when `sealed_secret` is given. The inner `Err` is
    /// `change` refusing (nothing saved); `NotFound` if the trigger, or the function it
    /// now names, is gone.
    async fn update(
        &self,
        account: AccountId,
        id: TriggerId,
        change: TriggerChange<'_>,
        sealed_secret: Option<&str>,
    ) -> Result<Result<Trigger, ValidationError>, StoreError>;
    /// Deletes the trigger and its firings.
    async fn delete(&self, account: AccountId, id: TriggerId) -> Result<(), StoreError>;
    /// A trigger of any account with its sealed webhook secret (the webhook endpoint is
    /// authenticated by the signature alone).
    async fn with_secret(&self, id: TriggerId) -> Result<(Trigger, Option<String>), StoreError>;
    /// Stores a firing (`pending`); `NotFound` if the trigger is gone, `LimitExceeded`
    /// when `quota` firings of the trigger are already open (pending or running).
    async fn insert_firing(&self, firing: &Firing, quota: Quota) -> Result<(), StoreError>;
    /// Sealed webhook secrets in id order after `after`, for `--rewrap-secrets`.
    async fn sealed_secrets(
        &self,
        after: Option<TriggerId>,
        limit: i64,
    ) -> Result<Vec<(TriggerId, String)>, StoreError>;
    /// Compare-and-set of one sealed secret; `false` if it changed meanwhile.
    async fn replace_secret(&self, id: TriggerId, old: &str, new: &str)
        -> Result<bool, StoreError>;
}

/// The background side of triggers: due cron ticks, event delivery and firings, each
/// claimed so that several replicas never do the same work twice.
#[async_trait::async_trait]
pub trait FiringStore: Send + Sync + 'static {
    /// For up to `limit` enabled cron triggers with `next_run ≤ now`, in one transaction:
    /// insert the firing for the tick as `plan` says (unique per (trigger, tick)) and move
    /// `next_run`.
    async fn advance_cron(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: &TickPlan,
    ) -> Result<AdvancedCron, StoreError>;
    /// The earliest `next_run` of an enabled cron trigger.
    async fn next_cron_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// In one transaction: a firing for each enabled event trigger of the event's account
    /// whose rule is its name (at most one per trigger and event), and the event marked
    /// delivered (`events::mark_delivered`). A trigger with `quota` firings already open
    /// gets a `skipped` one instead. Returns the firings stored; nothing changes if the
    /// lease on the event was lost.
    async fn deliver(
        &self,
        event: &Event,
        owner: &str,
        now: DateTime<Utc>,
        quota: Quota,
    ) -> Result<usize, StoreError>;
    /// Deletes finished firings last changed before `finished_before`; returns how many.
    async fn purge(&self, finished_before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Claims up to `limit` open firings whose lease is free or expired, oldest first,
    /// marking them `running` and setting the trigger's `last_fired_at`.
    async fn claim_firings(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedFiring>, StoreError>;
    /// Extends a lease while the function runs; `false` if the firing is no longer ours.
    async fn renew_firing(
        &self,
        id: FiringId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records the outcome (`succeeded` or `failed`) and clears the lease, if still ours.
    async fn finish_firing(
        &self,
        id: FiringId,
        owner: &str,
        now: DateTime<Utc>,
        status: FiringStatus,
        execution_id: Option<ExecutionId>,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Gives a claim back (the executor was busy): `pending` again, not before `retry_at`.
    async fn release_firing(
        &self,
        id: FiringId,
        owner: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}
