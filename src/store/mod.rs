//! Session storage: the only module that talks to Redis.
//!
//! [`SessionStore`] has two implementations with the same semantics: [`RedisStore`]
//! (any number of workers share it) and [`MemoryStore`] (the embedded default,
//! one process only). Every read or write of a session resets its idle TTL in
//! the same atomic step; concurrent writers never lose each other's updates
//! (state changes are compare-and-set on a revision, done inside one Lua script).
//!
//! Both are held to one behaviour by the contract suite in [`contract`], run on
//! [`MemoryStore`] by the unit tests and on [`RedisStore`] by `tests/it`.
//!
//! Every failed operation is logged and counted once, by the store itself, with the
//! [`StoreFailed`] event; callers map the error they get but do not log or count it.
//!
//! **Invariant:** all keys of one session carry the hash tag `{session id}`, so
//! they live in one Cluster slot and one script can touch them together.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::session::{SessionId, SessionRecord};
use crate::telemetry::Metrics;
use crate::telemetry::events::store::{StoreErrorKind, StoreFailed, StoreOp};

pub mod admin;
mod connection;
#[doc(hidden)]
pub mod contract;
mod memory;
mod redis;
#[cfg(test)]
mod tests;

pub use connection::Topology;

pub use memory::{Clock, MemoryStore, SystemClock};
pub use redis::RedisStore;

/// Why the store could not answer. Every variant means "try again later" to a client,
/// except [`StoreError::Corrupt`], which is a bug or a foreign writer
/// ([`StoreError::VersionSkew`]: later, on a newer worker).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session store is full")]
    Full,
    #[error("stored session record is unreadable: {0}")]
    Corrupt(String),
    /// The record needs a newer worker (its `compat` is above what this one reads); it is
    /// left as it is, for a worker that can read it.
    #[error("stored session record needs a newer worker: compat {compat}, this worker reads up to {reads}")]
    VersionSkew { compat: u32, reads: u32 },
}

/// Outcome of a compare-and-set of a session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written; the revision is now `expected + 1`.
    Applied,
    /// Another writer got there first: reload and retry.
    Conflict,
    /// The session does not exist (expired or deleted).
    Missing,
}

/// What [`SessionStore::admit`] did besides creating the session.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Sessions of the same principal ended to stay within its quota (its least recently used).
    pub evicted: Vec<SessionId>,
    /// Sessions of any principal ended because the embedded store was at capacity
    /// (least recently used first); always 0 on Redis.
    pub lru_evicted: usize,
}

/// The result of [`SessionStore::take_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// A token was taken: the request may run.
    Allowed,
    /// The bucket is empty; a token will be there after this long.
    Limited(Duration),
}

