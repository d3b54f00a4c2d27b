//! Trigger business logic: rules checked against the trigger type, `next_run` for cron
//! triggers, webhook secrets (generated, sealed with AAD `webhook:v1:<id>`, shown only at
//! creation and rotation) and the webhook endpoint's domain checks. What belongs to HTTP
//! (media type, rate limit, the JSON body) stays at the edge: a webhook is first verified
//! ([`TriggersService::verify_webhook`]: the trigger and its signature), then, once the
//! edge has done its checks, accepted ([`TriggersService::accept_webhook`]).

use super::{
    Firing, FiringStatus, NewTrigger, Trigger, TriggerPatch, TriggerStore, TriggerType,
    TriggerWithSecret, TriggersError,
};
use crate::clock::Clock;
use crate::crypto::{self, KeyRing};
use crate::error::{OrNotFound, StoreError, ValidationError};
use crate::functions::FunctionStore;
use crate::ids::{AccountId, ExecutionId, FiringId, FunctionId, TriggerId};
use crate::page::{Page, PageRequest};
use crate::quota::Quotas;
use chacha20poly1305::aead::rand_core::RngCore as _;
use chacha20poly1305::aead::OsRng;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// A stored webhook firing: the id its execution will have.
#[derive(Debug, Clone, Copy)]
pub struct WebhookAccepted {
    pub trigger_id: TriggerId,
    pub execution_id: ExecutionId,
}

/// A webhook call whose trigger exists and whose signature matched: only
/// [`TriggersService::verify_webhook`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    trigger: TriggerId,
    enabled: bool,
}

impl VerifiedWebhook {
    pub fn trigger_id(&self) -> TriggerId {
        self.trigger
    }

    /// A disabled trigger refuses calls (`invalid_state`), checked after the caller's
    /// rate limit.
    pub fn check_enabled(&self) -> Result<(), TriggersError> {
        if self.enabled {
            Ok(())
        } else {
            Err(TriggersError::InvalidState(
                "trigger is disabled".to_owned(),
            ))
        }
    }
}

#[derive(Clone)]
pub struct TriggersService {
    store: Arc<dyn TriggerStore>,
    functions: Arc<dyn FunctionStore>,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    /// Wakes the firing worker once a webhook firing is stored.
    wake: Arc<tokio::sync::Notify>,
    quotas: Quotas,
    webhooks: Arc<WebhookCache>,
}

/// How long a webhook trigger's row (or its absence) is trusted without reading it
/// again: a rotation, disable or delete on another replica holds within this time, as a
/// token revocation does.
const WEBHOOK_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most webhook triggers remembered; beyond it stale entries go, then all of them.
const WEBHOOK_CACHE_MAX: usize = 4096;

/// A webhook trigger as the signature check needs it, with its secret decrypted once per
/// rotation (the sealed text tells a rotation). A flood of bad signatures on one trigger
/// then costs an HMAC each and no database read or decryption.
struct WebhookKey {
    sealed: String,
    secret: Zeroizing<String>,
    enabled: bool,
}

/// `None`: no webhook trigger with that id (remembered too, so unknown ids are not a
/// database read each).
struct Remembered {
    read_at: Instant,
    key: Option<Arc<WebhookKey>>,
}

#[derive(Default)]
struct WebhookCache(Mutex<HashMap<TriggerId, Remembered>>);

