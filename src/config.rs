//! The typed configuration tree: a TOML file, overridden by `SWITCHBOARD_*`
//! environment variables, validated once at start-up.
//!
//! Both sources are injected ([`Config::load`] takes the file text and an
//! environment lookup), so tests never touch the process environment. This
//! module does no I/O besides what its caller hands it and knows nothing of
//! Redis, HTTP or processes. It imports no other module of the crate: the jq
//! filters of `servers.*.tools.*` are compiled (and so checked) by
//! `results::Policies::from_config`, which sits above it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment variables read by [`Config::load`], in the order they are applied.
pub const ENV_KEYS: &[&str] = &[
    "SWITCHBOARD_LISTEN",
    "SWITCHBOARD_REDIS_URL",
    "SWITCHBOARD_IDLE_TTL_SECS",
    "SWITCHBOARD_KEY_PREFIX",
    "SWITCHBOARD_MAX_CHILDREN",
    "SWITCHBOARD_AUTH_MODE",
    "SWITCHBOARD_AUTH_STATIC_TOKENS",
    "SWITCHBOARD_AUTH_URL",
    "SWITCHBOARD_MCP_COMMAND",
    "SWITCHBOARD_SECRET_KEY",
    "SWITCHBOARD_SECRET_KEYS_OLD",
    "SWITCHBOARD_HTTP_ALLOWED_HOSTS",
    "SWITCHBOARD_LIMITS_SESSIONS_PER_PRINCIPAL",
    "SWITCHBOARD_LIMITS_REQUESTS_PER_SEC",
    "SWITCHBOARD_LIMITS_BURST",
    "SWITCHBOARD_AUTH_REQUIRE_PRINCIPAL",
    "SWITCHBOARD_CACHE_SEAL",
    "SWITCHBOARD_AUTH_ISSUER",
    "SWITCHBOARD_AUTH_AUDIENCE",
    "SWITCHBOARD_AUTH_JWKS_URL",
    "SWITCHBOARD_AUTH_INTROSPECTION_URL",
    "SWITCHBOARD_AUTH_INTROSPECTION_CLIENT_ID",
    "SWITCHBOARD_AUTH_INTROSPECTION_CLIENT_SECRET",
    "SWITCHBOARD_AUTH_REQUIRED_SCOPES",
    "SWITCHBOARD_MCP_PROTOCOL",
];

/// The token accepted by the embedded default when nothing else is configured.
pub const DEMO_TOKEN: &str = "demo";

/// Name of the single server built from `SWITCHBOARD_MCP_COMMAND` or the demo default.
pub const DEFAULT_SERVER: &str = "default";

/// The longest duration any key accepts: ten years. Far beyond any sensible setting, and
/// far below what would overflow a deadline computed from now.
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;

/// A check of the loaded config made by a module above this one: `Err` says what is wrong.
pub type Check<'a> = &'a dyn Fn(&Config) -> Result<(), String>;

