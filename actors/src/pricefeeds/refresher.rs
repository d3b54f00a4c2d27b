//! The `refresher` actor (CONTRACT.md §3.6): polls each active feed's sources on the
//! feed's own `update_interval`, records a snapshot when the observation deviates enough
//! or the heartbeat elapsed, and counts every observation.
//!
//! - A feed is taken by compare-and-set on `next_refresh_at` ([`FeedStore::take_due`]),
//!   so one replica polls it per interval.
//! - The actor sleeps until the earliest `next_refresh_at` (at most `PRICEFEED_TICK`) and
//!   wakes at once when a feed is created or changed on this replica.
//! - Each taken feed is observed in its own task, its sources fetched concurrently, each
//!   within `PRICEFEED_FETCH_TIMEOUT`: a slow or dead source delays only its own feed.
//! - At most [`crate::work::MAX_IN_FLIGHT`] feeds are observed at once; the rest stay due
//!   in the database.

use super::observe::{observation, parse_reply, worth_recording};
use super::{Feed, FeedStore, RecordSnapshot, Recorder};
use crate::clock::Clock;
use crate::ids::SnapshotId;
use crate::outbound::OutboundConfig;
use crate::supervisor::{ExitGuard, Stop};
use crate::work::{pace, InFlight, Paced, Pacer};
use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Largest reply a price source may send.
const MAX_REPLY: usize = 64 << 10;

#[derive(Clone)]
pub struct RefresherConfig {
    /// `PRICEFEED_TICK`: the longest sleep between passes.
    pub tick: Duration,
    /// `PRICEFEED_FETCH_TIMEOUT`: one source's whole answer.
    pub fetch_timeout: Duration,
    /// `PRICEFEED_FETCH_URL`: the source of feeds without their own.
    pub default_url: Option<url::Url>,
    /// `PRICEFEED_FETCH_KEY`: sent as a bearer token to `default_url` only.
    pub default_key: Option<Arc<zeroize::Zeroizing<String>>>,
    /// `PRICEFEED_ALLOW_PRIVATE_SOURCES`.
    pub allow_private: bool,
    /// `SHUTDOWN_TIMEOUT`: how long a stopping refresher waits for observations.
    pub drain: Duration,
    /// `SNAPSHOT_RETENTION`: snapshots collected longer ago are deleted (each feed's
    /// latest kept); `None` keeps them.
    pub retention: Option<Duration>,
}

impl std::fmt::Debug for RefresherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefresherConfig")
            .field("tick", &self.tick)
            .field("fetch_timeout", &self.fetch_timeout)
            .field(
                "default_url",
                &self.default_url.as_ref().map(url::Url::as_str),
            )
            .field(
                "default_key",
                &self.default_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_private", &self.allow_private)
            .field("retention", &self.retention)
            .finish()
    }
}

/// `service_layer_pricefeed_observations_total{outcome}` (no feed ids in labels).
#[derive(Clone, Debug)]
pub struct PricefeedMetrics {
    pub observations: IntCounterVec,
}

impl PricefeedMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let observations = IntCounterVec::new(
            Opts::new(
                "pricefeed_observations_total",
                "Price feed observations by outcome (recorded, suppressed, error)",
            )
            .namespace("service_layer"),
            &["outcome"],
        )?;
        registry.register(Box::new(observations.clone()))?;
        Ok(Self { observations })
    }
}

/// The refresher's work, apart from its actor (so tests can run a pass directly).
#[derive(Clone)]
pub struct Refresher {
    feeds: Arc<dyn FeedStore>,
    clock: Arc<dyn Clock>,
    config: RefresherConfig,
    metrics: PricefeedMetrics,
    /// Wakes event delivery when a snapshot's event is stored.
    events_wake: Arc<tokio::sync::Notify>,
    /// Wakes this refresher: set by [`Refresher::waking`] to the actor's own signal.
    wake: Arc<tokio::sync::Notify>,
    /// The last pass left due feeds for want of room: each observation that ends wakes
    /// the next pass (instead of waiting a tick).
    backlog: Arc<std::sync::atomic::AtomicBool>,
}

