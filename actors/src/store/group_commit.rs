//! Group commit: callers queue writes and one of them at a time writes everything queued
//! in one transaction. Under load each commit carries many writes (one transaction, one
//! WAL flush, one set-based statement instead of one each); a lone write goes at once, as
//! before. The same idea as PostgreSQL's own commit grouping and the batch completers of
//! job queues (River, Oban); no crate offers it for an arbitrary async writer, hence this.
//!
//! The protocol: a caller pushes its item, then waits for the writer lock. Whoever holds
//! it takes what is queued (at most `max`), writes it and hands every caller its result;
//! a caller whose item was written while it waited returns that result without writing.

use std::future::Future;
use tokio::sync::oneshot::{self, error::TryRecvError};

type Queued<T, R> = (T, oneshot::Sender<R>);

pub struct GroupCommit<T, R> {
    queue: std::sync::Mutex<Vec<Queued<T, R>>>,
    writer: tokio::sync::Mutex<()>,
    max: usize,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// At most `max` items per write.
    pub fn new(max: usize) -> Self {
        Self {
            queue: std::sync::Mutex::default(),
            writer: tokio::sync::Mutex::default(),
            max: max.max(1),
        }
    }

    /// Queues `item` and waits for its result. `write` gets a batch and returns one
    /// result per item, in order. `None`: the write that held the item panicked.
    pub async fn submit<W, F>(&self, item: T, write: W) -> Option<R>
    where
        W: Fn(Vec<T>) -> F,
        F: Future<Output = Vec<R>> + Send + 'static,
    {
        let (sender, mut result) = oneshot::channel();
        self.lock_queue().push((item, sender));
        let _writer = self.writer.lock().await;
        loop {
            match result.try_recv() {
                Ok(r) => return Some(r),
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => {}
            }
            let batch: Vec<Queued<T, R>> = {
                let mut queue = self.lock_queue();
                let n = queue.len().min(self.max);
                queue.drain(..n).collect()
            };
            let (items, senders): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
            let written = write(items);
            // Spawned, with the senders: a caller dropped mid-write must neither abandon
            // the others' items nor leave them without the outcome of a commit.
            let delivered = tokio::spawn(async move {
                for (sender, r) in senders.into_iter().zip(written.await) {
                    let _ = sender.send(r);
                }
            });
            // A panicking write drops its senders: those callers get `None`.
            let _ = delivered.await;
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued<T, R>>> {
        // The lock guards only pushes and drains, which cannot panic half-way.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn every_item_gets_its_own_result_and_writes_are_grouped() {
        let group = Arc::new(GroupCommit::<u32, u32>::new(16));
        let writes = Arc::new(AtomicUsize::new(0));
        let largest = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for i in 0..200u32 {
            let (group, writes, largest) = (group.clone(), writes.clone(), largest.clone());
            callers.push(tokio::spawn(async move {
                let write = |items: Vec<u32>| {
                    let (writes, largest) = (writes.clone(), largest.clone());
                    async move {
                        writes.fetch_add(1, Ordering::SeqCst);
                        largest.fetch_max(items.len(), Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        items.into_iter().map(|x| x * 10).collect()
                    }
                };
                (i, group.submit(i, write).await)
            }));
        }
        for caller in callers {
            let (i, r) = caller.await.unwrap();
            assert_eq!(r, Some(i * 10), "item {i} got another item's result");
        }
        let (writes, largest) = (
            writes.load(Ordering::SeqCst),
            largest.load(Ordering::SeqCst),
        );
        assert!(
            writes < 200,
            "{writes} writes for 200 items: nothing was grouped"
        );
        assert!(largest <= 16, "a batch of {largest} exceeded the maximum");
    }

    #[tokio::test]
    async fn a_panicking_write_fails_its_items_and_not_the_next() {
        let group = GroupCommit::<u32, u32>::new(4);
        let panics = |_: Vec<u32>| async move {
            panic!("write failed");
            #[allow(unreachable_code)]
            Vec::new()
        };
        assert_eq!(group.submit(1, panics).await, None);
        let ok = |items: Vec<u32>| async move { items };
        assert_eq!(group.submit(2, ok).await, Some(2));
    }
}
