//! The `oracle_dispatcher` actor (CONTRACT.md §3.7, §4.2): asks the resolver about open
//! requests until each has a final answer, expires, or gives up.
//!
//! - Due requests are claimed under a lease ([`OracleStore::claim`]); a `pending` one
//!   becomes `running`. Each claim has its own lease owner (`<replica>:<claim>`), so a
//!   request this replica lost and claimed again is not confused with the first claim.
//! - Each claimed request is worked in its own task: expired (`ORACLE_TTL`) → `failed`
//!   without a call; otherwise one resolver call (its lease renewed every lease/3), then
//!   the outcome recorded by compare-and-set against the request as it is now, under
//!   this claim's lease. A request PATCHed to a final status meanwhile keeps that status:
//!   the dispatcher's answer is dropped and logged.
//! - The actor sleeps until the earliest `next_attempt_at` (at most
//!   `ORACLE_POLL_INTERVAL`) and wakes at once when a request is created on this replica.
//! - Absent without `ORACLE_RESOLVER_URL` (`/readyz` shows it `disabled`).

use super::{Finish, OracleStore, Request, RequestStatus, MAX_TEXT};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::ids::RequestId;
use crate::outbound::OutboundConfig;
use crate::supervisor::{ExitGuard, Stop};
use crate::work::{pace, InFlight, Paced, Pacer};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Requests claimed per statement.
const BATCH: i64 = 64;
/// Largest reply the resolver may send (a result is at most [`MAX_TEXT`], JSON-escaped).
const MAX_REPLY: usize = 512 << 10;
/// `retry_after_seconds` when the resolver gives none, and its bounds.
const DEFAULT_RETRY: f64 = 5.0;
const RETRY_BOUNDS: (f64, f64) = (1.0, 3600.0);
/// Back-off after a transient failure: 5 s × 2^(attempts−1), at most 5 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct DispatcherConfig {
    /// `ORACLE_RESOLVER_URL`.
    pub resolver_url: url::Url,
    /// `ORACLE_RESOLVER_KEY`: sent as a bearer token to the resolver.
    pub resolver_key: Option<Arc<zeroize::Zeroizing<String>>>,
    /// `ORACLE_POLL_INTERVAL`: the longest sleep between passes.
    pub poll: Duration,
    /// `ORACLE_MAX_ATTEMPTS` (at least 1).
    pub max_attempts: i32,
    /// `ORACLE_TTL`; `None`: requests never expire.
    pub ttl: Option<Duration>,
    /// `RESOLVER_TIMEOUT`: one call's whole answer.
    pub timeout: Duration,
    /// `WORK_LEASE`.
    pub lease: Duration,
    /// `SHUTDOWN_TIMEOUT`: how long a stopping dispatcher waits for calls under way.
    pub drain: Duration,
}

impl std::fmt::Debug for DispatcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut url = self.resolver_url.clone();
        url.set_query(None);
        f.debug_struct("DispatcherConfig")
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

/// `service_layer_oracle_attempts_total{outcome}`: one count per recorded attempt
/// (`succeeded`, `failed`, `not_done`, `transient`; `gave_up` for the last one of a
/// request that ran out of attempts) and per request that `expired` without a call.
#[derive(Clone, Debug)]
pub struct OracleMetrics {
    pub attempts: IntCounterVec,
}

impl OracleMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "oracle_attempts_total",
                "Oracle resolver attempts by outcome (succeeded, failed, not_done, transient, expired, gave_up)",
            )
            .namespace("service_layer"),
            &["outcome"],
        )?;
        registry.register(Box::new(attempts.clone()))?;
        Ok(Self { attempts })
    }
}

/// What the resolver said about a request (CONTRACT.md §4.2). A transient failure is the
/// `Err` of [`parse_answer`] or of the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Succeeded(String),
    Failed(String),
    NotDone { retry_after: Duration },
}

#[derive(serde::Deserialize)]
struct Reply {
    done: bool,
    success: Option<bool>,
    result: Option<String>,
    error: Option<String>,
    retry_after_seconds: Option<f64>,
}

