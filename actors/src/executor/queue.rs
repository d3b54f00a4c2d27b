//! The run queue: one FIFO per account, served round-robin. An account's backlog never
//! stands in front of another account's run: when a worker frees up it takes the oldest
//! run of the next account in turn, so a run of an account with nothing else waiting
//! starts at the next free worker, however many runs another account has queued.
//!
//! Bounded by admission (`admission.rs`): at most pool + queue runs exist, so at most
//! that many accounts have an entry.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug)]
pub struct FairQueue<T> {
    inner: Mutex<Inner<T>>,
    ready: Notify,
}

#[derive(Debug)]
struct Inner<T> {
    by_account: HashMap<String, VecDeque<T>>,
    /// Accounts with queued runs, in the order they are served.
    turn: VecDeque<String>,
    closed: bool,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                by_account: HashMap::new(),
                turn: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
        }
    }
}

impl<T> FairQueue<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` for `account`; gives it back if the queue is closed.
    pub fn push(&self, account: &str, item: T) -> Result<(), T> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(item);
        }
        match inner.by_account.get_mut(account) {
            Some(queue) => queue.push_back(item),
            None => {
                inner
                    .by_account
                    .insert(account.to_owned(), VecDeque::from([item]));
                inner.turn.push_back(account.to_owned());
            }
        }
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// The next item in turn, if any.
    pub fn try_pop(&self) -> Option<T> {
        let mut inner = self.lock();
        let account = inner.turn.pop_front()?;
        let queue = inner.by_account.get_mut(&account)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            inner.by_account.remove(&account);
        } else {
            inner.turn.push_back(account);
        }
        item
    }

    /// Waits for the next item; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.lock().closed {
                return None;
            }
            ready.await;
        }
    }

    /// Refuses further items and wakes every waiter.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_take_turns() {
        let queue = FairQueue::default();
        for n in 0..4 {
            queue.push("flood", ("flood", n)).unwrap();
        }
        queue.push("quiet", ("quiet", 0)).unwrap();
        queue.push("other", ("other", 0)).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| queue.try_pop()).collect();
        assert_eq!(
            order,
            [
                ("flood", 0),
                ("quiet", 0),
                ("other", 0),
                ("flood", 1),
                ("flood", 2),
                ("flood", 3)
            ]
        );
    }

    #[actix_rt::test]
    async fn waiters_are_woken_and_closing_ends_them() {
        let queue = std::sync::Arc::new(FairQueue::default());
        let waiter = {
            let queue = queue.clone();
            actix_rt::spawn(async move { queue.pop().await })
        };
        actix_rt::task::yield_now().await;
        queue.push("a", 1).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(1));
        queue.close();
        assert_eq!(queue.pop().await, None);
        assert_eq!(queue.push("a", 2), Err(2));
    }
}
