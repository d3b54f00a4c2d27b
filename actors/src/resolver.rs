//! Asking an external resolver about claimed work until it is final (CONTRACT.md §3.7,
//! §3.8, §4.2, §4.3): the loop the `oracle_dispatcher` (oracle requests) and the
//! `settler` (withdrawals) share. What differs between them is a [`Work`]: how items are
//! claimed, renewed and recorded, and how a reply reads.
//!
//! - Due items are claimed under a lease ([`Work::claim`]), which counts the call it is
//!   made for in `attempts`: a call lost with its replica still counts, and the maximum
//!   bounds the calls made. Each claim has its own lease owner (`<replica>:<claim>`), so an
//!   item this replica lost and claimed again is not confused with the first claim.
//! - Each claimed item is worked in its own task: expired (TTL) → failed without a call;
//!   a replica died after the last allowed call → failed without another; otherwise one
//!   resolver call (the lease renewed every lease/3), then the outcome recorded under this
//!   claim's lease against the item as it is now ([`Work::record`]).
//! - Transient failures back off 5 s × 2^(n−1), at most 5 minutes; "not done" waits
//!   `retry_after_seconds` (default 5, clamped to 1–3600); no retry is planned past the
//!   item's expiry.
//! - The actor sleeps until the earliest due item (at most the poll interval) and wakes
//!   at once when its subsystem creates one.

use crate::clock::Clock;
use crate::error::StoreError;
use crate::outbound::OutboundConfig;
use crate::supervisor::{ExitGuard, Stop};
use crate::work::{pace, InFlight, Paced, Pacer};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Items claimed per statement.
const BATCH: i64 = 64;
/// Largest reply a resolver may send (an oracle result is at most 64 KiB, JSON-escaped).
const MAX_REPLY: usize = 512 << 10;
/// `retry_after_seconds` when the resolver gives none, and its bounds.
const DEFAULT_RETRY: f64 = 5.0;
const RETRY_BOUNDS: (f64, f64) = (1.0, 3600.0);
/// Back-off after a transient failure: 5 s × 2^(attempts−1), at most 5 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct ResolverConfig {
    /// `ORACLE_RESOLVER_URL`, `GASBANK_RESOLVER_URL`.
    pub resolver_url: url::Url,
    /// `…_RESOLVER_KEY`: sent as a bearer token to the resolver.
    pub resolver_key: Option<Arc<zeroize::Zeroizing<String>>>,
    /// `…_POLL_INTERVAL`: the longest sleep between passes.
    pub poll: Duration,
    /// `…_MAX_ATTEMPTS` (at least 1).
    pub max_attempts: i32,
    /// `…_TTL`; `None`: items never expire.
    pub ttl: Option<Duration>,
    /// `RESOLVER_TIMEOUT`: one call's whole answer.
    pub timeout: Duration,
    /// `WORK_LEASE`.
    pub lease: Duration,
    /// `SHUTDOWN_TIMEOUT`: how long a stopping worker waits for calls under way.
    pub drain: Duration,
}

impl std::fmt::Debug for ResolverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut url = self.resolver_url.clone();
        url.set_query(None);
        f.debug_struct("ResolverConfig")
            .field("resolver_url", &url.as_str())
            .field(
                "resolver_key",
                &self.resolver_key.as_ref().map(|_| "<redacted>"),
            )
            .field("poll", &self.poll)
            .field("max_attempts", &self.max_attempts)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `service_layer_<name>{outcome}`: one count per recorded attempt (`succeeded`,
/// `failed`, `not_done`, `transient`; `gave_up` for the last one of an item that ran out
/// of attempts) and per item that `expired` without a call.
#[derive(Clone, Debug)]
pub struct AttemptMetrics {
    pub attempts: IntCounterVec,
}

impl AttemptMetrics {
    /// `name`: `oracle_attempts_total`, `gasbank_settlement_attempts_total`.
    pub fn register(registry: &Registry, name: &str, help: &str) -> prometheus::Result<Self> {
        let attempts = IntCounterVec::new(
            Opts::new(
                name,
                format!(
                    "{help} by outcome (succeeded, failed, not_done, transient, expired, gave_up)"
                ),
            )
            .namespace("service_layer"),
            &["outcome"],
        )?;
        registry.register(Box::new(attempts.clone()))?;
        Ok(Self { attempts })
    }
}

/// What the resolver said about an item. A transient failure is the `Err` of
/// [`Work::parse`] or of the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Done and successful; the oracle's result (empty for a withdrawal).
    Succeeded(String),
    Failed(String),
    NotDone {
        retry_after: Duration,
    },
}

