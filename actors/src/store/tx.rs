//! A transaction on either store. Subsystems take one in the few APIs that must write
//! inside another subsystem's transaction: an execution record with its Devpack effects
//! and outbox event, a delivered event with its firings. Each subsystem decides what its
//! own writes mean in either form; the caller only opens and commits.

use super::memory::MemoryTx;
use crate::error::StoreError;

pub enum Tx<'a> {
    Memory(MemoryTx<'a>),
    Postgres(deadpool_postgres::Transaction<'a>),
}

impl Tx<'_> {
    /// Makes every change visible at once; dropping a transaction instead undoes them.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Memory(tx) => {
                tx.commit();
                Ok(())
            }
            Self::Postgres(tx) => Ok(tx.commit().await?),
        }
    }
}