/// Text from the resolver as it can be stored: U+0000, which PostgreSQL cannot hold in
/// TEXT or JSONB, becomes U+FFFD in both modes (an unstorable answer would otherwise be
/// asked for again and again).
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// A 200 reply's body: `done`, then `success` (required with `done`), `result`
/// (required on success, else the request fails), `error` (default `resolver reported
/// failure`), `retry_after_seconds` (default 5, clamped to 1–3600). Other fields are
/// ignored; anything undecodable is `Err` (transient).
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let reply: Reply =
        serde_json::from_slice(body).map_err(|e| format!("undecodable resolver reply: {e}"))?;
    if !reply.done {
        let seconds = reply
            .retry_after_seconds
            .filter(|s| s.is_finite())
            .unwrap_or(DEFAULT_RETRY)
            .clamp(RETRY_BOUNDS.0, RETRY_BOUNDS.1);
        return Ok(Answer::NotDone {
            retry_after: Duration::from_secs_f64(seconds),
        });
    }
    match reply.success {
        None => Err("undecodable resolver reply: done without success".to_owned()),
        // Made storable before measured: U+FFFD is longer than U+0000.
        Some(true) => match reply.result.map(storable) {
            Some(result) if result.len() > MAX_TEXT => Ok(Answer::Failed(format!(
                "resolver result exceeds {MAX_TEXT} bytes"
            ))),
            Some(result) => Ok(Answer::Succeeded(result)),
            None => Ok(Answer::Failed(
                "resolver reported success without a result".to_owned(),
            )),
        },
        Some(false) => Ok(Answer::Failed(
            reply
                .error
                .filter(|e| !e.trim().is_empty())
                .map(|e| storable(e.chars().take(super::domain::MAX_ERROR).collect()))
                .unwrap_or_else(|| "resolver reported failure".to_owned()),
        )),
    }
}

/// The wait after the `attempts`-th call failed transiently.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// What refuses a change whose lease is no longer this claim's (another replica took
/// the request over, or a PATCH finished it and released the lease).
pub(super) fn lease_lost() -> StoreError {
    StoreError::InvalidState("the lease on this oracle request was lost".to_owned())
}

