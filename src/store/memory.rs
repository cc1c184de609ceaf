//! The embedded in-process store: the same semantics as Redis for one process,
//! so `switchboard serve` works with nothing else running. Expiry is checked on
//! access (no background thread); the map is bounded and swept when it grows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{CasOutcome, SessionStore, StoreError};
use crate::session::{SessionId, SessionRecord};

/// Most sessions the embedded store holds; beyond it creation fails with [`StoreError::Full`].
const MAX_SESSIONS: usize = 100_000;

/// Channels a subscriber listens to, and where its `(channel, payload)` messages go.
type Subscriber = (Vec<String>, mpsc::Sender<(String, String)>);

/// One session's cache: field → (value, stored at ms), and the bytes held.
type SessionCache = (HashMap<String, (String, u64)>, usize);

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, (SessionRecord, Instant)>,
    /// Result-cache entries per session: field → (value, stored at), and the bytes held.
    caches: HashMap<String, SessionCache>,
    locks: HashMap<String, Instant>,
    logs: HashMap<String, std::collections::VecDeque<String>>,
    shared: HashMap<String, (String, Instant)>,
    subscribers: Vec<Subscriber>,
}

/// A single-process store (the zero-setup default).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A poisoned lock only means another request panicked mid-update of plain data.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

fn live<'a, V>(map: &'a mut HashMap<String, (V, Instant)>, key: &str) -> Option<&'a mut (V, Instant)> {
    let now = Instant::now();
    if map.get(key).is_some_and(|(_, exp)| *exp <= now) {
        map.remove(key);
    }
    map.get_mut(key)
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, id: &SessionId, record: &SessionRecord, ttl: Duration) -> Result<(), StoreError> {
        self.with(|inner| {
            if inner.sessions.len() >= MAX_SESSIONS {
                let now = Instant::now();
                inner.sessions.retain(|_, (_, exp)| *exp > now);
                let Inner { sessions, caches, logs, .. } = &mut *inner;
                caches.retain(|id, _| sessions.contains_key(id));
                logs.retain(|id, _| sessions.contains_key(id));
                inner.shared.retain(|_, (_, exp)| *exp > now);
                if inner.sessions.len() >= MAX_SESSIONS {
                    return Err(StoreError::Full);
                }
            }
            inner.sessions.insert(id.to_string(), (record.clone(), Instant::now() + ttl));
            Ok(())
        })
    }

    async fn load(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.with(|inner| {
            live(&mut inner.sessions, id.as_str()).map(|(record, exp)| {
                record.last_seen_ms = now_ms;
                *exp = Instant::now() + ttl;
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
        let record = self.load(id, now_ms, ttl).await?;
        let cached = if field.is_empty() { None } else { self.cache_get(id, field).await? };
        Ok(record.map(|r| (r, cached)))
    }

    async fn cache_get(&self, id: &SessionId, field: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|inner| {
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
        self.with(|inner| {
            if live(&mut inner.sessions, id.as_str()).is_none() {
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
        self.with(|inner| {
            if live(&mut inner.sessions, id.as_str()).is_some() {
                let log = inner.logs.entry(id.to_string()).or_default();
                log.push_front(entry.to_string());
                log.truncate(super::ACTIVITY_LOG_LEN);
            }
        });
        Ok(())
    }

    async fn try_lock(&self, id: &SessionId, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with(|inner| {
            let key = format!("{id}:{name}");
            let now = Instant::now();
            inner.locks.retain(|_, until| *until > now);
            match inner.locks.entry(key) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(now + ttl);
                    true
                }
            }
        }))
    }

    async fn unlock(&self, id: &SessionId, name: &str) -> Result<(), StoreError> {
        self.with(|inner| inner.locks.remove(&format!("{id}:{name}")));
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
        let value: serde_json::Value =
            serde_json::from_str(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(self.with(|inner| match live(&mut inner.sessions, id.as_str()) {
            None => CasOutcome::Missing,
            Some((record, _)) if record.state_rev != expected_rev => CasOutcome::Conflict,
            Some((record, exp)) => {
                record.state = value;
                record.state_rev += 1;
                record.last_seen_ms = now_ms;
                *exp = Instant::now() + ttl;
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
        Ok(self.with(|inner| match live(&mut inner.sessions, id.as_str()) {
            Some((record, exp)) => {
                if field == "log_level" {
                    record.log_level = Some(value.to_string());
                }
                record.last_seen_ms = now_ms;
                *exp = Instant::now() + ttl;
                true
            }
            None => false,
        }))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.with(|inner| {
            let existed = live(&mut inner.sessions, id.as_str()).is_some();
            inner.sessions.remove(id.as_str());
            inner.caches.remove(id.as_str());
            inner.logs.remove(id.as_str());
            existed
        }))
    }

    async fn get_shared(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|inner| live(&mut inner.shared, name).map(|(v, _)| v.clone())))
    }

    async fn put_shared(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        self.with(|inner| {
            if inner.shared.len() >= MAX_SESSIONS {
                let now = Instant::now();
                inner.shared.retain(|_, (_, exp)| *exp > now);
            }
            inner.shared.insert(name.to_string(), (value.to_string(), Instant::now() + ttl));
        });
        Ok(())
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        self.with(|inner| {
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
        self.with(|inner| inner.subscribers.push((channels, sink)));
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
