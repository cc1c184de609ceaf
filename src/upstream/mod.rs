//! Outbound MCP: one freshly spawned stdio server per request.
//!
//! [`McpManager::call`] admits the request under the worker's cap on live
//! children (a bounded wait queue in front of it, 503 beyond), spawns the
//! configured server with the session's credentials mapped into its
//! environment, runs `initialize` → `notifications/initialized` → the request,
//! and hands the child to the background ladder as soon as the response is
//! read. Nothing here knows about HTTP or Redis.
//!
//! Two ways a child can be ready before its request: `prespawn` pools for servers
//! whose environment is the same for everyone, and warm starts keyed by session
//! ([`warm`]) for servers whose environment carries the session's credentials. A
//! request can also have its child answer `tools/list` alongside ([`listing`]), so the
//! gateway learns a server's tools from the first call without another spawn.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::{Config, ServerConfig};
use crate::protocol::UPSTREAM_PROTOCOL_VERSION;
use crate::protocol::jsonrpc::{self, Envelope, Kind, json_string};
use crate::protocol::modern::{self, Era};
use crate::telemetry::Metrics;
use crate::telemetry::events::{
    CacheLookup, CacheOp, Emit, Limit, LimitHit, SpawnFailed, SpawnReady, Spawned, WarmEvicted, WarmHeld,
    WarmSpawned, WarmStart,
};

pub mod era;
pub mod listing;
pub mod process;
pub mod relay;
mod shares;
pub mod stdio;
mod warm;

pub use era::EraMemory;
use process::{ChildProcess, Reaper, SpawnSpec};
use relay::RelayBudget;
pub use relay::{Delivery, ReplyRouter, ServerMessage};
use stdio::{LineError, LineReader, write_line};

/// What went wrong talking to an MCP server. Each variant says what the client should understand.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the worker is at its limit of MCP server processes; retry shortly")]
    Saturated,
    #[error("no MCP server named `{0}` is configured")]
    UnknownServer(String),
    #[error("the MCP server `{program}` could not be started: {error}{}", spawn_hint(error))]
    Spawn { program: String, error: std::io::Error },
    #[error("the MCP server did not {phase} within {secs:.1} s")]
    Timeout { phase: &'static str, secs: f64 },
    #[error("the MCP server exited or closed its output before answering")]
    Exited,
    #[error("the MCP server's result exceeds the {max}-byte limit")]
    TooLarge { max: usize },
    #[error("the MCP server broke the protocol: {0}")]
    Protocol(String),
    /// The server answered with a JSON-RPC error (raw error object).
    #[error("the MCP server answered with an error")]
    Rpc(Box<RawValue>),
    /// The server answered `initialize` with a JSON-RPC error (whatever its id): the call
    /// ends at once rather than at the init timeout. The server's code and message, cut.
    #[error("the MCP server refused to initialize: {0}")]
    InitRefused(String),
}

/// Where the messages a server sends before its response go (the `/mcp` SSE stream).
pub struct Relay {
    /// The session the call belongs to (answers from other sessions are refused).
    pub session: String,
    /// Notifications and rewritten server requests, in order.
    pub events: mpsc::Sender<ServerMessage>,
    /// This worker's table of pending server requests.
    pub router: Arc<ReplyRouter>,
}

/// Per-server data built once from config: nothing of it is recomputed per request.
struct ServerRuntime {
    config: ServerConfig,
    label: Arc<str>,
    /// Fixed part of the child's environment (inherited variables and constant values).
    fixed_env: Vec<(String, String)>,
    /// Variables whose value comes from the session's credentials.
    templated_env: Vec<(String, Template)>,
    /// Hash of what determines the server's tool list, for cache keys.
    config_hash: String,
    /// Pre-spawned children, when `prespawn` is set.
    pool: Option<Pool>,
    /// How long a warm child of a session is kept (zero: no warm starts; capped by the idle TTL).
    warm_idle: Duration,
    /// The program run: resolved on the child's `PATH` once when started without a
    /// parent-death signal (std uses `posix_spawn` only for a program given as a path).
    program: String,
    /// Where the children's cut stderr lines and spent relay budgets are counted.
    metrics: Option<Arc<Metrics>>,
    /// The protocol era spoken to it: from the config, or learnt (`protocol = "auto"`).
    era: era::Known,
    /// The server's last `DiscoverResult` (as an `InitializeResult`), when modern.
    discovered: std::sync::OnceLock<Box<RawValue>>,
}

/// A value with `{credentials.PATH}` placeholders; `{claims.PATH}` is
/// `{credentials.claims.PATH}`, the access token's claims in auth mode `oauth`.
#[derive(Debug, Clone)]
struct Template(Vec<Piece>);

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Credential(Vec<String>),
}