/// How an item ends, or why it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Succeeded(String),
    Failed(String),
    /// Not final: call the resolver again at this time.
    RetryAt(DateTime<Utc>),
}

/// A 200 reply's body as both resolvers send it; other fields are ignored.
#[derive(serde::Deserialize)]
pub struct Reply {
    pub done: bool,
    pub success: Option<bool>,
    /// The oracle's result.
    pub result: Option<String>,
    /// Why the oracle's request failed.
    pub error: Option<String>,
    /// Why the gas bank's withdrawal failed.
    pub message: Option<String>,
    pub retry_after_seconds: Option<f64>,
}

impl Reply {
    /// `Ok(Err(answer))` when not done (the wait, defaulted and clamped); `Ok(Ok(success))`
    /// when done; `Err` (transient) when undecodable or done without `success`.
    pub fn parse(body: &[u8]) -> Result<(Self, Option<bool>), String> {
        let reply: Self =
            serde_json::from_slice(body).map_err(|e| format!("undecodable resolver reply: {e}"))?;
        if !reply.done {
            return Ok((reply, None));
        }
        match reply.success {
            None => Err("undecodable resolver reply: done without success".to_owned()),
            success => Ok((reply, success)),
        }
    }

    /// The wait a reply that is not done asks for.
    pub fn not_done(&self) -> Answer {
        let seconds = self
            .retry_after_seconds
            .filter(|s| s.is_finite())
            .unwrap_or(DEFAULT_RETRY)
            .clamp(RETRY_BOUNDS.0, RETRY_BOUNDS.1);
        Answer::NotDone {
            retry_after: Duration::from_secs_f64(seconds),
        }
    }
}

/// A resolver's failure text as it is stored: `default` when empty, at most `max`
/// characters, U+0000 replaced.
pub fn failure_text(text: Option<String>, max: usize, default: &str) -> String {
    text.filter(|e| !e.trim().is_empty())
        .map(|e| storable(e.chars().take(max).collect()))
        .unwrap_or_else(|| default.to_owned())
}