/// A server command whose first word is this runs the switchboard binary itself
/// (`["{switchboard}", "demo-server"]`), wherever it is installed and whatever PATH is.
pub const SELF_COMMAND: &str = "{switchboard}";

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("environment variable {key}: {message}")]
    Env { key: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// How `/init` (and `initialize` on `/mcp`) decides whether credentials are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `{"token": T}` with T in `auth.static_tokens`.
    Static,
    /// POST the credentials to `auth.url`; 2xx = valid, its JSON body is the identity.
    Http,
    /// Anything goes; every session has the principal `anonymous`.
    None,
    /// An OAuth 2.1 resource server (the MCP authorization specification): bearer access
    /// tokens issued by `auth.issuer` for `auth.audience`, checked on every request (JWTs
    /// against the issuer's keys, opaque tokens by introspection). The principal is the
    /// token's (`iss`, `sub`).
    #[serde(rename = "oauth")]
    OAuth,
}

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the worker listens on. Loopback by default: exposing a worker is a decision.
    pub listen: SocketAddr,
    /// Redis URL (`redis://`, `rediss://`). Without it the embedded in-process store is used,
    /// which is for a single process only.
    pub redis_url: Option<String>,
    /// Idle TTL of a session: every read or write resets its expiry to this. 24 h, as the design asks.
    pub idle_ttl_secs: u64,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Most live MCP server children per worker. Default: the number of cores, since more
    /// concurrent starts only multiply latency on a CPU-bound spawn.
    pub max_children: usize,
    /// Requests that may wait for a child slot; beyond it the worker answers 503 at once.
    pub max_queue: usize,
    /// Longest wait for a child slot before 503 + `Retry-After`.
    #[serde(with = "secs_f64", rename = "queue_wait_secs")]
    pub queue_wait: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest `state` object of a session, serialized.
    pub max_state_bytes: usize,
    /// Time allowed for the whole of a worker's graceful drain on SIGTERM.
    #[serde(with = "secs_f64", rename = "drain_timeout_secs")]
    pub drain_timeout: Duration,
    /// Default lifetime of a cached tool result: a few minutes, so read-only answers stay fresh.
    #[serde(with = "secs_f64", rename = "cache_ttl_secs")]
    pub cache_ttl: Duration,
    /// Most bytes of cached results per session; the oldest entries go first.
    pub cache_budget_bytes: usize,
    /// Seal cached tool results at rest (XChaCha20-Poly1305 under the secret key, bound to the
    /// session and the entry). Unset: on with Redis, where results outlive the process and
    /// other people may read the database; off for the embedded store, which is this
    /// process's own memory.
    pub cache_seal: Option<bool>,
    /// How long a cached tool list is trusted before it is fetched again.
    #[serde(with = "secs_f64", rename = "tools_cache_ttl_secs")]
    pub tools_cache_ttl: Duration,
    /// Base64 of a 32-byte key sealing credentials at rest. Without it a random key is made per
    /// process (embedded default only; refused with Redis, where sessions outlive a process).
    pub secret_key: Option<String>,
    /// Older keys still accepted for reading sealed credentials, during a key rotation.
    pub secret_keys_old: Vec<String>,
    /// Credential validation.
    pub auth: AuthConfig,
    /// The MCP servers this gateway fronts, by name.
    pub servers: BTreeMap<String, ServerConfig>,
    /// Allowed `Origin`s and `Host`s (protection against DNS rebinding) and connection limits.
    pub http: HttpConfig,
    /// Most warm children kept per worker for servers whose environment depends on the session
    /// (see `warm_idle_secs`). They also count against `max_children`, and a request that finds
    /// no free slot evicts one, so they never make a request wait. 4 keeps a 2-core worker's idle
    /// memory to a few hundred MB with typical Node or Python servers.
    pub warm_max_children: usize,
    /// Most resident memory (MiB) of all warm children of a worker together, least recently used
    /// evicted first. 256 MiB: four typical Node or Python servers.
    pub warm_max_rss_mb: u64,
    /// Most children one principal may have in calls at once on a worker, so that a client
    /// whose calls hang cannot take every slot; its further calls queue (503 past
    /// `queue_wait_secs`) while other principals are served. Unset: half of `max_children`
    /// (at least 1), which leaves the other half to everyone else. 0: no share limit. Not
    /// applied with auth mode `none`, where every session is the same principal.
    pub max_children_per_principal: Option<usize>,
    /// Most requests in one JSON-RPC batch (sessions that negotiated 2025-03-26 on `/mcp`);
    /// a larger batch is refused whole. 64: far beyond what a client batches, far below what
    /// a body of `max_body_bytes` could hold (each request may spawn a child, in turn).
    pub max_batch_items: usize,
    /// Most bytes of answers one batch collects before it is sent; past it each remaining
    /// request is answered with an error naming this limit and not run. 16 MiB: one
    /// result of the default `max_message_bytes`, and a bound on a batch's memory.
    pub max_batch_answer_bytes: usize,
    /// Per-principal quotas and size bounds, shared by the fleet through the store.
    pub limits: LimitsConfig,
    /// Longest a call of the modern era (2026-07-28) waits for the client's retry once it
    /// asked for input (`InputRequiredResult`): past it the child is ended and the retry
    /// gets an error. 60 s: a person answering an elicitation, not an idle child.
    #[serde(with = "secs_f64", rename = "input_wait_secs")]
    pub input_wait: Duration,
}

/// What one principal (one token, one user of the credentials service) may hold and do,
/// counted in the store so every worker enforces the same budget. Defaults are far above
/// what one client of a small fleet does, and far below what exhausts a worker or Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most live sessions of one principal (0: no limit). A new session beyond it ends the
    /// principal's least recently used one, so a client that leaks sessions keeps working and
    /// a flood only churns its own. 1,000: far more than any client keeps open at once.
    pub sessions_per_principal: usize,
    /// Requests per second one principal may make, fleet-wide (a token bucket; 0: no limit).
    /// Beyond it: 429 with `Retry-After`. 1,000/s: well above what one client drives through a
    /// small fleet, so only a flood meets it.
    pub requests_per_sec: u32,
    /// Requests one principal may make at once above the rate (the bucket's size). 2,000:
    /// two seconds of the default rate, so bursts of a busy client pass.
    pub burst: u32,
    /// Largest `credentials` object of `/init`, serialized (413 beyond it). 16 KiB: room for
    /// any token and a few extra fields, while every session stays small in the store.
    pub max_credentials_bytes: usize,
    /// Largest `client` object of `/init` (or `clientInfo` with `capabilities` of
    /// `initialize`), serialized (400 beyond it). 16 KiB, for the same reason.
    pub max_client_bytes: usize,
    /// Most sessions the embedded store holds; beyond it the least recently used session of
    /// any principal is ended (with Redis, Redis's own `maxmemory` decides). 100,000 sessions
    /// of a few KB each fit in a few hundred MB.
    pub embedded_max_sessions: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            sessions_per_principal: 1000,
            requests_per_sec: 1000,
            burst: 2000,
            max_credentials_bytes: 16 * 1024,
            max_client_bytes: 16 * 1024,
            embedded_max_sessions: 100_000,
        }
    }
}

