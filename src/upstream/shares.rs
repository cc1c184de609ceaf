//! Each principal's share of the live-children cap: one principal (one token, one identity)
//! holds at most `max_children_per_principal` children in calls at once, so a client whose
//! calls hang cannot take every slot. Its further calls wait in the bounded queue like any
//! call that finds no slot, and get 503 + `Retry-After` past the queue wait; other
//! principals are served meanwhile.
//!
//! The table holds only principals with a call under way (an entry goes with its last
//! call), so it is bounded by the calls a worker admits: the cap plus the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Calls under way per principal, and the most each may have.
pub(super) struct Shares {
    /// 0: no share limit.
    max: usize,
    held: Mutex<HashMap<String, usize>>,
    /// Signalled whenever a share is given back.
    freed: Notify,
}

/// One call's share; given back when dropped.
pub(super) struct Share {
    shares: Arc<Shares>,
    principal: String,
}

impl Drop for Share {
    fn drop(&mut self) {
        {
            let mut held = self.shares.lock();
            if let Some(count) = held.get_mut(&self.principal) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    held.remove(&self.principal);
                }
            }
        }
        self.shares.freed.notify_waiters();
    }
}

impl Shares {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, held: Mutex::new(HashMap::new()), freed: Notify::new() })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a principal's calls are limited at all.
    pub(super) fn limited(&self) -> bool {
        self.max > 0
    }

    /// A share for `principal` if it has fewer calls under way than its share.
    pub(super) fn try_take(self: &Arc<Self>, principal: &str) -> Option<Share> {
        let mut held = self.lock();
        let count = held.get(principal).copied().unwrap_or(0);
        if self.max > 0 && count >= self.max {
            return None;
        }
        held.insert(principal.to_string(), count + 1);
        Some(Share { shares: self.clone(), principal: principal.to_string() })
    }

    /// A share for `principal`, waiting until `deadline` for one of its calls to end.
    pub(super) async fn take(
        self: &Arc<Self>,
        principal: &str,
        deadline: tokio::time::Instant,
    ) -> Option<Share> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(share) = self.try_take(principal) {
                return Some(share);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_take(principal);
            }
        }
    }

    /// Principals with a call under way, and their calls (tests, and the bound's check).
    pub(super) fn snapshot(&self) -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = self.lock().iter().map(|(p, n)| (p.clone(), *n)).collect();
        all.sort();
        all
    }
}
