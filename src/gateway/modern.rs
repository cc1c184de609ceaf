//! The modern era (2026-07-28) in the application layer: what replaces the session, the
//! discovery answer, and server-to-client requests turned into `InputRequiredResult`s.
//!
//! * **The principal record.** A modern request carries no session id. Its bearer token
//!   keys a record in the store whose id is a keyed MAC of the token under the secret key
//!   ([`Gateway::principal_record_id`]): the same on every worker, unguessable without
//!   the key, and shaped like any session id. The record *is* a session record, created on
//!   first use with the credentials the request presents (`{"token": …}`, as a legacy
//!   `initialize` on `/mcp` takes them), so everything a session has applies unchanged:
//!   sealed credentials for the child's environment, the result cache, `state`, the idle
//!   TTL reset on every access, the per-principal quota and rate, warm children, and the
//!   previous release reads it. The token, not the principal, derives the id because the
//!   binding check compares tokens (as for sessions) and because naming the principal
//!   would need the credentials check, perhaps a call out, before the record is read;
//!   in auth mode `oauth`, where tokens are short-lived and validated locally, the
//!   verified principal (`iss`, `sub`) derives it, so a refreshed token keeps the record.
//! * **Input required.** A call runs in a task of its own ([`RunningCall`]). When its
//!   child asks the client something (sampling, elicitation, roots), the adapter answers
//!   the HTTP request with an `InputRequiredResult` and the call is *parked* on this
//!   worker ([`ModernCalls`]), bounded in number and in time (`input_wait_secs`; past it
//!   the call is dropped, which ends the child). The `requestState` the client gets is
//!   signed with a key derived from the secret key and names this worker, the parked
//!   call, the round, the principal record, the method and name, and an expiry
//!   ([`RequestState`]). The client's retry may reach any worker: there the state is
//!   checked, and the answers go to the worker holding the call through the store's
//!   pub/sub (`resume`), which drives the call to its next step and publishes that back
//!   to the worker serving the retry (`resumed`).
//!
//! **Invariant:** nothing here imports axum or reads a header; every map is bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{Bound, Door, Gateway, GatewayError, Operation, Presented};
use crate::protocol::jsonrpc::code;
use crate::protocol::{SUPPORTED_VERSIONS, modern};
use crate::session::{SessionId, now_ms};
use crate::upstream::{Relay, ServerMessage, UpstreamError};

/// Server messages buffered between a child and the client (as on the legacy door).
const RELAY_BUFFER: usize = 64;

/// How long, after a child's first request, its other requests are gathered into the same
/// `InputRequiredResult` (a server that asks for several inputs at once sends them together).
const INPUT_GATHER: Duration = Duration::from_millis(50);

/// Most calls parked (waiting for the client's retry) on one worker, whatever
/// `max_children` is; past the bound (see `parked_bound`) the call parked longest is ended.
pub const MAX_PARKED: usize = 1024;

/// Most retries of this worker waiting for another worker's answer at once.
const MAX_WAITERS: usize = 1024;

/// Most notifications kept for the client while no request of it is open (between rounds).
const MAX_HELD_NOTIFICATIONS: usize = 64;

/// Most input requests one round shows the client.
const MAX_INPUT_REQUESTS: usize = 16;

/// Extra time a retry waits for the worker holding its call, beyond the call's timeout.
const RESUME_SLACK: Duration = Duration::from_secs(5);

/// Domain separation of the two MACs made with the principal MAC key.
const RECORD_DOMAIN: &[u8] = b"switchboard modern principal record v1\0";
const STATE_DOMAIN: &[u8] = b"switchboard modern requestState v1\0";

/// Prefix of the `requestState` this build signs.
const STATE_PREFIX: &str = "sb1.";

/// The channel message kinds of the modern era (a field `modern` in a worker-channel
/// message; an older release ignores such messages, and the retry times out clearly).
const RESUME: &str = "resume";
const RESUMED: &str = "resumed";