/// Credential validation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `static`, `http` or `none`. Unset means `static` (with the demo token only in the embedded default).
    pub mode: Option<AuthMode>,
    /// Tokens accepted in `static` mode.
    pub static_tokens: Vec<String>,
    /// Endpoint that validates credentials in `http` mode.
    pub url: Option<String>,
    /// Time allowed for the `http` validation call; beyond it `/init` answers 502.
    #[serde(with = "secs_f64", rename = "timeout_secs")]
    pub timeout: Duration,
    /// Refuse every request on a session that does not present the session's token
    /// (`Authorization: Bearer`). Off by default so the legacy API's clients, which send only
    /// the session id, keep working on sessions made on `/init`.
    pub require_principal: bool,
    /// `oauth` mode: the authorization server's issuer identifier (exactly as in its
    /// metadata and the tokens' `iss`); its keys are found through its RFC 8414 / OpenID
    /// Connect metadata unless `jwks_url` is set.
    pub issuer: Option<String>,
    /// `oauth` mode: this gateway's canonical resource URL (`https://gw.example.com/mcp`):
    /// the audience a token must name (RFC 8707), and the `resource` of the protected
    /// resource metadata (RFC 9728).
    pub audience: Option<String>,
    /// `oauth` mode: the issuer's JWK Set, when its metadata does not name it (or must not
    /// be fetched).
    pub jwks_url: Option<String>,
    /// `oauth` mode: the RFC 7662 introspection endpoint for opaque (non-JWT) access tokens.
    pub introspection_url: Option<String>,
    /// The client id the gateway authenticates with at `introspection_url` (HTTP Basic).
    pub introspection_client_id: Option<String>,
    /// The client secret for `introspection_url`.
    pub introspection_client_secret: Option<String>,
    /// `oauth` mode: scopes every request's token must carry (403 `insufficient_scope`
    /// otherwise); servers and tools may require more (`servers.*.required_scopes`).
    pub required_scopes: Vec<String>,
    /// `oauth` mode: scopes advertised in the protected resource metadata besides the
    /// required ones (empty: the required scopes of the config, all levels).
    pub scopes_supported: Vec<String>,
    /// `oauth` mode: clock skew allowed on `exp` and `nbf`. 60 s: common server clock drift,
    /// short against token lifetimes of minutes.
    #[serde(with = "secs_f64", rename = "leeway_secs")]
    pub leeway: Duration,
    /// `oauth` mode: how long the issuer's keys are used before they are fetched again.
    /// One hour: keys rotate over days, and an unknown `kid` fetches them at once anyway.
    #[serde(with = "secs_f64", rename = "jwks_cache_secs")]
    pub jwks_cache: Duration,
    /// `oauth` mode: least time between two fetches of the keys caused by an unknown `kid`,
    /// so tokens with made-up key ids cannot make the gateway hammer the issuer. 10 s: a
    /// rotated key is picked up within seconds.
    #[serde(with = "secs_f64", rename = "jwks_refetch_min_secs")]
    pub jwks_refetch_min: Duration,
    /// `oauth` mode: most introspection answers kept (each until its token expires, at most
    /// `introspection_cache_secs`); the oldest half goes when full.
    pub introspection_cache_entries: usize,
    /// `oauth` mode: longest time an introspection answer is trusted. 5 minutes bounds how
    /// long a revoked opaque token keeps working.
    #[serde(with = "secs_f64", rename = "introspection_cache_secs")]
    pub introspection_cache: Duration,
}

/// The HTTP edge: `Origin` and `Host` checks (every route) and connection limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins allowed besides loopback ones (`http://localhost:*` and friends).
    pub allowed_origins: Vec<String>,
    /// Host names allowed besides loopback ones; checked only when the worker listens on
    /// loopback. Behind nginx on the same host, the public names nginx serves
    /// (`SWITCHBOARD_HTTP_ALLOWED_HOSTS`, comma-separated).
    pub allowed_hosts: Vec<String>,
    /// Longest time a client may take to send a request's headers: counted from the accept
    /// for a connection's first request, from the first byte for later ones; then the
    /// connection is closed. 10 s: real clients and nginx send headers in milliseconds, and a
    /// slowloris client holds a connection no longer than this.
    #[serde(with = "secs_f64", rename = "header_read_timeout_secs")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long without a
    /// new one. 75 s: longer than nginx's upstream `keepalive_timeout` (60 s), so nginx closes
    /// its idle connections first and never sends a request on one the worker is closing.
    #[serde(with = "secs_f64", rename = "idle_timeout_secs")]
    pub idle_timeout: Duration,
    /// Most client connections served at once. Beyond it new connections wait in the listen
    /// backlog for a second, then are closed. 4096: far above what nginx's upstream keepalive
    /// pool needs, and with the children's pipes (3 per child) well below the unit's
    /// `LimitNOFILE=65536`, so the cap is reached before the worker runs out of descriptors.
    pub max_connections: usize,
}