impl Refresher {
    pub fn new(
        feeds: Arc<dyn FeedStore>,
        clock: Arc<dyn Clock>,
        config: RefresherConfig,
        metrics: PricefeedMetrics,
        events_wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            feeds,
            clock,
            config,
            metrics,
            events_wake,
            wake: Arc::default(),
            backlog: Arc::default(),
        }
    }

    /// Observations that end while due feeds wait for room notify `wake` (the actor's).
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Takes the due feeds there is room for and observes each in its own task; returns
    /// how long to sleep before the next pass. The caller tracks the pass in `in_flight`
    /// (its room counts the pass itself).
    pub async fn pass(&self, clients: &Clients, in_flight: &InFlight) -> Duration {
        let room = in_flight.room();
        // Full, or the database failing: the due feeds stay due; look again after a tick
        // rather than at once (their due time is past, so the next-due wait would be 0).
        use std::sync::atomic::Ordering::Relaxed;
        if room <= 0 {
            self.backlog.store(true, Relaxed);
            return self.config.tick;
        }
        match self.feeds.take_due(self.clock.now(), room).await {
            Ok(feeds) => {
                // All the room taken: more may be due; the first observation to end
                // starts the next pass.
                self.backlog.store(
                    i64::try_from(feeds.len()).unwrap_or(i64::MAX) >= room,
                    Relaxed,
                );
                for feed in feeds {
                    let (this, clients) = (self.clone(), clients.clone());
                    in_flight.spawn(async move {
                        this.observe(&clients, feed).await;
                        if this.backlog.swap(false, Relaxed) {
                            this.wake.notify_one();
                        }
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not take due price feeds");
                return self.config.tick;
            }
        }
        let next = self.feeds.next_refresh().await;
        crate::work::wait_until(next, self.clock.now(), self.config.tick, "feed refresh")
    }

    /// Retention: deletes snapshots past `SNAPSHOT_RETENTION`; how many went.
    pub async fn purge(&self) -> Result<u64, crate::error::StoreError> {
        crate::work::purge_older(self.config.retention, self.clock.now(), |before, limit| {
            self.feeds.purge_snapshots(before, limit)
        })
        .await
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .observations
            .with_label_values(&[outcome])
            .inc();
    }

    /// Fetches every source of `feed`, and records the observation if it is worth it.
    #[tracing::instrument(skip_all, fields(feed_id = %feed.id, pair = %feed.pair()))]
    pub async fn observe(&self, clients: &Clients, feed: Feed) {
        // The operator's default source goes through the unchecked client with its key;
        // a feed's own sources (a tenant's URLs) through the checked one, without it.
        let (client, sources): (&awc::Client, Vec<(url::Url, Option<&str>)>) =
            if feed.sources.is_empty() {
                match &self.config.default_url {
                    Some(url) => (
                        &clients.default,
                        vec![(
                            url.clone(),
                            self.config.default_key.as_ref().map(|k| k.as_str()),
                        )],
                    ),
                    None => return,
                }
            } else {
                let urls = feed
                    .sources
                    .iter()
                    .filter_map(|s| url::Url::parse(s).ok())
                    .map(|u| (u, None))
                    .collect();
                (&clients.sources, urls)
            };
        let fetches = sources
            .iter()
            .map(|(url, key)| self.fetch(client, url, &feed, *key));
        let results = futures_util::future::join_all(fetches).await;
        let mut answers = Vec::with_capacity(results.len());
        for (result, (url, _)) in results.into_iter().zip(&sources) {
            match result {
                Ok(answer) => answers.push(answer),
                // Without query or credentials: either may hold a source's own key.
                Err(e) => {
                    tracing::warn!(source = %for_logs(url), error = %e, "price source failed")
                }
            }
        }
        let Some((price, source)) = observation(answers) else {
            self.count("error");
            tracing::warn!("no price source answered");
            return;
        };
        let now = self.clock.now();
        let snapshot = RecordSnapshot {
            id: SnapshotId::generate(),
            price,
            source,
            collected_at: now,
            created_at: now,
        };
        // Judged against the feed as it is now: one deactivated or given other sources
        // while this observation was under way records nothing.
        let decide = |current: &Feed| {
            current.active
                && current.sources == feed.sources
                && worth_recording(current, price, now)
        };
        let by = Recorder::Refresher {
            expected: decide(&feed),
        };
        match self
            .feeds
            .record(feed.id, by, snapshot, &decide, &super::updated_event)
            .await
        {
            Ok(Some(snapshot)) => {
                self.count("recorded");
                self.events_wake.notify_one();
                tracing::info!(
                    round = snapshot.round,
                    price,
                    "price feed snapshot recorded"
                );
            }
            Ok(None) => self.count("suppressed"),
            // Deleted while it was being observed.
            Err(crate::error::StoreError::NotFound) => {}
            Err(e) => {
                self.count("error");
                tracing::warn!(error = ?e, "could not record a price observation");
            }
        }
    }

    /// One source: `GET <url>?base=…&quote=…` (CONTRACT.md §4.1), the whole answer within
    /// the fetch timeout, at most [`MAX_REPLY`] bytes.
    async fn fetch(
        &self,
        client: &awc::Client,
        url: &url::Url,
        feed: &Feed,
        key: Option<&str>,
    ) -> Result<(f64, String), String> {
        let mut url = url.clone();
        url.query_pairs_mut()
            .append_pair("base", &feed.base_asset)
            .append_pair("quote", &feed.quote_asset);
        let host = url.host_str().unwrap_or_default().to_owned();
        let exchange = async {
            let mut request = client.get(url.as_str());
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let mut response = request.send().await.map_err(|e| e.to_string())?;
            if response.status() != awc::http::StatusCode::OK {
                return Err(format!("answered {}", response.status()));
            }
            let body = response
                .body()
                .limit(MAX_REPLY)
                .await
                .map_err(|e| e.to_string())?;
            parse_reply(&body, &host)
        };
        match tokio::time::timeout(self.config.fetch_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.config.fetch_timeout.as_millis()
            )),
        }
    }
}

