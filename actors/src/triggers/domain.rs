//! Trigger and firing types.

use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FiringId, FunctionId, TriggerId};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerType {
    Cron,
    Event,
    Webhook,
}

impl TriggerType {
    /// Case-insensitive, as the contract allows.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cron" => Some(Self::Cron),
            "event" => Some(Self::Event),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::Event => "event",
            Self::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub id: TriggerId,
    pub account_id: AccountId,
    pub function_id: FunctionId,
    pub kind: TriggerType,
    /// Cron: the schedule (without a `cron:` prefix); event: the event name; webhook: "".
    pub rule: String,
    pub config: BTreeMap<String, String>,
    pub enabled: bool,
    /// Cron only; `None` while disabled.
    pub next_run: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl crate::page::Keyed for Trigger {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

/// A trigger as the API returns it from creation or rotation: with the webhook secret
/// in plain text, shown only then.
#[derive(Debug, Clone)]
pub struct TriggerWithSecret {
    pub trigger: Trigger,
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringStatus {
    /// Stored, waiting for a worker.
    Pending,
    /// Claimed by a worker (under its lease).
    Running,
    Succeeded,
    Failed,
    /// A cron tick while the previous firing was still pending or running.
    Skipped,
}

impl FiringStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "skipped" => Self::Skipped,
            _ => Self::Failed,
        }
    }

    /// Still to be worked (or being worked).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// One stored firing of a trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub id: FiringId,
    pub trigger_id: TriggerId,
    /// Cron firings: the tick.
    pub tick_at: Option<DateTime<Utc>>,
    /// Event firings: the event delivered.
    pub event_id: Option<crate::ids::EventId>,
    pub params: Value,
    pub status: FiringStatus,
    /// Assigned when the firing is stored, so a webhook caller can be told the id the
    /// execution will have.
    pub execution_id: Option<ExecutionId>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A firing claimed under this replica's lease, with what running it needs.
#[derive(Debug, Clone)]
pub struct ClaimedFiring {
    pub firing: Firing,
    pub kind: TriggerType,
    pub account_id: AccountId,
    pub function_id: FunctionId,
    pub trigger_enabled: bool,
    /// The firing was already running under another lease that ran out: that replica
    /// died mid-run, and the firing fails rather than running twice.
    pub previous_lease_expired: bool,
}

/// The firing of a cron tick: `pending`, or `skipped` while an earlier one is open.
pub(crate) fn cron_firing(
    trigger: TriggerId,
    tick: DateTime<Utc>,
    skip: bool,
    now: DateTime<Utc>,
) -> Firing {
    Firing {
        id: FiringId::generate(),
        trigger_id: trigger,
        tick_at: Some(tick),
        event_id: None,
        params: json!({
            "trigger_id": trigger.to_string(),
            "scheduled_for": crate::clock::timestamp(&tick),
        }),
        status: if skip {
            FiringStatus::Skipped
        } else {
            FiringStatus::Pending
        },
        execution_id: (!skip).then(ExecutionId::generate),
        error: skip.then(|| "previous firing still in progress".to_owned()),
        created_at: now,
    }
}

/// The firing of an event trigger for one event.
pub(crate) fn event_firing(trigger: TriggerId, event: &Event, now: DateTime<Utc>) -> Firing {
    Firing {
        id: FiringId::generate(),
        trigger_id: trigger,
        tick_at: None,
        event_id: Some(event.id),
        params: json!({
            "trigger_id": trigger.to_string(),
            "event": event.to_params(),
        }),
        status: FiringStatus::Pending,
        execution_id: Some(ExecutionId::generate()),
        error: None,
        created_at: now,
    }
}
