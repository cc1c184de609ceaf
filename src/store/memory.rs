//! The embedded in-process store: the same semantics as Redis for one process,
//! so `switchboard serve` works with nothing else running. Expiry is checked on
//! access (no background thread); the map is bounded and swept when it grows, and
//! at capacity the least recently used sessions make room (never a lock-out).
//! Time comes from an injected [`Clock`], so tests let it pass without sleeping.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Admitted, CasOutcome, Failures, Rate, SessionStore, StoreError, token_bucket};
use crate::session::{SessionId, SessionRecord};
use crate::telemetry::Metrics;
use crate::telemetry::events::store::{StoreErrorKind, StoreOp};

/// Most sessions the embedded store holds by default; beyond it the least recently used
/// make room (see [`MemoryStore::with_capacity`]).
pub(super) const MAX_SESSIONS: usize = 100_000;

/// Most request buckets kept; beyond it the full (idle) ones are dropped, being the same
/// as none.
const MAX_BUCKETS: usize = 100_000;

/// Where the embedded store reads the time that expiries are measured on.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The monotonic clock of the operating system.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Channels a subscriber listens to, and where its `(channel, payload)` messages go.
type Subscriber = (Vec<String>, mpsc::Sender<(String, String)>);

/// One session's cache: field → (value, stored at ms), and the bytes held.
type SessionCache = (HashMap<String, (String, u64)>, usize);

#[derive(Default)]
struct Inner {
    /// Live sessions and when each expires.
    sessions: HashMap<String, (SessionRecord, Instant)>,
    /// Result-cache entries per session; they live and die with the session.
    caches: HashMap<String, SessionCache>,
    /// Single-flight locks and when each lapses.
    locks: HashMap<String, Instant>,
    /// Activity logs per session, newest first; they live and die with the session.
    logs: HashMap<String, VecDeque<String>>,
    /// Shared values (tool lists) and when each expires.
    shared: HashMap<String, (String, Instant)>,
    subscribers: Vec<Subscriber>,
    /// The sessions of each principal that were admitted against its quota; kept in step
    /// with `sessions` by [`Inner::drop_session`].
    by_principal: HashMap<String, HashSet<String>>,
    /// Request buckets per principal: tokens left and the last refill, Unix ms.
    buckets: HashMap<String, (f64, u64)>,
}

impl Inner {
    /// The session `id` if it has not expired; an expired one is dropped with its cache and log.
    fn session(&mut self, id: &str, now: Instant) -> Option<&mut (SessionRecord, Instant)> {
        if self.sessions.get(id).is_some_and(|(_, exp)| *exp <= now) {
            self.drop_session(id);
        }
        self.sessions.get_mut(id)
    }