/// One stdio MCP server the gateway spawns per request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Program and arguments; run directly, never through a shell. A first word of
    /// `{switchboard}` is the running switchboard binary (see [`SELF_COMMAND`]); any other
    /// program is looked up on the worker's PATH unless the path is absolute.
    pub command: Vec<String>,
    /// Environment of the child: fixed values or templates such as `{credentials.token}`.
    pub env: BTreeMap<String, String>,
    /// Variables of the worker's own environment passed through (nothing else is: the worker's
    /// environment holds its secret key).
    pub inherit_env: Vec<String>,
    /// Time from spawn to the `initialize` response.
    #[serde(with = "secs_f64", rename = "init_timeout_secs")]
    pub init_timeout: Duration,
    /// Time for the request itself once initialised.
    #[serde(with = "secs_f64", rename = "call_timeout_secs")]
    pub call_timeout: Duration,
    /// Time the child gets to exit after its stdin closes, and again after SIGTERM.
    #[serde(with = "secs_f64", rename = "shutdown_grace_secs")]
    pub shutdown_grace: Duration,
    /// Largest JSON-RPC line read from the child; a larger result is refused, never cut.
    pub max_message_bytes: usize,
    /// Lines of the child's stderr logged per request; the rest is counted and dropped.
    pub max_stderr_lines: usize,
    /// Results larger than this (serialized) are cut with a visible marker; per tool too.
    pub max_result_bytes: Option<usize>,
    /// Only these tools are offered and callable (empty: all).
    pub allow_tools: Vec<String>,
    /// These tools are hidden and refused.
    pub deny_tools: Vec<String>,
    /// Per-tool policies: cache, filter, size cap.
    pub tools: BTreeMap<String, ToolConfig>,
    /// Children kept spawned and initialised ahead of requests (each still serves exactly one
    /// request). Only for servers whose environment does not depend on the session.
    pub prespawn: usize,
    /// A pre-spawned child older than this is recycled unused.
    #[serde(with = "secs_f64", rename = "prespawn_max_age_secs")]
    pub prespawn_max_age: Duration,
    /// For a server whose environment depends on the session: after serving a session, the
    /// worker starts that session's next child at once (with its credentials, spare capacity
    /// only) and keeps it ready this long. 0 turns warm starts off. 60 s covers an interactive
    /// session's pauses without keeping idle servers for long; never longer than the idle TTL.
    #[serde(with = "secs_f64", rename = "warm_idle_secs")]
    pub warm_idle: Duration,
    /// The kernel kills a child when its worker dies, even by SIGKILL (`PR_SET_PDEATHSIG`), and
    /// the worker's process sentinel kills the rest of the child's process group.
    /// That needs a hook in the child between `fork` and `exec`; `false` lets the worker use
    /// `posix_spawn` (vfork) instead, about 0.3 ms less per request. Turn it off only where
    /// something else takes the children down with the worker (the shipped systemd unit's
    /// `KillMode=mixed`); servers that exit when stdin closes exit with the worker anyway.
    pub parent_death_signal: bool,
    /// `oauth` mode: scopes a token needs to list and call this server's tools (beyond
    /// `auth.required_scopes`); a tool's own `required_scopes` add to them.
    pub required_scopes: Vec<String>,
    /// `oauth` mode: give the child the client's access token (as `MCP_ACCESS_TOKEN`, or
    /// wherever an `env` value says `{credentials.access_token}`). Off: a token issued for
    /// this gateway is never passed on to another API (the confused-deputy rule of the MCP
    /// authorization specification); turn it on only for a server that is itself a
    /// resource of the same audience.
    pub pass_access_token: bool,
    /// The protocol era the gateway speaks to the server: `legacy` (`initialize`, then the
    /// request), `modern` (2026-07-28: each request alone, stateless, with its `_meta`; one
    /// round trip) or `auto` (learn once per config, for the whole fleet, whether the server
    /// answers `server/discover`, then speak modern to it; legacy otherwise).
    pub protocol: ServerProtocol,
}

/// Which protocol era the gateway speaks to a server it spawns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerProtocol {
    /// Probe with `server/discover` once per config hash; modern if it answers, else legacy.
    Auto,
    /// `initialize` + `notifications/initialized` before every request. The default: every
    /// stdio server answers it, while a probe costs a server that ignores unknown requests
    /// its first request on each worker (opt in to `auto` or `modern` per server).
    #[default]
    Legacy,
    /// Every request stateless with `_meta`, no handshake.
    Modern,
}

impl std::str::FromStr for ServerProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "legacy" => Ok(Self::Legacy),
            "modern" => Ok(Self::Modern),
            other => Err(format!("`{other}` is not one of auto, legacy, modern")),
        }
    }
}

/// Whether results of a tool are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Only tools annotated `readOnlyHint: true` and `openWorldHint: false`.
    #[default]
    Auto,
    Always,
    Never,
}

