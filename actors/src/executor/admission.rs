//! Bounded admission with a per-account share. At most `capacity` runs (pool plus queue)
//! are running or queued, and one account holds at most `per_account` of them, so an
//! account that floods the executor fills only its share and others are still admitted.
//!
//! A [`Permit`] is one admitted run; dropping it (when the run has ended) frees the slot
//! and wakes callers waiting in [`Admission::admit`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The pool and queue are full, or the account holds its whole share.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("executor busy")]
pub struct Busy;

#[derive(Debug)]
pub struct Admission {
    capacity: usize,
    per_account: usize,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    outstanding: usize,
    /// Only accounts with runs outstanding: at most `capacity` entries.
    by_account: HashMap<String, usize>,
}

impl Admission {
    pub fn new(capacity: usize, per_account: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            per_account: per_account.clamp(1, capacity.max(1)),
            state: Mutex::default(),
            freed: Notify::new(),
        })
    }

    /// Admits a run of `account` now, or refuses at once.
    pub fn try_admit(self: &Arc<Self>, account: &str) -> Result<Permit, Busy> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let held = state.by_account.get(account).copied().unwrap_or(0);
        if state.outstanding >= self.capacity || held >= self.per_account {
            return Err(Busy);
        }
        state.outstanding += 1;
        *state.by_account.entry(account.to_owned()).or_default() += 1;
        Ok(Permit {
            admission: self.clone(),
            account: account.to_owned(),
        })
    }

    /// Waits until a run of `account` can be admitted (background work never fails as
    /// busy; it waits its turn).
    pub async fn admit(self: &Arc<Self>, account: &str) -> Permit {
        loop {
            // Registered before trying, so a release between the try and the wait is seen.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Ok(permit) = self.try_admit(account) {
                return permit;
            }
            freed.await;
        }
    }

    fn release(&self, account: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.outstanding = state.outstanding.saturating_sub(1);
        if let Some(held) = state.by_account.get_mut(account) {
            *held -= 1;
            if *held == 0 {
                state.by_account.remove(account);
            }
        }
        drop(state);
        self.freed.notify_waiters();
    }
}

/// One admitted run; frees its place when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    account: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(&self.account);
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
}
