//! Trigger business logic: rules checked against the trigger type, `next_run` for cron
//! triggers, webhook secrets (generated, sealed with AAD `webhook:v1:<id>`, shown only at
//! creation and rotation) and the webhook endpoint's checks, in the contract's order.

use super::{Firing, FiringStatus, Trigger, TriggerStore, TriggerType, TriggerWithSecret};
use crate::clock::Clock;
use crate::crypto::{self, KeyRing};
use crate::error::{StoreError, ValidationError};
use crate::functions::FunctionStore;
use crate::ids::{AccountId, ExecutionId, FiringId, FunctionId, TriggerId};
use crate::page::{Page, PageRequest};
use crate::schedule::Schedule;
use chacha20poly1305::aead::rand_core::RngCore as _;
use chacha20poly1305::aead::OsRng;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

/// A validated trigger; `rule` is checked against `kind` by the service.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub function_id: FunctionId,
    pub kind: TriggerType,
    pub rule: String,
    pub config: BTreeMap<String, String>,
    pub enabled: bool,
}

/// A validated PATCH; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct TriggerChanges {
    pub function_id: Option<FunctionId>,
    /// Accepted only if it equals the current type (`type` is immutable).
    pub kind: Option<TriggerType>,
    pub rule: Option<String>,
    pub config: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub rotate_webhook_secret: bool,
}

/// A stored webhook firing: the id its execution will have.
#[derive(Debug, Clone, Copy)]
pub struct WebhookAccepted {
    pub trigger_id: TriggerId,
    pub execution_id: ExecutionId,
}

/// Why a webhook call was refused, in the order the checks run.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("trigger not found")]
    NotFound,
    #[error("webhook signature missing or wrong")]
    BadSignature,
    /// The caller's rate limit (seconds until a token is available).
    #[error("rate limited")]
    RateLimited(u64),
    #[error("trigger is disabled")]
    Disabled,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("{0}")]
    BadBody(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct TriggersService {
    store: Arc<dyn TriggerStore>,
    functions: Arc<dyn FunctionStore>,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    /// Wakes the firing worker once a webhook firing is stored.
    wake: Arc<tokio::sync::Notify>,
}

fn function_not_found() -> ValidationError {
    ValidationError::new("function_id", "function not found in this account")
}

/// The `X-Webhook-Signature` value for `body` under a trigger's secret (the 64 ASCII
/// characters are the HMAC key).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(crypto::hmac_sha256(secret.as_bytes(), body))
    )
}

/// Checks a presented signature in constant time (hex case-insensitive).
fn signature_matches(secret: &str, body: &[u8], presented: Option<&str>) -> bool {
    let Some(presented) = presented.map(str::trim) else {
        return false;
    };
    let Some(hex_text) = presented
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .and_then(|_| presented.get(7..))
    else {
        return false;
    };
    let Ok(given) = hex::decode(hex_text) else {
        return false;
    };
    let expected = crypto::hmac_sha256(secret.as_bytes(), body);
    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
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

/// Checks and normalises a rule for its trigger type; cron rules also yield the schedule.
pub(crate) fn rule_for(
    kind: TriggerType,
    raw: &str,
) -> Result<(String, Option<Schedule>), ValidationError> {
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
            let schedule = Schedule::parse(text).map_err(|e| ValidationError::new("rule", e))?;
            Ok((schedule.to_string(), Some(schedule)))
        }
        TriggerType::Event => {
            if text.is_empty() {
                return Err(ValidationError::new(
                    "rule",
                    "is required for event triggers",
                ));
            }
            if !crate::events::NAMES.contains(&text) {
                return Err(ValidationError::new(
                    "rule",
                    format!(
                        "unknown event {text:?}; expected one of {}",
                        crate::events::NAMES.join(", ")
                    ),
                ));
            }
            Ok((text.to_owned(), None))
        }
        TriggerType::Webhook if text.is_empty() => Ok((String::new(), None)),
        TriggerType::Webhook => Err(ValidationError::new(
            "rule",
            "must be empty for webhook triggers",
        )),
    }
}