impl Template {
    fn parse(text: &str) -> Self {
        let mut pieces = Vec::new();
        let mut rest = text;
        let next = |rest: &str| {
            let credential = rest.find("{credentials.").map(|at| (at, "credentials."));
            let claim = rest.find("{claims.").map(|at| (at, "claims."));
            credential.into_iter().chain(claim).min_by_key(|(at, _)| *at)
        };
        while let Some((start, prefix)) = next(rest) {
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else { break };
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let mut path: Vec<String> = after[prefix.len()..end].split('.').map(String::from).collect();
            if prefix == "claims." {
                path.insert(0, "claims".into());
            }
            pieces.push(Piece::Credential(path));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Self(pieces)
    }

    fn is_constant(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    /// The value for these credentials; `None` if a referenced field is missing.
    fn render(&self, credentials: &serde_json::Value) -> Option<String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Credential(path) => {
                    let value = path.iter().try_fold(credentials, |v, k| v.get(k))?;
                    match value {
                        serde_json::Value::String(s) => out.push_str(s),
                        serde_json::Value::Null => return None,
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        Some(out)
    }
}

/// Spawns and talks to MCP servers on behalf of requests; one per worker.
pub struct McpManager {
    servers: HashMap<String, ServerRuntime>,
    /// One permit per live child (the cap), held until the child is reaped.
    slots: Arc<Semaphore>,
    /// One permit per request waiting for a slot (the bounded queue).
    queue: Arc<Semaphore>,
    /// Children that have answered and are exiting (close stdin → grace → signals → reap):
    /// bounded separately, at four times the cap.
    exiting: Arc<Semaphore>,
    queue_wait: Duration,
    /// The queue's size: fewer free queue permits means requests wait for a slot (busy).
    max_queue: usize,
    reaper: Reaper,
    metrics: Arc<Metrics>,
    /// Warm children of sessions (servers whose environment depends on the session).
    sessions: warm::SessionPool,
    /// Warm-ups in progress, and their bound (CPU spent on them is taken from requests).
    warming: Arc<AtomicUsize>,
    max_warming: usize,
    /// Whether the task that drops idle warm children runs.
    sweeping: AtomicBool,
    /// Each principal's share of the cap (`max_children_per_principal`).
    shares: Arc<shares::Shares>,
    /// Where eras learnt in `auto` mode are shared with the fleet (the store).
    eras: std::sync::OnceLock<Arc<dyn EraMemory>>,
}

/// One request to a server, with what the gateway knows around it.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub server: &'a str,
    pub credentials: &'a serde_json::Value,
    pub client: Client<'a>,
    pub method: &'a str,
    /// Raw params of the request.
    pub params: Option<&'a RawValue>,
    /// Where what the server sends first goes (the `/mcp` SSE stream); `None`: refused/dropped.
    pub relay: Option<&'a Relay>,
    /// The session served: lets the worker use, and afterwards start, a warm child of it.
    pub session: Option<&'a str>,
    /// Also read the server's whole `tools/list` from the same child ([`Outcome::tools`]).
    pub list_tools: bool,
    /// Who the call is for: held to its share of the cap (`max_children_per_principal`).
    /// `None`: the cap only (the gateway's own calls).
    pub principal: Option<&'a str>,
}

/// What a served request leaves to do: start the session's next child.
struct WarmPlan {
    key: warm::WarmKey,
    spec: SpawnSpec,
    capabilities: Option<Box<RawValue>>,
    log_level: Option<String>,
    server: String,
}

/// What the gateway knows of the MCP client a request comes from (on `/mcp`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    /// The client's capabilities, raw, passed on in the child's `initialize`.
    pub capabilities: Option<&'a RawValue>,
    /// The log level the client asked for with `logging/setLevel`, set on every child.
    pub log_level: Option<&'a str>,
}

impl Client<'_> {
    /// Whether a child initialised for no client in particular (a warm one) fits.
    fn is_plain(&self) -> bool {
        self.capabilities.is_none_or(|c| c.get().trim() == "{}") && self.log_level.is_none()
    }
}

/// The result of one request to a server.
pub struct Outcome {
    /// The raw JSON-RPC `result`.
    pub result: Box<RawValue>,
    /// The server's `InitializeResult`, raw (capabilities, serverInfo, instructions).
    pub init: Box<RawValue>,
    /// The server's whole tool list, when the call asked for it ([`Call::list_tools`]) and
    /// it came complete within its bounds; the raw `tools` entries of every page.
    pub tools: Option<Vec<serde_json::Value>>,
}

impl McpManager {
    /// Builds the manager; `worker_env` is the worker's environment, for `inherit_env`.
    pub fn new(config: &Config, worker_env: &dyn Fn(&str) -> Option<String>, metrics: Arc<Metrics>) -> Self {
        let servers = config
            .servers
            .iter()
            .map(|(name, server)| {
                let mut runtime = ServerRuntime::new(name, server, worker_env);
                // A warm child never outlives what its session may: idle sessions expire.
                runtime.warm_idle = runtime.warm_idle.min(config.idle_ttl());
                runtime.metrics = Some(metrics.clone());
                (name.clone(), runtime)
            })
            .collect();
        Self {
            servers,
            slots: Arc::new(Semaphore::new(config.max_children)),
            queue: Arc::new(Semaphore::new(config.max_queue)),
            exiting: Arc::new(Semaphore::new(config.max_children.saturating_mul(4))),
            queue_wait: config.queue_wait,
            max_queue: config.max_queue,
            reaper: Reaper::new(),
            metrics,
            sessions: warm::SessionPool::new(
                config.warm_max_children,
                config.warm_max_rss_mb.saturating_mul(1024 * 1024),
            ),
            warming: Arc::new(AtomicUsize::new(0)),
            max_warming: (config.max_children / 2).max(1),
            sweeping: AtomicBool::new(false),
            shares: shares::Shares::new(config.principal_share()),
            eras: std::sync::OnceLock::new(),
        }
    }

    /// Shares the eras learnt in `auto` mode through `memory` (set once, at start-up).
    pub fn remember_eras_in(&self, memory: Arc<dyn EraMemory>) {
        let _ = self.eras.set(memory);
    }

    /// The era spoken to `server`, once known (configured, or learnt by a probe).
    pub fn era(&self, server: &str) -> Option<Era> {
        self.servers.get(server)?.era.get()
    }

    /// The era the fleet learnt for a server of unknown era, if it did.
    async fn recall_era(&self, runtime: &ServerRuntime) -> Option<Era> {
        let memory = self.eras.get()?;
        let stored = memory.recall(&era::memory_key(&runtime.label, &runtime.config_hash)).await?;
        let era = era::parse_stored(&stored)?;
        runtime.era.set(era);
        Some(era)
    }

    /// Keeps what a probe found here, and with `share` for the fleet.
    async fn learn_era(&self, runtime: &ServerRuntime, era: Era, share: bool) {
        runtime.era.set(era);
        tracing::info!(server = %runtime.label, ?era, share, "learnt the protocol era of a server");
        if share && let Some(memory) = self.eras.get() {
            let key = era::memory_key(&runtime.label, &runtime.config_hash);
            memory.remember(&key, &era::stored(era), era::LEARNT_TTL).await;
        }
    }