    /// Ends a session with its cache, log and place in its principal's index.
    fn drop_session(&mut self, id: &str) {
        let Some((record, _)) = self.sessions.remove(id) else { return };
        self.caches.remove(id);
        self.logs.remove(id);
        if let Some(ids) = self.by_principal.get_mut(&record.principal) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_principal.remove(&record.principal);
            }
        }
    }

    /// Drops every expired session (with its cache and log) and shared value.
    fn sweep(&mut self, now: Instant) {
        let expired: Vec<String> =
            self.sessions.iter().filter(|(_, (_, exp))| *exp <= now).map(|(id, _)| id.clone()).collect();
        for id in expired {
            self.drop_session(&id);
        }
        self.shared.retain(|_, (_, exp)| *exp > now);
    }

    /// Ends the least recently used sessions of any principal (1% of `capacity`, at least
    /// one), so a full store makes room in batches rather than on every creation.
    fn evict_lru(&mut self, capacity: usize) -> usize {
        let batch = (capacity / 100).max(1).min(self.sessions.len());
        if batch == 0 {
            return 0;
        }
        // The expiry is the last touch plus the one idle TTL: the oldest touch expires first.
        let mut by_age: Vec<(Instant, String)> =
            self.sessions.iter().map(|(id, (_, exp))| (*exp, id.clone())).collect();
        by_age.select_nth_unstable_by_key(batch - 1, |(exp, _)| *exp);
        by_age.truncate(batch);
        for (_, id) in by_age {
            self.drop_session(&id);
        }
        batch
    }

    /// Ends the least recently used sessions of `principal` (by their last-seen time, as on
    /// Redis) until it holds fewer than `quota`.
    fn make_room_for(&mut self, principal: &str, quota: usize, now: Instant) -> Vec<SessionId> {
        if self.by_principal.get(principal).is_none_or(|ids| ids.len() < quota) {
            return Vec::new();
        }
        let ids: Vec<String> = self.by_principal.get(principal).into_iter().flatten().cloned().collect();
        let mut live: Vec<(u64, String)> = ids
            .into_iter()
            .filter_map(|id| self.session(&id, now).map(|(record, _)| record.last_seen_ms).map(|at| (at, id)))
            .collect();
        live.sort();
        let excess = (live.len() + 1).saturating_sub(quota);
        let mut evicted = Vec::with_capacity(excess);
        for (_, id) in live.into_iter().take(excess) {
            self.drop_session(&id);
            evicted.extend(SessionId::parse(&id));
        }
        evicted
    }

    /// Creates a session (over `quota` its principal's least recently used ones go first;
    /// over `capacity` anyone's); `None` if the id is taken.
    fn admit(
        &mut self,
        id: &SessionId,
        record: &SessionRecord,
        expires: Instant,
        quota: usize,
        capacity: usize,
        now: Instant,
    ) -> Option<Admitted> {
        if self.session(id.as_str(), now).is_some() {
            return None;
        }
        let mut admitted = Admitted::default();
        if quota > 0 {
            admitted.evicted = self.make_room_for(&record.principal, quota, now);
        }
        if self.sessions.len() >= capacity {
            self.sweep(now);
            if self.sessions.len() >= capacity {
                admitted.lru_evicted = self.evict_lru(capacity);
            }
        }
        self.sessions.insert(id.to_string(), (record.clone(), expires));
        self.by_principal.entry(record.principal.clone()).or_default().insert(id.to_string());
        Some(admitted)
    }
}

/// A single-process store (the zero-setup default).
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    failures: Failures,
    /// Most sessions held; beyond it the least recently used make room.
    capacity: usize,
}

