//! The store contract on the embedded store, with a clock the tests move; and what
//! only the embedded store has (its session cap).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::contract::{self, Expiring, Harness};
use super::{Clock, MemoryStore, SessionStore, StoreError};
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
async fn the_embedded_store_refuses_sessions_beyond_its_cap_until_some_expire() {
    let h = MemoryHarness::new();
    let short = Duration::from_secs(10);
    for _ in 0..super::memory::MAX_SESSIONS {
        let id = SessionId::generate().expect("OS random source");
        h.store.create(&id, &contract::record(), short).await.expect("create");
    }
    let one_more = SessionId::generate().expect("OS random source");
    let refused = h.store.create(&one_more, &contract::record(), contract::TTL).await;
    assert!(matches!(refused, Err(StoreError::Full)), "{refused:?}");
    assert_eq!(contract::failures(&h, "create", "full"), 1);
    h.advance(short).await;
    h.store.create(&one_more, &contract::record(), contract::TTL).await.expect("expired sessions make room");
    assert!(h.store.load(&one_more, 0, contract::TTL).await.expect("load").is_some());
}