    /// Names of the configured servers, sorted.
    pub fn server_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.servers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The config hash of a server (changes whenever what it is spawned with changes).
    pub fn config_hash(&self, server: &str) -> Option<&str> {
        self.servers.get(server).map(|s| s.config_hash.as_str())
    }

    /// Children spawned and not yet reaped.
    pub fn live_children(&self) -> i64 {
        self.reaper.live()
    }

    /// Worker shutdown: kill every child now and wait (bounded) for all to be reaped.
    pub async fn shutdown(&self, bound: Duration) -> bool {
        self.drain();
        self.reaper.shutdown(bound).await
    }

    /// Drain began: warm children are taken down and no new one is started.
    pub fn drain(&self) {
        self.retire(self.sessions.close());
    }

    /// A session was deleted or expired: its warm children (ready or starting) go now.
    pub fn forget_session(&self, session: &str) {
        self.retire(self.sessions.forget(&warm::session_hash(session)));
    }

    /// What other workers are told when a session ends: the hash its warm children are kept
    /// under (hex), never the session id itself.
    pub fn session_tag(session: &str) -> String {
        blake3::Hash::from_bytes(warm::session_hash(session)).to_hex().to_string()
    }

    /// [`McpManager::forget_session`] by a tag from [`McpManager::session_tag`] (from another
    /// worker); anything else is ignored.
    pub fn forget_tag(&self, tag: &str) {
        if let Ok(hash) = blake3::Hash::from_hex(tag.trim()) {
            self.retire(self.sessions.forget(hash.as_bytes()));
        }
    }

    /// Warm children held (ready and starting) and the resident memory of the ready ones.
    pub fn warm_children(&self) -> (usize, u64) {
        let counts = self.sessions.counts();
        (counts.ready + counts.starting, counts.rss)
    }

    /// Takes down warm children dropped unused: their cap slot is freed at once (they wait
    /// for their exit under the separate `exiting` bound, when it has room).
    fn retire(&self, evicted: Vec<warm::Evicted>) {
        for warm::Evicted { warm, reason } in evicted {
            WarmEvicted { reason }.emit(&self.metrics);
            if let Some(mut warm) = warm {
                warm.child.move_to_exiting(&self.exiting);
                drop(warm);
            }
        }
        let (children, rss) = self.warm_children();
        WarmHeld { children, rss_bytes: rss }.emit(&self.metrics);
    }

