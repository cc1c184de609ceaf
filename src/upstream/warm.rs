//! Warm starts keyed by session: after a worker has served session S on a server whose
//! environment depends on the session, it may start S's next child at once, with S's
//! rendered environment, and keep it ready for the server's `warm_idle_secs`.
//!
//! A warm child is keyed by ([`WarmKey`]) the hash of the session id, the server, and the
//! hash of the command, the rendered environment and the client's `initialize` choices, so
//! it can only ever serve the session, credentials and config it was started for: a
//! request of the same session whose key differs drops it. Each warm child serves exactly
//! one request. The pool is bounded by count and by the children's total resident memory
//! (least recently used evicted first); every child in it holds a slot of the worker's
//! live-children cap. Nothing of a session is kept here beyond the child's own environment
//! (the session id only as a hash).
//!
//! This module only keeps the pool; [`super::McpManager`] decides when a child is started
//! (spare capacity only) and takes evicted children down.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::process::SpawnSpec;
use super::{Client, Warm};

/// What a warm child was started for: it serves a request only if every part matches.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct WarmKey {
    /// blake3 of the session id (the id itself is not kept).
    session: [u8; 32],
    server: Arc<str>,
    /// blake3 of the command, the rendered environment and the client's `initialize` choices.
    fingerprint: [u8; 32],
}

impl WarmKey {
    pub(super) fn new(session: &str, spec: &SpawnSpec, client: Client<'_>) -> Self {
        let mut hasher = blake3::Hasher::new();
        let mut field = |text: &str| {
            hasher.update(&(text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        };
        field(&spec.program);
        for arg in &spec.args {
            field(arg);
        }
        field("\0env");
        for (key, value) in &spec.env {
            field(key);
            field(value);
        }
        field("\0client");
        field(client.capabilities.map_or("", |c| c.get().trim()));
        field(client.log_level.unwrap_or(""));
        Self {
            session: session_hash(session),
            server: spec.label.clone(),
            fingerprint: *hasher.finalize().as_bytes(),
        }
    }

    /// Same session and server (the fingerprint may differ: then the older child is stale).
    fn same_place(&self, other: &Self) -> bool {
        self.session == other.session && self.server == other.server
    }
}

/// The hash under which a session's warm children are kept.
pub(super) fn session_hash(session: &str) -> [u8; 32] {
    *blake3::hash(session.as_bytes()).as_bytes()
}

/// A warm child taken out of the pool unused, and why; the manager takes it down.
pub(super) struct Evicted {
    /// `None` for a child still starting: its warm-up is cancelled instead.
    pub(super) warm: Option<Box<Warm>>,
    pub(super) reason: &'static str,
}

/// The warm children of one worker.
pub(super) struct SessionPool {
    state: Mutex<State>,
    /// Signalled whenever an entry becomes ready or goes away (for requests waiting on a warm-up).
    changed: Notify,
    max_children: usize,
    max_rss: u64,
}

#[derive(Default)]
struct State {
    /// Oldest first: entries are added right after their session was served, so this is
    /// least-recently-used order.
    entries: Vec<Entry>,
    next_id: u64,
    /// Drain began: nothing new is kept.
    closed: bool,
}

struct Entry {
    id: u64,
    key: WarmKey,
    idle: Duration,
    slot: Slot,
    /// A request of the session waits for this child to finish starting.
    claimed: bool,
    /// Cancels the warm-up while the child is starting.
    cancel: CancellationToken,
}

enum Slot {
    Starting,
    Ready { warm: Box<Warm>, rss: u64, until: Instant },
}

/// How many children the pool holds, for metrics and the spare-capacity rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) ready: usize,
    pub(super) starting: usize,
    pub(super) rss: u64,
}

impl SessionPool {
    pub(super) fn new(max_children: usize, max_rss: u64) -> Self {
        Self { state: Mutex::new(State::default()), changed: Notify::new(), max_children, max_rss }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn counts(&self) -> Counts {
        let state = self.lock();
        let mut counts = Counts::default();
        for entry in &state.entries {
            match &entry.slot {
                Slot::Starting => counts.starting += 1,
                Slot::Ready { rss, .. } => {
                    counts.ready += 1;
                    counts.rss += rss;
                }
            }
        }
        counts
    }

    /// The warm child for `key`, if one is ready, or starting (then waits for it, at most
    /// `wait`). A child of the same session and server with another fingerprint is stale
    /// and goes. `None`: start a child as usual.
    pub(super) async fn take(&self, key: &WarmKey, wait: Duration) -> (Option<Box<Warm>>, Vec<Evicted>) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut evicted = Vec::new();
        let mut claimed: Option<u64> = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                let Some(i) = state.entries.iter().position(|e| e.key.same_place(key)) else {
                    return (None, evicted);
                };
                let entry = &mut state.entries[i];
                if entry.key.fingerprint != key.fingerprint {
                    evicted.push(remove(&mut state, i, "stale"));
                    self.changed.notify_waiters();
                    return (None, evicted);
                }
                if entry.claimed && claimed != Some(entry.id) {
                    // Another request of this session already waits for it.
                    return (None, evicted);
                }
                match &entry.slot {
                    Slot::Ready { until, .. } if *until <= Instant::now() => {
                        evicted.push(remove(&mut state, i, "idle"));
                        return (None, evicted);
                    }
                    Slot::Ready { .. } => {
                        let removed = state.entries.remove(i);
                        return match removed.slot {
                            Slot::Ready { warm, .. } => (Some(warm), evicted),
                            Slot::Starting => (None, evicted),
                        };
                    }
                    Slot::Starting => {
                        entry.claimed = true;
                        claimed = Some(entry.id);
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut state = self.lock();
                if let Some(entry) = state.entries.iter_mut().find(|e| Some(e.id) == claimed) {
                    entry.claimed = false;
                }
                return (None, evicted);
            }
        }
    }