/// Text from a resolver as it can be stored: U+0000, which PostgreSQL cannot hold in
/// TEXT or JSONB, becomes U+FFFD in both modes (an unstorable answer would otherwise be
/// asked for again and again).
pub fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// The wait after the `attempts`-th call failed transiently.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// `after` past `now`; the end of the calendar rather than an overflow (a huge TTL).
pub fn at(now: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(after)
        .ok()
        .and_then(|after| now.checked_add_signed(after))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What the loop needs to know of a claimed item.
#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    pub id: Uuid,
    /// Counting the call this claim is for.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// One kind of resolver work: the subsystem's side of the loop.
#[async_trait::async_trait]
pub trait Work: Send + Sync + 'static {
    /// The query parameter naming the item to the resolver (`request_id`,
    /// `transaction_id`).
    const QUERY: &'static str;

    /// The span a claimed item is worked in, naming it as the logs do.
    fn span(item: &Claimed) -> tracing::Span;
    fn parse(body: &[u8]) -> Result<Answer, String>;
    /// The error of an item past its TTL.
    fn expired(ttl: Duration) -> String;
    /// The error of an item out of attempts.
    fn gave_up(attempts: i32) -> String;

    /// Claims up to `limit` due items whose lease is free or expired, earliest first,
    /// under `owner`'s lease until `lease_until` (also their next due time, so a call
    /// lost with its replica is retried when the lease ends), counting the call in
    /// `attempts`.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Extends `owner`'s lease; `false` if the item is no longer held by it.
    async fn renew(
        &self,
        id: Uuid,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The earliest due time of an open item.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records `finish` with `attempts` under `owner`'s lease against the item as it is
    /// now, releasing the lease; `Ok(true)` if the item became final. `InvalidState` or
    /// `NotFound` if it was finished, deleted or taken over meanwhile (nothing changes).
    async fn record(
        &self,
        id: Uuid,
        owner: &str,
        attempts: i32,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The loop's work, apart from its actor (so tests can run a pass directly).
pub struct Worker<W> {
    work: Arc<W>,
    clock: Arc<dyn Clock>,
    replica: Arc<str>,
    config: ResolverConfig,
    metrics: AttemptMetrics,
    /// Wakes event delivery when a final event is stored.
    events_wake: Arc<tokio::sync::Notify>,
    /// Wakes this worker (the actor's own signal): items left due for want of room are
    /// claimed as soon as a call ends.
    wake: Arc<tokio::sync::Notify>,
    backlog: Arc<std::sync::atomic::AtomicBool>,
}

impl<W> Clone for Worker<W> {
    fn clone(&self) -> Self {
        Self {
            work: self.work.clone(),
            clock: self.clock.clone(),
            replica: self.replica.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            events_wake: self.events_wake.clone(),
            wake: self.wake.clone(),
            backlog: self.backlog.clone(),
        }
    }
}

impl<W: Work> Worker<W> {
    pub fn new(
        work: Arc<W>,
        clock: Arc<dyn Clock>,
        replica: String,
        config: ResolverConfig,
        metrics: AttemptMetrics,
        events_wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            work,
            clock,
            replica: replica.into(),
            config,
            metrics,
            events_wake,
            wake: Arc::default(),
            backlog: Arc::default(),
        }
    }

    /// Calls that end while due items wait for room notify `wake` (the actor's).
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Claims the due items there is room for and works each in its own task; returns
    /// how long to sleep before the next pass. The caller tracks the pass in
    /// `in_flight` (its room counts the pass itself).
    pub async fn pass(&self, client: &awc::Client, in_flight: &InFlight) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let room = in_flight.room().min(BATCH);
        if room <= 0 {
            self.backlog.store(true, Relaxed);
            return self.config.poll;
        }
        let owner: Arc<str> = format!(
            "{}:{}",
            self.replica,
            &Uuid::new_v4().simple().to_string()[..8]
        )
        .into();
        let now = self.clock.now();
        let lease_until = crate::work::lease_end(now, self.config.lease);
        match self.work.claim(now, &owner, lease_until, room).await {
            Ok(claimed) => {
                self.backlog.store(
                    i64::try_from(claimed.len()).unwrap_or(i64::MAX) >= room,
                    Relaxed,
                );
                for item in claimed {
                    let (this, client, owner) = (self.clone(), client.clone(), owner.clone());
                    in_flight.spawn(async move {
                        this.work(&client, item, &owner).await;
                        if this.backlog.swap(false, Relaxed) {
                            this.wake.notify_one();
                        }
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not claim due resolver work");
                return self.config.poll;
            }
        }
        let next = self.work.next_due().await;
        crate::work::wait_until(next, self.clock.now(), self.config.poll, "resolver work")
    }

    fn count(&self, outcome: &str) {
        self.metrics.attempts.with_label_values(&[outcome]).inc();
    }

    /// One claimed item: expired, out of attempts, or one resolver call and its outcome
    /// recorded. The claim counted the call in `attempts`; ending without one takes it
    /// back.
    pub async fn work(&self, client: &awc::Client, item: Claimed, owner: &str) {
        use tracing::Instrument;
        let span = W::span(&item);
        self.work_in_span(client, item, owner)
            .instrument(span)
            .await;
    }

    async fn work_in_span(&self, client: &awc::Client, item: Claimed, owner: &str) {
        let now = self.clock.now();
        let made = item.attempts.saturating_sub(1);
        if let Some(ttl) = self.config.ttl {
            if now >= at(item.created_at, ttl) {
                let finish = Finish::Failed(W::expired(ttl));
                self.record(item.id, owner, made, finish, "expired").await;
                return;
            }
        }
        // A replica died after the last allowed call: no more calls.
        if made >= self.config.max_attempts {
            let finish = Finish::Failed(W::gave_up(made));
            self.record(item.id, owner, made, finish, "gave_up").await;
            return;
        }
        let renew = || {
            let until = crate::work::lease_end(self.clock.now(), self.config.lease);
            self.work.renew(item.id, owner, until)
        };
        let answer =
            crate::work::renewing(self.ask(client, item.id), self.config.lease / 3, renew).await;
        let attempts = item.attempts;
        let now = self.clock.now();
        let (finish, outcome) = match answer {
            Ok(Answer::Succeeded(result)) => (Finish::Succeeded(result), "succeeded"),
            Ok(Answer::Failed(error)) => (Finish::Failed(error), "failed"),
            Ok(Answer::NotDone { retry_after }) => {
                (self.retry(&item, now, retry_after), "not_done")
            }
            Err(e) => {
                tracing::warn!(error = %e, "resolver call failed; will retry");
                (self.retry(&item, now, backoff(attempts)), "transient")
            }
        };
        let (finish, outcome) = match finish {
            Finish::RetryAt(_) if attempts >= self.config.max_attempts => {
                (Finish::Failed(W::gave_up(attempts)), "gave_up")
            }
            other => (other, outcome),
        };
        self.record(item.id, owner, attempts, finish, outcome).await;
    }

    /// The next call `after` from `now`, but no later than the item's expiry (it then
    /// fails on time instead of at its next call).
    fn retry(&self, item: &Claimed, now: DateTime<Utc>, after: Duration) -> Finish {
        let next = at(now, after);
        let next = match self.config.ttl {
            Some(ttl) => next.min(at(item.created_at, ttl)),
            None => next,
        };
        Finish::RetryAt(next)
    }

    async fn record(
        &self,
        id: Uuid,
        owner: &str,
        attempts: i32,
        finish: Finish,
        outcome: &'static str,
    ) {
        let now = self.clock.now();
        let retry_at = match &finish {
            Finish::RetryAt(at) => Some(*at),
            _ => None,
        };
        match self.work.record(id, owner, attempts, finish, now).await {
            Ok(true) => {
                self.count(outcome);
                self.events_wake.notify_one();
                tracing::info!(attempts, outcome, "resolver work finished");
            }
            Ok(false) => {
                self.count(outcome);
                tracing::debug!(attempts, outcome, next_attempt_at = ?retry_at, "not done yet");
            }
            Err(StoreError::InvalidState(_) | StoreError::NotFound) => tracing::info!(
                outcome,
                "finished, deleted or taken over meanwhile; this answer is dropped"
            ),
            // The lease runs out and the item is claimed again.
            Err(e) => tracing::warn!(error = ?e, "could not record a resolver attempt"),
        }
    }

    /// One resolver call: `GET <url>?<QUERY>=<id>` with the bearer key, the whole answer
    /// within `RESOLVER_TIMEOUT`, at most [`MAX_REPLY`] bytes.
    async fn ask(&self, client: &awc::Client, id: Uuid) -> Result<Answer, String> {
        let mut url = self.config.resolver_url.clone();
        url.query_pairs_mut().append_pair(W::QUERY, &id.to_string());
        let exchange = async {
            let mut request = client.get(url.as_str());
            if let Some(key) = &self.config.resolver_key {
                request = request.bearer_auth(key.as_str());
            }
            let mut response = request.send().await.map_err(|e| e.to_string())?;
            if response.status() != awc::http::StatusCode::OK {
                return Err(format!("resolver answered {}", response.status()));
            }
            let body = response
                .body()
                .limit(MAX_REPLY)
                .await
                .map_err(|e| e.to_string())?;
            W::parse(&body)
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.config.timeout.as_millis()
            )),
        }
    }
}

/// Works open items for as long as it lives; see the module doc.
pub struct WorkerActor<W> {
    worker: Worker<W>,
    wake: Arc<tokio::sync::Notify>,
    client: Option<awc::Client>,
    in_flight: InFlight,
    pacer: Pacer,
    _exit: ExitGuard,
}

impl<W: Work> WorkerActor<W> {
    pub fn new(worker: Worker<W>, wake: Arc<tokio::sync::Notify>, exit: ExitGuard) -> Self {
        Self {
            worker,
            wake,
            client: None,
            in_flight: InFlight::default(),
            pacer: Pacer::default(),
            _exit: exit,
        }
    }
}

impl<W: Work> Paced for WorkerActor<W> {
    fn pacer(&mut self) -> &mut Pacer {
        &mut self.pacer
    }

    fn pass(&mut self) -> Option<LocalBoxFuture<'static, Duration>> {
        let client = self.client.clone()?;
        let (worker, in_flight) = (self.worker.clone(), self.in_flight.clone());
        // The pass is tracked too: a stop waits for the calls it starts.
        let pass = self
            .in_flight
            .track(async move { worker.pass(&client, &in_flight).await });
        Some(Box::pin(pass))
    }
}

impl<W: Work> Actor for WorkerActor<W> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Built here: an `awc::Client` belongs to the arbiter that made it. A resolver is
        // the operator's choice, so private addresses are allowed.
        self.client = Some(crate::outbound::client(OutboundConfig {
            timeout: self.worker.config.timeout,
            allow_private: true,
        }));
        crate::work::on_every_wake(ctx, self.wake.clone(), pace::<Self>);
        pace(self, ctx);
    }
}