    /// A slot for one more child: through the bounded queue, then the cap (503 beyond).
    /// A warm child gives its slot up to a request that finds none free.
    async fn admit(&self) -> Result<OwnedSemaphorePermit, UpstreamError> {
        let _queued = self.queue.clone().try_acquire_owned().map_err(|_| UpstreamError::Saturated)?;
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if let Some(evicted) = self.sessions.evict_lru("capacity") {
            self.retire(vec![evicted]);
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return Ok(permit);
            }
        }
        tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| UpstreamError::Saturated)?
            .map_err(|_| UpstreamError::Saturated)
    }

    /// The principal's share of the cap for one call: at once while it has fewer calls under
    /// way than its share, else a wait in the bounded queue (503 beyond it or past the wait),
    /// while other principals' calls go on.
    async fn share(&self, principal: Option<&str>) -> Result<Option<shares::Share>, UpstreamError> {
        let Some(principal) = principal.filter(|_| self.shares.limited()) else { return Ok(None) };
        if let Some(share) = self.shares.try_take(principal) {
            return Ok(Some(share));
        }
        let refused = || {
            LimitHit(Limit::PrincipalShare).emit(&self.metrics);
            UpstreamError::Saturated
        };
        let _queued = self.queue.clone().try_acquire_owned().map_err(|_| refused())?;
        let deadline = tokio::time::Instant::now() + self.queue_wait;
        self.shares.take(principal, deadline).await.map(Some).ok_or_else(refused)
    }

    /// Principals with calls under way on this worker, and how many each.
    pub fn principal_calls(&self) -> Vec<(String, usize)> {
        self.shares.snapshot()
    }

    /// Spawns and initialises a child (initialize → response → notifications/initialized);
    /// `ahead`: a session's warm child, started before its request; `ready_check`: a
    /// modern child is asked `server/discover` before it counts as ready (children started
    /// ahead of their request; a cold one gets its request at once). A server of unknown
    /// era is probed first ([`era`]).
    async fn start(
        &self,
        runtime: &ServerRuntime,
        spec: &SpawnSpec,
        client: Client<'_>,
        permit: OwnedSemaphorePermit,
        ahead: bool,
        ready_check: bool,
    ) -> Result<Warm, UpstreamError> {
        let known = match runtime.era.get() {
            Some(era) => Some(era),
            None => self.recall_era(runtime).await,
        };
        let started = Instant::now();
        let (child, stdout) = process::spawn(spec, runtime.config.shutdown_grace, permit, &self.reaper)
            .map_err(|e| {
                SpawnFailed { server: &runtime.label, error: &e }.emit(&self.metrics);
                UpstreamError::Spawn { program: spec.program.clone(), error: e }
            })?;
        Spawned { server: &runtime.label }.emit(&self.metrics);
        if ahead {
            WarmSpawned { server: &runtime.label }.emit(&self.metrics);
        }
        let mut session = UpstreamSession {
            child,
            reader: LineReader::new(stdout, runtime.config.max_message_bytes),
            relay: None,
            inbound: mpsc::channel(16),
            relayed: Vec::new(),
            budget: RelayBudget::new(runtime.config.max_message_bytes),
            metrics: runtime.metrics.clone(),
            meta: None,
        };
        let init_params = initialize_params(client.capabilities);
        let limit = runtime.config.init_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let init = async {
            let meta = era::meta_object(client);
            let mut discovered = None;
            let era = match known {
                Some(era) => era,
                None => {
                    // The probe: a DiscoverResult naming a version spoken here is modern;
                    // any error or no answer in time is legacy (never one code only).
                    let params = era::with_meta(None, &meta);
                    let probe_limit = limit;
                    let answer = tokio::time::timeout(
                        probe_limit,
                        session.request(PROBE_ID, modern::DISCOVER, Some(&params)),
                    )
                    .await;
                    // No answer in time is legacy (the specification's rule), kept by this
                    // worker only (it may have been a slow start); this child may still
                    // answer the probe late, so it is not given `initialize`: the request
                    // fails, the next one starts a legacy child.
                    let (learnt, share) = match answer {
                        Ok(Ok(result)) if era::speaks_modern(&result) => {
                            discovered = Some(era::discover_as_init(&result));
                            (Era::Modern, true)
                        }
                        Ok(Ok(_) | Err(UpstreamError::Rpc(_))) => (Era::Legacy, true),
                        Err(_) => (Era::Legacy, false),
                        Ok(Err(e)) => return Err(e),
                    };
                    self.learn_era(runtime, learnt, share).await;
                    if !share {
                        return Err(timeout("answer server/discover", probe_limit));
                    }
                    learnt
                }
            };
            if era == Era::Modern {
                if discovered.is_none() && ready_check {
                    let params = era::with_meta(None, &meta);
                    match tokio::time::timeout(
                        limit,
                        session.request(PROBE_ID, modern::DISCOVER, Some(&params)),
                    )
                    .await
                    {
                        Ok(Ok(result)) => discovered = Some(era::discover_as_init(&result)),
                        Ok(Err(UpstreamError::Rpc(error))) => return Err(init_refused(&error)),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Err(timeout("answer server/discover", limit)),
                    }
                }
                let init = match discovered {
                    Some(init) => {
                        let _ = runtime.discovered.set(init.clone());
                        init
                    }
                    None => runtime.discovered.get().cloned().unwrap_or_else(era::unknown_init),
                };
                return Ok((init, Era::Modern));
            }
            let init = match tokio::time::timeout_at(
                deadline,
                session.request("0", "initialize", Some(&init_params)),
            )
            .await
            {
                Ok(Err(UpstreamError::Rpc(error))) => return Err(init_refused(&error)),
                Ok(result) => result?,
                Err(_) => return Err(timeout("initialize", limit)),
            };
            session.notify("notifications/initialized").await?;
            if let Some(level) = client.log_level
                && offers_logging(&init)
            {
                // The level the client chose holds for every child of its session.
                let params = format!(r#"{{"level":{}}}"#, json_string(level));
                if let Ok(params) = RawValue::from_string(params) {
                    match tokio::time::timeout(limit, session.request("2", "logging/setLevel", Some(&params)))
                        .await
                    {
                        Ok(Ok(_) | Err(UpstreamError::Rpc(_))) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Err(timeout("set the log level", limit)),
                    }
                }
            }
            Ok((init, Era::Legacy))
        };
        let (init, era) = tokio::select! {
            init = init => init?,
            () = self.reaper.killing() => return Err(UpstreamError::Exited),
        };
        SpawnReady { server: &runtime.label, elapsed: started.elapsed() }.emit(&self.metrics);
        Ok(Warm { child: session.child, reader: session.reader, init, born: Instant::now(), era })
    }

    /// Runs one request (`method` with raw `params`) on a fresh instance of `server`: a
    /// pre-spawned one when the server has a warm pool and the request fits it.
    /// What the server sends first goes to `relay` when given; without one, server
    /// requests are refused and notifications dropped.
    pub async fn call(
        &self,
        server: &str,
        credentials: &serde_json::Value,
        client: Client<'_>,
        method: &str,
        params: Option<&RawValue>,
        relay: Option<&Relay>,
    ) -> Result<Outcome, UpstreamError> {
        let call = Call {
            server,
            credentials,
            client,
            method,
            params,
            relay,
            session: None,
            list_tools: false,
            principal: None,
        };
        self.run(&call).await.0
    }

    /// Like [`McpManager::call`], for a session: uses a warm child of the session when one
    /// is ready, and once the server has answered, starts the session's next child in the
    /// background (servers whose environment depends on the session, spare capacity only).
    /// With [`Call::list_tools`] the outcome carries the server's tool list too.
    pub async fn call_with(self: &Arc<Self>, call: Call<'_>) -> Result<Outcome, UpstreamError> {
        self.ensure_sweeper();
        let (result, plan) = self.run(&call).await;
        if let Some(plan) = plan {
            let manager = self.clone();
            tokio::spawn(async move { manager.warm_up(plan).await });
        }
        result
    }

    async fn run(&self, call: &Call<'_>) -> (Result<Outcome, UpstreamError>, Option<WarmPlan>) {
        let Some(runtime) = self.servers.get(call.server) else {
            return (Err(UpstreamError::UnknownServer(call.server.into())), None);
        };
        // Held until the call ends, whichever child serves it (a warm one included).
        let _share = match self.share(call.principal).await {
            Ok(share) => share,
            Err(e) => return (Err(e), None),
        };
        let spec = runtime.spawn_spec(call.credentials);
        let key = call
            .session
            .filter(|_| runtime.warm_starts())
            .map(|session| warm::WarmKey::new(session, &spec, call.client));
        // Pre-spawned children were initialised for no client in particular: only such requests fit.
        let warm = match (&runtime.pool, call.client.is_plain()) {
            (Some(pool), true) => pool.take_or_wait(runtime.config.init_timeout).await,
            _ => None,
        };
        let warm = match (warm, &key) {
            (Some(warm), _) => {
                CacheLookup(CacheOp::PrespawnHit).emit(&self.metrics);
                Some(warm)
            }
            (None, Some(key)) => {
                let (warm, evicted) = self.sessions.take(key, runtime.config.init_timeout).await;
                self.retire(evicted);
                WarmStart { server: &runtime.label, hit: warm.is_some() }.emit(&self.metrics);
                warm.map(|warm| *warm)
            }
            (None, None) => {
                if runtime.pool.is_some() {
                    CacheLookup(CacheOp::PrespawnMiss).emit(&self.metrics);
                }
                None
            }
        };
        let warm = match warm {
            Some(warm) => warm,
            None => {
                let started = match self.admit().await {
                    Ok(permit) => self.start(runtime, &spec, call.client, permit, false, false).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(warm) => warm,
                    Err(e) => return (Err(e), None),
                }
            }
        };
        let Warm { child, reader, mut init, era, .. } = warm;
        let mut session = UpstreamSession {
            child,
            reader,
            relay: call.relay,
            inbound: mpsc::channel(16),
            relayed: Vec::new(),
            budget: RelayBudget::new(runtime.config.max_message_bytes),
            metrics: runtime.metrics.clone(),
            meta: (era == Era::Modern).then(|| era::meta_object(call.client)),
        };
        session.child.set_on_abandon(Some(cancelled_line("1")));
        let limit = runtime.config.call_timeout;
        // The modern era has no `ping`: the gateway's own liveness and capabilities probe
        // becomes `server/discover`, read as the server's `InitializeResult`.
        let discover = era == Era::Modern && call.method == "ping";
        let method = if discover { modern::DISCOVER } else { call.method };
        let work = async {
            if call.list_tools {
                return session.request_with_tools(method, call.params, limit).await;
            }
            match tokio::time::timeout(limit, session.request("1", method, call.params)).await {
                Ok(result) => result.map(|result| (result, None)),
                Err(_) => Err(timeout("answer", limit)),
            }
        };
        let mut result = tokio::select! {
            result = work => result,
            () = self.reaper.killing() => Err(UpstreamError::Exited),
        };
        if era == Era::Modern
            && let Ok((answer, tools)) = result
        {
            // A modern child asks for input with a result, never a request of its own.
            let work = session.answer_input(method, call.params, answer, limit);
            result = tokio::select! {
                answered = work => answered.map(|answer| (answer, tools)),
                () = self.reaper.killing() => Err(UpstreamError::Exited),
            };
        }
        if discover && let Ok((discovered, _)) = &mut result {
            init = era::discover_as_init(discovered);
            let _ = runtime.discovered.set(init.clone());
            *discovered = RawValue::from_string("{}".into()).unwrap_or_else(|_| RawValue::NULL.to_owned());
        }
        let answered = result.is_ok() || matches!(result, Err(UpstreamError::Rpc(_)));
        if answered {
            // Answered: nothing to cancel; it exits in the background, off the cap.
            session.child.set_on_abandon(None);
            session.child.move_to_exiting(&self.exiting);
        }
        if let Some(relay) = session.relay {
            relay.router.forget(&session.relayed);
        }
        // Dropping the session takes the child down in the background either way.
        drop(session);
        if let Some(pool) = &runtime.pool {
            pool.refill.notify_one();
        }
        let plan = key.filter(|_| answered).map(|key| WarmPlan {
            key,
            spec,
            capabilities: call.client.capabilities.map(ToOwned::to_owned),
            log_level: call.client.log_level.map(String::from),
            server: call.server.to_string(),
        });
        (result.map(|(result, tools)| Outcome { result, init, tools }), plan)
    }

    /// Whether a warm-up may start now: nobody waits for a slot, a slot is free, and after
    /// taking it one is still free or freeable (a ready warm child gives way to a request).
    fn spare_capacity(&self) -> bool {
        let counts = self.sessions.counts();
        let free = self.slots.available_permits();
        self.queue.available_permits() >= self.max_queue
            && self.warming.load(Ordering::SeqCst) < self.max_warming
            && free >= 1
            && (free >= 2 || counts.ready >= 1)
    }

    /// Starts a session's next child and keeps it ready (bounded; spare capacity only).
    async fn warm_up(&self, plan: WarmPlan) {
        let Some(runtime) = self.servers.get(&plan.server) else { return };
        if !self.spare_capacity() {
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else { return };
        let (reserved, evicted) = self.sessions.reserve(plan.key, runtime.warm_idle);
        self.retire(evicted);
        let Some((id, cancel)) = reserved else { return };
        self.warming.fetch_add(1, Ordering::SeqCst);
        let _warming = Decrement(self.warming.clone());
        let client =
            Client { capabilities: plan.capabilities.as_deref(), log_level: plan.log_level.as_deref() };
        let started = tokio::select! {
            started = self.start(runtime, &plan.spec, client, permit, true, true) => started,
            // Forgotten or drained while starting: the half-started child is dropped, and so taken down.
            () = cancel.cancelled() => return,
        };
        match started {
            Ok(warm) => {
                let rss = warm.child.pid().map_or(0, warm::resident_bytes);
                match self.sessions.fill(id, Box::new(warm), rss) {
                    Ok(evicted) => self.retire(evicted),
                    Err(mut unwanted) => unwanted.child.move_to_exiting(&self.exiting),
                }
                // A request that began waiting for a slot meanwhile comes first.
                if self.queue.available_permits() < self.max_queue
                    && let Some(evicted) = self.sessions.evict_lru("capacity")
                {
                    self.retire(vec![evicted]);
                }
            }
            Err(e) => {
                tracing::debug!(server = %runtime.label, error = %e, "warm start failed");
                self.retire(self.sessions.fail(id));
            }
        }
        let (children, rss) = self.warm_children();
        WarmHeld { children, rss_bytes: rss }.emit(&self.metrics);
    }

    /// Starts (once) the task that drops warm children idle past their time.
    fn ensure_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let manager = Arc::downgrade(self);
        let reaper = self.reaper.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = reaper.killing() => return,
                }
                let Some(manager) = manager.upgrade() else { return };
                manager.retire(manager.sessions.sweep(Instant::now()));
            }
        });
    }

    /// Keeps the warm pools of the servers that have one topped up, until worker shutdown.
    pub fn start_prespawning(self: &Arc<Self>) {
        for (name, runtime) in &self.servers {
            if runtime.pool.is_none() {
                continue;
            }
            let manager = self.clone();
            let name = name.clone();
            tokio::spawn(async move { manager.keep_warm(&name).await });
        }
    }

    async fn keep_warm(&self, server: &str) {
        let Some(runtime) = self.servers.get(server) else { return };
        let Some(pool) = &runtime.pool else { return };
        let mut failures = 0u32;
        loop {
            pool.recycle();
            while pool.len() < runtime.config.prespawn {
                // Never wait for a slot: requests in the queue come first.
                let Ok(permit) = self.slots.clone().try_acquire_owned() else { break };
                pool.warming.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let spec = runtime.spawn_spec(&serde_json::Value::Null);
                let started = self.start(runtime, &spec, Client::default(), permit, false, true).await;
                let ok = match started {
                    Ok(warm) => {
                        failures = 0;
                        pool.put(warm);
                        true
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(server, error = %e, "pre-spawning failed");
                        false
                    }
                };
                // Only now: a waiter that wakes sees the child in the pool, or no warm-up left.
                pool.warming.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                pool.ready.notify_waiters();
                if !ok {
                    break;
                }
            }
            let pause = if failures > 0 {
                Duration::from_millis(500 * u64::from(failures.min(20)))
            } else {
                runtime.config.prespawn_max_age / 2
            };
            tokio::select! {
                () = pool.refill.notified(), if failures == 0 => {}
                () = tokio::time::sleep(pause) => {}
                () = self.reaper.killing() => {
                    pool.clear();
                    return;
                }
            }
        }
    }
}

