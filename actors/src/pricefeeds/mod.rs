//! Price feeds: a pair's price observed from external sources, recorded as numbered
//! snapshots (`app_price_feeds`, `app_price_feed_snapshots`, owned here): the API side
//! (CRUD, snapshots, `pricefeed.updated`) and the `refresher` that polls the sources
//! (`refresher.rs`, its rules in `observe.rs`).

mod actor;
mod domain;
mod memory;
pub mod observe;
mod postgres;
mod refresher;
mod service;

pub use actor::{
    CreateFeed, CreateSnapshot, DeleteFeed, GetFeed, ListFeeds, ListSnapshots, PriceFeedsActor,
    UpdateFeed,
};
pub use domain::{
    format_interval, Feed, FeedInput, FeedPatch, FeedPatchInput, Latest, NewFeed, NewSnapshot,
    Snapshot, SnapshotInput, MAX_SOURCES,
};
pub use memory::MemoryFeedStore;
pub use postgres::PgFeedStore;
pub use refresher::{Clients, PricefeedMetrics, Refresher, RefresherActor, RefresherConfig};
pub use service::{FeedView, PriceFeedsService};

use crate::error::{StoreError, ValidationError};
use crate::events::Event;
use crate::ids::{AccountId, FeedId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use chrono::{DateTime, Utc};

crate::subsystem_error!(
    /// Why a price feed request failed.
    PriceFeedsError {}
);

crate::handle_trait!(
    /// What the HTTP edge may ask of the price feeds subsystem.
    PriceFeedsHandle: CreateFeed,
    GetFeed,
    ListFeeds,
    UpdateFeed,
    DeleteFeed,
    ListSnapshots,
    CreateSnapshot,
);

/// The feed tables. Both implementations give the same guarantees: one pair per account,
/// rounds numbered 1, 2, … per feed without gaps or repeats, the feed's latest snapshot
/// and the `pricefeed.updated` event written with the snapshot.
#[async_trait::async_trait]
pub trait FeedStore: Send + Sync + 'static {
    /// `Conflict` on a pair the account already has; `NotFound` if the account is gone;
    /// `LimitExceeded` when the account already holds `quota` feeds.
    async fn create(&self, feed: &Feed, quota: Quota) -> Result<(), StoreError>;
    async fn get(&self, account: AccountId, id: FeedId) -> Result<Feed, StoreError>;
    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Feed>, StoreError>;
    /// Applies `change` to the feed as it is now, under its row lock (so concurrent
    /// PATCHes of different settings both stick), and saves the settings it returns
    /// (intervals, deviation, active, sources, `updated_at`, and `next_refresh_at` when
    /// it says to reschedule). The inner `Err` is `change` refusing (nothing saved);
    /// `NotFound` if the feed is gone.
    async fn update(
        &self,
        account: AccountId,
        id: FeedId,
        change: FeedChange<'_>,
    ) -> Result<Result<Feed, ValidationError>, StoreError>;
    /// Deletes the feed and its snapshots.
    async fn delete(&self, account: AccountId, id: FeedId) -> Result<(), StoreError>;
    /// Newest first by `collected_at` (then id); the next page starts strictly before
    /// the page key. `NotFound` if the feed is not the account's.
    async fn list_snapshots(
        &self,
        account: AccountId,
        feed: FeedId,
        page: PageRequest,
    ) -> Result<Page<Snapshot>, StoreError>;
    /// If `decide` approves of the feed as it is now (read under its row lock, so two
    /// observations never both judge against the same latest snapshot): records a
    /// snapshot with the feed's next round, moves the feed's latest snapshot if this one
    /// is not older, and adds `event(&snapshot, &feed)` to the outbox, all in one
    /// transaction. `by` says whose feed it may be and how to go about it (see
    /// [`Recorder`]). `Ok(None)` when `decide` said no; `NotFound` if the feed is gone.
    async fn record(
        &self,
        feed: FeedId,
        by: Recorder,
        snapshot: RecordSnapshot,
        decide: &(dyn for<'f> Fn(&'f Feed) -> bool + Sync),
        event: &(dyn for<'s, 'f> Fn(&'s Snapshot, &'f Feed) -> Event + Sync),
    ) -> Result<Option<Snapshot>, StoreError>;
    /// Takes up to `limit` active feeds due at `now` (oldest `next_refresh_at` first),
    /// moving each one's `next_refresh_at` by its `update_interval` (to `now` + interval
    /// if that is still past) in the same statement: one replica polls a feed per
    /// interval. A feed without a source is taken too (the refresher then has nothing to
    /// poll), so no feed stays due for every pass to step over.
    async fn take_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Feed>, StoreError>;
    /// Retention: deletes up to `limit` snapshots collected before `before`, oldest
    /// first, never a feed's latest; how many went.
    async fn purge_snapshots(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;
    /// The earliest `next_refresh_at` of a feed [`FeedStore::take_due`] would take.
    async fn next_refresh(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// A PATCH of a feed, applied to it as it is now: the changed feed and whether its
/// `next_refresh_at` moves, or why the change is refused.
pub type FeedChange<'c> =
    &'c (dyn for<'f> Fn(&'f Feed) -> Result<(Feed, bool), ValidationError> + Sync);

/// Where a feed's `next_refresh_at` moves when it is taken at `now`: one interval on, or
/// one interval from now if that is still past (a replica was down: no catching up).
fn next_refresh_after(
    due: DateTime<Utc>,
    interval: std::time::Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::seconds(1));
    let next = due + step;
    if next > now {
        next
    } else {
        now + step
    }
}

/// Who records a snapshot.
#[derive(Debug, Clone, Copy)]
pub enum Recorder {
    /// The API: only a feed of this account.
    Api(AccountId),
    /// The refresher: any feed. `expected`: whether `decide` approved of the feed as it
    /// was taken. If not (most observations are suppressed), the store may first judge
    /// against the feed as last committed, without a lock or a transaction: a "no" then
    /// stands as of that read, and only a "yes" is judged again under the lock.
    Refresher { expected: bool },
}

impl Recorder {
    fn scope(self) -> Option<AccountId> {
        match self {
            Self::Api(account) => Some(account),
            Self::Refresher { .. } => None,
        }
    }
}

/// A snapshot to record; the store gives it its round.
#[derive(Debug, Clone)]
pub struct RecordSnapshot {
    pub id: crate::ids::SnapshotId,
    pub price: f64,
    pub source: String,
    pub collected_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl RecordSnapshot {
    fn with_round(self, feed: FeedId, round: i64) -> Snapshot {
        Snapshot {
            id: self.id,
            feed_id: feed,
            round,
            price: self.price,
            source: self.source,
            collected_at: self.collected_at,
            created_at: self.created_at,
        }
    }
}

/// The latest snapshot after `snapshot` is added to a feed whose latest was `current`:
/// the one collected last, the higher round on a tie.
fn latest_after(current: Option<Latest>, snapshot: &Snapshot) -> Latest {
    let candidate = Latest {
        round: snapshot.round,
        price: snapshot.price,
        at: snapshot.collected_at,
    };
    match current {
        Some(current) if current.at > candidate.at => current,
        _ => candidate,
    }
}

/// The `pricefeed.updated` event of a snapshot (CONTRACT.md §3.5).
pub fn updated_event(snapshot: &Snapshot, feed: &Feed) -> Event {
    Event::new(
        feed.account_id,
        crate::events::PRICEFEED_UPDATED,
        serde_json::json!({
            "feed_id": feed.id.to_string(),
            "pair": feed.pair(),
            "snapshot_id": snapshot.id.to_string(),
            "round": snapshot.round,
            "price": snapshot.price,
            "source": snapshot.source,
            "collected_at": crate::clock::timestamp(&snapshot.collected_at),
        }),
        snapshot.created_at,
    )
}
