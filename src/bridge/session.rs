//! The gateway session, the same for both transports: opened lazily, once for all
//! concurrent callers (the lock is held across the open), and renewed on a 404. A 404
//! for the session means it is unknown or expired and the call never ran, so the call
//! is retried exactly once on the new session, silently; a second 404 is reported.
//!
//! What a session is (a legacy session id; an MCP session id and protocol version) and
//! how one is opened (`POST /init`; `initialize`) belong to the transport.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard};

use super::error::GatewayError;

/// What one exchange on a session produced, before the retry policy is applied.
pub(crate) enum Failure {
    /// 404 for the session: it is gone and the call never ran.
    SessionGone(String),
    /// Anything else.
    Other(GatewayError),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Self::Other(e)
    }
}

/// An open session and its generation, so that concurrent callers who all saw the same
/// 404 renew it only once.
#[derive(Debug, Clone)]
pub(crate) struct Open<S> {
    /// The transport's session.
    pub(crate) session: S,
    /// Which open this was (counts up from 1).
    generation: u64,
}

/// What the session lock guards.
#[derive(Debug)]
pub(crate) struct Slot<S> {
    /// The open session, if any.
    current: Option<Open<S>>,
    /// Generation of the latest open.
    generation: u64,
    /// The outcome of the latest failed open, numbered, so that callers who queued
    /// behind it fail at once instead of each waiting out a timeout.
    last_failure: Option<(u64, GatewayError)>,
}

impl<S> Default for Slot<S> {
    fn default() -> Self {
        Self { current: None, generation: 0, last_failure: None }
    }
}

impl<S: Clone> Slot<S> {
    /// The open session, if any.
    pub(crate) fn current(&self) -> Option<S> {
        self.current.as_ref().map(|open| open.session.clone())
    }

    /// Forgets the open session (ending it is the caller's business).
    pub(crate) fn take(&mut self) -> Option<S> {
        self.current.take().map(|open| open.session)
    }

    /// Records a newly opened session.
    pub(crate) fn establish(&mut self, session: S) -> Open<S> {
        self.generation += 1;
        self.last_failure = None;
        let open = Open { session, generation: self.generation };
        self.current = Some(open.clone());
        open
    }
}

/// The session of one bridge, behind its lock.
pub(crate) struct GatewaySession<S> {
    /// Held across every open, so requests queue behind it.
    slot: Arc<Mutex<Slot<S>>>,
    /// Number of opens finished so far (read before queueing for the lock).
    attempts: AtomicU64,
}

impl<S: Clone> GatewaySession<S> {
    pub(crate) fn new() -> Self {
        Self { slot: Arc::new(Mutex::new(Slot::default())), attempts: AtomicU64::new(0) }
    }

    /// The lock, for a caller that inspects or ends the session.
    pub(crate) async fn lock(&self) -> MutexGuard<'_, Slot<S>> {
        self.slot.lock().await
    }

    /// The lock, owned, for an open that must be queued for before it runs (the MCP
    /// host's own `initialize`, taken in reading order).
    pub(crate) async fn lock_owned(&self) -> OwnedMutexGuard<Slot<S>> {
        Arc::clone(&self.slot).lock_owned().await
    }

    /// Runs `send` on the session, opening one with `open` if there is none. If the
    /// session is gone, opens a new one (once for all concurrent callers) and runs
    /// `send` again, once.
    pub(crate) async fn with_renewal<T, O, OpenFut, C, SendFut>(
        &self,
        open: O,
        send: C,
    ) -> Result<T, GatewayError>
    where
        O: Fn() -> OpenFut,
        OpenFut: Future<Output = Result<S, GatewayError>>,
        C: Fn(S) -> SendFut,
        SendFut: Future<Output = Result<T, Failure>>,
    {
        let session = self.get(None, &open).await?;
        let message = match send(session.session).await {
            Err(Failure::SessionGone(message)) => message,
            Err(Failure::Other(e)) => return Err(e),
            Ok(value) => return Ok(value),
        };
        tracing::info!(message, "gateway session expired; opening a new one and retrying once");
        let renewed = self.get(Some(session.generation), &open).await?;
        match send(renewed.session).await {
            Err(Failure::SessionGone(message)) => Err(GatewayError::SessionLost { message }),
            Err(Failure::Other(e)) => Err(e),
            Ok(value) => Ok(value),
        }
    }

    /// The current session; opens one if there is none, or replaces the one of
    /// generation `stale` unless another caller already did. Callers that queued behind
    /// a failed open get its failure.
    async fn get<O, OpenFut>(&self, stale: Option<u64>, open: &O) -> Result<Open<S>, GatewayError>
    where
        O: Fn() -> OpenFut,
        OpenFut: Future<Output = Result<S, GatewayError>>,
    {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut slot = self.slot.lock().await;
        if let Some(current) = &slot.current
            && stale != Some(current.generation)
        {
            return Ok(current.clone());
        }
        if let Some((attempt, failure)) = &slot.last_failure
            && *attempt > seen
        {
            return Err(failure.clone());
        }
        slot.current = None;
        let outcome = open().await;
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match outcome {
            Ok(session) => Ok(slot.establish(session)),
            Err(e) => {
                slot.last_failure = Some((attempt, e.clone()));
                Err(e)
            }
        }
    }
}