/// Decrements a counter when dropped (on every exit path of a task).
struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A spawned, initialised child not yet given a request.
struct Warm {
    child: ChildProcess,
    reader: LineReader<tokio::process::ChildStdout>,
    init: Box<RawValue>,
    born: Instant,
    /// The era it was started in (and so how its request is sent).
    era: Era,
}

/// Pre-spawned children of one server.
struct Pool {
    idle: std::sync::Mutex<std::collections::VecDeque<Warm>>,
    max_age: Duration,
    refill: tokio::sync::Notify,
    /// Warm-ups in progress, and requests waiting for one: a request waits for a warm-up
    /// already under way (it finishes sooner than a cold start) only while there are more
    /// warm-ups than waiters.
    warming: std::sync::atomic::AtomicUsize,
    waiting: std::sync::atomic::AtomicUsize,
    /// Signalled whenever a warm child is put in the pool.
    ready: tokio::sync::Notify,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Warm>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn put(&self, warm: Warm) {
        self.lock().push_back(warm);
        self.ready.notify_waiters();
    }

    /// A warm child, waiting (bounded) for a warm-up in progress if there is one to spare.
    async fn take_or_wait(&self, limit: Duration) -> Option<Warm> {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some(warm) = self.take() {
            return Some(warm);
        }
        if self.waiting.fetch_add(1, SeqCst) >= self.warming.load(SeqCst) {
            self.waiting.fetch_sub(1, SeqCst);
            return None;
        }
        let deadline = tokio::time::Instant::now() + limit;
        let found = loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(warm) = self.take() {
                break Some(warm);
            }
            if self.warming.load(SeqCst) == 0 || tokio::time::timeout_at(deadline, notified).await.is_err() {
                break self.take();
            }
        };
        self.waiting.fetch_sub(1, SeqCst);
        found
    }

    /// The youngest usable child; stale ones are dropped (and so taken down).
    fn take(&self) -> Option<Warm> {
        self.recycle();
        self.lock().pop_back()
    }

    fn recycle(&self) {
        let stale: Vec<Warm> = {
            let mut idle = self.lock();
            let (keep, stale) = idle.drain(..).partition(|w| w.born.elapsed() < self.max_age);
            *idle = keep;
            stale.into()
        };
        drop(stale);
    }

    fn clear(&self) {
        let all: Vec<Warm> = self.lock().drain(..).collect();
        drop(all);
    }
}

