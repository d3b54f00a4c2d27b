//! The outbox in PostgreSQL: `app_events`, cascading from the account. Claims use `FOR
//! UPDATE SKIP LOCKED`, so replicas never take the same event.

use super::{Event, EventStore};
use crate::error::StoreError;
use crate::ids::{AccountId, EventId};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

pub(super) async fn insert(db: &impl GenericClient, event: &Event) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO app_events (id, account_id, name, data, occurred_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[
            event.id.as_uuid(),
            event.account_id.as_uuid(),
            &event.name,
            &event.data,
            &event.occurred_at,
        ],
    )
    .await?;
    super::notify_work(db).await
}

pub(super) async fn mark_delivered(
    db: &impl GenericClient,
    id: EventId,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = db
        .execute(
            "UPDATE app_events SET delivered_at = $3, lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2 AND delivered_at IS NULL",
            &[id.as_uuid(), &owner, &now],
        )
        .await?;
    Ok(n == 1)
}

pub struct PgEventStore {
    pool: Pool,
}

impl PgEventStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl EventStore for PgEventStore {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE app_events e SET lease_owner = $2, lease_until = $3
                 FROM (SELECT id FROM app_events
                       WHERE delivered_at IS NULL AND (lease_until IS NULL OR lease_until < $1)
                       ORDER BY occurred_at LIMIT $4
                       FOR UPDATE SKIP LOCKED) picked
                 WHERE e.id = picked.id
                 RETURNING e.id, e.account_id, e.name, e.data, e.occurred_at",
                &[&now, &owner, &lease_until, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    id: EventId::from(r.try_get::<_, Uuid>("id")?),
                    account_id: AccountId::from(r.try_get::<_, Uuid>("account_id")?),
                    name: r.try_get("name")?,
                    data: r.try_get("data")?,
                    occurred_at: r.try_get("occurred_at")?,
                })
            })
            .collect()
    }

    async fn purge(&self, delivered_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM app_events WHERE delivered_at IS NOT NULL AND delivered_at < $1",
                &[&delivered_before],
            )
            .await?)
    }
}