/// One call on its way: the task running it, what its child sends before the response,
/// and its end. Dropping it aborts the call, which ends the child (it is told
/// `notifications/cancelled` first): closing the stream is cancellation.
pub struct RunningCall {
    /// The record (session) id the call runs for.
    session: String,
    events: mpsc::Receiver<ServerMessage>,
    done: Option<oneshot::Receiver<Result<String, GatewayError>>>,
    /// Notifications read while gathering input requests, given out first.
    held: VecDeque<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningCall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request of the child for the client, as the modern client sees it.
#[derive(Debug, Clone)]
pub struct InputRequest {
    /// The key in `inputRequests` / `inputResponses`: the child's own id when it is a
    /// plain string, else the gateway id.
    pub key: String,
    /// The gateway id the answer is delivered to (`sb-<worker>-<n>`).
    gateway_id: String,
    pub method: String,
    pub params: Value,
}

/// What a running call does next.
pub enum Step {
    /// A notification for the client, raw.
    Notification(String),
    /// The child waits for the client's answers to these.
    Input(Vec<InputRequest>),
    /// The call ended: the raw result or why there is none.
    Done(Result<String, GatewayError>),
}

impl RunningCall {
    /// The next thing the call produces.
    pub async fn next(&mut self) -> Step {
        if let Some(line) = self.held.pop_front() {
            return Step::Notification(line);
        }
        let Some(done) = self.done.as_mut() else {
            return Step::Done(Err(GatewayError::Upstream(UpstreamError::Exited)));
        };
        let first = tokio::select! {
            biased;
            Some(message) = self.events.recv() => message,
            finished = done => {
                self.done = None;
                return Step::Done(finished.unwrap_or(Err(GatewayError::Upstream(UpstreamError::Exited))));
            }
        };
        let line = match first {
            ServerMessage::Notification(line) => return Step::Notification(line),
            ServerMessage::Request(line) => line,
        };
        let mut requests = Vec::new();
        self.push_request(&mut requests, &line);
        let until = tokio::time::Instant::now() + INPUT_GATHER;
        while requests.len() < MAX_INPUT_REQUESTS {
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(ServerMessage::Request(line))) => self.push_request(&mut requests, &line),
                Ok(Some(ServerMessage::Notification(line))) if self.held.len() < MAX_HELD_NOTIFICATIONS => {
                    self.held.push_back(line);
                }
                Ok(Some(ServerMessage::Notification(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Step::Input(requests)
    }

    fn push_request(&self, requests: &mut Vec<InputRequest>, line: &str) {
        let Ok(message) = serde_json::from_str::<Value>(line) else { return };
        let Some(gateway_id) = message.get("id").and_then(Value::as_str).map(String::from) else { return };
        let method = message.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
        let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
        requests.push(InputRequest { key: gateway_id.clone(), gateway_id, method, params });
    }
}

/// The child's own id as an input key, when it is a short plain string.
fn original_key(raw: Option<&str>) -> Option<String> {
    let text: String = serde_json::from_str(raw?).ok()?;
    let plain = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    plain.then_some(text)
}

/// A call waiting for the client's retry.
struct Parked {
    /// When it was parked: under pressure the oldest gives way.
    since: std::time::Instant,
    call: RunningCall,
    /// What the client was asked, in order.
    pending: Vec<InputRequest>,
    /// Bumped at each park: a state of an earlier round is spent.
    round: u64,
    /// The tag of the principal record the call runs for.
    record: String,
}

/// The modern era's per-worker tables: parked calls and retries waiting for another worker.
#[derive(Default)]
pub struct ModernCalls {
    parked: Mutex<HashMap<String, Parked>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    next: AtomicU64,
    /// `subscriptions/listen` streams open on this worker.
    listening: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ModernCalls {
    /// How many calls are parked here.
    pub fn parked(&self) -> usize {
        lock(&self.parked).len()
    }

    /// Counts a new listen stream in, unless `max` are open.
    pub fn try_listen(&self, max: usize) -> bool {
        if self.listening.fetch_add(1, Ordering::SeqCst) >= max {
            self.listening.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Counts a listen stream out.
    pub fn end_listen(&self) {
        self.listening.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a signed `requestState` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestState {
    /// The worker holding the call.
    pub w: String,
    /// The parked call.
    pub c: String,
    /// The round this state continues.
    pub q: u64,
    /// The principal record's tag.
    pub r: String,
    /// The method and name of the request it continues.
    pub m: String,
    pub n: Option<String>,
    /// Expiry, Unix milliseconds.
    pub e: u64,
}

/// The next step of a resumed call, as sent between workers (JSON).
/// `{"kind":"input","round":n,"requests":[…]}`, `{"kind":"done","result":…}`,
/// `{"kind":"error","error":{…}}`, each with the `notes` (notifications) met on the way.
pub type Outcome = Value;

impl Gateway {
    /// The id of the principal record of `token` (see the module doc).
    pub fn principal_record_id(&self, token: Option<&str>) -> Result<SessionId, GatewayError> {
        self.record_id_of(token.unwrap_or("").as_bytes())
    }

    /// The id of the principal record keyed by `material` (a token, or in auth mode
    /// `oauth` the verified principal with a prefix no token has).
    fn record_id_of(&self, material: &[u8]) -> Result<SessionId, GatewayError> {
        let mut data = RECORD_DOMAIN.to_vec();
        data.extend_from_slice(material);
        let tag = self.sealer.mac_key().tag(&data);
        // 32 bytes in base64url: exactly a session id's shape.
        SessionId::parse(&URL_SAFE_NO_PAD.encode(tag.as_bytes())).ok_or(GatewayError::SessionNotFound)
    }

    /// The principal record of a modern request, bound as a session is (binding check,
    /// rate, idle TTL reset), created on first use; for a tool call the call's cache entry
    /// is read with it. `client` is kept at creation (its `clientInfo`).
    pub async fn bind_principal(
        &self,
        token: Option<&str>,
        client: Value,
        operation: Option<&Operation>,
    ) -> Result<Bound, GatewayError> {
        // In auth mode `oauth` access tokens are short-lived and refreshed: the record is the
        // principal's (`iss`, `sub`), so a refreshed token keeps its cache and state (the
        // binding check then compares principals, not tokens).
        let id = match token {
            Some(bearer) if self.auth.is_oauth() => {
                let verified = self.auth.verify_bearer(bearer).await?;
                self.record_id_of(format!("\0oauth\0{}", verified.principal).as_bytes())?
            }
            _ => self.principal_record_id(token)?,
        };
        let presented = Presented { token, door: Door::Mcp };
        match self.bind_for(id.as_str(), presented, operation).await {
            Err(GatewayError::SessionNotFound) => {}
            bound => return bound,
        }
        let credentials = credentials_of(token);
        let created =
            self.create_session_as(id.clone(), &credentials, client, Some(modern::VERSION.to_string())).await;
        match self.bind_for(id.as_str(), presented, operation).await {
            // Two first requests at once (on any workers): one creates the record, the other's
            // creation meets it and fails, and that request is served from the record too.
            Err(GatewayError::SessionNotFound) => Err(created.err().unwrap_or(GatewayError::SessionNotFound)),
            bound => bound,
        }
    }

    /// The `server/discover` result: the fleet's merged capabilities as the legacy
    /// `initialize` answer builds them, the versions of both eras, the cache hints.
    pub async fn discover_result(&self, token: Option<&str>) -> Result<Value, GatewayError> {
        let credentials = credentials_of(token);
        self.auth.verify(&credentials).await?;
        let init = self.initialize_result(&credentials, modern::VERSION).await?;
        let mut capabilities = init.get("capabilities").cloned().unwrap_or_else(|| json!({}));
        // Resource subscriptions are a legacy method; list changes are not delivered (each
        // child lives for one request), so neither is advertised.
        if let Some(resources) = capabilities.get_mut("resources").and_then(Value::as_object_mut) {
            resources.insert("subscribe".into(), Value::Bool(false));
        }
        let mut versions: Vec<&str> = modern::VERSIONS.to_vec();
        versions.extend_from_slice(SUPPORTED_VERSIONS);
        let mut result = json!({
            "resultType": modern::RESULT_COMPLETE,
            "supportedVersions": versions,
            "capabilities": capabilities,
            "ttlMs": self.hint_ttl_ms(),
            "cacheScope": "private",
            "_meta": {modern::META_SERVER_INFO: init.get("serverInfo").cloned().unwrap_or(Value::Null)},
        });
        if let Some(instructions) = init.get("instructions") {
            result["instructions"] = instructions.clone();
        }
        Ok(result)
    }

    /// A tool's `inputSchema`, when this worker or the store knows the server's list
    /// (never spawns).
    pub async fn tool_schema(
        &self,
        server: &str,
        tool: &str,
        capabilities: Option<&RawValue>,
    ) -> Option<Value> {
        let list = self.known_tools(server, capabilities).await?;
        list.iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(tool))
            .and_then(|t| t.get("inputSchema").cloned())
    }

    /// The `ttlMs` of cacheable results: how long the gateway itself trusts a tool list.
    pub fn hint_ttl_ms(&self) -> u64 {
        u64::try_from(self.config.tools_cache_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts a call for a bound principal record in its own task.
    pub fn start_call(self: &Arc<Self>, bound: Bound, operation: Operation) -> RunningCall {
        let (events_tx, events) = mpsc::channel::<ServerMessage>(RELAY_BUFFER);
        let (done_tx, done) = oneshot::channel();
        let session = bound.id.as_str().to_string();
        let gateway = self.clone();
        let task = tokio::spawn(async move {
            let relay = Relay {
                session: bound.id.as_str().to_string(),
                events: events_tx,
                router: gateway.relay.clone(),
            };
            let outcome = gateway.perform(&bound, operation, Some(&relay)).await;
            let _ = done_tx.send(outcome);
        });
        RunningCall { session, events, done: Some(done), held: VecDeque::new(), task }
    }

    /// The input requests of a step, keyed by the child's own ids where they are plain.
    pub fn keyed(&self, mut requests: Vec<InputRequest>) -> Vec<InputRequest> {
        let mut seen: Vec<String> = Vec::new();
        for request in &mut requests {
            if let Some(key) = original_key(self.relay.original_id(&request.gateway_id).as_deref())
                && !seen.contains(&key)
            {
                request.key = key;
            }
            seen.push(request.key.clone());
        }
        requests
    }

    /// Answers one of a running call's input requests at once (the client sent the answer
    /// with the request itself); `false` when the answer could not be delivered.
    pub fn answer_now(&self, record: &SessionId, request: &InputRequest, answer: &Value) -> bool {
        let delivery =
            self.relay.deliver(record.as_str(), &request.gateway_id, Some(&answer.to_string()), None);
        delivery == crate::upstream::Delivery::Delivered
    }

    /// Parks a call that asked for input; the state the client sends back to continue it.
    /// Refused (the call is dropped, so its child ends) when the worker holds too many.
    pub fn park(
        self: &Arc<Self>,
        call: RunningCall,
        pending: Vec<InputRequest>,
        record: &SessionId,
        method: &str,
        name: Option<&str>,
        continuing: Option<(&str, u64)>,
    ) -> String {
        let (call_id, round) = match continuing {
            Some((id, round)) => (id.to_string(), round + 1),
            None => (
                format!("{}-{}", self.relay.worker_id(), self.modern.next.fetch_add(1, Ordering::Relaxed)),
                1,
            ),
        };
        let tag = record_tag(record);
        let entry = Parked { since: std::time::Instant::now(), call, pending, round, record: tag.clone() };
        self.keep_parked(&call_id, entry);
        let wait = self.config.input_wait;
        let state = RequestState {
            w: self.relay.worker_id().to_string(),
            c: call_id,
            q: round,
            r: tag,
            m: method.to_string(),
            n: name.map(String::from),
            e: now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        };
        self.sign_state(&state)
    }

    /// How many calls may wait for input on this worker at once: each holds a child, so
    /// at least one slot of `max_children` stays for everything else (and at most
    /// [`MAX_PARKED`]).
    fn parked_bound(&self) -> usize {
        self.config.max_children.saturating_sub(1).clamp(1, MAX_PARKED)
    }

    /// Keeps a parked call (ending it after `input_wait`); past the bound, the call parked
    /// longest gives way: it is dropped, which ends its child, and its retry is told so.
    fn keep_parked(self: &Arc<Self>, call_id: &str, entry: Parked) {
        let round = entry.round;
        let evicted = {
            let mut parked = lock(&self.modern.parked);
            let mut evicted = Vec::new();
            while parked.len() >= self.parked_bound() && !parked.contains_key(call_id) {
                let oldest = parked.iter().min_by_key(|(_, p)| p.since).map(|(id, _)| id.clone());
                let Some(oldest) = oldest else { break };
                evicted.extend(parked.remove(&oldest));
            }
            parked.insert(call_id.to_string(), entry);
            evicted
        };
        if !evicted.is_empty() {
            tracing::info!(
                count = evicted.len(),
                "calls waiting for input gave way to a newer one; children ended"
            );
        }
        drop(evicted);
        self.expire_later(call_id, round);
    }

    /// Ends a parked call once it has waited `input_wait`, unless it moved on meanwhile.
    fn expire_later(self: &Arc<Self>, call_id: &str, round: u64) {
        let gateway = Arc::downgrade(self);
        let call_id = call_id.to_string();
        let wait = self.config.input_wait;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(gateway) = gateway.upgrade() else { return };
            let expired = {
                let mut parked = lock(&gateway.modern.parked);
                match parked.get(&call_id) {
                    Some(p) if p.round == round => parked.remove(&call_id),
                    _ => None,
                }
            };
            if expired.is_some() {
                tracing::info!(call = %call_id, "a call waited too long for the client's input; its child is ended");
            }
            drop(expired);
        });
    }

    /// A `requestState`: the claims in base64url JSON, then their MAC.
    pub fn sign_state(&self, state: &RequestState) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(state).unwrap_or_default());
        let tag = self.state_tag(&payload);
        format!("{STATE_PREFIX}{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_bytes()))
    }

    fn state_tag(&self, payload: &str) -> blake3::Hash {
        let mut data = STATE_DOMAIN.to_vec();
        data.extend_from_slice(payload.as_bytes());
        self.sealer.mac_key().tag(&data)
    }

    /// Checks a `requestState` the client sent back for `record`'s principal, `method` and
    /// `name`. Every refusal says why, as invalid params.
    pub fn verify_state(
        &self,
        text: &str,
        record: &SessionId,
        method: &str,
        name: Option<&str>,
    ) -> Result<RequestState, GatewayError> {
        let refuse = |why: &str| GatewayError::BadRequest(format!("invalid requestState: {why}"));
        let (payload, mac) = text
            .strip_prefix(STATE_PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(|| refuse("not a state this gateway issued"))?;
        let mac: [u8; 32] = URL_SAFE_NO_PAD
            .decode(mac)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| refuse("its signature is malformed"))?;
        // blake3::Hash compares in constant time.
        if self.state_tag(payload) != blake3::Hash::from_bytes(mac) {
            return Err(refuse("its signature does not match (altered, or not issued here)"));
        }
        let claims: RequestState = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| refuse("its contents are unreadable"))?;
        if claims.r != record_tag(record) {
            return Err(refuse("it was issued to other credentials"));
        }
        if claims.m != method || claims.n.as_deref() != name {
            return Err(refuse("it continues another request (method or name differ)"));
        }
        if claims.e <= now_ms() {
            return Err(refuse("it expired; the call waited too long for input and was ended; call again"));
        }
        Ok(claims)
    }

    /// Continues a parked call of this worker with the client's answers: the next step.
    pub async fn resume_here(self: &Arc<Self>, state: &RequestState, responses: &Value) -> Outcome {
        let parked = {
            let mut parked = lock(&self.modern.parked);
            match parked.get(&state.c) {
                Some(p) if p.round == state.q && p.record == state.r => parked.remove(&state.c),
                _ => None,
            }
        };
        let Some(Parked { mut call, pending, round, .. }) = parked else {
            return error_outcome(
                code::INVALID_PARAMS,
                "invalid requestState: the call it continues has ended (it waited too long for input, \
                 gave way to newer ones, was already continued, or its worker restarted); call again",
                &[],
            );
        };
        let mut unanswered = Vec::new();
        for request in pending {
            // An answer must be an object (a result); anything else is asked again.
            match responses.get(&request.key).filter(|a| a.is_object()) {
                Some(answer) => {
                    let delivery = self.relay.deliver(
                        &call.session,
                        &request.gateway_id,
                        Some(&answer.to_string()),
                        None,
                    );
                    tracing::debug!(?delivery, key = %request.key, "input response");
                }
                None => unanswered.push(request),
            }
        }
        if !unanswered.is_empty() {
            // Ask again for what is missing (the answers given went through).
            return self.park_outcome(call, unanswered, state, round, Vec::new());
        }
        let mut notes = Vec::new();
        loop {
            match call.next().await {
                Step::Notification(line) => {
                    if notes.len() < MAX_HELD_NOTIFICATIONS {
                        notes.push(line);
                    }
                }
                Step::Input(requests) => {
                    let requests = self.keyed(requests);
                    return self.park_outcome(call, requests, state, round, notes);
                }
                Step::Done(Ok(raw)) => {
                    let result = serde_json::from_str::<Value>(&raw).unwrap_or(Value::Null);
                    return json!({"kind": "done", "result": result, "notes": notes});
                }
                Step::Done(Err(e)) => {
                    let error = error_object(&e);
                    return json!({"kind": "error", "error": error, "notes": notes});
                }
            }
        }
    }

    fn park_outcome(
        self: &Arc<Self>,
        call: RunningCall,
        requests: Vec<InputRequest>,
        state: &RequestState,
        round: u64,
        notes: Vec<String>,
    ) -> Outcome {
        let shown = input_requests(&requests);
        let record_tag = state.r.clone();
        let (call_id, next_round) = (state.c.clone(), round + 1);
        let entry = Parked {
            since: std::time::Instant::now(),
            call,
            pending: requests,
            round: next_round,
            record: record_tag,
        };
        self.keep_parked(&call_id, entry);
        let wait = self.config.input_wait;
        let next = RequestState {
            q: next_round,
            e: now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            ..state.clone()
        };
        json!({"kind": "input", "inputRequests": shown, "requestState": self.sign_state(&next), "notes": notes})
    }

    /// Continues a call wherever it is parked: here, or on its worker through the store's
    /// pub/sub (waiting, bounded, for that worker's answer).
    pub async fn resume(self: &Arc<Self>, state: &RequestState, responses: Value) -> Outcome {
        if state.w == self.relay.worker_id() {
            return self.resume_here(state, &responses).await;
        }
        let reply = format!("{}", self.modern.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = lock(&self.modern.waiters);
            if waiters.len() >= MAX_WAITERS {
                return error_outcome(
                    code::INTERNAL_ERROR,
                    "too many retries wait for other workers; retry",
                    &[],
                );
            }
            waiters.insert(reply.clone(), tx);
        }
        let message = json!({
            "modern": RESUME,
            "state": state,
            "responses": responses,
            "reply_worker": self.relay.worker_id(),
            "reply": reply,
        });
        let channel = self.keys.channel(&format!("worker:{}", state.w));
        if let Err(e) = self.store.publish(&channel, &message.to_string()).await {
            lock(&self.modern.waiters).remove(&reply);
            return error_outcome(
                code::INTERNAL_ERROR,
                &format!("could not reach the call's worker: {e}"),
                &[],
            );
        }
        let bound = self.longest_call() + RESUME_SLACK;
        let outcome = tokio::time::timeout(bound, rx).await;
        lock(&self.modern.waiters).remove(&reply);
        match outcome {
            Ok(Ok(outcome)) => outcome,
            _ => error_outcome(
                code::INTERNAL_ERROR,
                "the worker holding this call did not answer (it stopped, or runs an older release); call again",
                &[],
            ),
        }
    }

    /// The longest call timeout of the fronted servers.
    fn longest_call(&self) -> Duration {
        self.config.servers.values().map(|s| s.call_timeout).max().unwrap_or(Duration::from_secs(60))
    }

    /// Handles a modern-era message on this worker's channel; `false` when it is not one.
    pub fn on_modern_published(self: &Arc<Self>, payload: &str) -> bool {
        if !payload.contains("\"modern\"") {
            return false;
        }
        let Ok(message) = serde_json::from_str::<Value>(payload) else { return false };
        match message.get("modern").and_then(Value::as_str) {
            Some(RESUME) => {
                let Some(state) =
                    message.get("state").and_then(|s| serde_json::from_value::<RequestState>(s.clone()).ok())
                else {
                    return true;
                };
                let responses = message.get("responses").cloned().unwrap_or(Value::Null);
                let reply_worker =
                    message.get("reply_worker").and_then(Value::as_str).unwrap_or_default().to_string();
                let reply = message.get("reply").cloned().unwrap_or(Value::Null);
                let gateway = self.clone();
                tokio::spawn(async move {
                    let outcome = gateway.resume_here(&state, &responses).await;
                    let answer = json!({"modern": RESUMED, "reply": reply, "outcome": outcome});
                    let channel = gateway.keys.channel(&format!("worker:{reply_worker}"));
                    if let Err(e) = gateway.store.publish(&channel, &answer.to_string()).await {
                        tracing::warn!(error = %e, "could not return a resumed call's step");
                    }
                });
                true
            }
            Some(RESUMED) => {
                let reply = message.get("reply").and_then(Value::as_str).unwrap_or_default();
                if let Some(waiter) = lock(&self.modern.waiters).remove(reply) {
                    let _ = waiter.send(message.get("outcome").cloned().unwrap_or(Value::Null));
                }
                true
            }
            _ => false,
        }
    }
}

/// The `inputRequests` object of a round.
pub fn input_requests(requests: &[InputRequest]) -> Value {
    let mut shown = serde_json::Map::new();
    for request in requests {
        shown.insert(request.key.clone(), json!({"method": request.method, "params": request.params}));
    }
    Value::Object(shown)
}

/// An error step.
fn error_outcome(code: i64, message: &str, notes: &[String]) -> Outcome {
    json!({"kind": "error", "error": {"code": code, "message": message}, "notes": notes})
}

/// A gateway failure as a JSON-RPC error object: the MCP server's own untouched, the
/// caller's mistakes `-32602`, anything else `-32000`.
pub fn error_object(e: &GatewayError) -> Value {
    match e {
        GatewayError::Upstream(UpstreamError::Rpc(raw)) => {
            serde_json::from_str(raw.get()).unwrap_or(Value::Null)
        }
        GatewayError::BadRequest(_) | GatewayError::UnknownTool(_) | GatewayError::ToolDenied(_) => {
            json!({"code": code::INVALID_PARAMS, "message": e.to_string()})
        }
        e => json!({"code": code::GATEWAY_ERROR, "message": e.to_string()}),
    }
}

/// The credentials a modern request presents: its bearer token, as `initialize` takes them.
pub fn credentials_of(token: Option<&str>) -> Value {
    match token {
        Some(t) => json!({"token": t}),
        None => json!({}),
    }
}

/// A short tag of a record id for the state (the id itself stays out of client hands).
fn record_tag(record: &SessionId) -> String {
    blake3::hash(record.as_str().as_bytes()).to_hex()[..32].to_string()
}
