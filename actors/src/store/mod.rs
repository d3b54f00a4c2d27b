//! Storage back-ends, below every subsystem: the memory database (tables kept by type,
//! cascades, transactions with rollback), the PostgreSQL pool and its helpers, the
//! migrations, and [`Tx`], a transaction on either. The subsystems own their tables and
//! the code that reads and writes them; this module knows none of them.

pub mod group_commit;
pub mod memory;
pub mod migrations;
pub mod notify;
pub mod pg_tls;
pub mod postgres;
pub mod tx;

pub use deadpool_postgres::Pool as PgPool;
pub use group_commit::GroupCommit;
pub use memory::{MemoryDb, MemoryTx, Row, Table, Tables};
pub use postgres::{connect, PgOptions};
pub use tx::Tx;
