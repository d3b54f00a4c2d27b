//! Trigger and firing types, and the parsing of trigger requests: an HTTP body and a
//! Devpack `triggers.register` action both become a [`TriggerInput`], which
//! [`NewTrigger::parse`] turns into checked values; a trigger holds its rule parsed
//! ([`TriggerRule`]).

use crate::error::ValidationError;
use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FiringId, FunctionId, TriggerId};
use crate::patch::Patch;
use crate::schedule::Schedule;
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

/// An event name of CONTRACT.md §3.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventName(&'static str);

impl EventName {
    pub fn parse(text: &str) -> Option<Self> {
        crate::events::NAMES
            .iter()
            .find(|name| **name == text)
            .map(|name| Self(name))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// What makes a trigger fire, held parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerRule {
    Cron(Schedule),
    Event(EventName),
    Webhook,
}

impl TriggerRule {
    /// Checks a requested rule against the trigger type (a leading `cron:` is stripped
    /// from cron rules; webhooks take none).
    pub fn parse(kind: TriggerType, raw: &str) -> Result<Self, ValidationError> {
        let text = raw.trim();
        match kind {
            TriggerType::Cron => {
                let text = match text.get(..5) {
                    Some(prefix) if prefix.eq_ignore_ascii_case("cron:") => text[5..].trim(),
                    _ => text,
                };
                if text.is_empty() {
                    return Err(ValidationError::new(
                        "rule",
                        "is required for cron triggers",
                    ));
                }
                Schedule::parse(text)
                    .map(Self::Cron)
                    .map_err(|e| ValidationError::new("rule", e))
            }
            TriggerType::Event if text.is_empty() => Err(ValidationError::new(
                "rule",
                "is required for event triggers",
            )),
            TriggerType::Event => EventName::parse(text).map(Self::Event).ok_or_else(|| {
                ValidationError::new(
                    "rule",
                    format!(
                        "unknown event {text:?}; expected one of {}",
                        crate::events::NAMES.join(", ")
                    ),
                )
            }),
            TriggerType::Webhook if text.is_empty() => Ok(Self::Webhook),
            TriggerType::Webhook => Err(ValidationError::new(
                "rule",
                "must be empty for webhook triggers",
            )),
        }
    }

    /// A rule read back from storage (written by [`TriggerRule::text`]).
    pub fn from_stored(kind: &str, rule: &str) -> Result<Self, String> {
        let kind =
            TriggerType::parse(kind).ok_or_else(|| format!("unknown trigger type {kind:?}"))?;
        Self::parse(kind, rule).map_err(|e| e.to_string())
    }

    pub fn kind(&self) -> TriggerType {
        match self {
            Self::Cron(_) => TriggerType::Cron,
            Self::Event(_) => TriggerType::Event,
            Self::Webhook => TriggerType::Webhook,
        }
    }

    /// The rule as the API shows it and the store keeps it: the schedule, the event name,
    /// or empty.
    pub fn text(&self) -> String {
        match self {
            Self::Cron(schedule) => schedule.to_string(),
            Self::Event(name) => name.as_str().to_owned(),
            Self::Webhook => String::new(),
        }
    }