/// Whether an `InitializeResult` declares the `logging` capability.
fn offers_logging(init: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Init {
        #[serde(default)]
        capabilities: Option<Caps>,
    }
    #[derive(serde::Deserialize)]
    struct Caps {
        #[serde(default)]
        logging: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Init>(init.get())
        .ok()
        .and_then(|i| i.capabilities)
        .is_some_and(|c| c.logging.is_some())
}

/// What to do about a server that cannot be started, when the cause says it.
fn spawn_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::NotFound => {
            " (not found on the worker's PATH: give an absolute path, or \"{switchboard}\" for this binary)"
        }
        std::io::ErrorKind::PermissionDenied => " (not executable by the worker's user)",
        _ => "",
    }
}

/// The id of the `server/discover` a child is asked before its request (raw JSON).
const PROBE_ID: &str = r#""discover""#;

/// Longest part of a server's error message quoted when it refuses `initialize`.
const MAX_QUOTED_ERROR: usize = 200;

/// A server's error answer to `initialize`, as [`UpstreamError::InitRefused`]: its code and
/// message (cut), nothing else of what it sent.
fn init_refused(error: &RawValue) -> UpstreamError {
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(default)]
        code: Option<i64>,
        #[serde(default)]
        message: Option<String>,
    }
    let parsed = serde_json::from_str::<Error>(error.get()).ok();
    let code = parsed.as_ref().and_then(|e| e.code).map_or_else(|| "?".to_string(), |c| c.to_string());
    let message = parsed.and_then(|e| e.message).unwrap_or_default();
    let cut: String = message.chars().take(MAX_QUOTED_ERROR).collect();
    let more = if cut.len() < message.len() { "…" } else { "" };
    UpstreamError::InitRefused(format!("error {code}: {cut}{more}"))
}

fn timeout(phase: &'static str, limit: Duration) -> UpstreamError {
    UpstreamError::Timeout { phase, secs: limit.as_secs_f64() }
}

