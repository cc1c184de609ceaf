//! The store contract on the embedded store, with a clock the tests move; and what
//! only the embedded store has (its session cap).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::contract::{self, Expiring, Harness};
use super::{Clock, MemoryStore, SessionStore};
use crate::session::SessionId;
use crate::telemetry::Metrics;

/// A clock that moves only when told to.
struct ManualClock {
    start: Instant,
    passed: Mutex<Duration>,
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.passed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct MemoryHarness {
    store: MemoryStore,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
}

impl MemoryHarness {
    fn new() -> Self {
        let clock = Arc::new(ManualClock { start: Instant::now(), passed: Mutex::default() });
        let metrics = Arc::new(Metrics::new());
        Self { store: MemoryStore::with_clock(metrics.clone(), clock.clone()), clock, metrics }
    }
}

#[async_trait]
impl Harness for MemoryHarness {
    fn store(&self) -> &dyn SessionStore {
        &self.store
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn advance(&self, by: Duration) {
        *self.clock.passed.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    async fn expires_in(&self, what: Expiring<'_>) -> Option<Duration> {
        match what {
            Expiring::Session(id) => self.store.session_expires_in(id),
            // The cache and the log live exactly as long as their session.
            Expiring::Cache(id) => {
                self.store.has_cache_and_log(id).0.then(|| self.store.session_expires_in(id)).flatten()
            }
            Expiring::Log(id) => {
                self.store.has_cache_and_log(id).1.then(|| self.store.session_expires_in(id)).flatten()
            }
            Expiring::Lock(id, name) => self.store.lock_expires_in(id, name),
            Expiring::Shared(name) => self.store.shared_expires_in(name),
        }
    }

    async fn activity(&self, id: &SessionId) -> Vec<String> {
        self.store.activity(id)
    }
}

mod contract_on_memory {
    use super::MemoryHarness;

    crate::store_contract!(MemoryHarness::new());
}

#[tokio::test]
async fn the_embedded_store_at_capacity_ends_its_least_recently_used_sessions_instead_of_refusing() {
    let mut h = MemoryHarness::new();
    h.store = h.store.with_capacity(200);
    let new_id = || SessionId::generate().expect("OS random source");
    let ids: Vec<SessionId> = (0..200).map(|_| new_id()).collect();
    for id in &ids {
        h.store.create(id, &contract::record(), contract::TTL).await.expect("create");
        h.advance(Duration::from_millis(1)).await;
    }
    // The first two are used again: the next two are the least recently used.
    h.advance(Duration::from_secs(1)).await;
    for id in &ids[..2] {
        h.store.load(id, 0, contract::TTL).await.expect("load");
    }
    let one_more = new_id();
    let admitted = h.store.admit(&one_more, &contract::record(), contract::TTL, 0).await.expect("admit");
    // 1% of the capacity makes room at once, so a full store does not sort on every creation.
    assert_eq!(admitted.map(|a| a.lru_evicted), Some(2));
    for (id, kept) in
        [(&ids[0], true), (&ids[1], true), (&ids[2], false), (&ids[3], false), (&one_more, true)]
    {
        assert_eq!(h.store.session_expires_in(id).is_some(), kept, "{id:?}");
    }
    // Expired sessions make room before anyone is evicted.
    h.advance(contract::TTL).await;
    let after = new_id();
    let admitted = h.store.admit(&after, &contract::record(), contract::TTL, 0).await.expect("admit");
    assert_eq!(admitted.map(|a| a.lru_evicted), Some(0));
    assert_eq!(contract::all_failures(&h), 0);
}

#[tokio::test]
async fn the_embedded_store_keeps_request_buckets_bounded() {
    let h = MemoryHarness::new();
    for n in 0..super::memory::MAX_SESSIONS + 10 {
        let rate = h.store.take_token(&format!("p{n}"), 1_000, 1, 1).await.expect("take_token");
        assert_eq!(rate, super::Rate::Allowed);
        assert!(h.store.buckets() <= super::memory::MAX_SESSIONS);
    }
    // The full buckets were dropped as the map filled: the same as none, so a new principal
    // and an old one alike start with a full bucket a second later.
    assert_eq!(h.store.take_token("p0", 2_000, 1, 1).await.expect("take_token"), super::Rate::Allowed);
}
