//! The metrics of a worker: the registry and one method per metric. Only the typed
//! events of [`super::events`] call them, so every name and label lives in `telemetry/`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WarmLabels {
    server: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreFailureLabels {
    op: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnreadableLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// Counters, gauges and histograms of one worker.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    spawns: Family<ServerLabels, Counter>,
    spawn_failures: Family<ServerLabels, Counter>,
    spawn_latency: Family<ServerLabels, Histogram>,
    live_children: Gauge,
    cache: Family<OpLabels, Counter>,
    store_errors: Counter,
    sessions: Family<OpLabels, Counter>,
    warm_starts: Family<WarmLabels, Counter>,
    warm_spawns: Family<ServerLabels, Counter>,
    warm_evictions: Family<ReasonLabels, Counter>,
    warm_children: Gauge,
    warm_rss: Gauge,
    /// Failed store operations by operation and error kind, counted at the store boundary
    /// (see `telemetry::events::store`).
    store_failures: Family<StoreFailureLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    connections: Gauge,
    connection_events: Family<ReasonLabels, Counter>,
    /// Stored values this worker could not read, by kind and reason (version skew, malformed).
    store_unreadable: Family<UnreadableLabels, Counter>,
    /// Bounds reached (a cut stderr line, a batch past its answer budget…), by limit.
    limits: Family<LimitLabels, Counter>,
    session_evictions: Family<ReasonLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let spawns = Family::<ServerLabels, Counter>::default();
        let spawn_failures = Family::<ServerLabels, Counter>::default();
        let spawn_latency =
            Family::<ServerLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let live_children = Gauge::default();
        let cache = Family::<OpLabels, Counter>::default();
        let store_errors = Counter::default();
        let sessions = Family::<OpLabels, Counter>::default();
        let warm_starts = Family::<WarmLabels, Counter>::default();
        let warm_spawns = Family::<ServerLabels, Counter>::default();
        let warm_evictions = Family::<ReasonLabels, Counter>::default();
        let warm_children = Gauge::default();
        let warm_rss = Gauge::default();
        let store_failures = Family::<StoreFailureLabels, Counter>::default();
        let refusals = Family::<ReasonLabels, Counter>::default();
        let connections = Gauge::default();
        let connection_events = Family::<ReasonLabels, Counter>::default();
        let store_unreadable = Family::<UnreadableLabels, Counter>::default();
        registry.register(
            "store_unreadable",
            "Stored values this worker could not read, by kind and reason",
            store_unreadable.clone(),
        );
        let session_evictions = Family::<ReasonLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        registry.register("mcp_spawns", "MCP server processes spawned", spawns.clone());
        registry.register(
            "mcp_spawn_failures",
            "MCP server processes that failed to start",
            spawn_failures.clone(),
        );
        registry.register(
            "mcp_spawn_duration_seconds",
            "Time from spawn to a completed initialize",
            spawn_latency.clone(),
        );
        registry.register("mcp_live_children", "MCP server processes not yet reaped", live_children.clone());
        registry.register("cache", "Result and tool-list cache lookups by outcome", cache.clone());
        registry.register("store_errors", "Session store operations that failed", store_errors.clone());
        registry.register("sessions", "Session lifecycle events", sessions.clone());
        registry.register(
            "warm_starts",
            "Requests of a session on a server with warm starts: hit (a warm child of that session was ready) or miss",
            warm_starts.clone(),
        );
        registry.register(
            "warm_spawns",
            "Warm children started ahead of a session's next request (also counted in mcp_spawns)",
            warm_spawns.clone(),
        );
        registry.register(
            "warm_evictions",
            "Warm children dropped unused, by reason",
            warm_evictions.clone(),
        );
        registry.register("warm_children", "Warm children held (starting or ready)", warm_children.clone());
        registry.register("warm_rss_bytes", "Resident memory of the ready warm children", warm_rss.clone());
        registry.register(
            "store_failures",
            "Session store operations that failed, by operation and error kind",
            store_failures.clone(),
        );
        registry.register("http_connections", "Client connections being served", connections.clone());
        registry.register(
            "http_connection_events",
            "Client connections closed by a limit, refused at the cap, or failed accepts, by reason",
            connection_events.clone(),
        );
        let limits = Family::<LimitLabels, Counter>::default();
        registry.register("limits", "Bounds reached on buffers and shares, by limit", limits.clone());
        registry.register(
            "refusals",
            "Requests refused at the HTTP edge or by a per-principal limit, by reason",
            refusals.clone(),
        );
        registry.register(
            "session_evictions",
            "Sessions ended to make room: principal_quota or lru (embedded store at capacity)",
            session_evictions.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            spawns,
            spawn_failures,
            spawn_latency,
            live_children,
            cache,
            store_errors,
            sessions,
            warm_starts,
            warm_spawns,
            warm_evictions,
            warm_children,
            warm_rss,
            store_failures,
            refusals,
            connections,
            connection_events,
            store_unreadable,
            limits,
            session_evictions,
        }
    }

    pub(crate) fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let labels = RouteLabels { route: route.to_string(), status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub(crate) fn spawned(&self, server: &str) {
        self.spawns.get_or_create(&ServerLabels { server: server.to_string() }).inc();
    }

    pub(crate) fn spawn_failed(&self, server: &str) {
        self.spawn_failures.get_or_create(&ServerLabels { server: server.to_string() }).inc();
    }

    pub(crate) fn observe_spawn(&self, server: &str, elapsed: Duration) {
        self.spawn_latency
            .get_or_create(&ServerLabels { server: server.to_string() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn set_live_children(&self, live: i64) {
        self.live_children.set(live);
    }

    pub(crate) fn cache(&self, op: &'static str) {
        self.cache.get_or_create(&OpLabels { op }).inc();
    }

    /// One failed store operation (also the total `store_errors`); called by
    /// `events::store::StoreFailed::emit` only.
    pub fn store_failed(&self, op: &'static str, kind: &'static str) {
        self.store_failures.get_or_create(&StoreFailureLabels { op, kind }).inc();
        self.store_errors.inc();
    }

    /// A stored value this worker could not read; called by `events::store::RecordUnreadable`.
    pub(crate) fn store_unreadable(&self, kind: &'static str, reason: &'static str) {
        self.store_unreadable.get_or_create(&UnreadableLabels { kind, reason }).inc();
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub fn connections(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    pub(crate) fn connection_event(&self, reason: &'static str) {
        self.connection_events.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn sessions_evicted(&self, reason: &'static str, count: u64) {
        self.session_evictions.get_or_create(&ReasonLabels { reason }).inc_by(count);
    }

    pub(crate) fn session(&self, op: &'static str) {
        self.sessions.get_or_create(&OpLabels { op }).inc();
    }

    /// A request found (`hit`) or did not find (`miss`) a warm child of its session.
    pub(crate) fn warm_start(&self, server: &str, hit: bool) {
        let outcome = if hit { "hit" } else { "miss" };
        self.warm_starts.get_or_create(&WarmLabels { server: server.to_string(), outcome }).inc();
    }

    pub(crate) fn warm_spawned(&self, server: &str) {
        self.warm_spawns.get_or_create(&ServerLabels { server: server.to_string() }).inc();
    }

    /// A warm child dropped unused: `idle`, `count`, `rss`, `capacity`, `stale`, `forgotten`, `drain`, `failed`.
    pub(crate) fn warm_evicted(&self, reason: &'static str) {
        self.warm_evictions.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn set_warm(&self, children: usize, rss_bytes: u64) {
        self.warm_children.set(i64::try_from(children).unwrap_or(i64::MAX));
        self.warm_rss.set(i64::try_from(rss_bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn limit_hit(&self, limit: &'static str) {
        self.limits.get_or_create(&LimitLabels { limit }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