impl TriggersService {
    pub fn new(
        store: Arc<dyn TriggerStore>,
        functions: Arc<dyn FunctionStore>,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            functions,
            keys,
            clock,
            wake: Arc::default(),
        }
    }

    /// Wakes `wake` (the events actor's) whenever a webhook firing is stored, so it runs
    /// now rather than at the next poll.
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// A fresh secret (64 lower-case hex characters) and its sealed form.
    fn new_secret(&self, trigger: TriggerId) -> (String, String) {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let secret = hex::encode(bytes);
        let sealed = self
            .keys
            .seal(secret.as_bytes(), crypto::webhook_aad(trigger).as_bytes());
        (secret, sealed)
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create(
        &self,
        account: AccountId,
        new: NewTrigger,
    ) -> Result<Result<TriggerWithSecret, ValidationError>, StoreError> {
        let (rule, schedule) = match rule_for(new.kind, &new.rule) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if !crate::functions::owns_function(&*self.functions, account, new.function_id).await? {
            return Ok(Err(function_not_found()));
        }
        let now = self.clock.now();
        let trigger = Trigger {
            id: TriggerId::generate(),
            account_id: account,
            function_id: new.function_id,
            kind: new.kind,
            rule,
            config: new.config,
            enabled: new.enabled,
            next_run: schedule
                .filter(|_| new.enabled)
                .and_then(|s| s.next_after(now)),
            last_fired_at: None,
            created_at: now,
            updated_at: now,
        };
        let secret = (trigger.kind == TriggerType::Webhook).then(|| self.new_secret(trigger.id));
        match self
            .store
            .create(&trigger, secret.as_ref().map(|(_, sealed)| sealed.as_str()))
            .await
        {
            Ok(()) => {}
            // The function went away between the check and the insert.
            Err(StoreError::NotFound) => return Ok(Err(function_not_found())),
            Err(e) => return Err(e),
        }
        tracing::info!(trigger_id = %trigger.id, kind = trigger.kind.as_str(), "trigger created");
        Ok(Ok(TriggerWithSecret {
            trigger,
            webhook_secret: secret.map(|(plain, _)| plain),
        }))
    }

    pub async fn get(&self, account: AccountId, id: TriggerId) -> Result<Trigger, StoreError> {
        self.store.get(account, id).await
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Trigger>, StoreError> {
        self.store.list(account, page).await
    }

    #[tracing::instrument(skip_all, fields(account_id = %account, trigger_id = %id))]
    pub async fn update(
        &self,
        account: AccountId,
        id: TriggerId,
        changes: TriggerChanges,
    ) -> Result<Result<TriggerWithSecret, ValidationError>, StoreError> {
        let mut trigger = self.store.get(account, id).await?;
        if changes.kind.is_some_and(|k| k != trigger.kind) {
            return Ok(Err(ValidationError::new("type", "cannot be changed")));
        }
        if changes.rotate_webhook_secret && trigger.kind != TriggerType::Webhook {
            return Ok(Err(ValidationError::new(
                "rotate_webhook_secret",
                "only webhook triggers have a secret",
            )));
        }
        let mut schedule = None;
        if let Some(raw) = &changes.rule {
            match rule_for(trigger.kind, raw) {
                Ok((rule, s)) => {
                    trigger.rule = rule;
                    schedule = s;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        if let Some(function) = changes.function_id {
            if !crate::functions::owns_function(&*self.functions, account, function).await? {
                return Ok(Err(function_not_found()));
            }
            trigger.function_id = function;
        }
        let now = self.clock.now();
        let re_enabled = changes.enabled == Some(true) && !trigger.enabled;
        trigger.enabled = changes.enabled.unwrap_or(trigger.enabled);
        trigger.config = changes.config.unwrap_or(trigger.config);
        if trigger.kind == TriggerType::Cron {
            if !trigger.enabled {
                trigger.next_run = None;
            } else if schedule.is_some() || re_enabled || trigger.next_run.is_none() {
                // A new rule or re-enabling recomputes from now: missed ticks are not replayed.
                let schedule = match schedule {
                    Some(s) => s,
                    None => Schedule::parse(&trigger.rule)
                        .map_err(|e| StoreError::internal(anyhow::anyhow!(e)))?,
                };
                trigger.next_run = schedule.next_after(now);
            }
        }
        trigger.updated_at = now;
        let secret = changes
            .rotate_webhook_secret
            .then(|| self.new_secret(trigger.id));
        let trigger = match self
            .store
            .update(&trigger, secret.as_ref().map(|(_, sealed)| sealed.as_str()))
            .await
        {
            Err(StoreError::NotFound) if changes.function_id.is_some() => {
                return Ok(Err(function_not_found()))
            }
            other => other?,
        };
        if secret.is_some() {
            tracing::info!("webhook secret rotated");
        }
        Ok(Ok(TriggerWithSecret {
            trigger,
            webhook_secret: secret.map(|(plain, _)| plain),
        }))
    }

    pub async fn delete(&self, account: AccountId, id: TriggerId) -> Result<(), StoreError> {
        self.store.delete(account, id).await
    }

    /// `POST /webhooks/{id}`, checked in this order: unknown or non-webhook → not found;
    /// bad or missing signature → refused, nothing stored; the caller's rate limit
    /// (`admit`, asked only once the signature proved the caller); disabled; a non-JSON
    /// media type; a body that is not a JSON object (empty = `{}`). Otherwise the firing
    /// is stored before this returns.
    #[tracing::instrument(skip_all, fields(trigger_id = %request.id))]
    pub async fn accept_webhook(
        &self,
        request: super::AcceptWebhook,
    ) -> Result<WebhookAccepted, WebhookError> {
        let super::AcceptWebhook {
            id,
            signature,
            body,
            json_media_type,
            admit,
        } = request;
        let (trigger, sealed) = match self.store.with_secret(id).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Err(WebhookError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let Some(sealed) = sealed.filter(|_| trigger.kind == TriggerType::Webhook) else {
            return Err(WebhookError::NotFound);
        };
        let secret = self
            .keys
            .open(&sealed, crypto::webhook_aad(id).as_bytes())
            .map_err(|e| {
                StoreError::internal(anyhow::anyhow!("webhook secret of trigger {id}: {e}"))
            })?;
        let secret = String::from_utf8(secret)
            .map_err(|_| StoreError::internal(anyhow::anyhow!("webhook secret is not text")))?;
        if !signature_matches(&secret, &body, signature.as_deref()) {
            tracing::info!("webhook refused: bad signature");
            return Err(WebhookError::BadSignature);
        }
        admit(id).map_err(WebhookError::RateLimited)?;
        if !trigger.enabled {
            return Err(WebhookError::Disabled);
        }
        if !json_media_type {
            return Err(WebhookError::UnsupportedMediaType);
        }
        let params = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            match serde_json::from_slice::<Value>(&body) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return Err(WebhookError::BadBody(
                        "request body must be a JSON object".into(),
                    ))
                }
                Err(e) => return Err(WebhookError::BadBody(format!("malformed JSON: {e}"))),
            }
        };
        let firing = Firing {
            id: FiringId::generate(),
            trigger_id: id,
            tick_at: None,
            event_id: None,
            params,
            status: FiringStatus::Pending,
            execution_id: Some(ExecutionId::generate()),
            error: None,
            created_at: self.clock.now(),
        };
        match self.store.insert_firing(&firing).await {
            Ok(()) => {}
            // Deleted between the lookup and the insert.
            Err(StoreError::NotFound) => return Err(WebhookError::NotFound),
            Err(e) => return Err(e.into()),
        }
        self.wake.notify_one();
        let execution_id = firing.execution_id.unwrap_or_else(ExecutionId::generate);
        tracing::info!(firing_id = %firing.id, execution_id = %execution_id, "webhook accepted");
        Ok(WebhookAccepted {
            trigger_id: id,
            execution_id,
        })
    }

    /// `--rewrap-secrets` for webhook secrets: re-encrypt every one not under the current
    /// key, row by compare-and-set. Returns (rewrapped, already current, failed).
    pub async fn rewrap(&self) -> Result<(u64, u64, u64), StoreError> {
        let current = self.keys.current_id();
        let (mut rewrapped, mut current_count, mut failed) = (0, 0, 0);
        let mut after = None;
        loop {
            let batch = self.store.sealed_secrets(after, 256).await?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(*last);
            for (id, sealed) in &batch {
                if crypto::key_id_of(sealed) == Some(current) {
                    current_count += 1;
                    continue;
                }
                let aad = crypto::webhook_aad(*id);
                match self.keys.open(sealed, aad.as_bytes()) {
                    Ok(plain) => {
                        let resealed = self.keys.seal(&plain, aad.as_bytes());
                        if self.store.replace_secret(*id, sealed, &resealed).await? {
                            rewrapped += 1;
                        } else {
                            current_count += 1;
                        }
                    }
                    Err(e) => {
                        tracing::error!(trigger_id = %id, error = %e, "cannot rewrap webhook secret");
                        failed += 1;
                    }
                }
            }
        }
        Ok((rewrapped, current_count, failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_exactly() {
        let secret = "ab".repeat(32);
        let body = br#"{"x":1}"#;
        let good = webhook_signature(&secret, body);
        assert!(signature_matches(&secret, body, Some(&good)));
        assert!(signature_matches(&secret, body, Some(&good.to_uppercase())));
        assert!(!signature_matches(&secret, b"{\"x\":2}", Some(&good)));
        assert!(!signature_matches(&"cd".repeat(32), body, Some(&good)));
        assert!(!signature_matches(&secret, body, None));
        assert!(!signature_matches(&secret, body, Some(&good[7..])));
        assert!(!signature_matches(
            &secret,
            body,
            Some(&good[..good.len() - 2])
        ));
        assert!(!signature_matches(&secret, body, Some("sha256=zz")));
    }

    #[test]
    fn rules_follow_the_trigger_type() {
        assert_eq!(
            rule_for(TriggerType::Cron, " cron:@every 5s ").unwrap().0,
            "@every 5s"
        );
        assert_eq!(
            rule_for(TriggerType::Cron, "*/5 * * * *").unwrap().0,
            "*/5 * * * *"
        );
        assert_eq!(
            rule_for(TriggerType::Cron, "61 * * * *")
                .unwrap_err()
                .to_string(),
            "rule: minute 61 out of range 0-59"
        );
        assert!(rule_for(TriggerType::Cron, "cron:").is_err());
        assert!(rule_for(TriggerType::Event, "function.execution.failed").is_ok());
        assert!(rule_for(TriggerType::Event, "nope").is_err());
        assert_eq!(rule_for(TriggerType::Webhook, " ").unwrap().0, "");
        assert!(rule_for(TriggerType::Webhook, "x").is_err());
    }
}
