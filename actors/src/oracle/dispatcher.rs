//! The `oracle_dispatcher` (CONTRACT.md §3.7, §4.2): the shared resolver loop
//! ([`crate::resolver`]) over open oracle requests. A claimed `pending` request becomes
//! `running`; its outcome is recorded by compare-and-set against the request as it is now,
//! under this claim's lease, so a request PATCHed to a final status meanwhile keeps that
//! status and the dispatcher's answer is dropped. Absent without `ORACLE_RESOLVER_URL`
//! (`/readyz` shows it `disabled`).

use super::{OracleStore, Request, RequestStatus, MAX_TEXT};
use crate::error::StoreError;
use crate::ids::RequestId;
use crate::resolver::{Answer, Claimed, Finish, Reply, Work, Worker, WorkerActor};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The dispatcher's loop and its actor.
pub type Dispatcher = Worker<OracleWork>;
pub type DispatcherActor = WorkerActor<OracleWork>;

/// `service_layer_oracle_attempts_total{outcome}`.
pub fn oracle_metrics(
    registry: &prometheus::Registry,
) -> prometheus::Result<crate::resolver::AttemptMetrics> {
    crate::resolver::AttemptMetrics::register(
        registry,
        "oracle_attempts_total",
        "Oracle resolver attempts",
    )
}

/// A 200 reply's body (§4.2): `done`, then `success` (required with `done`), `result`
/// (required on success, else the request fails), `error` (default `resolver reported
/// failure`), `retry_after_seconds`. Anything undecodable is `Err` (transient).
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let (reply, success) = Reply::parse(body)?;
    match success {
        None => Ok(reply.not_done()),
        // Made storable before measured: U+FFFD is longer than U+0000.
        Some(true) => match reply.result.map(crate::resolver::storable) {
            Some(result) if result.len() > MAX_TEXT => Ok(Answer::Failed(format!(
                "resolver result exceeds {MAX_TEXT} bytes"
            ))),
            Some(result) => Ok(Answer::Succeeded(result)),
            None => Ok(Answer::Failed(
                "resolver reported success without a result".to_owned(),
            )),
        },
        Some(false) => Ok(Answer::Failed(crate::resolver::failure_text(
            reply.error,
            super::domain::MAX_ERROR,
            "resolver reported failure",
        ))),
    }
}

/// What refuses a change whose lease is no longer this claim's (another replica took
/// the request over, or a PATCH finished it and released the lease).
pub(super) fn lease_lost() -> StoreError {
    StoreError::InvalidState("the lease on this oracle request was lost".to_owned())
}

fn claimed(request: &Request) -> Claimed {
    Claimed {
        id: *request.id.as_uuid(),
        attempts: request.attempts,
        created_at: request.created_at,
    }
}

/// The oracle's side of the resolver loop.
pub struct OracleWork(pub Arc<dyn OracleStore>);

#[async_trait::async_trait]
impl Work for OracleWork {
    const QUERY: &'static str = "request_id";

    fn span(item: &Claimed) -> tracing::Span {
        tracing::info_span!("oracle_request", request_id = %item.id, attempt = item.attempts)
    }

    fn parse(body: &[u8]) -> Result<Answer, String> {
        parse_answer(body)
    }

    fn expired(ttl: Duration) -> String {
        format!(
            "oracle request expired after {} without a final answer",
            crate::duration::format(ttl)
        )
    }

    fn gave_up(attempts: i32) -> String {
        format!("oracle request gave up after {attempts} resolver attempts")
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let requests = self.0.claim(now, owner, lease_until, limit).await?;
        Ok(requests.iter().map(claimed).collect())
    }

    async fn renew(
        &self,
        id: Uuid,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.0.renew(RequestId::from(id), owner, lease_until).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.0.next_due().await
    }

    /// Against the request as it is now: still `running` and still ours, or nothing
    /// changes.
    async fn record(
        &self,
        id: Uuid,
        owner: &str,
        attempts: i32,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let change = |current: &Request| {
            if current.status != RequestStatus::Running {
                return Err(lease_lost());
            }
            let mut next = current.finish(finish.clone(), now);
            next.attempts = attempts;
            Ok(next)
        };
        let request = self
            .0
            .change(RequestId::from(id), super::Holder::Lease(owner), &change)
            .await?;
        Ok(request.status.is_final())
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
        let metrics = oracle_metrics(&prometheus::Registry::new()).unwrap();
        let dispatcher = Dispatcher::new(
            Arc::new(OracleWork(store.clone())),
            Arc::new(crate::SystemClock),
            "r".into(),
            crate::resolver::ResolverConfig {
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
        let client = crate::outbound::client(crate::outbound::OutboundConfig {
            timeout: Duration::from_secs(1),
            allow_private: true,
        });
        dispatcher.work(&client, claimed(&taken[0]), "B").await;
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
}