    pub fn schedule(&self) -> Option<&Schedule> {
        match self {
            Self::Cron(schedule) => Some(schedule),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub id: TriggerId,
    pub account_id: AccountId,
    pub function_id: FunctionId,
    pub rule: TriggerRule,
    pub config: BTreeMap<String, String>,
    pub enabled: bool,
    /// Cron only; `None` while disabled.
    pub next_run: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Trigger {
    pub fn kind(&self) -> TriggerType {
        self.rule.kind()
    }

    /// The first tick of a cron trigger enabled at `now`; `None` for other types and
    /// while disabled.
    fn first_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.rule
            .schedule()
            .filter(|_| self.enabled)
            .and_then(|s| s.next_after(now))
    }
}

const CONFIG_MAX_ENTRIES: usize = 32;
const CONFIG_MAX_KEY: usize = 128;
const CONFIG_MAX_VALUE: usize = 1024;

/// Keys trimmed and lower-cased, values trimmed; bounded entries, key and value lengths;
/// two keys that normalise to the same one are refused rather than silently merged.
pub fn normalize_config(
    raw: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ValidationError> {
    if raw.len() > CONFIG_MAX_ENTRIES {
        return Err(ValidationError::new(
            "config",
            format!("at most {CONFIG_MAX_ENTRIES} entries allowed"),
        ));
    }
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let key = key.trim().to_lowercase();
        let len = key.chars().count();
        if len == 0 || len > CONFIG_MAX_KEY {
            return Err(ValidationError::new(
                "config",
                format!("keys must be 1-{CONFIG_MAX_KEY} characters"),
            ));
        }
        let value = value.trim().to_owned();
        if value.chars().count() > CONFIG_MAX_VALUE {
            return Err(ValidationError::new(
                format!("config.{key}"),
                format!("must be at most {CONFIG_MAX_VALUE} characters"),
            ));
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(ValidationError::new(
                "config",
                format!("duplicate key {key:?} (keys are case-insensitive)"),
            ));
        }
    }
    Ok(out)
}

fn function_ref(raw: &str) -> Result<FunctionId, ValidationError> {
    FunctionId::parse(raw.trim())
        .ok_or_else(|| ValidationError::new("function_id", "function not found in this account"))
}

fn kind(raw: &str) -> Result<TriggerType, ValidationError> {
    TriggerType::parse(raw)
        .ok_or_else(|| ValidationError::new("type", "must be cron, event or webhook"))
}

/// A trigger as requested, before any check. It is also the shape of the HTTP body.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = TriggerInput)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    #[schema(required = true)]
    pub function_id: Option<String>,
    #[serde(rename = "type")]
    #[schema(required = true)]
    pub kind: Option<String>,
    #[schema(required = true)]
    pub rule: Option<String>,
    pub config: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
}

/// A trigger whose every field follows the contract.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub function_id: FunctionId,
    pub rule: TriggerRule,
    pub config: BTreeMap<String, String>,
    pub enabled: bool,
}

impl NewTrigger {
    pub fn parse(input: TriggerInput) -> Result<Self, ValidationError> {
        let function_id = input
            .function_id
            .as_deref()
            .ok_or_else(|| ValidationError::new("function_id", "is required"))
            .and_then(function_ref)?;
        let kind = input
            .kind
            .as_deref()
            .map(kind)
            .transpose()?
            .unwrap_or(TriggerType::Cron);
        Ok(Self {
            function_id,
            config: normalize_config(input.config.unwrap_or_default())?,
            rule: TriggerRule::parse(kind, input.rule.as_deref().unwrap_or_default())?,
            enabled: input.enabled.unwrap_or(true),
        })
    }

    pub fn kind(&self) -> TriggerType {
        self.rule.kind()
    }

