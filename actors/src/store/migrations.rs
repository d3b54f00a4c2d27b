//! Schema migrations: the SQL files in the top-level `migrations/` folder, embedded at
//! compile time and applied by refinery, which records each in `refinery_schema_history`
//! so it never runs twice. A changed or missing applied migration aborts (refinery's
//! divergent/missing checks). Replicas starting together serialise on an advisory lock.

use anyhow::Context as _;
use deadpool_postgres::Pool;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Arbitrary constant shared by every replica: "service-layer migrations".
const MIGRATION_LOCK_KEY: i64 = 0x5345_5256_4c59_4d47;

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// `V<n>__<name>` of each migration applied by this run, in order.
    pub applied: Vec<String>,
}

/// Applies every pending migration. Safe to call concurrently from several replicas.
pub async fn run(pool: &Pool) -> anyhow::Result<MigrationReport> {
    let mut client = pool
        .get()
        .await
        .context("get a connection for migrations")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("take the migration lock")?;
    let result = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(&mut **client)
        .await;
    // Unlock even when a migration failed; the session ends with the connection anyway.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = result.context("apply migrations")?;
    unlock.context("release the migration lock")?;
    Ok(MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| format!("V{}__{}", m.version(), m.name()))
            .collect(),
    })
}

/// Every migration compiled into this binary, as `V<n>__<name>`, in version order (the
/// embedding lists them by file name, where `V10` comes before `V2`).
pub fn embedded() -> Vec<String> {
    let mut migrations = embedded::migrations::runner().get_migrations().clone();
    migrations.sort_by_key(|m| m.version());
    migrations
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect()
}