impl MemoryStore {
    /// A store on the system clock; its failures are counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_clock(metrics, Arc::new(SystemClock))
    }

    /// A store whose expiries are measured on `clock`.
    pub fn with_clock(metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self { inner: Mutex::default(), clock, failures: Failures { metrics }, capacity: MAX_SESSIONS }
    }

    /// The same store holding at most `capacity` sessions (at least one).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, Instant) -> T) -> T {
        // A poisoned lock only means another request panicked mid-update of plain data.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard, self.clock.now())
    }

    /// Time left before the session `id` expires (its cache and log go with it).
    #[cfg(test)]
    pub(super) fn session_expires_in(&self, id: &SessionId) -> Option<Duration> {
        self.with(|inner, now| inner.session(id.as_str(), now).map(|(_, exp)| exp.duration_since(now)))
    }

    /// Time left before the lock `name` of `id` lapses.
    #[cfg(test)]
    pub(super) fn lock_expires_in(&self, id: &SessionId, name: &str) -> Option<Duration> {
        self.with(|inner, now| {
            inner
                .locks
                .get(&format!("{id}:{name}"))
                .filter(|until| **until > now)
                .map(|u| u.duration_since(now))
        })
    }

    /// Time left before the shared value `name` expires.
    #[cfg(test)]
    pub(super) fn shared_expires_in(&self, name: &str) -> Option<Duration> {
        self.with(|inner, now| {
            inner.shared.get(name).filter(|(_, exp)| *exp > now).map(|(_, exp)| exp.duration_since(now))
        })
    }

    /// Request buckets held.
    #[cfg(test)]
    pub(super) fn buckets(&self) -> usize {
        self.with(|inner, _| inner.buckets.len())
    }

    /// Whether the session has a result cache, and an activity log.
    #[cfg(test)]
    pub(super) fn has_cache_and_log(&self, id: &SessionId) -> (bool, bool) {
        self.with(|inner, now| {
            let live = inner.session(id.as_str(), now).is_some();
            let cache = inner.caches.get(id.as_str()).is_some_and(|(entries, _)| !entries.is_empty());
            (live && cache, live && inner.logs.contains_key(id.as_str()))
        })
    }

    /// The session's activity log, newest first.
    #[cfg(test)]
    pub(super) fn activity(&self, id: &SessionId) -> Vec<String> {
        self.with(|inner, now| {
            inner.session(id.as_str(), now);
            inner.logs.get(id.as_str()).map(|log| log.iter().cloned().collect()).unwrap_or_default()
        })
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, id: &SessionId, record: &SessionRecord, ttl: Duration) -> Result<(), StoreError> {
        self.admit(id, record, ttl, 0).await.map(|_| ())
    }

    async fn admit(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
        quota: usize,
    ) -> Result<Option<Admitted>, StoreError> {
        let capacity = self.capacity;
        match self.with(|inner, now| inner.admit(id, record, now + ttl, quota, capacity, now)) {
            Some(admitted) => Ok(Some(admitted)),
            None => {
                let error = StoreError::Corrupt("session id collision".into());
                Err(self.failures.report(StoreOp::Create, Some(id), StoreErrorKind::Corrupt, error))
            }
        }
    }

    async fn take_token(
        &self,
        principal: &str,
        now_ms: u64,
        per_sec: u32,
        burst: u32,
    ) -> Result<Rate, StoreError> {
        Ok(self.with(|inner, _| {
            if inner.buckets.len() >= MAX_BUCKETS && !inner.buckets.contains_key(principal) {
                // A bucket refilled to the brim is the same as no bucket.
                let refill_ms = u64::from(burst) * 1000 / u64::from(per_sec.max(1));
                inner.buckets.retain(|_, (_, at)| now_ms.saturating_sub(*at) < refill_ms);
                if inner.buckets.len() >= MAX_BUCKETS {
                    inner.buckets.clear();
                }
            }
            let bucket = inner.buckets.get(principal).copied();
            let (bucket, wait_ms) = token_bucket(bucket, now_ms, per_sec, burst);
            inner.buckets.insert(principal.to_string(), bucket);
            if wait_ms == 0 { Rate::Allowed } else { Rate::Limited(Duration::from_millis(wait_ms)) }
        }))
    }

    async fn load(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.with(|inner, now| {
            inner.session(id.as_str(), now).map(|(record, exp)| {
                record.last_seen_ms = now_ms;
                *exp = now + ttl;
                record.clone()
            })
        }))
    }

    async fn load_with_cache(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
        field: &str,
    ) -> Result<Option<(SessionRecord, Option<String>)>, StoreError> {
        Ok(self.with(|inner, now| {
            let (record, exp) = inner.session(id.as_str(), now)?;
            record.last_seen_ms = now_ms;
            *exp = now + ttl;
            let record = record.clone();
            if field.is_empty() {
                return Some((record, None));
            }
            let cached =
                inner.caches.get(id.as_str()).and_then(|(c, _)| c.get(field)).map(|(v, _)| v.clone());
            Some((record, cached))
        }))
    }

    async fn cache_get(&self, id: &SessionId, field: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|inner, now| {
            inner.session(id.as_str(), now)?;
            inner.caches.get(id.as_str()).and_then(|(c, _)| c.get(field)).map(|(v, _)| v.clone())
        }))
    }

    async fn cache_put(
        &self,
        id: &SessionId,
        field: &str,
        value: &str,
        now_ms: u64,
        _ttl: Duration,
        budget: usize,
    ) -> Result<(), StoreError> {
        self.with(|inner, now| {
            if inner.session(id.as_str(), now).is_none() {
                return;
            }
            let (entries, bytes) = inner.caches.entry(id.to_string()).or_default();
            if let Some((old, _)) = entries.insert(field.to_string(), (value.to_string(), now_ms)) {
                *bytes -= old.len();
            }
            *bytes += value.len();
            while *bytes > budget {
                let Some(oldest) = entries.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some((v, _)) = entries.remove(&oldest) {
                    *bytes -= v.len();
                }
            }
        });
        Ok(())
    }

    async fn log_activity(&self, id: &SessionId, entry: &str, _ttl: Duration) -> Result<(), StoreError> {
        self.with(|inner, now| {
            if inner.session(id.as_str(), now).is_some() {
                let log = inner.logs.entry(id.to_string()).or_default();
                log.push_front(entry.to_string());
                log.truncate(super::ACTIVITY_LOG_LEN);
            }
        });
        Ok(())
    }

    async fn try_lock(&self, id: &SessionId, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| {
            inner.locks.retain(|_, until| *until > now);
            match inner.locks.entry(format!("{id}:{name}")) {
                Entry::Occupied(_) => false,
                Entry::Vacant(slot) => {
                    slot.insert(now + ttl);
                    true
                }
            }
        }))
    }

    async fn unlock(&self, id: &SessionId, name: &str) -> Result<(), StoreError> {
        self.with(|inner, _| inner.locks.remove(&format!("{id}:{name}")));
        Ok(())
    }

    async fn replace_state(
        &self,
        id: &SessionId,
        expected_rev: u64,
        state: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        let value: serde_json::Value = serde_json::from_str(state).map_err(|e| {
            let error = StoreError::Corrupt(format!("state: {e}"));
            self.failures.report(StoreOp::ReplaceState, Some(id), StoreErrorKind::Corrupt, error)
        })?;
        Ok(self.with(|inner, now| match inner.session(id.as_str(), now) {
            None => CasOutcome::Missing,
            Some((record, _)) if record.state_rev != expected_rev => CasOutcome::Conflict,
            Some((record, exp)) => {
                record.state = value;
                record.state_rev += 1;
                record.last_seen_ms = now_ms;
                *exp = now + ttl;
                CasOutcome::Applied
            }
        }))
    }

    async fn set_field(
        &self,
        id: &SessionId,
        field: &str,
        value: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| match inner.session(id.as_str(), now) {
            Some((record, exp)) => {
                if field == "log_level" {
                    record.log_level = Some(value.to_string());
                }
                record.last_seen_ms = now_ms;
                *exp = now + ttl;
                true
            }
            None => false,
        }))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| {
            let existed = inner.session(id.as_str(), now).is_some();
            inner.drop_session(id.as_str());
            existed
        }))
    }

    async fn get_shared(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|inner, now| {
            if inner.shared.get(name).is_some_and(|(_, exp)| *exp <= now) {
                inner.shared.remove(name);
            }
            inner.shared.get(name).map(|(v, _)| v.clone())
        }))
    }

    async fn put_shared(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        self.with(|inner, now| {
            if inner.shared.len() >= MAX_SESSIONS {
                inner.shared.retain(|_, (_, exp)| *exp > now);
            }
            inner.shared.insert(name.to_string(), (value.to_string(), now + ttl));
        });
        Ok(())
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        self.with(|inner, _| {
            inner.subscribers.retain(|(_, sink)| !sink.is_closed());
            for (channels, sink) in &inner.subscribers {
                if channels.iter().any(|c| c == channel) {
                    let _ = sink.try_send((channel.to_string(), message.to_string()));
                }
            }
        });
        Ok(())
    }

    fn subscribe(&self, channels: Vec<String>, sink: mpsc::Sender<(String, String)>) {
        self.with(|inner, _| inner.subscribers.push((channels, sink)));
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "embedded in-process store (single process only: sessions are lost on restart and \
         not shared with other workers)"
            .into()
    }
}
