//! Price feed rules: a pair per account, the heartbeat never shorter than the update
//! interval, new or re-timed or re-activated feeds due at once, `stale` read against
//! the clock, manual snapshots always recorded with their `pricefeed.updated` event.

use super::{
    Feed, FeedPatch, FeedStore, NewFeed, NewSnapshot, PriceFeedsError, RecordSnapshot, Recorder,
    Snapshot,
};
use crate::clock::Clock;
use crate::error::{OrNotFound, StoreError};
use crate::ids::{AccountId, FeedId, SnapshotId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use std::sync::Arc;

/// A feed as the API shows it: the stored feed and whether it is stale now.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedView {
    pub feed: Feed,
    pub stale: bool,
}

#[derive(Clone)]
pub struct PriceFeedsService {
    feeds: Arc<dyn FeedStore>,
    clock: Arc<dyn Clock>,
    /// `MAX_FEEDS_PER_ACCOUNT`.
    quota: Quota,
    /// Wakes this replica's event delivery when a snapshot's event is stored (other
    /// replicas hear of it through `NOTIFY` in PostgreSQL), and its refresher when a feed
    /// is created or changed (a new, re-timed or re-activated feed is due at once).
    events_wake: Arc<tokio::sync::Notify>,
    refresher_wake: Arc<tokio::sync::Notify>,
}

impl PriceFeedsService {
    pub fn new(feeds: Arc<dyn FeedStore>, clock: Arc<dyn Clock>, quota: Quota) -> Self {
        Self {
            feeds,
            clock,
            quota,
            events_wake: Arc::default(),
            refresher_wake: Arc::default(),
        }
    }

    /// Wakes `events` (the event delivery's) when an event is stored and `refresher`
    /// when a feed changes.
    pub fn waking(
        mut self,
        events: Arc<tokio::sync::Notify>,
        refresher: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.events_wake = events;
        self.refresher_wake = refresher;
        self
    }

    fn view(&self, feed: Feed) -> FeedView {
        let stale = feed.stale(self.clock.now());
        FeedView { feed, stale }
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create(
        &self,
        account: AccountId,
        new: NewFeed,
    ) -> Result<FeedView, PriceFeedsError> {
        let feed = new.into_feed(account, self.clock.now());
        match self.feeds.create(&feed, self.quota).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(PriceFeedsError::NotFound("account")),
            Err(StoreError::Conflict(message)) => return Err(PriceFeedsError::Conflict(message)),
            Err(e) => return Err(e.into()),
        }
        self.refresher_wake.notify_one();
        tracing::info!(feed_id = %feed.id, pair = %feed.pair(), "price feed created");
        Ok(self.view(feed))
    }

    pub async fn get(&self, account: AccountId, id: FeedId) -> Result<FeedView, PriceFeedsError> {
        let feed = self
            .feeds
            .get(account, id)
            .await
            .or_not_found("price feed")?;
        Ok(self.view(feed))
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<FeedView>, PriceFeedsError> {
        let page = self.feeds.list(account, page).await?;
        Ok(Page {
            items: page.items.into_iter().map(|f| self.view(f)).collect(),
            next: page.next,
        })
    }

    #[tracing::instrument(skip_all, fields(account_id = %account, feed_id = %id))]
    pub async fn update(
        &self,
        account: AccountId,
        id: FeedId,
        patch: FeedPatch,
    ) -> Result<FeedView, PriceFeedsError> {
        let now = self.clock.now();
        let change = |current: &Feed| {
            let mut feed = current.clone();
            let reschedule = patch.apply(&mut feed, now)?;
            Ok((feed, reschedule))
        };
        let updated = self
            .feeds
            .update(account, id, &change)
            .await
            .or_not_found("price feed")??;
        self.refresher_wake.notify_one();
        Ok(self.view(updated))
    }

    pub async fn delete(&self, account: AccountId, id: FeedId) -> Result<(), PriceFeedsError> {
        Ok(self
            .feeds
            .delete(account, id)
            .await
            .or_not_found("price feed")?)
    }

    pub async fn list_snapshots(
        &self,
        account: AccountId,
        feed: FeedId,
        page: PageRequest,
    ) -> Result<Page<Snapshot>, PriceFeedsError> {
        Ok(self
            .feeds
            .list_snapshots(account, feed, page)
            .await
            .or_not_found("price feed")?)
    }

    /// Records a manual snapshot: always, whatever the deviation (CONTRACT.md §2.7).
    #[tracing::instrument(skip_all, fields(account_id = %account, feed_id = %feed))]
    pub async fn record(
        &self,
        account: AccountId,
        feed: FeedId,
        new: NewSnapshot,
    ) -> Result<Snapshot, PriceFeedsError> {
        let record = RecordSnapshot {
            id: SnapshotId::generate(),
            price: new.price,
            source: new.source,
            collected_at: new.collected_at,
            created_at: self.clock.now(),
        };
        let snapshot = self
            .feeds
            .record(
                feed,
                Recorder::Api(account),
                record,
                &|_| true,
                &super::updated_event,
            )
            .await
            .or_not_found("price feed")?
            // `decide` said yes: the store records it or fails.
            .ok_or_else(|| {
                StoreError::internal(anyhow::anyhow!("a manual snapshot was not recorded"))
            })?;
        self.events_wake.notify_one();
        tracing::info!(
            round = snapshot.round,
            price = snapshot.price,
            "snapshot recorded"
        );
        Ok(snapshot)
    }
}