/// `after` past `now`; the end of the calendar rather than an overflow (a huge TTL).
fn at(now: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(after)
        .ok()
        .and_then(|after| now.checked_add_signed(after))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The dispatcher's work, apart from its actor (so tests can run a pass directly).
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn OracleStore>,
    clock: Arc<dyn Clock>,
    replica: Arc<str>,
    config: DispatcherConfig,
    metrics: OracleMetrics,
    /// Wakes event delivery when a final event is stored.
    events_wake: Arc<tokio::sync::Notify>,
    /// Wakes this dispatcher (the actor's own signal): requests left due for want of
    /// room are claimed as soon as a call ends.
    wake: Arc<tokio::sync::Notify>,
    backlog: Arc<std::sync::atomic::AtomicBool>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn OracleStore>,
        clock: Arc<dyn Clock>,
        replica: String,
        config: DispatcherConfig,
        metrics: OracleMetrics,
        events_wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            store,
            clock,
            replica: replica.into(),
            config,
            metrics,
            events_wake,
            wake: Arc::default(),
            backlog: Arc::default(),
        }
    }

    /// Calls that end while due requests wait for room notify `wake` (the actor's).
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Claims the due requests there is room for and works each in its own task;
    /// returns how long to sleep before the next pass. The caller tracks the pass in
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
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
        .into();
        let now = self.clock.now();
        let lease_until = crate::work::lease_end(now, self.config.lease);
        match self.store.claim(now, &owner, lease_until, room).await {
            Ok(claimed) => {
                self.backlog.store(
                    i64::try_from(claimed.len()).unwrap_or(i64::MAX) >= room,
                    Relaxed,
                );
                for request in claimed {
                    let (this, client, owner) = (self.clone(), client.clone(), owner.clone());
                    in_flight.spawn(async move {
                        this.work(&client, request, &owner).await;
                        if this.backlog.swap(false, Relaxed) {
                            this.wake.notify_one();
                        }
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not claim due oracle requests");
                return self.config.poll;
            }
        }
        let next = self.store.next_due().await;
        crate::work::wait_until(next, self.clock.now(), self.config.poll, "oracle request")
    }

    fn count(&self, outcome: &str) {
        self.metrics.attempts.with_label_values(&[outcome]).inc();
    }

    /// One claimed request: expired, out of attempts, or one resolver call and its
    /// outcome recorded. The claim counted the call in `attempts`; ending without one
    /// takes it back.
    #[tracing::instrument(skip_all, fields(request_id = %request.id, attempt = request.attempts))]
    pub async fn work(&self, client: &awc::Client, request: Request, owner: &str) {
        let now = self.clock.now();
        let made = request.attempts.saturating_sub(1);
        if let Some(ttl) = self.config.ttl {
            if now >= at(request.created_at, ttl) {
                let error = format!(
                    "oracle request expired after {} without a final answer",
                    crate::duration::format(ttl)
                );
                self.record(request.id, owner, made, Finish::Failed(error), "expired")
                    .await;
                return;
            }
        }
        // A replica died after the last allowed call: no more calls.
        if made >= self.config.max_attempts {
            let error = format!("oracle request gave up after {made} resolver attempts");
            self.record(request.id, owner, made, Finish::Failed(error), "gave_up")
                .await;
            return;
        }
        let renew = || {
            let until = crate::work::lease_end(self.clock.now(), self.config.lease);
            self.store.renew(request.id, owner, until)
        };
        let answer =
            crate::work::renewing(self.ask(client, request.id), self.config.lease / 3, renew).await;
        let attempts = request.attempts;
        let now = self.clock.now();
        let (finish, outcome) = match answer {
            Ok(Answer::Succeeded(result)) => (Finish::Succeeded(result), "succeeded"),
            Ok(Answer::Failed(error)) => (Finish::Failed(error), "failed"),
            Ok(Answer::NotDone { retry_after }) => {
                (self.retry(&request, now, retry_after), "not_done")
            }
            Err(e) => {
                tracing::warn!(error = %e, "oracle resolver call failed; will retry");
                (self.retry(&request, now, backoff(attempts)), "transient")
            }
        };
        let (finish, outcome) = match finish {
            Finish::RetryAt(_) if attempts >= self.config.max_attempts => (
                Finish::Failed(format!(
                    "oracle request gave up after {attempts} resolver attempts"
                )),
                "gave_up",
            ),
            other => (other, outcome),
        };
        self.record(request.id, owner, attempts, finish, outcome)
            .await;
    }

    /// The next call `after` from `now`, but no later than the request's expiry (it then
    /// fails on time instead of at its next call).
    fn retry(&self, request: &Request, now: DateTime<Utc>, after: Duration) -> Finish {
        let next = at(now, after);
        let next = match self.config.ttl {
            Some(ttl) => next.min(at(request.created_at, ttl)),
            None => next,
        };
        Finish::RetryAt(next)
    }

    /// Records `finish` with `attempts` under this claim's lease, against the request as
    /// it is now: still `running` and still ours, or nothing changes.
    async fn record(
        &self,
        id: RequestId,
        owner: &str,
        attempts: i32,
        finish: Finish,
        outcome: &'static str,
    ) {
        let now = self.clock.now();
        let change = |current: &Request| {
            if current.status != RequestStatus::Running {
                return Err(lease_lost());
            }
            let mut next = current.finish(finish.clone(), now);
            next.attempts = attempts;
            Ok(next)
        };
        match self
            .store
            .change(id, super::Holder::Lease(owner), &change)
            .await
        {
            Ok(request) => {
                self.count(outcome);
                if request.status.is_final() {
                    self.events_wake.notify_one();
                    tracing::info!(
                        status = request.status.as_str(),
                        attempts,
                        outcome,
                        "oracle request finished"
                    );
                } else {
                    tracing::debug!(attempts, outcome, next_attempt_at = ?request.next_attempt_at, "oracle request not done yet");
                }
            }
            Err(StoreError::InvalidState(_) | StoreError::NotFound) => tracing::info!(
                outcome,
                "oracle request finished, deleted or taken over meanwhile; this answer is dropped"
            ),
            // The lease runs out and the request is claimed again.
            Err(e) => tracing::warn!(error = ?e, "could not record an oracle attempt"),
        }
    }

    /// One resolver call: `GET <url>?request_id=<id>` with the bearer key, the whole
    /// answer within `RESOLVER_TIMEOUT`, at most [`MAX_REPLY`] bytes.
    async fn ask(&self, client: &awc::Client, id: RequestId) -> Result<Answer, String> {
        let mut url = self.config.resolver_url.clone();
        url.query_pairs_mut()
            .append_pair("request_id", &id.to_string());
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
            parse_answer(&body)
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

/// Works open requests for as long as it lives; see the module doc.
pub struct DispatcherActor {
    dispatcher: Dispatcher,
    wake: Arc<tokio::sync::Notify>,
    client: Option<awc::Client>,
    in_flight: InFlight,
    pacer: Pacer,
    _exit: ExitGuard,
}

impl DispatcherActor {
    pub fn new(dispatcher: Dispatcher, wake: Arc<tokio::sync::Notify>, exit: ExitGuard) -> Self {
        Self {
            dispatcher,
            wake,
            client: None,
            in_flight: InFlight::default(),
            pacer: Pacer::default(),
            _exit: exit,
        }
    }
}

impl Paced for DispatcherActor {
    fn pacer(&mut self) -> &mut Pacer {
        &mut self.pacer
    }

    fn pass(&mut self) -> Option<LocalBoxFuture<'static, Duration>> {
        let client = self.client.clone()?;
        let (dispatcher, in_flight) = (self.dispatcher.clone(), self.in_flight.clone());
        // The pass is tracked too: a stop waits for the calls it starts.
        let pass = self
            .in_flight
            .track(async move { dispatcher.pass(&client, &in_flight).await });
        Some(Box::pin(pass))
    }
}

impl Actor for DispatcherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Built here: an `awc::Client` belongs to the arbiter that made it. The resolver
        // is the operator's choice, so private addresses are allowed.
        self.client = Some(crate::outbound::client(OutboundConfig {
            timeout: self.dispatcher.config.timeout,
            allow_private: true,
        }));
        crate::work::on_every_wake(ctx, self.wake.clone(), pace::<Self>);
        pace(self, ctx);
    }
}