    /// The trigger as stored when created at `now`, a cron trigger's first tick computed.
    pub fn into_trigger(self, account: AccountId, now: DateTime<Utc>) -> Trigger {
        let mut trigger = Trigger {
            id: TriggerId::generate(),
            account_id: account,
            function_id: self.function_id,
            rule: self.rule,
            config: self.config,
            enabled: self.enabled,
            next_run: None,
            last_fired_at: None,
            created_at: now,
            updated_at: now,
        };
        trigger.next_run = trigger.first_tick(now);
        trigger
    }
}

/// A PATCH as requested: omitted fields `Missing`, `null` fields `Null`. It is also the
/// shape of the HTTP body.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = TriggerPatch)]
#[serde(deny_unknown_fields)]
pub struct TriggerPatchInput {
    #[schema(value_type = String)]
    #[serde(default)]
    pub function_id: Patch<String>,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    #[serde(default)]
    pub kind: Patch<String>,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub rule: Patch<String>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    #[serde(default)]
    pub config: Patch<BTreeMap<String, String>>,
    #[schema(value_type = bool)]
    #[serde(default)]
    pub enabled: Patch<bool>,
    #[schema(value_type = bool)]
    #[serde(default)]
    pub rotate_webhook_secret: Patch<bool>,
}

/// A checked PATCH. The rule is checked against the trigger's type when applied
/// ([`TriggerPatch::apply`]), since only the stored trigger knows it.
#[derive(Debug, Clone, Default)]
pub struct TriggerPatch {
    pub function_id: Option<FunctionId>,
    /// Accepted only if it equals the current type (`type` is immutable).
    pub kind: Option<TriggerType>,
    /// `null` clears the rule, which only a webhook trigger accepts.
    pub rule: Option<String>,
    pub config: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub rotate_webhook_secret: bool,
}

impl TriggerPatch {
    pub fn parse(input: TriggerPatchInput) -> Result<Self, ValidationError> {
        Ok(Self {
            function_id: input
                .function_id
                .required("function_id")?
                .as_deref()
                .map(function_ref)
                .transpose()?,
            kind: input
                .kind
                .required("type")?
                .as_deref()
                .map(kind)
                .transpose()?,
            rule: match input.rule {
                Patch::Missing => None,
                Patch::Null => Some(String::new()),
                Patch::Value(rule) => Some(rule),
            },
            config: match input.config {
                Patch::Missing => None,
                Patch::Null => Some(BTreeMap::new()),
                Patch::Value(map) => Some(normalize_config(map)?),
            },
            enabled: input.enabled.required("enabled")?,
            rotate_webhook_secret: input
                .rotate_webhook_secret
                .required("rotate_webhook_secret")?
                .unwrap_or(false),
        })
    }

    /// Applies the changes that concern the trigger alone (the function is checked by
    /// the service): type immutability, the rule against the type, and the next tick (a
    /// new rule or re-enabling recomputes from now: missed ticks are not replayed).
    pub fn apply(&self, trigger: &mut Trigger, now: DateTime<Utc>) -> Result<(), ValidationError> {
        if self.kind.is_some_and(|k| k != trigger.kind()) {
            return Err(ValidationError::new("type", "cannot be changed"));
        }
        if self.rotate_webhook_secret && trigger.kind() != TriggerType::Webhook {
            return Err(ValidationError::new(
                "rotate_webhook_secret",
                "only webhook triggers have a secret",
            ));
        }
        let mut new_rule = false;
        if let Some(raw) = &self.rule {
            trigger.rule = TriggerRule::parse(trigger.kind(), raw)?;
            new_rule = true;
        }
        if let Some(function) = self.function_id {
            trigger.function_id = function;
        }
        let re_enabled = self.enabled == Some(true) && !trigger.enabled;
        trigger.enabled = self.enabled.unwrap_or(trigger.enabled);
        if let Some(config) = &self.config {
            trigger.config = config.clone();
        }
        if trigger.kind() == TriggerType::Cron {
            if !trigger.enabled {
                trigger.next_run = None;
            } else if new_rule || re_enabled || trigger.next_run.is_none() {
                trigger.next_run = trigger.first_tick(now);
            }
        }
        trigger.updated_at = now;
        Ok(())
    }
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
#[derive(Clone)]
pub struct TriggerWithSecret {
    pub trigger: Trigger,
    /// Wiped from memory when dropped.
    pub webhook_secret: Option<zeroize::Zeroizing<String>>,
}

/// Never prints the secret (a `?trigger` in a log line must not leak it).
impl std::fmt::Debug for TriggerWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerWithSecret")
            .field("trigger", &self.trigger)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
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

/// The firing of an event for a trigger with `MAX_PENDING_FIRINGS_PER_TRIGGER` firings
/// already open: stored as `skipped`, so the backlog stays bounded and the drop is seen.
pub(crate) fn backlogged_event_firing(
    trigger: TriggerId,
    event: &Event,
    now: DateTime<Utc>,
    quota: crate::quota::Quota,
) -> Firing {
    let mut firing = event_firing(trigger, event, now);
    firing.status = FiringStatus::Skipped;
    firing.execution_id = None;
    firing.error = Some(format!(
        "too many pending firings (at most {} per trigger)",
        quota.max().unwrap_or(0)
    ));
    firing
}