/// The policy of one tool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolConfig {
    pub cache: CacheMode,
    /// How long a cached result is served (default: the global `cache_ttl_secs`).
    pub cache_ttl_secs: Option<f64>,
    /// A jq expression applied to `structuredContent` and to JSON text content.
    pub filter: Option<String>,
    /// Results larger than this are cut with a visible marker.
    pub max_result_bytes: Option<usize>,
    /// `oauth` mode: scopes a token needs to call this tool (and to see it listed), beyond
    /// those of its server and `auth.required_scopes`.
    pub required_scopes: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            redis_url: None,
            idle_ttl_secs: 24 * 3600,
            key_prefix: "switchboard:".into(),
            max_children: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_queue: 256,
            queue_wait: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            max_state_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(30),
            tools_cache_ttl: Duration::from_secs(600),
            cache_ttl: Duration::from_secs(300),
            cache_budget_bytes: 1024 * 1024,
            cache_seal: None,
            secret_key: None,
            secret_keys_old: Vec::new(),
            auth: AuthConfig::default(),
            servers: BTreeMap::new(),
            http: HttpConfig::default(),
            warm_max_children: 4,
            warm_max_rss_mb: 256,
            max_children_per_principal: None,
            max_batch_items: 64,
            max_batch_answer_bytes: 16 * 1024 * 1024,
            limits: LimitsConfig::default(),
            input_wait: Duration::from_secs(60),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 4096,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: None,
            static_tokens: Vec::new(),
            url: None,
            timeout: Duration::from_secs(10),
            require_principal: false,
            issuer: None,
            audience: None,
            jwks_url: None,
            introspection_url: None,
            introspection_client_id: None,
            introspection_client_secret: None,
            required_scopes: Vec::new(),
            scopes_supported: Vec::new(),
            leeway: Duration::from_secs(60),
            jwks_cache: Duration::from_secs(3600),
            jwks_refetch_min: Duration::from_secs(10),
            introspection_cache_entries: 10_000,
            introspection_cache: Duration::from_secs(300),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            env: BTreeMap::new(),
            inherit_env: ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ"]
                .map(String::from)
                .to_vec(),
            init_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(2),
            max_message_bytes: 16 * 1024 * 1024,
            max_stderr_lines: 200,
            max_result_bytes: None,
            allow_tools: Vec::new(),
            deny_tools: Vec::new(),
            tools: BTreeMap::new(),
            prespawn: 0,
            prespawn_max_age: Duration::from_secs(60),
            warm_idle: Duration::from_secs(60),
            parent_death_signal: true,
            required_scopes: Vec::new(),
            pass_access_token: false,
            protocol: ServerProtocol::Legacy,
        }
    }
}

impl Config {
    /// Builds the effective config from an optional TOML text and an environment lookup,
    /// then fills in the defaults that depend on other keys and validates the result.
    ///
    /// `self_exe` is the running binary, used for the demo server default.
    pub fn load(
        toml_text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        self_exe: &str,
    ) -> Result<Self, ConfigError> {
        Self::load_checked(toml_text, env, self_exe, &[])
    }