/// A source URL as logs may show it: without credentials or query (either may hold a
/// key).
fn for_logs(url: &url::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    // Only fails for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// The refresher's two outbound clients.
#[derive(Clone)]
pub struct Clients {
    /// For feeds' own sources: non-public destinations refused unless
    /// `PRICEFEED_ALLOW_PRIVATE_SOURCES`.
    pub sources: awc::Client,
    /// For `PRICEFEED_FETCH_URL`, which the operator chose: any destination (an internal
    /// price service must not require opening private addresses to every tenant).
    pub default: awc::Client,
}

/// Polls feeds for as long as it lives; see the module doc.
pub struct RefresherActor {
    refresher: Refresher,
    wake: Arc<tokio::sync::Notify>,
    clients: Option<Clients>,
    in_flight: InFlight,
    pacer: Pacer,
    _exit: ExitGuard,
}

impl RefresherActor {
    pub fn new(refresher: Refresher, wake: Arc<tokio::sync::Notify>, exit: ExitGuard) -> Self {
        Self {
            refresher,
            wake,
            clients: None,
            in_flight: InFlight::default(),
            pacer: Pacer::default(),
            _exit: exit,
        }
    }
}

impl Paced for RefresherActor {
    fn pacer(&mut self) -> &mut Pacer {
        &mut self.pacer
    }

    fn pass(&mut self) -> Option<LocalBoxFuture<'static, Duration>> {
        let clients = self.clients.clone()?;
        let (refresher, in_flight) = (self.refresher.clone(), self.in_flight.clone());
        // The pass is tracked too: a stop waits for the observations it starts.
        let pass = self
            .in_flight
            .track(async move { refresher.pass(&clients, &in_flight).await });
        Some(Box::pin(pass))
    }
}

impl RefresherActor {
    fn purge(&mut self, ctx: &mut Context<Self>) {
        if self.pacer.is_stopping() {
            return;
        }
        let refresher = self.refresher.clone();
        let purge = self.in_flight.track(async move {
            match refresher.purge().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    snapshots = n,
                    "purged price feed snapshots past SNAPSHOT_RETENTION"
                ),
                Err(e) => tracing::warn!(error = ?e, "could not purge old price feed snapshots"),
            }
        });
        ctx.spawn(purge.into_actor(self));
    }
}

impl Actor for RefresherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Built here: an `awc::Client` belongs to the arbiter that made it.
        let config = &self.refresher.config;
        let client = |allow_private| {
            crate::outbound::client(OutboundConfig {
                timeout: config.fetch_timeout,
                allow_private,
            })
        };
        self.clients = Some(Clients {
            sources: client(config.allow_private),
            default: client(true),
        });
        crate::work::on_every_wake(ctx, self.wake.clone(), pace::<Self>);
        // Retention at start and every `PURGE_EVERY`.
        Self::purge(self, ctx);
        ctx.run_interval(crate::work::PURGE_EVERY, Self::purge);
        pace(self, ctx);
    }
}

impl Handler<Stop> for RefresherActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.pacer.stop();
        let in_flight = self.in_flight.clone();
        let drain = self.refresher.config.drain;
        let wait = async move {
            in_flight
                .drain_at_shutdown(drain, "price observations")
                .await
        };
        Box::pin(wait.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}
