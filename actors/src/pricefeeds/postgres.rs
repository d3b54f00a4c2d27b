//! PostgreSQL [`FeedStore`] over `app_price_feeds` and `app_price_feed_snapshots`
//! (migration V10). A snapshot, the feed's round and latest snapshot, and its event are
//! one transaction; the feed row's update serialises the snapshots of one feed.

use super::{Feed, FeedChange, FeedStore, Latest, RecordSnapshot, Recorder, Snapshot};
use crate::error::StoreError;
use crate::error::ValidationError;
use crate::events::Event;
use crate::ids::{AccountId, FeedId, SnapshotId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::Tx;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

const FEED: &str =
    "id, account_id, base_asset, quote_asset, update_interval_ms, heartbeat_interval_ms,
    deviation_percent, active, sources, rounds, latest_round, latest_price, latest_at,
    next_refresh_at, created_at, updated_at";
const SNAPSHOT: &str = "id, feed_id, round, price, source, collected_at, created_at";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(row: &Row, column: &str) -> Result<Duration, StoreError> {
    let ms: i64 = row.try_get(column)?;
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn feed_from(row: &Row) -> Result<Feed, StoreError> {
    let latest = match (
        row.try_get::<_, Option<i64>>("latest_round")?,
        row.try_get::<_, Option<f64>>("latest_price")?,
        row.try_get("latest_at")?,
    ) {
        (Some(round), Some(price), Some(at)) => Some(Latest { round, price, at }),
        _ => None,
    };
    Ok(Feed {
        id: FeedId::from(row.try_get::<_, uuid::Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, uuid::Uuid>("account_id")?),
        base_asset: row.try_get("base_asset")?,
        quote_asset: row.try_get("quote_asset")?,
        update_interval: duration(row, "update_interval_ms")?,
        heartbeat_interval: duration(row, "heartbeat_interval_ms")?,
        deviation_percent: row.try_get("deviation_percent")?,
        active: row.try_get("active")?,
        sources: row.try_get("sources")?,
        latest,
        rounds: row.try_get("rounds")?,
        next_refresh_at: row.try_get("next_refresh_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn snapshot_from(row: &Row) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        id: SnapshotId::from(row.try_get::<_, uuid::Uuid>("id")?),
        feed_id: FeedId::from(row.try_get::<_, uuid::Uuid>("feed_id")?),
        round: row.try_get("round")?,
        price: row.try_get("price")?,
        source: row.try_get("source")?,
        collected_at: row.try_get("collected_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub struct PgFeedStore {
    pool: Pool,
}

impl PgFeedStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl FeedStore for PgFeedStore {
    async fn create(&self, f: &Feed, quota: Quota) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        crate::quota::check_pg(
            &tx,
            quota,
            f.account_id.as_uuid(),
            "SELECT count(*) FROM (SELECT 1 FROM app_price_feeds WHERE account_id = $1 LIMIT $2) held",
            "price feeds",
        )
        .await?;
        let inserted = tx
            .execute(
                "INSERT INTO app_price_feeds (id, account_id, base_asset, quote_asset, pair,
                     update_interval_ms, heartbeat_interval_ms, deviation_percent, active, sources,
                     next_refresh_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    f.id.as_uuid(),
                    f.account_id.as_uuid(),
                    &f.base_asset,
                    &f.quote_asset,
                    &f.pair(),
                    &millis(f.update_interval),
                    &millis(f.heartbeat_interval),
                    &f.deviation_percent,
                    &f.active,
                    &f.sources,
                    &f.next_refresh_at,
                    &f.created_at,
                    &f.updated_at,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(StoreError::Conflict(format!(
                    "price feed {} already exists",
                    f.pair()
                )))
            }
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                return Err(StoreError::NotFound)
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, account: AccountId, id: FeedId) -> Result<Feed, StoreError> {
        let table = "app_price_feeds";
        crate::store::postgres::account_row(
            &self.pool,
            FEED,
            table,
            account,
            id.as_uuid(),
            feed_from,
        )
        .await
    }

    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Feed>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            FEED,
            "app_price_feeds",
            account,
            &page,
            feed_from,
        )
        .await
    }

    async fn update(
        &self,
        account: AccountId,
        id: FeedId,
        change: FeedChange<'_>,
    ) -> Result<Result<Feed, ValidationError>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = crate::store::postgres::locked_account_row(
            &tx,
            FEED,
            "app_price_feeds",
            account,
            id.as_uuid(),
        )
        .await?;
        let (f, reschedule) = match change(&feed_from(&current)?) {
            Ok(changed) => changed,
            Err(refused) => return Ok(Err(refused)),
        };
        let row = tx
            .query_one(
                &format!(
                    "UPDATE app_price_feeds SET update_interval_ms = $3, heartbeat_interval_ms = $4,
                         deviation_percent = $5, active = $6, sources = $7,
                         next_refresh_at = CASE WHEN $10 THEN $8 ELSE next_refresh_at END,
                         updated_at = $9
                     WHERE id = $1 AND account_id = $2
                     RETURNING {FEED}"
                ),
                &[
                    f.id.as_uuid(),
                    f.account_id.as_uuid(),
                    &millis(f.update_interval),
                    &millis(f.heartbeat_interval),
                    &f.deviation_percent,
                    &f.active,
                    &f.sources,
                    &f.next_refresh_at,
                    &f.updated_at,
                    &reschedule,
                ],
            )
            .await?;
        let saved = feed_from(&row)?;
        tx.commit().await?;
        Ok(Ok(saved))
    }

    async fn delete(&self, account: AccountId, id: FeedId) -> Result<(), StoreError> {
        crate::store::postgres::delete_account_row(
            &self.pool,
            "app_price_feeds",
            account,
            id.as_uuid(),
        )
        .await
    }

    async fn list_snapshots(
        &self,
        account: AccountId,
        feed: FeedId,
        page: PageRequest,
    ) -> Result<Page<Snapshot>, StoreError> {
        let client = self.pool.get().await?;
        let owned = client
            .query_opt(
                "SELECT 1 FROM app_price_feeds WHERE id = $1 AND account_id = $2",
                &[feed.as_uuid(), account.as_uuid()],
            )
            .await?;
        if owned.is_none() {
            return Err(StoreError::NotFound);
        }
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SNAPSHOT} FROM app_price_feed_snapshots
                 WHERE feed_id = $1
                   AND ($2::timestamptz IS NULL OR (collected_at, id) < ($2, $3::uuid))
                 ORDER BY collected_at DESC, id DESC LIMIT $4"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    feed.as_uuid(),
                    &page.after.map(|k| k.at),
                    &page.after.map(|k| k.id),
                    &page.fetch_limit(),
                ],
            )
            .await?;
        let items = rows
            .iter()
            .map(snapshot_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, &page))
    }

    async fn record(
        &self,
        feed: FeedId,
        by: Recorder,
        snapshot: RecordSnapshot,
        decide: &(dyn for<'f> Fn(&'f Feed) -> bool + Sync),
        event: &(dyn for<'s, 'f> Fn(&'s Snapshot, &'f Feed) -> Event + Sync),
    ) -> Result<Option<Snapshot>, StoreError> {
        let mut client = self.pool.get().await?;
        // An observation the feed as taken turned down is judged first against the feed
        // as last committed, without a transaction or a lock: a "no" stands as of that
        // read (before any change that commits later); only a "yes" takes the lock below
        // and is judged again.
        if let Recorder::Refresher { expected: false } = by {
            let stmt = client
                .prepare_cached(&format!("SELECT {FEED} FROM app_price_feeds WHERE id = $1"))
                .await?;
            let Some(current) = client.query_opt(&stmt, &[feed.as_uuid()]).await? else {
                return Err(StoreError::NotFound);
            };
            if !decide(&feed_from(&current)?) {
                return Ok(None);
            }
        }
        let mut tx = Tx::Postgres(client.transaction().await?);
        let Tx::Postgres(pg) = &mut tx else {
            unreachable!("a PostgreSQL transaction")
        };
        // The feed as it is now, locked until commit: the decision and the round are
        // taken against the same latest snapshot.
        let current = pg
            .query_opt(
                &format!(
                    "SELECT {FEED} FROM app_price_feeds
                     WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) FOR UPDATE"
                ),
                &[feed.as_uuid(), &by.scope().map(|a| *a.as_uuid())],
            )
            .await?;
        let Some(current) = current else {
            return Err(StoreError::NotFound);
        };
        if !decide(&feed_from(&current)?) {
            return Ok(None);
        }
        // The round, and the latest snapshot unless an existing one was collected later
        // (ties go to the new, higher round).
        let row = pg
            .query_opt(
                &format!(
                    "UPDATE app_price_feeds SET rounds = rounds + 1,
                         latest_round = CASE WHEN latest_at IS NULL OR latest_at <= $2 THEN rounds + 1 ELSE latest_round END,
                         latest_price = CASE WHEN latest_at IS NULL OR latest_at <= $2 THEN $3 ELSE latest_price END,
                         latest_at = CASE WHEN latest_at IS NULL OR latest_at <= $2 THEN $2 ELSE latest_at END
                     WHERE id = $1
                     RETURNING {FEED}"
                ),
                &[feed.as_uuid(), &snapshot.collected_at, &snapshot.price],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let updated = feed_from(&row)?;
        let snapshot = snapshot.with_round(feed, updated.rounds);
        pg.execute(
            &format!("INSERT INTO app_price_feed_snapshots ({SNAPSHOT}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                snapshot.id.as_uuid(),
                feed.as_uuid(),
                &snapshot.round,
                &snapshot.price,
                &snapshot.source,
                &snapshot.collected_at,
                &snapshot.created_at,
            ],
        )
        .await?;
        crate::events::insert(&mut tx, &event(&snapshot, &updated)).await?;
        tx.commit().await?;
        Ok(Some(snapshot))
    }

    async fn take_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Feed>, StoreError> {
        let client = self.pool.get().await?;
        // Compare-and-set on `next_refresh_at`: a feed another replica is taking is
        // skipped, one it took has moved past `now`.
        let stmt = client
            .prepare_cached(
                "WITH due AS (
                     SELECT id FROM app_price_feeds
                     WHERE active AND next_refresh_at <= $1
                     ORDER BY next_refresh_at LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE app_price_feeds f
                 SET next_refresh_at = CASE
                     WHEN f.next_refresh_at + f.update_interval_ms * interval '1 millisecond' > $1
                     THEN f.next_refresh_at + f.update_interval_ms * interval '1 millisecond'
                     ELSE $1 + f.update_interval_ms * interval '1 millisecond' END
                 FROM due WHERE f.id = due.id
                 RETURNING f.*",
            )
            .await?;
        let rows = client.query(&stmt, &[&now, &limit]).await?;
        rows.iter().map(feed_from).collect()
    }

    async fn purge_snapshots(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        // Oldest first through `app_price_feed_snapshots_collected_at_idx` (V11); a feed's
        // latest snapshot stays, so its `latest_price` always has its snapshot.
        let stmt = client
            .prepare_cached(
                "DELETE FROM app_price_feed_snapshots WHERE id IN (
                     SELECT s.id FROM app_price_feed_snapshots s
                     JOIN app_price_feeds f ON f.id = s.feed_id
                     WHERE s.collected_at < $1 AND s.round IS DISTINCT FROM f.latest_round
                     ORDER BY s.collected_at LIMIT $2)",
            )
            .await?;
        Ok(client.execute(&stmt, &[&before, &limit]).await?)
    }

    async fn next_refresh(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let client = self.pool.get().await?;
        // The first entry of `app_price_feeds_due_idx` (partial: active feeds).
        let stmt = client
            .prepare_cached("SELECT min(next_refresh_at) FROM app_price_feeds WHERE active")
            .await?;
        Ok(client.query_one(&stmt, &[]).await?.get(0))
    }
}