impl WebhookCache {
    fn fresh(&self, id: TriggerId) -> Option<Option<Arc<WebhookKey>>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id)
            .filter(|r| r.read_at.elapsed() < WEBHOOK_CACHE_TTL)
            .map(|r| r.key.clone())
    }

    /// The key remembered for `id` if it was sealed as `sealed` (no rotation since).
    fn same_rotation(&self, id: TriggerId, sealed: &str) -> Option<Arc<WebhookKey>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id)
            .and_then(|r| r.key.clone())
            .filter(|k| k.sealed == sealed)
    }

    fn remember(&self, id: TriggerId, key: Option<Arc<WebhookKey>>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Stale entries go; if that frees less than a quarter, all of them: a full map
        // costs one scan per quarter of its size, not one per insert.
        if map.len() >= WEBHOOK_CACHE_MAX {
            map.retain(|_, r| r.read_at.elapsed() < WEBHOOK_CACHE_TTL);
            if map.len() > WEBHOOK_CACHE_MAX * 3 / 4 {
                map.clear();
            }
        }
        map.insert(
            id,
            Remembered {
                read_at: Instant::now(),
                key,
            },
        );
    }

    /// Changed on this replica: read it again next time.
    fn forget(&self, id: TriggerId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

fn function_not_found() -> TriggersError {
    ValidationError::new("function_id", "function not found in this account").into()
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
fn signature_matches(secret: &str, body: &[u8], presented: Option<&[u8]>) -> bool {
    let Some(presented) = presented.map(|p| p.trim_ascii()) else {
        return false;
    };
    let Some(hex_text) = presented
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"sha256="))
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
            quotas: Quotas::default(),
            webhooks: Arc::default(),
        }
    }

    /// The quotas of triggers per account and pending firings per trigger.
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// Wakes `wake` (the events actor's) whenever a webhook firing is stored, so it runs
    /// now rather than at the next poll.
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// A fresh secret (64 lower-case hex characters) and its sealed form.
    fn new_secret(&self, trigger: TriggerId) -> Result<(Zeroizing<String>, String), StoreError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut *bytes);
        let secret = Zeroizing::new(hex::encode(*bytes));
        let sealed = self
            .keys
            .seal(secret.as_bytes(), crypto::webhook_aad(trigger).as_bytes())?;
        Ok((secret, sealed))
    }

    async fn check_function(
        &self,
        account: AccountId,
        function: FunctionId,
    ) -> Result<(), TriggersError> {
        if crate::functions::owns_function(&*self.functions, account, function).await? {
            Ok(())
        } else {
            Err(function_not_found())
        }
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create(
        &self,
        account: AccountId,
        new: NewTrigger,
    ) -> Result<TriggerWithSecret, TriggersError> {
        self.check_function(account, new.function_id).await?;
        let trigger = new.into_trigger(account, self.clock.now());
        let secret = match trigger.kind() {
            TriggerType::Webhook => Some(self.new_secret(trigger.id)?),
            _ => None,
        };
        match self
            .store
            .create(
                &trigger,
                secret.as_ref().map(|(_, sealed)| sealed.as_str()),
                self.quotas.triggers,
            )
            .await
        {
            Ok(()) => {}
            // The function went away between the check and the insert.
            Err(StoreError::NotFound) => return Err(function_not_found()),
            Err(e) => return Err(e.into()),
        }
        // The `events` actor plans its cron passes by the earliest tick: tell it.
        self.wake.notify_one();
        tracing::info!(trigger_id = %trigger.id, kind = trigger.kind().as_str(), "trigger created");
        Ok(TriggerWithSecret {
            trigger,
            webhook_secret: secret.map(|(plain, _)| plain),
        })
    }

    pub async fn get(&self, account: AccountId, id: TriggerId) -> Result<Trigger, TriggersError> {
        Ok(self.store.get(account, id).await.or_not_found("trigger")?)
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Trigger>, TriggersError> {
        Ok(self.store.list(account, page).await?)
    }

    #[tracing::instrument(skip_all, fields(account_id = %account, trigger_id = %id))]
    pub async fn update(
        &self,
        account: AccountId,
        id: TriggerId,
        patch: TriggerPatch,
    ) -> Result<TriggerWithSecret, TriggersError> {
        let now = self.clock.now();
        // Checked first against the trigger as read (its type never changes, so the
        // locked change below judges the same), so a bad body is refused before the
        // function is looked up (CONTRACT.md §1.5).
        let read = self.store.get(account, id).await.or_not_found("trigger")?;
        patch.apply(&mut read.clone(), now)?;
        if let Some(function) = patch.function_id {
            self.check_function(account, function).await?;
        }
        let secret = match patch.rotate_webhook_secret {
            true => Some(self.new_secret(id)?),
            false => None,
        };
        let change = |current: &Trigger| {
            let mut trigger = current.clone();
            patch.apply(&mut trigger, now)?;
            Ok(trigger)
        };
        let sealed = secret.as_ref().map(|(_, sealed)| sealed.as_str());
        let trigger = match self.store.update(account, id, &change, sealed).await {
            Err(StoreError::NotFound) if patch.function_id.is_some() => {
                return Err(function_not_found())
            }
            other => other.or_not_found("trigger")??,
        };
        self.webhooks.forget(id);
        self.wake.notify_one();
        if secret.is_some() {
            tracing::info!("webhook secret rotated");
        }
        Ok(TriggerWithSecret {
            trigger,
            webhook_secret: secret.map(|(plain, _)| plain),
        })
    }

    pub async fn delete(&self, account: AccountId, id: TriggerId) -> Result<(), TriggersError> {
        self.store
            .delete(account, id)
            .await
            .or_not_found("trigger")?;
        self.webhooks.forget(id);
        Ok(())
    }

    /// The webhook trigger `id` with its secret, from the cache while fresh; `None` for
    /// no such webhook trigger.
    async fn webhook_key(&self, id: TriggerId) -> Result<Option<Arc<WebhookKey>>, TriggersError> {
        if let Some(known) = self.webhooks.fresh(id) {
            return Ok(known);
        }
        let (trigger, sealed) = match self.store.with_secret(id).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => {
                self.webhooks.remember(id, None);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(sealed) = sealed.filter(|_| trigger.kind() == TriggerType::Webhook) else {
            self.webhooks.remember(id, None);
            return Ok(None);
        };
        let secret = match self.webhooks.same_rotation(id, &sealed) {
            Some(known) => known.secret.clone(),
            None => {
                let plain = Zeroizing::new(
                    self.keys
                        .open(&sealed, crypto::webhook_aad(id).as_bytes())
                        .map_err(|e| {
                            StoreError::internal(anyhow::anyhow!(
                                "webhook secret of trigger {id}: {e}"
                            ))
                        })?,
                );
                Zeroizing::new(String::from_utf8(plain.to_vec()).map_err(|_| {
                    StoreError::internal(anyhow::anyhow!("webhook secret is not text"))
                })?)
            }
        };
        let key = Arc::new(WebhookKey {
            sealed,
            secret,
            enabled: trigger.enabled,
        });
        self.webhooks.remember(id, Some(key.clone()));
        Ok(Some(key))
    }

    /// `POST /webhooks/{id}`, first half: an unknown or non-webhook trigger is not found;
    /// a missing or wrong signature is refused, and nothing is stored.
    #[tracing::instrument(skip_all, fields(trigger_id = %id))]
    pub async fn verify_webhook(
        &self,
        id: TriggerId,
        body: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<VerifiedWebhook, TriggersError> {
        let Some(key) = self.webhook_key(id).await? else {
            return Err(TriggersError::NotFound("trigger"));
        };
        if !signature_matches(&key.secret, body, signature) {
            tracing::info!("webhook refused: bad signature");
            return Err(TriggersError::InvalidSignature);
        }
        Ok(VerifiedWebhook {
            trigger: id,
            enabled: key.enabled,
        })
    }

    /// `POST /webhooks/{id}`, second half, once the edge has checked its own rules: the
    /// firing is stored before this returns, and the worker woken.
    #[tracing::instrument(skip_all, fields(trigger_id = %verified.trigger))]
    pub async fn accept_webhook(
        &self,
        verified: VerifiedWebhook,
        params: Value,
    ) -> Result<WebhookAccepted, TriggersError> {
        verified.check_enabled()?;
        let firing = Firing {
            id: FiringId::generate(),
            trigger_id: verified.trigger,
            tick_at: None,
            event_id: None,
            params,
            status: FiringStatus::Pending,
            execution_id: Some(ExecutionId::generate()),
            error: None,
            created_at: self.clock.now(),
        };
        // Deleted between the verification and now: not found. Too many already waiting:
        // the caller is told to come back (429), as for a rate limit.
        match self
            .store
            .insert_firing(&firing, self.quotas.pending_firings_per_trigger)
            .await
        {
            Ok(()) => {}
            Err(StoreError::LimitExceeded(message)) => {
                return Err(TriggersError::Backlogged(message))
            }
            Err(StoreError::NotFound) => return Err(TriggersError::NotFound("trigger")),
            Err(e) => return Err(e.into()),
        }
        self.wake.notify_one();
        let execution_id = firing.execution_id.unwrap_or_else(ExecutionId::generate);
        tracing::info!(firing_id = %firing.id, execution_id = %execution_id, "webhook accepted");
        Ok(WebhookAccepted {
            trigger_id: verified.trigger,
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
                        let plain = Zeroizing::new(plain);
                        let resealed = self.keys.seal(&plain, aad.as_bytes())?;
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
        let sig = |s: &str| Some(s.as_bytes().to_vec());
        let check = |s: Option<Vec<u8>>| signature_matches(&secret, body, s.as_deref());
        assert!(check(sig(&good)));
        assert!(check(sig(&good.to_uppercase())));
        assert!(!signature_matches(
            &secret,
            b"{\"x\":2}",
            Some(good.as_bytes())
        ));
        assert!(!signature_matches(
            &"cd".repeat(32),
            body,
            Some(good.as_bytes())
        ));
        assert!(!check(None));
        assert!(!check(sig(&good[7..])));
        assert!(!check(sig(&good[..good.len() - 2])));
        assert!(!check(sig("sha256=zz")));
    }

    #[test]
    fn rules_follow_the_trigger_type() {
        use crate::triggers::TriggerRule;
        let text = |kind, raw| TriggerRule::parse(kind, raw).map(|r| r.text());
        assert_eq!(
            text(TriggerType::Cron, " cron:@every 5s ").unwrap(),
            "@every 5s"
        );
        assert_eq!(
            text(TriggerType::Cron, "*/5 * * * *").unwrap(),
            "*/5 * * * *"
        );
        assert_eq!(
            text(TriggerType::Cron, "61 * * * *")
                .unwrap_err()
                .to_string(),
            "rule: minute 61 out of range 0-59"
        );
        assert!(text(TriggerType::Cron, "cron:").is_err());
        assert!(text(TriggerType::Event, "function.execution.failed").is_ok());
        assert!(text(TriggerType::Event, "nope").is_err());
        assert_eq!(text(TriggerType::Webhook, " ").unwrap(), "");
        assert!(text(TriggerType::Webhook, "x").is_err());
    }
}
