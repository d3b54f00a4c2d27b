//! Bounded admission with a per-account share. At most `capacity` runs (pool plus queue)
//! are running or queued, and one account holds at most `per_account` of them, so an
//! account that floods the executor fills only its share and others are still admitted.
//!
//! A [`Permit`] is one admitted run; dropping it (when the run has ended) frees the slot
//! and hands it straight to a caller waiting in [`Admission::admit`]: waiting callers are
//! queued per account, first come first served, accounts taking turns. A freed place
//! wakes exactly the caller it goes to, never every waiter (with hundreds of scheduled
//! runs waiting, waking them all on each release cost more than the runs themselves).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The pool and queue are full, or the account holds its whole share.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("executor busy")]
pub struct Busy;

#[derive(Debug)]
pub struct Admission {
    capacity: usize,
    per_account: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    outstanding: usize,
    by_account: HashMap<String, usize>,
    /// Callers waiting for a place, per account, in arrival order.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Permit>>>,
    /// The accounts with waiting callers, in the order they get their next turn.
    turns: VecDeque<String>,
}

impl State {
    fn has_room(&self, capacity: usize, per_account: usize, account: &str) -> bool {
        self.outstanding < capacity
            && self.by_account.get(account).copied().unwrap_or(0) < per_account
    }

    fn take(&mut self, account: &str) {
        self.outstanding += 1;
        *self.by_account.entry(account.to_owned()).or_default() += 1;
    }

    fn give_back(&mut self, account: &str) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some(held) = self.by_account.get_mut(account) {
            *held -= 1;
            if *held == 0 {
                self.by_account.remove(account);
            }
        }
    }
}

impl Admission {
    pub fn new(capacity: usize, per_account: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            per_account: per_account.clamp(1, capacity.max(1)),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn permit(self: &Arc<Self>, account: &str) -> Permit {
        Permit {
            admission: self.clone(),
            account: account.to_owned(),
            armed: true,
        }
    }

    /// A place now, or `Busy` (HTTP executes: the caller is told to retry).
    pub fn try_admit(self: &Arc<Self>, account: &str) -> Result<Permit, Busy> {
        let mut state = self.lock();
        if !state.has_room(self.capacity, self.per_account, account) {
            return Err(Busy);
        }
        state.take(account);
        Ok(self.permit(account))
    }

    /// A place, waiting for one if need be (background work never fails as busy). A
    /// caller of an account that already has callers waiting queues behind them.
    pub async fn admit(self: &Arc<Self>, account: &str) -> Permit {
        loop {
            let handed = {
                let mut state = self.lock();
                if !state.waiting.contains_key(account)
                    && state.has_room(self.capacity, self.per_account, account)
                {
                    state.take(account);
                    return self.permit(account);
                }
                let (sender, receiver) = oneshot::channel();
                if !state.waiting.contains_key(account) {
                    state.turns.push_back(account.to_owned());
                }
                state
                    .waiting
                    .entry(account.to_owned())
                    .or_default()
                    .push_back(sender);
                receiver
            };
            // The sender lives in `state` until a place is handed over; an error would
            // mean it was dropped without one, so ask again.
            if let Ok(permit) = handed.await {
                return permit;
            }
        }
    }

    /// Frees `account`'s place and hands free places to waiting callers, accounts in
    /// turn, each within its share.
    fn release(self: &Arc<Self>, account: &str) {
        let mut state = self.lock();
        state.give_back(account);
        // Each account is looked at most once per round; a round that hands nothing
        // out ends the loop.
        let mut idle = 0;
        while state.outstanding < self.capacity && idle < state.turns.len() {
            let Some(next) = state.turns.pop_front() else {
                break;
            };
            if !state.has_room(self.capacity, self.per_account, &next) {
                state.turns.push_back(next);
                idle += 1;
                continue;
            }
            // An account is in `turns` exactly while it has callers waiting.
            let Some(queue) = state.waiting.get_mut(&next) else {
                continue;
            };
            let sender = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&next);
            } else {
                state.turns.push_back(next.clone());
            }
            let Some(sender) = sender else {
                continue;
            };
            state.take(&next);
            if let Err(mut unclaimed) = sender.send(self.permit(&next)) {
                // The caller went away: the place is not taken after all. Disarmed, so
                // its drop does not re-enter this lock.
                unclaimed.armed = false;
                state.give_back(&next);
            }
            idle = 0;
        }
    }
}

#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    account: String,
    /// Whether dropping it frees a place (a permit never delivered frees nothing).
    armed: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            self.admission.release(&self.account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_fills_only_its_share() {
        let admission = Admission::new(4, 2);
        let a1 = admission.try_admit("a").unwrap();
        let _a2 = admission.try_admit("a").unwrap();
        assert!(admission.try_admit("a").is_err(), "a holds its share");
        let _b1 = admission.try_admit("b").unwrap();
        let _b2 = admission.try_admit("b").unwrap();
        assert!(admission.try_admit("c").is_err(), "the pool is full");
        drop(a1);
        assert!(admission.try_admit("c").is_ok(), "a freed place is reused");
    }

    #[actix_rt::test]
    async fn waiting_callers_are_admitted_when_a_place_frees() {
        let admission = Admission::new(1, 1);
        let first = admission.try_admit("a").unwrap();
        let waiter = {
            let admission = admission.clone();
            actix_rt::spawn(async move { admission.admit("b").await })
        };
        actix_rt::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let permit = waiter.await.unwrap();
        assert!(admission.try_admit("c").is_err());
        drop(permit);
        assert!(admission.try_admit("c").is_ok());
    }

    #[actix_rt::test]
    async fn freed_places_go_to_waiting_accounts_in_turn_and_skip_callers_gone() {
        let admission = Admission::new(2, 2);
        let held = [
            admission.try_admit("a").unwrap(),
            admission.try_admit("a").unwrap(),
        ];
        let wait = |account: &'static str| {
            let admission = admission.clone();
            actix_rt::spawn(async move { admission.admit(account).await })
        };
        let (a1, a2) = (wait("a"), wait("a"));
        actix_rt::task::yield_now().await;
        let gone = wait("c");
        actix_rt::task::yield_now().await;
        let b1 = wait("b");
        actix_rt::task::yield_now().await;
        gone.abort();
        actix_rt::task::yield_now().await;
        let [first, second] = held;
        // a queued first: its first caller gets the place.
        drop(first);
        let a1 = a1.await.unwrap();
        // Then it is the other accounts' turn: c went away, so b, before a's second.
        drop(second);
        let b1 = b1.await.unwrap();
        assert!(
            !a2.is_finished(),
            "a's second caller waits for the next place"
        );
        drop(a1);
        let a2 = a2.await.unwrap();
        assert!(admission.try_admit("d").is_err(), "both places are held");
        drop((a2, b1));
        assert!(admission.try_admit("d").is_ok());
    }
}