    /// [`Config::load`], plus `checks` that need modules above this one (the secret key
    /// decodes, the Redis URL parses, the jq filters compile). Every problem found is
    /// reported at once, one per line, so a fix is never followed by the next surprise.
    pub fn load_checked(
        toml_text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        self_exe: &str,
        checks: &[Check<'_>],
    ) -> Result<Self, ConfigError> {
        let mut config: Config = match toml_text {
            Some(text) => toml::from_str(text)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        let mut problems = Vec::new();
        if let Err(ConfigError::Invalid(problem)) = config.fill_defaults(self_exe) {
            problems.push(problem);
        }
        problems.extend(config.problems());
        problems.extend(checks.iter().filter_map(|check| check(&config).err()));
        match problems.len() {
            0 => Ok(config),
            1 => Err(ConfigError::Invalid(problems.remove(0))),
            n => Err(ConfigError::Invalid(format!("{n} problems:\n  - {}", problems.join("\n  - ")))),
        }
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Env { key, message: e.to_string() })
        }
        let get = |key: &str| env(key).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("SWITCHBOARD_LISTEN") {
            self.listen = parse("SWITCHBOARD_LISTEN", &v)?;
        }
        if let Some(v) = get("SWITCHBOARD_REDIS_URL") {
            self.redis_url = Some(v);
        }
        if let Some(v) = get("SWITCHBOARD_IDLE_TTL_SECS") {
            self.idle_ttl_secs = parse("SWITCHBOARD_IDLE_TTL_SECS", &v)?;
        }
        if let Some(v) = get("SWITCHBOARD_KEY_PREFIX") {
            self.key_prefix = v;
        }
        if let Some(v) = get("SWITCHBOARD_MAX_CHILDREN") {
            self.max_children = parse("SWITCHBOARD_MAX_CHILDREN", &v)?;
        }
        if let Some(v) = get("SWITCHBOARD_AUTH_MODE") {
            self.auth.mode = Some(match v.trim() {
                "static" => AuthMode::Static,
                "http" => AuthMode::Http,
                "none" => AuthMode::None,
                "oauth" => AuthMode::OAuth,
                other => {
                    return Err(ConfigError::Env {
                        key: "SWITCHBOARD_AUTH_MODE",
                        message: format!("`{other}` is not one of static, http, none, oauth"),
                    });
                }
            });
        }
        if let Some(v) = get("SWITCHBOARD_AUTH_STATIC_TOKENS") {
            self.auth.static_tokens = split_list(&v);
        }
        if let Some(v) = get("SWITCHBOARD_AUTH_URL") {
            self.auth.url = Some(v);
        }
        if let Some(v) = get("SWITCHBOARD_MCP_COMMAND") {
            let words = shell_words::split(&v)
                .map_err(|e| ConfigError::Env { key: "SWITCHBOARD_MCP_COMMAND", message: e.to_string() })?;
            let server = self.servers.entry(DEFAULT_SERVER.into()).or_default();
            server.command = words;
        }
        if let Some(v) = get("SWITCHBOARD_MCP_PROTOCOL") {
            let protocol =
                v.parse().map_err(|message| ConfigError::Env { key: "SWITCHBOARD_MCP_PROTOCOL", message })?;
            // Like SWITCHBOARD_MCP_COMMAND, for the server of that name.
            let server = self.servers.get_mut(DEFAULT_SERVER).ok_or_else(|| ConfigError::Env {
                key: "SWITCHBOARD_MCP_PROTOCOL",
                message: format!("applies to the server `{DEFAULT_SERVER}`: set SWITCHBOARD_MCP_COMMAND too"),
            })?;
            server.protocol = protocol;
        }
        if let Some(v) = get("SWITCHBOARD_SECRET_KEY") {
            self.secret_key = Some(v);
        }
        if let Some(v) = get("SWITCHBOARD_SECRET_KEYS_OLD") {
            self.secret_keys_old = split_list(&v);
        }
        if let Some(v) = get("SWITCHBOARD_HTTP_ALLOWED_HOSTS") {
            self.http.allowed_hosts = split_list(&v);
        }
        if let Some(v) = get("SWITCHBOARD_LIMITS_SESSIONS_PER_PRINCIPAL") {
            self.limits.sessions_per_principal = parse("SWITCHBOARD_LIMITS_SESSIONS_PER_PRINCIPAL", &v)?;
        }
        if let Some(v) = get("SWITCHBOARD_LIMITS_REQUESTS_PER_SEC") {
            self.limits.requests_per_sec = parse("SWITCHBOARD_LIMITS_REQUESTS_PER_SEC", &v)?;
        }
        if let Some(v) = get("SWITCHBOARD_LIMITS_BURST") {
            self.limits.burst = parse("SWITCHBOARD_LIMITS_BURST", &v)?;
        }
        if let Some(v) = get("SWITCHBOARD_AUTH_REQUIRE_PRINCIPAL") {
            self.auth.require_principal = parse("SWITCHBOARD_AUTH_REQUIRE_PRINCIPAL", &v)?;
        }
        if let Some(v) = get("SWITCHBOARD_CACHE_SEAL") {
            self.cache_seal = Some(parse("SWITCHBOARD_CACHE_SEAL", &v)?);
        }
        let oauth_urls = [
            ("SWITCHBOARD_AUTH_ISSUER", &mut self.auth.issuer),
            ("SWITCHBOARD_AUTH_AUDIENCE", &mut self.auth.audience),
            ("SWITCHBOARD_AUTH_JWKS_URL", &mut self.auth.jwks_url),
            ("SWITCHBOARD_AUTH_INTROSPECTION_URL", &mut self.auth.introspection_url),
            ("SWITCHBOARD_AUTH_INTROSPECTION_CLIENT_ID", &mut self.auth.introspection_client_id),
            ("SWITCHBOARD_AUTH_INTROSPECTION_CLIENT_SECRET", &mut self.auth.introspection_client_secret),
        ];
        for (key, field) in oauth_urls {
            if let Some(v) = get(key) {
                *field = Some(v.trim().to_string());
            }
        }
        if let Some(v) = get("SWITCHBOARD_AUTH_REQUIRED_SCOPES") {
            self.auth.required_scopes =
                v.split([',', ' ']).filter(|s| !s.is_empty()).map(String::from).collect();
        }
        Ok(())
    }

    fn fill_defaults(&mut self, self_exe: &str) -> Result<(), ConfigError> {
        for server in self.servers.values_mut() {
            if let Some(first) = server.command.first_mut().filter(|w| *w == SELF_COMMAND) {
                *first = self_exe.to_string();
            }
            if server.pass_access_token && !server.env.values().any(|v| v.contains(ACCESS_TOKEN_TEMPLATE)) {
                server.env.insert(ACCESS_TOKEN_ENV.into(), ACCESS_TOKEN_TEMPLATE.into());
            }
        }
        if self.servers.is_empty() {
            // The embedded default: the demo analytics server is this very binary.
            let mut demo = ServerConfig {
                command: vec![self_exe.to_string(), "demo-server".into()],
                ..ServerConfig::default()
            };
            // Auth mode `oauth` never hands the access token on: the demo's "API key" is then
            // the user's identity.
            let credential =
                if self.auth.mode == Some(AuthMode::OAuth) { "{claims.sub}" } else { "{credentials.token}" };
            demo.env.insert("DEMO_TOKEN".into(), credential.into());
            self.servers.insert(DEFAULT_SERVER.into(), demo);
        }
        if self.auth.mode.is_none() {
            if self.redis_url.is_some() && self.auth.static_tokens.is_empty() {
                return Err(ConfigError::Invalid(
                    "a Redis URL is set but no credentials check is configured: set \
                     SWITCHBOARD_AUTH_STATIC_TOKENS (comma-separated tokens), or \
                     SWITCHBOARD_AUTH_MODE=http with SWITCHBOARD_AUTH_URL, or \
                     SWITCHBOARD_AUTH_MODE=none to accept anyone"
                        .into(),
                ));
            }
            self.auth.mode = Some(AuthMode::Static);
            if self.auth.static_tokens.is_empty() {
                self.auth.static_tokens = vec![DEMO_TOKEN.into()];
            }
        }
        Ok(())
    }

