//! Internal events: written to the outbox (`app_events`) in the transaction of the change
//! that causes them, then delivered by the `events` actor to the account's `event`
//! triggers whose rule is the event name (see `triggers::worker`).

use crate::clock::{timestamp, truncate_micros};
use crate::ids::{AccountId, EventId};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub const FUNCTION_EXECUTION_FAILED: &str = "function.execution.failed";
pub const AUTOMATION_JOB_FAILED: &str = "automation.job.failed";

/// Every event name an `event` trigger may use as its rule (CONTRACT §3.5). Subsystems
/// not yet built publish nothing, but their names are accepted so triggers can be set up
/// ahead of them.
pub const NAMES: &[&str] = &[
    "pricefeed.updated",
    "oracle.request.completed",
    "oracle.request.failed",
    "gasbank.withdrawal.settled",
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

/// Adds an event to the PostgreSQL outbox, inside the caller's transaction.
pub async fn insert(
    db: &impl deadpool_postgres::GenericClient,
    event: &Event,
) -> Result<(), tokio_postgres::Error> {
    db.execute(
        "INSERT INTO app_events (id, account_id, name, data, occurred_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[
            event.id.as_uuid(),
            event.account_id.as_uuid(),
            &event.name,
            &event.data,
            &event.occurred_at,
        ],
    )
    .await?;
    Ok(())
}