    /// Makes room for a child for `key` that is about to start; `None` if the pool is
    /// closed, already holds (or is starting) one for it, or is full of children in use.
    pub(super) fn reserve(
        &self,
        key: WarmKey,
        idle: Duration,
    ) -> (Option<(u64, CancellationToken)>, Vec<Evicted>) {
        let mut state = self.lock();
        let mut evicted = Vec::new();
        if state.closed || self.max_children == 0 {
            return (None, evicted);
        }
        if let Some(i) = state.entries.iter().position(|e| e.key.same_place(&key)) {
            if state.entries[i].key.fingerprint == key.fingerprint {
                return (None, evicted);
            }
            evicted.push(remove(&mut state, i, "stale"));
        }
        while state.entries.len() >= self.max_children {
            let Some(i) = lru_ready(&state) else {
                return (None, evicted);
            };
            evicted.push(remove(&mut state, i, "count"));
        }
        let id = state.next_id;
        state.next_id += 1;
        let cancel = CancellationToken::new();
        state.entries.push(Entry {
            id,
            key,
            idle,
            slot: Slot::Starting,
            claimed: false,
            cancel: cancel.clone(),
        });
        drop(state);
        self.changed.notify_waiters();
        (Some((id, cancel)), evicted)
    }

    /// The child reserved as `id` is ready. `Err` gives it back if its entry went away
    /// meanwhile (forgotten, drained): the caller takes it down.
    pub(super) fn fill(&self, id: u64, warm: Box<Warm>, rss: u64) -> Result<Vec<Evicted>, Box<Warm>> {
        let mut state = self.lock();
        let Some(entry) = state.entries.iter_mut().find(|e| e.id == id) else {
            return Err(warm);
        };
        let until = Instant::now() + entry.idle;
        entry.slot = Slot::Ready { warm, rss, until };
        let mut evicted = Vec::new();
        loop {
            let total: u64 = state
                .entries
                .iter()
                .map(|e| match &e.slot {
                    Slot::Ready { rss, .. } => *rss,
                    Slot::Starting => 0,
                })
                .sum();
            if total <= self.max_rss {
                break;
            }
            let Some(i) = lru_ready(&state) else { break };
            evicted.push(remove(&mut state, i, "rss"));
        }
        drop(state);
        self.changed.notify_waiters();
        Ok(evicted)
    }

    /// The warm-up reserved as `id` failed.
    pub(super) fn fail(&self, id: u64) -> Vec<Evicted> {
        self.remove_where(|e| e.id == id, "failed")
    }

    /// The least recently used ready child, for a request that found no free slot.
    pub(super) fn evict_lru(&self, reason: &'static str) -> Option<Evicted> {
        let mut state = self.lock();
        let i = lru_ready(&state)?;
        let evicted = remove(&mut state, i, reason);
        drop(state);
        self.changed.notify_waiters();
        Some(evicted)
    }

    /// Every child of a session (deleted or expired), starting ones included.
    pub(super) fn forget(&self, session: &[u8; 32]) -> Vec<Evicted> {
        self.remove_where(|e| &e.key.session == session, "forgotten")
    }

    /// Ready children idle past their time.
    pub(super) fn sweep(&self, now: Instant) -> Vec<Evicted> {
        self.remove_where(|e| matches!(&e.slot, Slot::Ready { until, .. } if *until <= now), "idle")
    }

    /// Drain: every child goes and none is kept from now on.
    pub(super) fn close(&self) -> Vec<Evicted> {
        self.lock().closed = true;
        self.remove_where(|_| true, "drain")
    }

    fn remove_where(&self, mut matches: impl FnMut(&Entry) -> bool, reason: &'static str) -> Vec<Evicted> {
        let mut state = self.lock();
        let mut evicted = Vec::new();
        let mut i = 0;
        while i < state.entries.len() {
            if matches(&state.entries[i]) {
                evicted.push(remove(&mut state, i, reason));
            } else {
                i += 1;
            }
        }
        drop(state);
        if !evicted.is_empty() {
            self.changed.notify_waiters();
        }
        evicted
    }
}

/// The oldest ready child no request waits for.
fn lru_ready(state: &State) -> Option<usize> {
    state.entries.iter().position(|e| !e.claimed && matches!(e.slot, Slot::Ready { .. }))
}

fn remove(state: &mut State, i: usize, reason: &'static str) -> Evicted {
    let entry = state.entries.remove(i);
    entry.cancel.cancel();
    match entry.slot {
        Slot::Ready { warm, .. } => Evicted { warm: Some(warm), reason },
        Slot::Starting => Evicted { warm: None, reason },
    }
}

/// Resident memory of a child and its descendants (at most 64 processes), from `/proc`;
/// 0 where `/proc` is not available.
pub(super) fn resident_bytes(pid: u32) -> u64 {
    let mut total = 0;
    let mut queue = vec![pid];
    let mut seen = 0;
    while let Some(pid) = queue.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        total += rss_of(pid);
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            queue.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    total
}

/// `VmRSS` of one process (the resident field of `/proc/<pid>/statm`, in bytes).
fn rss_of(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
