//! Relaying what a spawned server sends before its response: notifications
//! (progress, log messages) and its own requests (sampling, elicitation, roots).
//!
//! A server's request goes to the client with a gateway id `sb-<worker>-<n>`, so
//! concurrent calls can never collide and the client's answer, which may reach
//! any worker, names the worker that holds the child. [`ReplyRouter`] maps those
//! ids back to the child's own id and its stdin.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Most messages a child may send before its response that are relayed (notifications and
/// its own requests together). 1024 covers a minute of progress notifications every 60 ms.
pub const MAX_RELAYED_MESSAGES: usize = 1024;

/// Most bytes relayed for one call before its response: 16 MiB, or the server's
/// `max_message_bytes` when that is larger (one message of the largest size always fits).
pub const MAX_RELAYED_BYTES: usize = 16 * 1024 * 1024;

/// What is left of one call's relay budget. Past it, notifications are dropped and the
/// child's requests are answered (to the child) with an error; the call goes on, so a
/// server that talks too much still gets its answer through.
#[derive(Debug)]
pub(crate) struct RelayBudget {
    messages: usize,
    bytes: usize,
}

impl RelayBudget {
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self { messages: MAX_RELAYED_MESSAGES, bytes: MAX_RELAYED_BYTES.max(max_message_bytes) }
    }

    /// Takes one message of `len` bytes from the budget; `false` (nothing taken) when it
    /// does not fit.
    pub(crate) fn take(&mut self, len: usize) -> bool {
        if self.messages == 0 || len > self.bytes {
            return false;
        }
        self.messages -= 1;
        self.bytes -= len;
        true
    }
}

/// A message for the client, sent before the response.
#[derive(Debug)]
pub enum ServerMessage {
    /// A notification, raw (dropped if the client is too slow to take it).
    Notification(String),
    /// A server-to-client request with its id rewritten to a gateway id (never dropped).
    Request(String),
}

/// Where a pending server request's answer goes.
struct Pending {
    session: String,
    /// The id the child used, raw JSON.
    original_id: String,
    /// Lines to write to the child's stdin.
    to_child: mpsc::Sender<String>,
}

/// The pending server-to-client requests of one worker.
pub struct ReplyRouter {
    worker_id: String,
    next: AtomicU64,
    pending: Mutex<HashMap<String, Pending>>,
}

/// What became of a client's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// No such pending request here (finished, cancelled, or never ours).
    Unknown,
}

impl ReplyRouter {
    pub fn new(worker_id: String) -> Self {
        Self { worker_id, next: AtomicU64::new(1), pending: Mutex::new(HashMap::new()) }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The worker that issued a gateway id, if it is one.
    pub fn worker_of(id: &str) -> Option<&str> {
        let rest = id.strip_prefix("sb-")?;
        rest.rsplit_once('-').map(|(worker, _)| worker)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a server request; returns the gateway id to show the client.
    pub(crate) fn register(
        &self,
        session: &str,
        original_id: &str,
        to_child: mpsc::Sender<String>,
    ) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("sb-{}-{n}", self.worker_id);
        self.lock().insert(
            id.clone(),
            Pending { session: session.to_string(), original_id: original_id.to_string(), to_child },
        );
        id
    }

    /// Forgets every pending request of a finished call.
    pub(crate) fn forget(&self, ids: &[String]) {
        let mut pending = self.lock();
        for id in ids {
            pending.remove(id);
        }
    }

    /// The id the child gave a pending request (raw JSON), for the modern era, which shows
    /// the client a child's string id as the key of its input request.
    pub fn original_id(&self, gateway_id: &str) -> Option<String> {
        self.lock().get(gateway_id).map(|p| p.original_id.clone())
    }

    /// Delivers a client's answer (`result` or `error`, raw) to the child that asked.
    pub fn deliver(
        &self,
        session: &str,
        gateway_id: &str,
        result: Option<&str>,
        error: Option<&str>,
    ) -> Delivery {
        let target = {
            let pending = self.lock();
            match pending.get(gateway_id) {
                Some(p) if p.session == session => Some((p.original_id.clone(), p.to_child.clone())),
                _ => None,
            }
        };
        let Some((original_id, to_child)) = target else { return Delivery::Unknown };
        let line = match (result, error) {
            (Some(r), _) => crate::protocol::jsonrpc::response(&original_id, r),
            (None, Some(e)) => format!(r#"{{"jsonrpc":"2.0","id":{original_id},"error":{e}}}"#),
            (None, None) => return Delivery::Unknown,
        };
        match to_child.try_send(line) {
            Ok(()) => Delivery::Delivered,
            Err(_) => Delivery::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_budget_counts_messages_and_bytes() {
        let mut budget = RelayBudget::new(0);
        assert!(budget.take(MAX_RELAYED_BYTES - 10));
        assert!(!budget.take(11), "past the bytes");
        assert!(budget.take(10));
        assert!(!budget.take(1));
        let mut budget = RelayBudget::new(0);
        for _ in 0..MAX_RELAYED_MESSAGES {
            assert!(budget.take(1));
        }
        assert!(!budget.take(0), "past the count");
        // A server whose largest message is larger gets a budget that fits one.
        assert!(RelayBudget::new(MAX_RELAYED_BYTES * 2).take(MAX_RELAYED_BYTES * 2));
    }

    #[test]
    fn gateway_ids_name_their_worker_and_route_back_to_the_child() {
        let router = ReplyRouter::new("w1".into());
        let (tx, mut rx) = mpsc::channel(4);
        let id = router.register("s1", "7", tx);
        assert_eq!(ReplyRouter::worker_of(&id), Some("w1"));
        assert_eq!(router.deliver("other-session", &id, Some("{}"), None), Delivery::Unknown);
        assert_eq!(router.deliver("s1", &id, Some(r#"{"ok":1}"#), None), Delivery::Delivered);
        assert_eq!(rx.try_recv().ok().as_deref(), Some(r#"{"jsonrpc":"2.0","id":7,"result":{"ok":1}}"#));
        router.forget(std::slice::from_ref(&id));
        assert_eq!(router.deliver("s1", &id, Some("{}"), None), Delivery::Unknown);
        assert_eq!(ReplyRouter::worker_of("42"), None);
    }
}
