//! In-memory [`FeedStore`]: feeds in list order per account with a pair index, each
//! feed's snapshots in list order (newest first when read backwards); snapshots go with
//! their feed, feeds with their account.

use super::{Feed, FeedChange, FeedStore, RecordSnapshot, Recorder, Snapshot};
use crate::error::StoreError;
use crate::error::ValidationError;
use crate::events::Event;
use crate::ids::{AccountId, FeedId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::quota::Quota;
use crate::store::memory::AccountRows;
use crate::store::{MemoryDb, Row, Table, Tx};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `app_price_feeds` and `app_price_feed_snapshots`.
#[derive(Debug, Default)]
struct FeedTable {
    feeds: AccountRows<FeedId, Feed>,
    /// `(account, pair)`: a pair is unique per account.
    pairs: HashMap<(AccountId, String), FeedId>,
    /// Each feed's snapshots by `(collected_at, id)`.
    snapshots: HashMap<FeedId, BTreeMap<PageKey, Snapshot>>,
}

impl FeedTable {
    fn remove_feed(&mut self, id: &FeedId) -> Option<Feed> {
        let feed = self.feeds.remove(id)?;
        self.pairs.remove(&(feed.account_id, feed.pair()));
        self.snapshots.remove(id);
        Some(feed)
    }
}

impl Table for FeedTable {
    fn cascade(&mut self, parent: Row, _removed: &mut Vec<Row>) {
        if let Row::Account(account) = parent {
            for id in self.feeds.remove_account(account) {
                self.snapshots.remove(&id);
            }
            self.pairs.retain(|(owner, _), _| *owner != account);
        }
    }
}

fn conflict(feed: &Feed) -> StoreError {
    StoreError::Conflict(format!("price feed {} already exists", feed.pair()))
}

pub struct MemoryFeedStore {
    db: Arc<MemoryDb>,
}

impl MemoryFeedStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl FeedStore for MemoryFeedStore {
    async fn create(&self, feed: &Feed, quota: Quota) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if !tables.exists(Row::Account(feed.account_id)) {
            return Err(StoreError::NotFound);
        }
        let table = tables.get::<FeedTable>();
        let key = (feed.account_id, feed.pair());
        if table.pairs.contains_key(&key) {
            return Err(conflict(feed));
        }
        table
            .feeds
            .check_quota(feed.account_id, quota, "price feeds")?;
        table.pairs.insert(key, feed.id);
        table.feeds.insert(feed.account_id, feed.id, feed.clone());
        Ok(())
    }

    async fn get(&self, account: AccountId, id: FeedId) -> Result<Feed, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<FeedTable>()
            .feeds
            .get_in(account, &id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Feed>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<FeedTable>().feeds.page(account, &page))
    }

    async fn update(
        &self,
        account: AccountId,
        id: FeedId,
        change: FeedChange<'_>,
    ) -> Result<Result<Feed, ValidationError>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<FeedTable>();
        let Some(current) = table.feeds.get_in(account, &id) else {
            return Err(StoreError::NotFound);
        };
        let (feed, reschedule) = match change(current) {
            Ok(changed) => changed,
            Err(refused) => return Ok(Err(refused)),
        };
        // Only the settings: the latest snapshot and rounds belong to `record`.
        let saved = Feed {
            latest: current.latest,
            rounds: current.rounds,
            next_refresh_at: if reschedule {
                feed.next_refresh_at
            } else {
                current.next_refresh_at
            },
            ..feed
        };
        table.feeds.insert(account, id, saved.clone());
        Ok(Ok(saved))
    }

    async fn delete(&self, account: AccountId, id: FeedId) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<FeedTable>();
        if table.feeds.get_in(account, &id).is_none() {
            return Err(StoreError::NotFound);
        }
        table.remove_feed(&id);
        Ok(())
    }

    async fn list_snapshots(
        &self,
        account: AccountId,
        feed: FeedId,
        page: PageRequest,
    ) -> Result<Page<Snapshot>, StoreError> {
        use std::ops::Bound;
        let mut tables = self.db.lock().await;
        let table = tables.get::<FeedTable>();
        if table.feeds.get_in(account, &feed).is_none() {
            return Err(StoreError::NotFound);
        }
        let Some(snapshots) = table.snapshots.get(&feed) else {
            return Ok(Page::from_overfetch(Vec::new(), &page));
        };
        // Newest first: walk backwards from the page key.
        let upper = match page.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let rows = snapshots
            .range((Bound::Unbounded, upper))
            .rev()
            .take(page.fetch_limit() as usize)
            .map(|(_, s)| s.clone())
            .collect();
        Ok(Page::from_overfetch(rows, &page))
    }

    async fn record(
        &self,
        feed: FeedId,
        by: Recorder,
        snapshot: RecordSnapshot,
        decide: &(dyn for<'f> Fn(&'f Feed) -> bool + Sync),
        event: &(dyn for<'s, 'f> Fn(&'s Snapshot, &'f Feed) -> Event + Sync),
    ) -> Result<Option<Snapshot>, StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        let Tx::Memory(memory) = &mut tx else {
            unreachable!("a memory transaction")
        };
        let table = memory.get::<FeedTable>();
        let Some(row) = table
            .feeds
            .get_mut(&feed)
            .filter(|f| by.scope().is_none_or(|account| f.account_id == account))
        else {
            return Err(StoreError::NotFound);
        };
        if !decide(row) {
            return Ok(None);
        }
        let before = (row.latest, row.rounds);
        row.rounds += 1;
        let snapshot = snapshot.with_round(feed, row.rounds);
        row.latest = Some(super::latest_after(row.latest, &snapshot));
        let updated = row.clone();
        table
            .snapshots
            .entry(feed)
            .or_default()
            .insert(snapshot.page_key(), snapshot.clone());
        let key = snapshot.page_key();
        memory.on_rollback(move |tables| {
            let table = tables.get::<FeedTable>();
            if let Some(row) = table.feeds.get_mut(&feed) {
                (row.latest, row.rounds) = before;
            }
            if let Some(snapshots) = table.snapshots.get_mut(&feed) {
                snapshots.remove(&key);
            }
        });
        crate::events::insert(&mut tx, &event(&snapshot, &updated)).await?;
        tx.commit().await?;
        Ok(Some(snapshot))
    }

    async fn take_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Feed>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<FeedTable>();
        // Every feed is looked at: memory mode holds few (a quota per account).
        let mut due: Vec<(DateTime<Utc>, FeedId)> = table
            .feeds
            .values()
            .filter(|f| f.active)
            .filter_map(|f| f.next_refresh_at.filter(|t| *t <= now).map(|t| (t, f.id)))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut taken = Vec::with_capacity(due.len());
        for (at, id) in due {
            if let Some(feed) = table.feeds.get_mut(&id) {
                feed.next_refresh_at =
                    Some(super::next_refresh_after(at, feed.update_interval, now));
                taken.push(feed.clone());
            }
        }
        Ok(taken)
    }

    async fn purge_snapshots(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<FeedTable>();
        let mut left = usize::try_from(limit).unwrap_or(0);
        let mut deleted = 0u64;
        // Per feed, from its oldest: memory mode holds few feeds.
        for (id, snapshots) in table.snapshots.iter_mut() {
            if left == 0 {
                break;
            }
            let latest = table.feeds.get(id).and_then(|f| f.latest).map(|l| l.round);
            let old: Vec<PageKey> = snapshots
                .iter()
                .take_while(|(key, _)| key.at < before)
                .filter(|(_, s)| Some(s.round) != latest)
                .map(|(key, _)| *key)
                .take(left)
                .collect();
            for key in &old {
                snapshots.remove(key);
            }
            left -= old.len();
            deleted += old.len() as u64;
        }
        Ok(deleted)
    }

    async fn next_refresh(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables
            .get::<FeedTable>()
            .feeds
            .values()
            .filter_map(|f| f.next_refresh_at.filter(|_| f.active))
            .min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricefeeds::{FeedInput, NewFeed};

    #[actix_rt::test]
    async fn retention_deletes_old_snapshots_but_each_feeds_latest() {
        let db = Arc::new(MemoryDb::default());
        let account = crate::accounts::Account {
            id: AccountId::generate(),
            owner: "o".into(),
            metadata: Default::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        use crate::accounts::AccountStore;
        crate::accounts::MemoryAccountStore::new(db.clone())
            .insert(&account)
            .await
            .unwrap();
        let store = MemoryFeedStore::new(db);
        let now = crate::clock::truncate_micros(Utc::now());
        let mut feeds = Vec::new();
        for base in ["NEO", "GAS"] {
            let feed = NewFeed::parse(FeedInput {
                base_asset: Some(base.into()),
                quote_asset: Some("USD".into()),
                deviation_percent: Some(1.0),
                ..FeedInput::default()
            })
            .unwrap()
            .into_feed(account.id, now);
            store.create(&feed, Quota::unlimited("t")).await.unwrap();
            feeds.push(feed.id);
        }
        // NEO: three old snapshots; GAS: one old (its latest) snapshot.
        let hours = |h: i64| now - chrono::TimeDelta::hours(h);
        for (feed, at) in [
            (feeds[0], hours(5)),
            (feeds[0], hours(4)),
            (feeds[0], hours(3)),
            (feeds[1], hours(5)),
        ] {
            let snapshot = RecordSnapshot {
                id: crate::ids::SnapshotId::generate(),
                price: 1.0,
                source: "s".into(),
                collected_at: at,
                created_at: now,
            };
            store
                .record(
                    feed,
                    Recorder::Refresher { expected: true },
                    snapshot,
                    &|_| true,
                    &super::super::updated_event,
                )
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            store.purge_snapshots(hours(1), 1).await.unwrap(),
            1,
            "the limit holds"
        );
        assert_eq!(store.purge_snapshots(hours(1), 100).await.unwrap(), 1);
        let page = |feed| store.list_snapshots(account.id, feed, PageRequest::new(10, None));
        let neo = page(feeds[0]).await.unwrap().items;
        assert_eq!(
            neo.iter().map(|s| s.round).collect::<Vec<_>>(),
            [3],
            "NEO keeps its latest"
        );
        assert_eq!(
            page(feeds[1]).await.unwrap().items.len(),
            1,
            "GAS keeps its only one"
        );
        assert_eq!(store.purge_snapshots(hours(1), 100).await.unwrap(), 0);
    }
}