impl<W: Work> Handler<Stop> for WorkerActor<W> {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.pacer.stop();
        let in_flight = self.in_flight.clone();
        let drain = self.worker.config.drain;
        let wait = async move { in_flight.drain_at_shutdown(drain, "resolver calls").await };
        Box::pin(wait.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_five_seconds_to_five_minutes() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(i32::MAX), BACKOFF_MAX);
        assert_eq!(backoff(0), BACKOFF_BASE);
    }

    #[test]
    fn waits_are_defaulted_and_clamped() {
        let wait = |body: &str| match Reply::parse(body.as_bytes()) {
            Ok((reply, None)) => reply.not_done(),
            other => panic!("{:?}", other.map(|(_, s)| s)),
        };
        let secs = |s: f64| Answer::NotDone {
            retry_after: Duration::from_secs_f64(s),
        };
        assert_eq!(wait(r#"{"done": false}"#), secs(5.0));
        assert_eq!(
            wait(r#"{"done": false, "retry_after_seconds": 0}"#),
            secs(1.0)
        );
        assert_eq!(
            wait(r#"{"done": false, "retry_after_seconds": 1e9}"#),
            secs(3600.0)
        );
        assert_eq!(
            wait(r#"{"done": false, "retry_after_seconds": 2.5}"#),
            secs(2.5)
        );
        for bad in ["", "[]", "{}", r#"{"done": "yes"}"#, r#"{"done": true}"#] {
            assert!(
                Reply::parse(bad.as_bytes()).is_err(),
                "{bad:?} is transient"
            );
        }
    }
}
