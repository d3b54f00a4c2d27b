//! Internal events and their outbox (`app_events`), which this module owns. An event is
//! written in the transaction of the change that causes it ([`insert`]), so it is never
//! lost nor emitted for a change that did not commit; the `events` actor claims events
//! under a lease ([`EventStore`]) and delivers each to the account's `event` triggers,
//! marking it delivered in the transaction that stores their firings
//! ([`mark_delivered`], see `triggers::worker`).

mod memory;
mod postgres;

pub use memory::MemoryEventStore;
pub use postgres::PgEventStore;

use crate::clock::{timestamp, truncate_micros};
use crate::error::StoreError;
use crate::ids::{AccountId, EventId};
use crate::store::Tx;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The `LISTEN`/`NOTIFY` channel of the `events` actor's work: an event stored, a
/// firing stored, a trigger changed, on any replica (`store::notify`).
pub const WORK_CHANNEL: &str = "app_trigger_work";

/// Announces new work to every replica's `events` actor; sent when the caller's
/// transaction commits (at once outside one).
pub async fn notify_work(db: &impl deadpool_postgres::GenericClient) -> Result<(), StoreError> {
    crate::store::notify::send(db, WORK_CHANNEL).await
}

pub const FUNCTION_EXECUTION_FAILED: &str = "function.execution.failed";
pub const AUTOMATION_JOB_FAILED: &str = "automation.job.failed";
pub const PRICEFEED_UPDATED: &str = "pricefeed.updated";
pub const ORACLE_REQUEST_COMPLETED: &str = "oracle.request.completed";
pub const ORACLE_REQUEST_FAILED: &str = "oracle.request.failed";
pub const GASBANK_WITHDRAWAL_SETTLED: &str = "gasbank.withdrawal.settled";

/// Every event name an `event` trigger may use as its rule (CONTRACT §3.5).
pub const NAMES: &[&str] = &[
    PRICEFEED_UPDATED,
    ORACLE_REQUEST_COMPLETED,
    ORACLE_REQUEST_FAILED,
    GASBANK_WITHDRAWAL_SETTLED,
    FUNCTION_EXECUTION_FAILED,
    AUTOMATION_JOB_FAILED,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub account_id: AccountId,
    pub name: String,
    pub data: Value,
    pub occurred_at: DateTime<Utc>,
}

impl Event {
    pub fn new(account_id: AccountId, name: &str, data: Value, occurred_at: DateTime<Utc>) -> Self {
        Self {
            id: EventId::generate(),
            account_id,
            name: name.to_owned(),
            data,
            occurred_at: truncate_micros(occurred_at),
        }
    }

    /// The `event` member of an event trigger's params.
    pub fn to_params(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "name": self.name,
            "occurred_at": timestamp(&self.occurred_at),
            "data": self.data,
        })
    }
}

/// Adds an event to the outbox inside the caller's transaction.
pub async fn insert(tx: &mut Tx<'_>, event: &Event) -> Result<(), StoreError> {
    match tx {
        Tx::Memory(tx) => {
            memory::insert(tx, event);
            Ok(())
        }
        Tx::Postgres(tx) => postgres::insert(tx, event).await,
    }
}

/// Marks a claimed event delivered inside the caller's transaction; `false` (and
/// nothing changed) if this replica no longer holds its lease or it was delivered.
pub async fn mark_delivered(
    tx: &mut Tx<'_>,
    event: EventId,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    match tx {
        Tx::Memory(tx) => Ok(memory::mark_delivered(tx, event, owner, now)),
        Tx::Postgres(tx) => postgres::mark_delivered(tx, event, owner, now).await,
    }
}

/// The outbox as the `events` actor sees it: claims under a lease, retention.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Claims up to `limit` undelivered events whose lease is free or expired, oldest
    /// first.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError>;
    /// Deletes events delivered before `delivered_before`; returns how many.
    async fn purge(&self, delivered_before: DateTime<Utc>) -> Result<u64, StoreError>;
}
