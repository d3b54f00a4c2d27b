//! The memory store's claim semantics (PostgreSQL's are exercised end to end by the
//! integration tests, including the multi-replica one).

use super::memory::MemoryTriggerStore;
use super::*;
use crate::accounts::{Account, AccountStore, MemoryAccountStore};
use crate::events::{EventStore, MemoryEventStore};
use crate::functions::{Function, FunctionLimits, FunctionStore, MemoryFunctionStore};
use crate::ids::FunctionId;
use crate::quota::Quota;
use crate::store::MemoryDb;
use chrono::Duration;
use std::sync::Arc;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A memory database with one account and function, and a trigger on it.
async fn setup(kind: TriggerType, rule: &str) -> (MemoryTriggerStore, Trigger, Arc<MemoryDb>) {
    let db = Arc::new(MemoryDb::default());
    let now = at("2025-01-01T10:00:00Z");
    let account = AccountId::generate();
    let function = FunctionId::generate();
    MemoryAccountStore::new(db.clone())
        .insert(&Account {
            id: account,
            owner: "o".into(),
            metadata: Default::default(),
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    MemoryFunctionStore::new(db.clone())
        .create(
            &Function {
                id: function,
                account_id: account,
                name: "f".into(),
                description: String::new(),
                source: "() => 1".into(),
                secrets: vec![],
                limits: FunctionLimits::default(),
                version: 1,
                created_at: now,
                updated_at: now,
            },
            Quota::unlimited("test"),
        )
        .await
        .unwrap();
    let trigger = Trigger {
        id: TriggerId::generate(),
        account_id: account,
        function_id: function,
        rule: TriggerRule::parse(kind, rule).unwrap(),
        config: Default::default(),
        enabled: true,
        next_run: (kind == TriggerType::Cron).then_some(now),
        last_fired_at: None,
        created_at: now,
        updated_at: now,
    };
    let store = MemoryTriggerStore::new(db.clone());
    store
        .create(&trigger, None, Quota::unlimited("test"))
        .await
        .unwrap();
    (store, trigger, db)
}

fn plan(now: DateTime<Utc>) -> impl Fn(&Trigger, bool) -> TickDispatch {
    move |trigger: &Trigger, busy: bool| super::worker::plan_tick(trigger, busy, now)
}

#[actix_rt::test]
async fn a_cron_tick_fires_once_and_overlapping_ticks_are_skipped() {
    let (store, trigger, _) = setup(TriggerType::Cron, "@every 10s").await;
    let now = at("2025-01-01T10:00:00.5Z");
    let first = store.advance_cron(now, 10, &plan(now)).await.unwrap();
    assert_eq!(
        first,
        AdvancedCron {
            pending: 1,
            skipped: 0
        }
    );
    // Nothing due again until the next tick.
    assert_eq!(
        store.advance_cron(now, 10, &plan(now)).await.unwrap(),
        AdvancedCron::default()
    );
    let stored = store.get(trigger.account_id, trigger.id).await.unwrap();
    assert_eq!(stored.next_run, Some(at("2025-01-01T10:00:10Z")));
    // The first firing is still open at the next tick: that tick is skipped.
    let later = at("2025-01-01T10:00:10.1Z");
    assert_eq!(
        store.advance_cron(later, 10, &plan(later)).await.unwrap(),
        AdvancedCron {
            pending: 0,
            skipped: 1
        }
    );
}

#[actix_rt::test]
async fn a_firing_is_leased_and_a_dead_holders_firing_fails_instead_of_rerunning() {
    let (store, trigger, _) = setup(TriggerType::Webhook, "").await;
    let now = at("2025-01-01T10:00:00Z");
    let firing = Firing {
        id: FiringId::generate(),
        trigger_id: trigger.id,
        tick_at: None,
        event_id: None,
        params: serde_json::json!({}),
        status: FiringStatus::Pending,
        execution_id: Some(ExecutionId::generate()),
        error: None,
        created_at: now,
    };
    store
        .insert_firing(&firing, Quota::unlimited("test"))
        .await
        .unwrap();
    let lease = now + Duration::seconds(30);
    let a = store.claim_firings(now, "a", lease, 10).await.unwrap();
    assert_eq!(a.len(), 1);
    assert!(!a[0].previous_lease_expired);
    assert_eq!(a[0].firing.status, FiringStatus::Running);
    // Held: nobody else gets it while the lease runs.
    assert!(store
        .claim_firings(now + Duration::seconds(29), "b", lease, 10)
        .await
        .unwrap()
        .is_empty());
    // "a" died: after the lease, "b" takes it over and is told the attempt was lost.
    let b = store
        .claim_firings(
            now + Duration::seconds(31),
            "b",
            lease + Duration::seconds(60),
            10,
        )
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert!(b[0].previous_lease_expired);
    // "a" can no longer record anything.
    assert!(!store
        .finish_firing(firing.id, "a", now, FiringStatus::Succeeded, None, None)
        .await
        .unwrap());
    assert!(store
        .finish_firing(
            firing.id,
            "b",
            now,
            FiringStatus::Failed,
            None,
            Some("lease expired")
        )
        .await
        .unwrap());
    assert!(store
        .claim_firings(now + Duration::hours(1), "c", lease, 10)
        .await
        .unwrap()
        .is_empty());
}

#[actix_rt::test]
async fn a_released_firing_waits_and_an_event_is_delivered_once() {
    let (store, trigger, db) =
        setup(TriggerType::Event, crate::events::FUNCTION_EXECUTION_FAILED).await;
    let events = MemoryEventStore::new(db.clone());
    let now = at("2025-01-01T10:00:00Z");
    let event = Event::new(
        trigger.account_id,
        crate::events::FUNCTION_EXECUTION_FAILED,
        serde_json::json!({}),
        now,
    );
    let mut tx = crate::store::Tx::Memory(db.begin().await);
    crate::events::insert(&mut tx, &event).await.unwrap();
    tx.commit().await.unwrap();
    let lease = now + Duration::seconds(30);
    let claimed = events.claim(now, "a", lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(events.claim(now, "b", lease, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .deliver(&event, "b", now, Quota::unlimited("test"))
            .await
            .unwrap(),
        0,
        "not b's lease"
    );
    assert_eq!(
        store
            .deliver(&event, "a", now, Quota::unlimited("test"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .deliver(&event, "a", now, Quota::unlimited("test"))
            .await
            .unwrap(),
        0,
        "delivered once"
    );
    let firing = store
        .claim_firings(now, "a", lease, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        firing.firing.params["event"]["name"],
        crate::events::FUNCTION_EXECUTION_FAILED
    );
    store
        .release_firing(firing.firing.id, "a", now + Duration::seconds(5))
        .await
        .unwrap();
    assert!(store
        .claim_firings(now + Duration::seconds(4), "a", lease, 10)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .claim_firings(now + Duration::seconds(6), "a", lease, 10)
        .await
        .unwrap();
    assert!(
        !again[0].previous_lease_expired,
        "a release is not a lost attempt"
    );
    // Delivered events and finished firings are purged after their retention; open
    // firings never are.
    let later = now + Duration::seconds(10);
    assert_eq!(
        events.purge(later).await.unwrap(),
        1,
        "delivered, then purged"
    );
    assert_eq!(
        store.purge(later).await.unwrap(),
        0,
        "the firing is still open"
    );
    let done = store
        .finish_firing(
            again[0].firing.id,
            "a",
            now + Duration::seconds(7),
            FiringStatus::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(done);
    assert_eq!(
        store.purge(now).await.unwrap(),
        0,
        "finished after the cut-off"
    );
    assert_eq!(events.purge(later).await.unwrap(), 0, "already purged");
    assert_eq!(store.purge(later).await.unwrap(), 1);
    assert_eq!(events.purge(later).await.unwrap(), 0, "already purged");
}

/// A trigger store that counts how often a webhook's row is read.
struct CountingStore {
    inner: MemoryTriggerStore,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl TriggerStore for CountingStore {
    async fn create(&self, t: &Trigger, s: Option<&str>, q: Quota) -> Result<(), StoreError> {
        self.inner.create(t, s, q).await
    }
    async fn get(&self, account: AccountId, id: TriggerId) -> Result<Trigger, StoreError> {
        self.inner.get(account, id).await
    }
    async fn list(&self, a: AccountId, p: PageRequest) -> Result<Page<Trigger>, StoreError> {
        self.inner.list(a, p).await
    }
    async fn update(
        &self,
        a: AccountId,
        id: TriggerId,
        change: super::TriggerChange<'_>,
        s: Option<&str>,
    ) -> Result<Result<Trigger, crate::ValidationError>, StoreError> {
        self.inner.update(a, id, change, s).await
    }
    async fn delete(&self, account: AccountId, id: TriggerId) -> Result<(), StoreError> {
        self.inner.delete(account, id).await
    }
    async fn with_secret(&self, id: TriggerId) -> Result<(Trigger, Option<String>), StoreError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.with_secret(id).await
    }
    async fn insert_firing(&self, f: &Firing, q: Quota) -> Result<(), StoreError> {
        self.inner.insert_firing(f, q).await
    }
    async fn sealed_secrets(
        &self,
        after: Option<TriggerId>,
        limit: i64,
    ) -> Result<Vec<(TriggerId, String)>, StoreError> {
        self.inner.sealed_secrets(after, limit).await
    }
    async fn replace_secret(
        &self,
        id: TriggerId,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        self.inner.replace_secret(id, old, new).await
    }
}

/// A flood of bad signatures reads the trigger's row once and decrypts its secret once
/// per rotation; a rotation on this replica is seen at once.
#[actix_rt::test]
async fn webhook_secrets_are_read_and_decrypted_once_per_rotation() {
    let (inner, trigger, db) = setup(TriggerType::Cron, "@yearly").await;
    let store = Arc::new(CountingStore {
        inner,
        reads: Default::default(),
    });
    let keys = Arc::new(crate::crypto::KeyRing::new(
        crate::crypto::Key::generate(),
        vec![],
    ));
    let service = TriggersService::new(
        store.clone(),
        Arc::new(MemoryFunctionStore::new(db)),
        keys,
        Arc::new(crate::clock::SystemClock),
    );
    let created = service
        .create(
            trigger.account_id,
            NewTrigger::parse(TriggerInput {
                function_id: Some(trigger.function_id.to_string()),
                kind: Some("webhook".into()),
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    let id = created.trigger.id;
    let secret = created.webhook_secret.unwrap();
    let reads = || store.reads.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..50 {
        let refused = service.verify_webhook(id, b"{}", Some(b"sha256=00")).await;
        assert!(matches!(refused, Err(TriggersError::InvalidSignature)));
    }
    assert_eq!(reads(), 1, "one read for fifty bad signatures");
    let good = webhook_signature(&secret, b"{}");
    assert!(service
        .verify_webhook(id, b"{}", Some(good.as_bytes()))
        .await
        .is_ok());
    // Unknown ids are remembered too.
    let unknown = TriggerId::generate();
    for _ in 0..10 {
        assert!(matches!(
            service.verify_webhook(unknown, b"{}", None).await,
            Err(TriggersError::NotFound(_))
        ));
    }
    assert_eq!(reads(), 2);
    // A rotation here takes effect at once: the old secret no longer verifies.
    let rotated = service
        .update(
            trigger.account_id,
            id,
            TriggerPatch::parse(TriggerPatchInput {
                rotate_webhook_secret: crate::patch::Patch::Value(true),
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
    let new_secret = rotated.webhook_secret.unwrap();
    assert!(matches!(
        service
            .verify_webhook(id, b"{}", Some(good.as_bytes()))
            .await,
        Err(TriggersError::InvalidSignature)
    ));
    let new_good = webhook_signature(&new_secret, b"{}");
    assert!(service
        .verify_webhook(id, b"{}", Some(new_good.as_bytes()))
        .await
        .is_ok());
}

/// Past `MAX_PENDING_FIRINGS_PER_TRIGGER` open firings, an event's firing is stored as
/// `skipped`: a flood of events cannot grow a trigger's backlog without bound.
#[actix_rt::test]
async fn event_firings_beyond_the_quota_are_skipped() {
    let (store, trigger, db) =
        setup(TriggerType::Event, crate::events::FUNCTION_EXECUTION_FAILED).await;
    let events = MemoryEventStore::new(db.clone());
    let now = at("2025-01-01T10:00:00Z");
    let quota = Quota::new("MAX_PENDING_FIRINGS_PER_TRIGGER", 2);
    for _ in 0..4 {
        let event = Event::new(
            trigger.account_id,
            crate::events::FUNCTION_EXECUTION_FAILED,
            serde_json::json!({}),
            now,
        );
        let mut tx = crate::store::Tx::Memory(db.begin().await);
        crate::events::insert(&mut tx, &event).await.unwrap();
        tx.commit().await.unwrap();
        let lease = now + Duration::seconds(30);
        assert_eq!(events.claim(now, "a", lease, 10).await.unwrap().len(), 1);
        assert_eq!(store.deliver(&event, "a", now, quota).await.unwrap(), 1);
    }
    let claimed = store
        .claim_firings(now, "w", now + Duration::seconds(30), 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2, "two open, two skipped");
}

/// The fence of a firing's run: it holds for the claim that took the lease, and no longer
/// once the lease ran out and the firing was claimed again (by this replica or another).
#[actix_rt::test]
async fn a_firing_fence_holds_only_for_the_current_claim() {
    use crate::functions::Fence as _;
    let (store, trigger, db) = setup(TriggerType::Cron, "@yearly").await;
    let now = at("2025-01-01T10:00:00Z");
    let firing = super::domain::cron_firing(trigger.id, now, false, now);
    store
        .insert_firing(&firing, Quota::unlimited("test"))
        .await
        .unwrap();
    let first = store
        .claim_firings(now, "r:1", now + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    #[derive(Debug)]
    struct At(DateTime<Utc>);
    impl crate::clock::Clock for At {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }
    let fence = |owner: &str, t: DateTime<Utc>| FiringLease {
        firing: firing.id,
        owner: owner.into(),
        clock: Arc::new(At(t)),
    };
    let holds = |lease: FiringLease| {
        let db = db.clone();
        async move {
            let mut tx = crate::store::Tx::Memory(db.begin().await);
            lease.holds(&mut tx).await.unwrap()
        }
    };
    assert!(holds(fence("r:1", now)).await);
    assert!(!holds(fence("r:2", now)).await, "not another claim's");
    let later = now + Duration::seconds(31);
    assert!(!holds(fence("r:1", later)).await, "not past the lease");
    let again = store
        .claim_firings(later, "r:2", later + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert!(!holds(fence("r:1", later)).await, "the first claim lost it");
    assert!(holds(fence("r:2", later)).await);
}