impl Handler<Stop> for DispatcherActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.pacer.stop();
        let in_flight = self.in_flight.clone();
        let drain = self.dispatcher.config.drain;
        let wait = async move { in_flight.drain_at_shutdown(drain, "oracle calls").await };
        Box::pin(wait.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_the_contract_says() {
        let answer = |body: &str| parse_answer(body.as_bytes());
        assert_eq!(
            answer(r#"{"done": true, "success": true, "result": "42", "extra": 1}"#),
            Ok(Answer::Succeeded("42".into()))
        );
        assert_eq!(
            answer(r#"{"done": true, "success": true}"#),
            Ok(Answer::Failed(
                "resolver reported success without a result".into()
            ))
        );
        assert_eq!(
            answer(r#"{"done": true, "success": false}"#),
            Ok(Answer::Failed("resolver reported failure".into()))
        );
        assert_eq!(
            answer(r#"{"done": true, "success": false, "error": "no such pair"}"#),
            Ok(Answer::Failed("no such pair".into()))
        );
        let wait = |body: &str| match answer(body) {
            Ok(Answer::NotDone { retry_after }) => retry_after,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(r#"{"done": false}"#), Duration::from_secs(5));
        assert_eq!(
            wait(r#"{"done": false, "retry_after_seconds": 0}"#),
            Duration::from_secs(1)
        );
        assert_eq!(
            wait(r#"{"done": false, "retry_after_seconds": 1e9}"#),
            Duration::from_secs(3600)
        );
        assert_eq!(
            wait(r#"{"done": false, "retry_after_seconds": 2.5}"#),
            Duration::from_millis(2500)
        );
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"done": "yes"}"#,
            r#"{"done": true}"#,
            "not json",
        ] {
            assert!(answer(bad).is_err(), "{bad:?} is transient");
        }
        assert_eq!(
            answer(r#"{"done": true, "success": true, "result": "a\u0000b"}"#),
            Ok(Answer::Succeeded("a\u{FFFD}b".into())),
            "U+0000 cannot be stored"
        );
        // Measured once storable: 30,000 NULs become 90,000 bytes.
        let nuls = format!(
            r#"{{"done": true, "success": true, "result": "{}"}}"#,
            "\\u0000".repeat(30_000)
        );
        assert_eq!(
            answer(&nuls),
            Ok(Answer::Failed("resolver result exceeds 65536 bytes".into()))
        );
        let big = format!(
            r#"{{"done": true, "success": true, "result": "{}"}}"#,
            "x".repeat(MAX_TEXT + 1)
        );
        assert_eq!(
            answer(&big),
            Ok(Answer::Failed("resolver result exceeds 65536 bytes".into()))
        );
    }

    /// A request whose last allowed call was lost with its replica (claimed again, so
    /// its count is past the maximum) fails without another call.
    #[actix_rt::test]
    async fn a_lost_last_call_gives_up_without_another() {
        use crate::accounts::{Account, AccountStore, MemoryAccountStore};
        use crate::oracle::{MemoryOracleStore, NewRequest, NewSource, SourceInput};
        let db = Arc::new(crate::store::MemoryDb::default());
        let now = crate::clock::truncate_micros(Utc::now());
        let account = Account::new("o", now);
        MemoryAccountStore::new(db.clone())
            .insert(&account)
            .await
            .unwrap();
        let store = Arc::new(MemoryOracleStore::new(db));
        let source = NewSource::parse(SourceInput {
            name: Some("s".into()),
            url: Some("https://s.example".into()),
            ..Default::default()
        })
        .unwrap()
        .into_source(account.id, now);
        let unlimited = crate::quota::Quota::unlimited("t");
        store.create_source(&source, unlimited).await.unwrap();
        let request = NewRequest {
            data_source_id: source.id,
            payload: String::new(),
        }
        .into_request(account.id, now);
        store.create_request(&request, unlimited).await.unwrap();
        let s = chrono::TimeDelta::seconds;
        store.claim(now, "A", now + s(30), 1).await.unwrap();
        // A's replica died mid-call; B takes the request over after the lease.
        let taken = store.claim(now + s(31), "B", now + s(61), 1).await.unwrap();
        assert_eq!(taken[0].attempts, 2);
        let metrics = OracleMetrics::register(&Registry::new()).unwrap();
        let dispatcher = Dispatcher::new(
            store.clone(),
            Arc::new(crate::SystemClock),
            "r".into(),
            DispatcherConfig {
                // Nothing listens there: a call would be a transient failure instead.
                resolver_url: url::Url::parse("http://127.0.0.1:9/").unwrap(),
                resolver_key: None,
                poll: Duration::from_secs(1),
                max_attempts: 1,
                ttl: None,
                timeout: Duration::from_secs(1),
                lease: Duration::from_secs(30),
                drain: Duration::from_secs(1),
            },
            metrics.clone(),
            Arc::default(),
        );
        let client = crate::outbound::client(OutboundConfig {
            timeout: Duration::from_secs(1),
            allow_private: true,
        });
        dispatcher.work(&client, taken[0].clone(), "B").await;
        let ended = store.get_request(account.id, request.id).await.unwrap();
        assert_eq!(ended.status, RequestStatus::Failed);
        assert_eq!(
            ended.attempts, 1,
            "the claim that made no call is taken back"
        );
        assert_eq!(
            ended.error.as_deref(),
            Some("oracle request gave up after 1 resolver attempts")
        );
        assert_eq!(metrics.attempts.with_label_values(&["gave_up"]).get(), 1);
        assert_eq!(metrics.attempts.with_label_values(&["transient"]).get(), 0);
    }

    #[test]
    fn back_off_doubles_from_five_seconds_to_five_minutes() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(i32::MAX), BACKOFF_MAX);
        assert_eq!(backoff(0), BACKOFF_BASE);
    }
}