/// Persistence of sessions and of small shared values (the tool list cache).
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session with the idle TTL.
    async fn create(&self, id: &SessionId, record: &SessionRecord, ttl: Duration) -> Result<(), StoreError>;

    /// Creates a session counted against its principal's quota of `quota` live sessions
    /// (0: no limit). When the principal is at its quota, its least recently used session is
    /// ended to make room (bounded attempts); `None` if no room could be made (concurrent
    /// creations of the same principal kept taking it). Sessions made with
    /// [`SessionStore::create`] are not counted.
    async fn admit(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
        quota: usize,
    ) -> Result<Option<Admitted>, StoreError>;

    /// Takes one token of `principal`'s request bucket at `now_ms` (the worker's clock): it
    /// refills at `per_sec` tokens a second up to `burst`, shared by every worker.
    async fn take_token(
        &self,
        principal: &str,
        now_ms: u64,
        per_sec: u32,
        burst: u32,
    ) -> Result<Rate, StoreError>;

    /// Loads a session and, in the same atomic step, sets its last-seen time to `now_ms`
    /// and its expiry to the full `ttl`. `None` if it does not exist.
    async fn load(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Like [`SessionStore::load`], and in the same atomic step reads the result-cache
    /// entry `field` (`None` if absent).
    async fn load_with_cache(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
        field: &str,
    ) -> Result<Option<(SessionRecord, Option<String>)>, StoreError>;

    /// Reads one result-cache entry.
    async fn cache_get(&self, id: &SessionId, field: &str) -> Result<Option<String>, StoreError>;

    /// Stores a result-cache entry of the session (kept with the session's idle TTL),
    /// evicting the oldest entries while the session's cache exceeds `budget` bytes.
    async fn cache_put(
        &self,
        id: &SessionId,
        field: &str,
        value: &str,
        now_ms: u64,
        ttl: Duration,
        budget: usize,
    ) -> Result<(), StoreError>;

    /// Appends an entry to the session's capped activity log (kept with the session's TTL).
    async fn log_activity(&self, id: &SessionId, entry: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Takes the short lock `name` of a session (for single-flight cache misses); true if taken.
    async fn try_lock(&self, id: &SessionId, name: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Releases a lock taken with [`SessionStore::try_lock`].
    async fn unlock(&self, id: &SessionId, name: &str) -> Result<(), StoreError>;

    /// Replaces `state` (serialized JSON) if its revision is still `expected_rev`, touching the session.
    async fn replace_state(
        &self,
        id: &SessionId,
        expected_rev: u64,
        state: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError>;

    /// Sets one plain field of a session (`log_level`), touching it; `false` if there is no session.
    async fn set_field(
        &self,
        id: &SessionId,
        field: &str,
        value: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Ends a session; `false` if there was none.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Reads a shared value (not tied to a session).
    async fn get_shared(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Writes a shared value with a TTL.
    async fn put_shared(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Publishes a message to every worker subscribed to `channel` (fire and forget).
    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError>;

    /// Delivers messages of `channels` to `sink` (as `(channel, payload)`) until the sink
    /// closes, re-subscribing after connection losses.
    fn subscribe(&self, channels: Vec<String>, sink: mpsc::Sender<(String, String)>);

    /// Checks that the store answers, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A short description for logs (never a password).
    fn describe(&self) -> String;
}

/// Key names, shared by both implementations so they agree on the layout.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_string() }
    }

    /// The session's hash: `prefix{id}`.
    pub fn session(&self, id: &SessionId) -> String {
        format!("{}{{{id}}}", self.prefix)
    }

    /// The session's result cache (a hash) and its age index (a sorted set).
    pub fn cache(&self, id: &SessionId) -> (String, String) {
        (format!("{}{{{id}}}:cache", self.prefix), format!("{}{{{id}}}:cache:age", self.prefix))
    }

    /// The session's activity log (a capped list).
    pub fn log(&self, id: &SessionId) -> String {
        format!("{}{{{id}}}:log", self.prefix)
    }

    /// A short lock of the session.
    pub fn lock(&self, id: &SessionId, name: &str) -> String {
        format!("{}{{{id}}}:lock:{name}", self.prefix)
    }

    /// The index of a principal's sessions (a sorted set: id → last-seen estimate), under a
    /// hash tag of its own: `prefix` + `principal:{hash}:sessions`.
    pub fn principal_sessions(&self, principal: &str) -> String {
        format!("{}principal:{{{}}}:sessions", self.prefix, principal_tag(principal))
    }

    /// A principal's request bucket (a hash: tokens, last refill): `prefix` + `principal:{hash}:rate`.
    pub fn principal_rate(&self, principal: &str) -> String {
        format!("{}principal:{{{}}}:rate", self.prefix, principal_tag(principal))
    }

    /// A shared value: `prefix` + `shared:` + name.
    pub fn shared(&self, name: &str) -> String {
        format!("{}shared:{name}", self.prefix)
    }

    /// A pub/sub channel: `prefix` + `channel:` + name.
    pub fn channel(&self, name: &str) -> String {
        format!("{}channel:{name}", self.prefix)
    }

    /// The prefix, for scans.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Entries kept in a session's activity log: enough to see what a session did lately,
/// small enough (about 1 KB) that a session stays around 2 KB in Redis.
pub const ACTIVITY_LOG_LEN: usize = 10;

/// The one place a store's failures leave it: each is logged and counted here, once.
#[derive(Clone)]
struct Failures {
    metrics: Arc<Metrics>,
}

impl Failures {
    /// Emits [`StoreFailed`] and hands the error on to the caller.
    fn report(
        &self,
        op: StoreOp,
        session: Option<&SessionId>,
        kind: StoreErrorKind,
        error: StoreError,
    ) -> StoreError {
        StoreFailed { op, kind, session, error: &error }.emit(&self.metrics);
        error
    }
}

/// A fixed-size, key-safe name for a principal (whatever its length or characters).
fn principal_tag(principal: &str) -> String {
    blake3::hash(principal.as_bytes()).to_hex()[..32].to_string()
}

/// One step of a token bucket: the bucket `(tokens, at_ms)` (`None`: never used, so full)
/// refilled up to `now_ms`, then one token taken if there is one. Returns the bucket to keep
/// and the milliseconds until a token (0: taken). A clock behind the bucket's refills nothing.
/// The Redis script computes the same.
fn token_bucket(bucket: Option<(f64, u64)>, now_ms: u64, per_sec: u32, burst: u32) -> ((f64, u64), u64) {
    let (burst, rate) = (f64::from(burst.max(1)), f64::from(per_sec.max(1)));
    let (mut tokens, mut at) = bucket.unwrap_or((burst, now_ms));
    if now_ms > at {
        tokens = burst.min(tokens + (now_ms - at) as f64 * rate / 1000.0);
        at = now_ms;
    }
    if tokens >= 1.0 {
        ((tokens - 1.0, at), 0)
    } else {
        // Truncation is fine: the value is small and positive.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let wait = ((1.0 - tokens) * 1000.0 / rate).ceil().max(1.0) as u64;
        ((tokens, at), wait)
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
