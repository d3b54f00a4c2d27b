//! Per-account quotas (CONTRACT.md §5 `quotas`): how many functions, secrets, jobs,
//! triggers, feeds, oracle sources and open oracle requests one account may hold, and how
//! many firings may wait per trigger. Checked by the owning store in the same transaction as the insert, for
//! HTTP and Devpack alike, so the count cannot be raced past.

use crate::error::StoreError;
use std::num::NonZeroU32;

/// One quota: its setting's name (for the message) and its maximum; `0` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    setting: &'static str,
    max: Option<NonZeroU32>,
}

impl Quota {
    pub const fn new(setting: &'static str, max: u32) -> Self {
        Self {
            setting,
            max: NonZeroU32::new(max),
        }
    }

    pub const fn unlimited(setting: &'static str) -> Self {
        Self::new(setting, 0)
    }

    /// The maximum, or `None` when unlimited.
    pub fn max(self) -> Option<u32> {
        self.max.map(NonZeroU32::get)
    }

    /// `LimitExceeded` when `held` (counted up to the maximum) leaves no room for one
    /// more `what`.
    pub fn check(self, held: u64, what: &str, per: &str) -> Result<(), StoreError> {
        match self.max() {
            Some(max) if held >= u64::from(max) => Err(StoreError::LimitExceeded(format!(
                "{what}: at most {max} per {per} ({})",
                self.setting
            ))),
            _ => Ok(()),
        }
    }
}

/// Every quota, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub functions: Quota,
    pub secrets: Quota,
    pub jobs: Quota,
    pub triggers: Quota,
    pub feeds: Quota,
    pub oracle_sources: Quota,
    /// Pending or running oracle requests per account.
    pub open_oracle_requests: Quota,
    /// Pending withdrawals per account: the settler's queue.
    pub pending_withdrawals: Quota,
    pub pending_firings_per_trigger: Quota,
}

impl Default for Quotas {
    /// The contract's defaults: 1000 of each.
    fn default() -> Self {
        Self {
            functions: Quota::new("MAX_FUNCTIONS_PER_ACCOUNT", 1000),
            secrets: Quota::new("MAX_SECRETS_PER_ACCOUNT", 1000),
            jobs: Quota::new("MAX_JOBS_PER_ACCOUNT", 1000),
            triggers: Quota::new("MAX_TRIGGERS_PER_ACCOUNT", 1000),
            feeds: Quota::new("MAX_FEEDS_PER_ACCOUNT", 1000),
            oracle_sources: Quota::new("MAX_ORACLE_SOURCES_PER_ACCOUNT", 1000),
            open_oracle_requests: Quota::new("MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT", 1000),
            pending_withdrawals: Quota::new("MAX_PENDING_WITHDRAWALS_PER_ACCOUNT", 1000),
            pending_firings_per_trigger: Quota::new("MAX_PENDING_FIRINGS_PER_TRIGGER", 1000),
        }
    }
}

/// PostgreSQL side of a per-account quota check, inside the caller's transaction: takes
/// a transaction-scoped advisory lock on the account, so concurrent inserts on every
/// replica count one after another, then counts with `count_sql` (`$1` = the account,
/// `$2` = the maximum as a `LIMIT`, so the count reads at most `max` rows). One lock per
/// account for every kind of row: a Devpack run that creates jobs and triggers in any
/// order cannot deadlock with another (advisory locks are re-entrant in a transaction).
pub async fn check_pg(
    db: &impl deadpool_postgres::GenericClient,
    quota: Quota,
    account: &uuid::Uuid,
    count_sql: &str,
    what: &str,
) -> Result<(), StoreError> {
    let Some(max) = quota.max() else {
        return Ok(());
    };
    lock_pg(db, account).await?;
    let held = count_pg(db, max, account, count_sql).await?;
    quota.check(held, what, "account")
}

/// The account's quota lock (see [`check_pg`]), for a caller that must take it before
/// other row locks so that every quota-checked insert locks in the same order (taking
/// it again in [`check_pg`] is free: advisory locks are re-entrant in a transaction).
pub async fn lock_pg(
    db: &impl deadpool_postgres::GenericClient,
    account: &uuid::Uuid,
) -> Result<(), StoreError> {
    db.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("quota:{account}")],
    )
    .await?;
    Ok(())
}

/// `count_sql` run with `$1` = `owner`, `$2` = `max`: a count bounded by the quota.
pub async fn count_pg(
    db: &impl deadpool_postgres::GenericClient,
    max: u32,
    owner: &uuid::Uuid,
    count_sql: &str,
) -> Result<u64, StoreError> {
    let held: i64 = db
        .query_one(count_sql, &[owner, &i64::from(max)])
        .await?
        .get(0);
    Ok(held.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unlimited_and_the_message_names_the_setting() {
        let q = Quota::new("MAX_JOBS_PER_ACCOUNT", 2);
        assert!(q.check(1, "jobs", "account").is_ok());
        let err = q.check(2, "jobs", "account").unwrap_err();
        assert_eq!(
            err.to_string(),
            "jobs: at most 2 per account (MAX_JOBS_PER_ACCOUNT)"
        );
        assert!(Quota::unlimited("X")
            .check(u64::MAX, "jobs", "account")
            .is_ok());
    }
}