fn cancelled_line(id: &str) -> String {
    let params = format!(r#"{{"requestId":{id},"reason":"the client went away"}}"#);
    match RawValue::from_string(params) {
        Ok(raw) => jsonrpc::notification("notifications/cancelled", Some(&raw)),
        Err(_) => jsonrpc::notification("notifications/cancelled", None),
    }
}

/// The gateway's `initialize` to a server: the client's own capabilities when it has a session
/// on `/mcp` (so servers use sampling or elicitation only when the client offers them).
fn initialize_params(client_capabilities: Option<&RawValue>) -> Box<RawValue> {
    let capabilities = client_capabilities.map_or("{}", RawValue::get);
    let params = format!(
        r#"{{"protocolVersion":"{UPSTREAM_PROTOCOL_VERSION}","capabilities":{capabilities},"clientInfo":{{"name":"switchboard","version":"{}"}}}}"#,
        env!("CARGO_PKG_VERSION")
    );
    RawValue::from_string(params).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl ServerRuntime {
    fn new(name: &str, config: &ServerConfig, worker_env: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut fixed_env: Vec<(String, String)> =
            config.inherit_env.iter().filter_map(|k| worker_env(k).map(|v| (k.clone(), v))).collect();
        let mut templated_env = Vec::new();
        for (key, value) in &config.env {
            let template = Template::parse(value);
            if template.is_constant() {
                fixed_env.push((key.clone(), value.clone()));
            } else {
                templated_env.push((key.clone(), template));
            }
        }
        let hashed: BTreeMap<&str, &String> = config.env.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let fingerprint = serde_json::json!({"command": config.command, "env": hashed});
        let config_hash = blake3::hash(fingerprint.to_string().as_bytes()).to_hex()[..16].to_string();
        let program = config.command.first().cloned().unwrap_or_default();
        let program = if config.parent_death_signal {
            program
        } else {
            let path = fixed_env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
            resolve_program(&program, path)
        };
        let pool = (config.prespawn > 0).then(|| Pool {
            idle: std::sync::Mutex::new(std::collections::VecDeque::new()),
            max_age: config.prespawn_max_age,
            refill: tokio::sync::Notify::new(),
            warming: std::sync::atomic::AtomicUsize::new(0),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            ready: tokio::sync::Notify::new(),
        });
        Self {
            config: config.clone(),
            label: Arc::from(name),
            fixed_env,
            templated_env,
            config_hash,
            pool,
            warm_idle: config.warm_idle,
            program,
            metrics: None,
            era: era::Known::new(config.protocol),
            discovered: std::sync::OnceLock::new(),
        }
    }

    /// Whether children are started ahead for sessions: the environment depends on the
    /// session (else `prespawn` serves) and `warm_idle_secs` is not 0.
    fn warm_starts(&self) -> bool {
        !self.templated_env.is_empty() && !self.warm_idle.is_zero()
    }

    fn spawn_spec(&self, credentials: &serde_json::Value) -> SpawnSpec {
        let mut env = self.fixed_env.clone();
        for (key, template) in &self.templated_env {
            if let Some(value) = template.render(credentials) {
                env.push((key.clone(), value));
            }
        }
        SpawnSpec {
            program: self.program.clone(),
            args: self.config.command[1..].to_vec(),
            env,
            label: self.label.clone(),
            max_stderr_lines: self.config.max_stderr_lines,
            metrics: self.metrics.clone(),
            parent_death_signal: self.config.parent_death_signal,
        }
    }
}

/// `program` as a path: itself if it names one, else the first executable file of that name
/// on `path`; unchanged when none is found (the spawn then fails as it would have).
fn resolve_program(program: &str, path: Option<&str>) -> String {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return program.to_string();
    }
    path.into_iter()
        .flat_map(|p| p.split(':'))
        .filter(|dir| !dir.is_empty())
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map_or_else(|| program.to_string(), |found| found.to_string_lossy().into_owned())
}

/// Takes one message of `len` bytes from a call's relay budget; when spent, counts it.
fn within(budget: &mut RelayBudget, metrics: Option<&Metrics>, len: usize) -> bool {
    let fits = budget.take(len);
    if !fits && let Some(metrics) = metrics {
        LimitHit(Limit::RelayBudget).emit(metrics);
    }
    fits
}

/// One spawned server and the conversation with it.
struct UpstreamSession<'r> {
    child: ChildProcess,
    reader: LineReader<tokio::process::ChildStdout>,
    relay: Option<&'r Relay>,
    /// Answers to the server's requests, from the client (through the router).
    inbound: (mpsc::Sender<String>, mpsc::Receiver<String>),
    /// Gateway ids of the server requests relayed so far, forgotten when the call ends.
    relayed: Vec<String>,
    /// What may still be relayed before the response (bounded in count and bytes).
    budget: RelayBudget,
    /// Where a spent budget is counted.
    metrics: Option<Arc<Metrics>>,
    /// A modern child's `_meta` object, added to every request sent to it; `None`: legacy.
    meta: Option<String>,
}