    /// Everything wrong with the values, one sentence each.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut invalid = |m: String| problems.push(m);
        if self.idle_ttl_secs == 0 {
            invalid("idle_ttl_secs must be at least 1".into());
        }
        if self.idle_ttl_secs > MAX_DURATION_SECS {
            invalid(format!("idle_ttl_secs must be at most {MAX_DURATION_SECS} (ten years)"));
        }
        if self.max_children == 0 {
            invalid("max_children must be at least 1".into());
        }
        if self.http.max_connections == 0 {
            invalid("http.max_connections must be at least 1".into());
        }
        if self.http.header_read_timeout.is_zero() || self.http.idle_timeout.is_zero() {
            invalid("http.header_read_timeout_secs and http.idle_timeout_secs must be above 0".into());
        }
        if self.max_batch_items == 0 || self.max_batch_answer_bytes == 0 {
            invalid("max_batch_items and max_batch_answer_bytes must be at least 1".into());
        }
        if self.limits.requests_per_sec > 0 && self.limits.burst == 0 {
            invalid("limits.burst must be at least 1 when limits.requests_per_sec is set".into());
        }
        if self.input_wait.is_zero() || self.input_wait > Duration::from_secs(3600) {
            invalid("input_wait_secs must be above 0 and at most 3600 (a parked call holds a child)".into());
        }
        if self.limits.embedded_max_sessions == 0 {
            invalid("limits.embedded_max_sessions must be at least 1".into());
        }
        if self.key_prefix.contains(['{', '}']) {
            invalid("key_prefix must not contain `{` or `}` (they form Redis hash tags)".into());
        }
        match self.auth_mode() {
            AuthMode::Static if self.auth.static_tokens.is_empty() => {
                invalid("auth mode static needs at least one token in auth.static_tokens".into());
            }
            AuthMode::Http if self.auth.url.is_none() => {
                invalid("auth mode http needs auth.url (SWITCHBOARD_AUTH_URL)".into());
            }
            AuthMode::OAuth => self.oauth_problems(&mut invalid),
            _ => {}
        }
        if self.redis_url.is_some() && self.secret_key.is_none() {
            invalid(
                "a Redis URL is set but SWITCHBOARD_SECRET_KEY is not: sessions outlive this \
                 process, so credentials must be sealed with a key every worker shares \
                 (base64 of 32 random bytes, e.g. `head -c32 /dev/urandom | base64`)"
                    .into(),
            );
        }
        for (name, server) in &self.servers {
            if server.command.is_empty() {
                invalid(format!("servers.{name}: command is empty"));
            }
            if server.prespawn > 0 {
                if server.env.values().any(|v| v.contains("{credentials.") || v.contains("{claims.")) {
                    invalid(format!(
                        "servers.{name}: prespawn needs an environment that does not depend on the \
                         session (its env maps credentials)"
                    ));
                }
                if server.prespawn >= self.max_children {
                    invalid(format!(
                        "servers.{name}: prespawn ({}) must be below max_children ({}) so requests \
                         that cannot use a warm child still get a slot",
                        server.prespawn, self.max_children
                    ));
                }
            }
            if name.is_empty() || name.contains(['.', '{', '}', ' ']) {
                invalid(format!("server name `{name}` must be non-empty without `.`, braces or spaces"));
            }
        }
        problems
    }

    /// What is wrong with the `oauth` settings, one sentence each.
    fn oauth_problems(&self, invalid: &mut dyn FnMut(String)) {
        let auth = &self.auth;
        match auth.issuer.as_deref() {
            None => invalid("auth mode oauth needs auth.issuer (SWITCHBOARD_AUTH_ISSUER)".into()),
            Some(url) if !is_http_url(url) => invalid(format!("auth.issuer `{url}` must be an http(s) URL")),
            Some(_) => {}
        }
        match auth.audience.as_deref() {
            None => invalid(
                "auth mode oauth needs auth.audience (SWITCHBOARD_AUTH_AUDIENCE): this gateway's \
                 canonical URL, such as https://gw.example.com/mcp"
                    .into(),
            ),
            Some(url) if !is_http_url(url) || url.contains('#') => {
                invalid(format!("auth.audience `{url}` must be an http(s) URL without a fragment"))
            }
            Some(_) => {}
        }
        for (key, url) in [("jwks_url", &auth.jwks_url), ("introspection_url", &auth.introspection_url)] {
            if let Some(url) = url.as_deref().filter(|u| !is_http_url(u)) {
                invalid(format!("auth.{key} `{url}` must be an http(s) URL"));
            }
        }
        if auth.introspection_url.is_some()
            && (auth.introspection_client_id.is_none() || auth.introspection_client_secret.is_none())
        {
            invalid(
                "auth.introspection_url needs auth.introspection_client_id and \
                 auth.introspection_client_secret"
                    .into(),
            );
        }
        if auth.introspection_cache_entries == 0 {
            invalid("auth.introspection_cache_entries must be at least 1".into());
        }
        for (name, server) in &self.servers {
            if !server.pass_access_token && server.env.values().any(|v| v.contains(ACCESS_TOKEN_TEMPLATE)) {
                invalid(format!(
                    "servers.{name}: env passes the client's access token ({ACCESS_TOKEN_TEMPLATE}) but \
                     pass_access_token is off: set it only for a server meant to receive tokens \
                     issued for this gateway"
                ));
            }
        }
    }

    /// Every scope the config requires, at any level: what the protected resource metadata
    /// advertises unless `auth.scopes_supported` says otherwise.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self.auth.required_scopes.clone();
        scopes.extend(self.auth.scopes_supported.iter().cloned());
        for server in self.servers.values() {
            scopes.extend(server.required_scopes.iter().cloned());
            scopes.extend(server.tools.values().flat_map(|t| t.required_scopes.iter().cloned()));
        }
        let mut seen = std::collections::BTreeSet::new();
        scopes.retain(|s| seen.insert(s.clone()));
        scopes
    }

    /// The auth mode in force (always set after [`Config::load`]).
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.mode.unwrap_or(AuthMode::Static)
    }

    /// Whether the public `demo` token must be refused: it is among the static tokens but the
    /// worker listens beyond loopback, where anyone who read the README could use it.
    pub fn refuses_demo_token(&self) -> bool {
        !self.listen.ip().is_loopback()
            && self.auth_mode() == AuthMode::Static
            && self.auth.static_tokens.iter().any(|t| t == DEMO_TOKEN)
    }

    /// Most children one principal may have in calls at once (0: no limit); see
    /// `max_children_per_principal`.
    pub fn principal_share(&self) -> usize {
        if self.auth_mode() == AuthMode::None {
            return 0;
        }
        self.max_children_per_principal.unwrap_or((self.max_children / 2).max(1))
    }

    /// Whether cached results are sealed at rest (see `cache_seal`).
    pub fn cache_seal(&self) -> bool {
        self.cache_seal.unwrap_or(self.redis_url.is_some())
    }

    /// The idle TTL as a duration.
    pub fn idle_ttl(&self) -> Duration {
        Duration::from_secs(self.idle_ttl_secs)
    }

    /// The config as TOML with every secret replaced by `<redacted>`: keys, tokens, every
    /// server `env` value (constants there are often API keys) and the userinfo of every URL.
    pub fn redacted_toml(&self) -> String {
        let mut copy = self.clone();
        let redact = |s: &mut String| *s = "<redacted>".into();
        if let Some(k) = copy.secret_key.as_mut() {
            redact(k);
        }
        copy.secret_keys_old.iter_mut().for_each(redact);
        copy.auth.static_tokens.iter_mut().for_each(redact);
        if let Some(secret) = copy.auth.introspection_client_secret.as_mut() {
            redact(secret);
        }
        for url in [copy.redis_url.as_mut(), copy.auth.url.as_mut()].into_iter().flatten() {
            *url = redact_url_userinfo(url);
        }
        copy.servers.values_mut().flat_map(|s| s.env.values_mut()).for_each(redact);
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `<redacted>`.
pub fn redact_url_password(url: &str) -> String {
    match split_userinfo(url) {
        Some((scheme, userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}{user}:<redacted>{host}")
        }
        None => url.to_string(),
    }
}

/// Replaces the whole userinfo of a URL (`scheme://user:password@host`) with `<redacted>`.
pub fn redact_url_userinfo(url: &str) -> String {
    match split_userinfo(url) {
        Some((scheme, _, host)) => format!("{scheme}<redacted>{host}"),
        None => url.to_string(),
    }
}

/// `scheme://`, the userinfo and `@host...` of a URL that has a userinfo.
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some((&url[..scheme_end], &rest[..at], &rest[at..]))
}

/// The variable a server with `pass_access_token` receives the client's token in, unless its
/// `env` names another.
pub const ACCESS_TOKEN_ENV: &str = "MCP_ACCESS_TOKEN";

/// The template of the client's access token (`oauth` mode, `pass_access_token` only).
pub const ACCESS_TOKEN_TEMPLATE: &str = "{credentials.access_token}";

fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Durations in the TOML file are seconds (integer or fractional).
mod secs_f64 {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if secs > super::MAX_DURATION_SECS as f64 {
            return Err(serde::de::Error::custom(format!(
                "{secs} s is more than the {} s (ten years) any duration may be",
                super::MAX_DURATION_SECS
            )));
        }
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
