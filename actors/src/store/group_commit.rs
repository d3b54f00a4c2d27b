//! Group commit: callers queue writes and one of them at a time writes everything queued
//! in one transaction. Under load each commit carries many writes (one transaction, one
//! WAL flush, one set-based statement instead of one each); a lone write goes at once, as
//! before. The same idea as PostgreSQL's own commit grouping and the batch completers of
//! job queues (River, Oban); no crate offers it for an arbitrary async writer, hence this.
//!
//! The protocol: a caller pushes its item, then waits for the writer lock. Whoever holds
//! it takes what is queued (at most `max`), writes it and hands every caller its result;
//! a caller whose item was written while it waited returns that result without writing.
//! The lock is held by the spawned write itself, so writes never overlap even when the
//! caller that started one is dropped, and items of callers dropped while waiting are
//! not written.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::oneshot::{self, error::TryRecvError};

type Queued<T, R> = (T, oneshot::Sender<R>);

pub struct GroupCommit<T, R> {
    queue: std::sync::Mutex<Vec<Queued<T, R>>>,
    /// Held for the whole of a write, by the task that writes (see `submit`).
    writer: Arc<tokio::sync::Mutex<()>>,
    max: usize,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// At most `max` items per write.
    pub fn new(max: usize) -> Self {
        Self {
            queue: std::sync::Mutex::default(),
            writer: Arc::default(),
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
        loop {
            let writer = self.writer.clone().lock_owned().await;
            match result.try_recv() {
                Ok(r) => return Some(r),
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => {}
            }
            // Callers that went away (dropped while waiting) are not written for.
            let batch: Vec<Queued<T, R>> = {
                let mut queue = self.lock_queue();
                queue.retain(|(_, sender)| !sender.is_closed());
                let n = queue.len().min(self.max);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                // Ours is in a write still running (its caller went away): wait for it.
                drop(writer);
                return result.await.ok();
            }
            let (items, senders): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
            let written = write(items);
            // Spawned with the senders and the writer's lock: a caller dropped mid-write
            // neither abandons the others' items nor lets a second write start before
            // this one has handed out its results.
            let delivered = tokio::spawn(async move {
                let results = written.await;
                for (sender, r) in senders.into_iter().zip(results) {
                    let _ = sender.send(r);
                }
                drop(writer);
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

    #[tokio::test]
    async fn dropped_callers_neither_overlap_writes_nor_get_written_later() {
        let group = Arc::new(GroupCommit::<u32, u32>::new(8));
        let writing = Arc::new(AtomicUsize::new(0));
        let overlapped = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let write = {
            let (writing, overlapped, written) =
                (writing.clone(), overlapped.clone(), written.clone());
            move |items: Vec<u32>| {
                let (writing, overlapped, written) =
                    (writing.clone(), overlapped.clone(), written.clone());
                async move {
                    if writing.fetch_add(1, Ordering::SeqCst) > 0 {
                        overlapped.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    written.lock().unwrap().extend(items.iter().copied());
                    writing.fetch_sub(1, Ordering::SeqCst);
                    items
                }
            }
        };
        let submit = |item: u32| {
            let (group, write) = (group.clone(), write.clone());
            tokio::spawn(async move { group.submit(item, write).await })
        };
        // 1 is being written when its caller goes away; 2 waits behind it and goes too.
        let first = submit(1);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let second = submit(2);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        first.abort();
        second.abort();
        // 3 must wait for 1's write to end, and is written without 2.
        assert_eq!(submit(3).await.unwrap(), Some(3));
        assert_eq!(
            overlapped.load(Ordering::SeqCst),
            0,
            "two writes overlapped"
        );
        assert_eq!(*written.lock().unwrap(), [1, 3]);
    }
}
