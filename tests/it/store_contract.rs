//! The store contract (`switchboard::store::contract`) on `RedisStore` against a real
//! `redis-server`, the same checks the unit tests run on the embedded store; then what
//! only Redis can show: failures of a store that is gone, or that holds foreign data.
//!
//! Time "passes" by shortening every key's PTTL (no sleeping), and expiries are read
//! with PTTL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use switchboard::session::SessionId;
use switchboard::store::contract::{self, Expiring, Harness};
use switchboard::store::{Keys, RedisStore, SessionStore, StoreError};
use switchboard::telemetry::Metrics;

use crate::support::*;

/// Shortens the remaining life of every key by ARGV[1] ms, deleting what would have expired.
const ADVANCE: &str = r"
local by = tonumber(ARGV[1])
for i = 1, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  if left > 0 then
    if left <= by then redis.call('DEL', KEYS[i]) else redis.call('PEXPIRE', KEYS[i], left - by) end
  end
end
return 0
";

const PREFIX: &str = "contract:";

/// A `RedisStore` on a private `redis-server`, and a plain connection to look at its keys.
pub struct RedisHarness {
    redis: Redis,
    store: RedisStore,
    metrics: Arc<Metrics>,
    keys: Keys,
    conn: redis::aio::MultiplexedConnection,
}

impl RedisHarness {
    pub async fn start() -> Self {
        Self::start_with_timeout(Duration::from_secs(2)).await
    }

    pub async fn start_with_timeout(op_timeout: Duration) -> Self {
        let redis = Redis::start();
        let metrics = Arc::new(Metrics::new());
        let store = RedisStore::connect(&redis.url(), PREFIX, op_timeout, metrics.clone()).await.unwrap();
        let conn =
            redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        Self { redis, store, metrics, keys: Keys::new(PREFIX), conn }
    }

    /// PTTL of `key`: `None` if it does not exist, `Duration::MAX` if it never expires.
    async fn pttl(&self, key: &str) -> Option<Duration> {
        let left: i64 = self.conn.clone().pttl(key).await.unwrap();
        match left {
            -2 => None,
            -1 => Some(Duration::MAX),
            ms => Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        }
    }
}

#[async_trait]
impl Harness for RedisHarness {
    fn store(&self) -> &dyn SessionStore {
        &self.store
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn advance(&self, by: Duration) {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        if keys.is_empty() {
            return;
        }
        let by = u64::try_from(by.as_millis()).unwrap();
        let _: i64 = redis::Script::new(ADVANCE).key(keys).arg(by).invoke_async(&mut conn).await.unwrap();
    }

    async fn expires_in(&self, what: Expiring<'_>) -> Option<Duration> {
        match what {
            Expiring::Session(id) => self.pttl(&self.keys.session(id)).await,
            // The cache is two keys (entries and their ages): the sooner to go counts.
            Expiring::Cache(id) => {
                let (cache, age) = self.keys.cache(id);
                let (cache, age) = (self.pttl(&cache).await, self.pttl(&age).await);
                [cache, age].into_iter().flatten().min()
            }
            Expiring::Log(id) => self.pttl(&self.keys.log(id)).await,
            Expiring::Lock(id, name) => self.pttl(&self.keys.lock(id, name)).await,
            Expiring::Shared(name) => self.pttl(&self.keys.shared(name)).await,
        }
    }

    async fn activity(&self, id: &SessionId) -> Vec<String> {
        self.conn.clone().lrange(self.keys.log(id), 0, -1).await.unwrap()
    }
}

mod contract_on_redis {
    use super::RedisHarness;

