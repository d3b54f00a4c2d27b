//! The `settler` (CONTRACT.md §3.8, §4.3): the shared resolver loop
//! ([`crate::resolver`]) over pending withdrawals. Each resolver answer is recorded by
//! compare-and-set on `pending` under this claim's lease ([`GasStore::settle`]), so a
//! withdrawal settles once however many replicas or answers there are: a second
//! settlement changes nothing and is logged. Giving up or expiring settles it `failed`,
//! which returns the funds to `available`. Absent without `GASBANK_RESOLVER_URL`.

use super::{GasStore, GasTransaction, MAX_ERROR_TEXT};
use crate::error::StoreError;
use crate::ids::GasTxId;
use crate::resolver::{Answer, AttemptMetrics, Claimed, Finish, Reply, Work, Worker, WorkerActor};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The settler's loop and its actor.
pub type Settler = Worker<GasWork>;
pub type SettlerActor = WorkerActor<GasWork>;

/// `service_layer_gasbank_settlement_attempts_total{outcome}`.
pub fn settler_metrics(registry: &prometheus::Registry) -> prometheus::Result<AttemptMetrics> {
    AttemptMetrics::register(
        registry,
        "gasbank_settlement_attempts_total",
        "Gas bank settlement attempts",
    )
}

/// A 200 reply's body (§4.3): `done`, `success` (required with `done`), `message`
/// (stored as `error` on failure; default `resolver reported failure`),
/// `retry_after_seconds`. Anything undecodable is `Err` (transient).
pub fn parse_settlement(body: &[u8]) -> Result<Answer, String> {
    let (reply, success) = Reply::parse(body)?;
    Ok(match success {
        None => reply.not_done(),
        Some(true) => Answer::Succeeded(String::new()),
        Some(false) => Answer::Failed(crate::resolver::failure_text(
            reply.message,
            MAX_ERROR_TEXT,
            "resolver reported failure",
        )),
    })
}

fn claimed(t: &GasTransaction) -> Claimed {
    Claimed {
        id: *t.id.as_uuid(),
        attempts: t.attempts,
        created_at: t.created_at,
    }
}

/// The gas bank's side of the resolver loop.
pub struct GasWork(pub Arc<dyn GasStore>);

#[async_trait::async_trait]
impl Work for GasWork {
    const QUERY: &'static str = "transaction_id";

    fn span(item: &Claimed) -> tracing::Span {
        tracing::info_span!("withdrawal", transaction_id = %item.id, attempt = item.attempts)
    }

    fn parse(body: &[u8]) -> Result<Answer, String> {
        parse_settlement(body)
    }

    fn expired(ttl: Duration) -> String {
        format!(
            "settlement timed out after {} without a final answer; the funds are available again",
            crate::duration::format(ttl)
        )
    }

    fn gave_up(attempts: i32) -> String {
        format!(
            "settlement timed out: gave up after {attempts} resolver attempts; the funds are available again"
        )
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let claimed_rows = self.0.claim(now, owner, lease_until, limit).await?;
        Ok(claimed_rows.iter().map(claimed).collect())
    }

    async fn renew(
        &self,
        id: Uuid,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.0.renew(GasTxId::from(id), owner, lease_until).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.0.next_due().await
    }

    async fn record(
        &self,
        id: Uuid,
        owner: &str,
        attempts: i32,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.0
            .settle(GasTxId::from(id), owner, attempts, finish, now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_the_contract_says() {
        let answer = |body: &str| parse_settlement(body.as_bytes());
        assert_eq!(
            answer(r#"{"done": true, "success": true, "message": "ok"}"#),
            Ok(Answer::Succeeded(String::new()))
        );
        assert_eq!(
            answer(r#"{"done": true, "success": false, "message": "bad address"}"#),
            Ok(Answer::Failed("bad address".into()))
        );
        assert_eq!(
            answer(r#"{"done": true, "success": false}"#),
            Ok(Answer::Failed("resolver reported failure".into()))
        );
        assert_eq!(
            answer(r#"{"done": true, "success": false, "message": "a\u0000b"}"#),
            Ok(Answer::Failed("a\u{FFFD}b".into()))
        );
        assert!(matches!(
            answer(r#"{"done": false, "retry_after_seconds": 7}"#),
            Ok(Answer::NotDone { retry_after }) if retry_after == Duration::from_secs(7)
        ));
        assert!(answer(r#"{"done": true}"#).is_err());
        assert!(answer("nope").is_err());
    }
}