impl UpstreamSession<'_> {
    /// A request line to the child: with the `_meta` of the modern era when it speaks it.
    fn request_line(&self, id: &str, method: &str, params: Option<&RawValue>) -> String {
        match &self.meta {
            Some(meta) => jsonrpc::request(id, method, Some(&era::with_meta(params, meta))),
            None => jsonrpc::request(id, method, params),
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), UpstreamError> {
        let stdin = self.child.stdin().ok_or(UpstreamError::Exited)?;
        write_line(stdin, line).await.map_err(|_| UpstreamError::Exited)
    }

    async fn notify(&mut self, method: &str) -> Result<(), UpstreamError> {
        self.send(&jsonrpc::notification(method, None)).await
    }

    /// A modern child's `InputRequiredResult` for the front door's client: each input
    /// request is relayed as a server request (the legacy way, through the relay), the
    /// answers collected, and the request sent again under a new id with
    /// `inputResponses` and the `requestState` (bounded rounds). Without a relay the
    /// client cannot be asked: an error says so.
    async fn answer_input(
        &mut self,
        method: &str,
        params: Option<&RawValue>,
        mut result: Box<RawValue>,
        limit: Duration,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let mut retry: Option<Box<RawValue>> = None;
        for round in 0..era::MAX_INPUT_ROUNDS {
            if !era::is_input_required(&result) {
                return Ok(result);
            }
            let Some(relay) = self.relay else {
                return Err(UpstreamError::Protocol(
                    "the server needs input from the client, which this route cannot ask".into(),
                ));
            };
            let (requests, state) = era::input_requests(&result).ok_or_else(|| {
                UpstreamError::Protocol("an InputRequiredResult that cannot be read".into())
            })?;
            let mut asked = HashMap::new();
            for (key, method, params) in &requests {
                let original = json_string(key);
                let gateway_id = relay.router.register(&relay.session, &original, self.inbound.0.clone());
                let line = jsonrpc::request(&json_string(&gateway_id), method, params.as_deref());
                self.relayed.push(gateway_id);
                asked.insert(original, key.clone());
                if relay.events.send(ServerMessage::Request(line)).await.is_err() {
                    return Err(UpstreamError::Protocol("the client stream closed".into()));
                }
            }
            let mut responses = Vec::new();
            while !asked.is_empty() {
                let Ok(Some(answer)) = tokio::time::timeout(limit, self.inbound.1.recv()).await else {
                    return Err(timeout("get the client's input", limit));
                };
                let Ok(envelope) = Envelope::parse(&answer) else { continue };
                let Some(key) = envelope.id.and_then(|id| asked.remove(id.get())) else { continue };
                match (envelope.result, envelope.error) {
                    (Some(answer), _) => responses.push((key, answer.to_owned())),
                    (None, Some(error)) => return Err(UpstreamError::Rpc(error.to_owned())),
                    (None, None) => {
                        return Err(UpstreamError::Protocol("an empty answer from the client".into()));
                    }
                }
            }
            let base = retry.as_deref().or(params);
            retry = era::retry_params(base, &responses, state.as_deref());
            let Some(next) = retry.as_deref() else {
                return Err(UpstreamError::Protocol("the request's params are not an object".into()));
            };
            let id = format!("\"input-{round}\"");
            result = match tokio::time::timeout(limit, self.request(&id, method, Some(next))).await {
                Ok(result) => result?,
                Err(_) => return Err(timeout("answer", limit)),
            };
        }
        Err(UpstreamError::Protocol(format!(
            "the server asked for input more than {} times for one request",
            era::MAX_INPUT_ROUNDS
        )))
    }

    /// Sends a request and reads until its response, handling what comes in between. It is
    /// the one request outstanding, so an error response of any id (`null`: the server could
    /// not tell which request failed) is its answer too, at once.
    async fn request(
        &mut self,
        id: &str,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<Box<RawValue>, UpstreamError> {
        self.send(&self.request_line(id, method, params)).await?;
        loop {
            let (got, result) = self.next_response().await?;
            if got == id || result.is_err() {
                return result;
            }
        }
    }

    /// Reads until the next response, of any id (raw), handling the server's own requests
    /// and notifications in between. The inner result is the response's: `Rpc` for an error.
    async fn next_response(
        &mut self,
    ) -> Result<(String, Result<Box<RawValue>, UpstreamError>), UpstreamError> {
        loop {
            let line = tokio::select! {
                line = self.reader.next_line() => line,
                Some(answer) = self.inbound.1.recv() => {
                    self.send(&answer).await?;
                    continue;
                }
            };
            let line = match line {
                Ok(line) => line,
                Err(LineError::Eof | LineError::Io(_)) => return Err(UpstreamError::Exited),
                Err(LineError::TooLarge { max }) => return Err(UpstreamError::TooLarge { max }),
            };
            let Ok(text) = std::str::from_utf8(line) else {
                return Err(UpstreamError::Protocol("output is not UTF-8".into()));
            };
            let Ok(envelope) = Envelope::parse(text) else {
                // Not JSON-RPC (a stray print to stdout): the spec forbids it; skip it.
                tracing::debug!("MCP server wrote a non-JSON-RPC line; ignored");
                continue;
            };
            match envelope.kind() {
                Kind::Response => {
                    let got = envelope.id.map_or("null", RawValue::get).to_string();
                    if let Some(error) = envelope.error {
                        return Ok((got, Err(UpstreamError::Rpc(error.to_owned()))));
                    }
                    let result = envelope
                        .result
                        .map(RawValue::to_owned)
                        .ok_or_else(|| UpstreamError::Protocol("response without result".into()));
                    return Ok((got, result));
                }
                Kind::Request => {
                    let original = envelope.id.map_or("null", RawValue::get).to_string();
                    let method = envelope.method.as_deref().unwrap_or_default().to_string();
                    if self.relay.is_some() && !within(&mut self.budget, self.metrics.as_deref(), text.len())
                    {
                        let reply = jsonrpc::error_response(
                            &original,
                            jsonrpc::code::INTERNAL_ERROR,
                            "the gateway relays at most 1024 messages or 16 MiB per request before its \
                             response; this one was not relayed",
                        );
                        self.send(&reply).await?;
                    } else if let Some(relay) = self.relay {
                        let gateway_id =
                            relay.router.register(&relay.session, &original, self.inbound.0.clone());
                        let line = jsonrpc::request(&json_string(&gateway_id), &method, envelope.params);
                        self.relayed.push(gateway_id);
                        if relay.events.send(ServerMessage::Request(line)).await.is_err() {
                            return Err(UpstreamError::Protocol("the client stream closed".into()));
                        }
                    } else {
                        // Not offered on this route: say so, so the server does not wait forever.
                        let reply = jsonrpc::error_response(
                            &original,
                            jsonrpc::code::METHOD_NOT_FOUND,
                            "the client of this gateway route does not take requests",
                        );
                        self.send(&reply).await?;
                    }
                }
                Kind::Notification => {
                    if let Some(relay) = self.relay
                        && within(&mut self.budget, self.metrics.as_deref(), text.len())
                    {
                        // A slow client must not stall the server: drop rather than wait.
                        let _ = relay.events.try_send(ServerMessage::Notification(text.to_string()));
                    }
                }
                // An error whose id is `null` parses without one: the server could not tell
                // which request failed, so it answers the one outstanding.
                Kind::Invalid if envelope.method.is_none() && envelope.result.is_none() => {
                    if let Some(error) = envelope.error {
                        return Ok(("null".to_string(), Err(UpstreamError::Rpc(error.to_owned()))));
                    }
                }
                Kind::Invalid => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