    switchboard::store_contract!(RedisHarness::start().await);
}

#[tokio::test]
async fn every_failed_operation_of_a_stopped_redis_is_counted_once_under_its_operation() {
    let mut h = RedisHarness::start_with_timeout(Duration::from_millis(500)).await;
    let id = SessionId::generate().unwrap();
    let store = &h.store;
    store.create(&id, &contract::record(), contract::TTL).await.unwrap();
    h.redis.stop();
    let ttl = contract::TTL;
    let outcomes: Vec<(&str, Result<(), StoreError>)> = vec![
        ("create", store.create(&SessionId::generate().unwrap(), &contract::record(), ttl).await),
        ("admit", store.admit(&SessionId::generate().unwrap(), &contract::record(), ttl, 10).await.map(drop)),
        ("take_token", store.take_token("alice", 0, 10, 10).await.map(drop)),
        ("load", store.load(&id, 0, ttl).await.map(drop)),
        ("load_with_cache", store.load_with_cache(&id, 0, ttl, "f").await.map(drop)),
        ("cache_get", store.cache_get(&id, "f").await.map(drop)),
        ("cache_put", store.cache_put(&id, "f", "v", 0, ttl, 1024).await),
        ("log_activity", store.log_activity(&id, "entry", ttl).await),
        ("try_lock", store.try_lock(&id, "f", ttl).await.map(drop)),
        ("unlock", store.unlock(&id, "f").await),
        ("replace_state", store.replace_state(&id, 0, "{}", 0, ttl).await.map(drop)),
        ("set_field", store.set_field(&id, "log_level", "debug", 0, ttl).await.map(drop)),
        ("delete", store.delete(&id).await.map(drop)),
        ("get_shared", store.get_shared("tools").await.map(drop)),
        ("put_shared", store.put_shared("tools", "[]", ttl).await),
        ("publish", store.publish("channel", "message").await),
        ("ping", store.ping().await),
    ];
    for (op, outcome) in &outcomes {
        assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{op}: {outcome:?}");
        let counted = contract::failures(&h, op, "connection") + contract::failures(&h, op, "timeout");
        assert_eq!(counted, 1, "{op} counted {counted} times:\n{}", h.metrics.render());
    }
    assert_eq!(contract::all_failures(&h), outcomes.len() as u64, "{}", h.metrics.render());
    // A subscription that cannot connect is counted on each attempt.
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    store.subscribe(vec!["channel".into()], tx);
    let counted = eventually_async(Duration::from_secs(5), || async {
        contract::failures(&h, "subscribe", "connection") > 0
    })
    .await;
    assert!(counted, "a failed subscription is counted:\n{}", h.metrics.render());
}

#[tokio::test]
async fn an_unreadable_record_is_reported_as_corrupt_once_per_failed_read() {
    let h = RedisHarness::start().await;
    let id = SessionId::generate().unwrap();
    let key = h.keys.session(&id);
    let _: () = h
        .conn
        .clone()
        .hset_multiple(&key, &[("schema", "1"), ("created_ms", "yesterday"), ("principal", "x")])
        .await
        .unwrap();
    let loaded = h.store.load(&id, 0, contract::TTL).await;
    assert!(matches!(loaded, Err(StoreError::Corrupt(_))), "{loaded:?}");
    let with_cache = h.store.load_with_cache(&id, 0, contract::TTL, "f").await;
    assert!(matches!(with_cache, Err(StoreError::Corrupt(_))), "{with_cache:?}");
    assert_eq!(contract::failures(&h, "load", "corrupt"), 1);
    assert_eq!(contract::failures(&h, "load_with_cache", "corrupt"), 1);
    assert_eq!(contract::all_failures(&h), 2);
}

#[tokio::test]
async fn a_key_of_the_wrong_type_is_counted_as_rejected_by_redis() {
    let h = RedisHarness::start().await;
    let id = SessionId::generate().unwrap();
    let _: () = h.conn.clone().set(h.keys.session(&id), "not a hash").await.unwrap();
    let loaded = h.store.load(&id, 0, contract::TTL).await;
    assert!(matches!(loaded, Err(StoreError::Unavailable(_))), "{loaded:?}");
    assert_eq!(contract::failures(&h, "load", "rejected"), 1, "{}", h.metrics.render());
}
