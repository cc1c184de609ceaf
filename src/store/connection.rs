//! Connections to Redis in its three topologies, behind one [`Conn`] that the
//! store's commands and scripts run on:
//!
//! - standalone `redis://` / `rediss://`: a reconnecting multiplexed connection;
//! - Cluster `redis+cluster://h1:p1,h2:p2`: the cluster client follows MOVED/ASK and
//!   reconnects; every session key carries the `{id}` hash tag, so each script and
//!   multi-key command stays in one slot;
//! - Sentinel `redis+sentinel://s1:p1,s2:p2/master`: the master is resolved through
//!   the sentinels, and resolved again when a command fails in a way that a
//!   failover explains (connection lost, READONLY), since the client library does
//!   not re-resolve by itself on every path. Such a command is then sent once more,
//!   to the master the sentinels name now, so a failover costs no failed call: a
//!   READONLY command was not applied, and every command the store sends is
//!   idempotent or guarded when a dropped connection leaves it unknown whether it
//!   was (`CREATE` recognizes its own write; a compare-and-set that already applied
//!   answers "conflict" and the caller re-applies its merge patch, which is
//!   idempotent). What is not ([`Conn::at_most_once`]: an activity-log append) is
//!   retried only after READONLY.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, RedisError, RedisFuture, Value};

/// The link of one topology; cheap to clone (all share one multiplexed link).
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Link {
    fn req<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }
}

/// A connection of any topology, for one operation; cheap to clone. With Sentinel, a command
/// that fails the way a failover explains is sent again, once, to the re-resolved master.
#[derive(Clone)]
pub struct Conn {
    link: Link,
    /// The connector's generation this link belongs to, and the connector (Sentinel only).
    generation: u64,
    renew: Option<Arc<Connector>>,
    /// Retry after a dropped connection too (the command is idempotent or guarded).
    retry_dropped: bool,
}

impl Conn {
    /// For a command that must not be applied twice: retried only when refused (READONLY),
    /// never after a connection dropped with the outcome unknown.
    pub fn at_most_once(mut self) -> Self {
        self.retry_dropped = false;
        self
    }

    /// Whether `error` is one a failover explains and a retry on the new master may cure.
    fn worth_retrying(&self, error: &RedisError) -> bool {
        read_only(error) || (self.retry_dropped && (error.is_connection_dropped() || error.is_io_error()))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if self.renew.is_none() {
            return self.link.req(cmd);
        }
        Box::pin(async move {
            let first = self.link.req(cmd).await;
            let error = match first {
                Err(e) if self.worth_retrying(&e) => e,
                done => return done,
            };
            let Some(connector) = self.renew.clone() else { return Err(error) };
            match connector.renewed_after(self.generation, &error).await {
                Some((link, generation)) => {
                    (self.link, self.generation) = (link, generation);
                    self.link.req(cmd).await
                }
                None => Err(error),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.link {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// A write refused by a replica: a demoted master, after a failover.
fn read_only(error: &RedisError) -> bool {
    matches!(error.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
}

/// Where to connect, parsed from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Standalone(String),
    Cluster(Vec<String>),
    Sentinel { sentinels: Vec<String>, master: String },
}

impl Topology {
    /// Parses `redis://…`, `rediss://…`, `redis+cluster://h1,h2` or `redis+sentinel://s1,s2/master`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let hosts = |rest: &str| -> Vec<String> {
            rest.split(',').map(str::trim).filter(|h| !h.is_empty()).map(|h| format!("redis://{h}")).collect()
        };
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let nodes = hosts(rest.trim_end_matches('/'));
            if nodes.is_empty() {
                return Err("redis+cluster:// needs at least one host:port".into());
            }
            Ok(Topology::Cluster(nodes))
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (list, master) =
                rest.rsplit_once('/').ok_or("redis+sentinel:// needs /MASTER_NAME at the end")?;
            if master.is_empty() {
                return Err("redis+sentinel:// needs /MASTER_NAME at the end".into());
            }
            let sentinels = hosts(list);
            if sentinels.is_empty() {
                return Err("redis+sentinel:// needs at least one sentinel host:port".into());
            }
            Ok(Topology::Sentinel { sentinels, master: master.to_string() })
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Topology::Standalone(url.to_string()))
        } else {
            Err("the Redis URL must start with redis://, rediss://, redis+cluster:// or redis+sentinel://"
                .into())
        }
    }
}

/// The live connection and what is needed to renew it.
pub struct Connector {
    current: RwLock<Current>,
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    timeout: Duration,
}

/// The link in use, the client it came from, and how many times it was renewed.
struct Current {
    link: Link,
    client: redis::Client,
    generation: u64,
}

async fn manager(client: redis::Client, timeout: Duration) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}

impl Connector {
    /// Connects; every operation times out after `timeout` so a dead Redis is a quick error.
    pub async fn connect(topology: &Topology, timeout: Duration) -> Result<Arc<Self>, RedisError> {
        let (conn, client, sentinel) = match topology {
            Topology::Standalone(url) => {
                let client = redis::Client::open(url.as_str())?;
                (Link::Single(manager(client.clone(), timeout).await?), client, None)
            }
            Topology::Cluster(nodes) => {
                let cluster = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()?;
                let conn = cluster.get_async_connection().await?;
                // Classic pub/sub is cluster-wide: one node is enough to subscribe.
                let client = redis::Client::open(nodes[0].as_str())?;
                (Link::Cluster(conn), client, None)
            }
            Topology::Sentinel { sentinels, master } => {
                let mut sentinel = SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    None,
                    SentinelServerType::Master,
                )?;
                let client = sentinel.async_get_client().await?;
                (
                    Link::Single(manager(client.clone(), timeout).await?),
                    client,
                    Some(tokio::sync::Mutex::new(sentinel)),
                )
            }
        };
        let current = Current { link: conn, client, generation: 0 };
        Ok(Arc::new(Self { current: RwLock::new(current), sentinel, timeout }))
    }

    /// The connection to run a command on.
    pub fn conn(self: &Arc<Self>) -> Conn {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Conn {
            link: current.link.clone(),
            generation: current.generation,
            renew: self.sentinel.is_some().then(|| self.clone()),
            retry_dropped: true,
        }
    }

    /// A client for pub/sub subscriptions (the current master, or a cluster node).
    pub fn client(&self) -> redis::Client {
        self.current.read().unwrap_or_else(|p| p.into_inner()).client.clone()
    }

    /// For a command that failed on the link of `generation`: the link to send it again on,
    /// once the master was resolved anew (by this call, or by another one since the failure);
    /// `None` if the sentinels cannot name a reachable master within the timeout.
    async fn renewed_after(&self, generation: u64, error: &RedisError) -> Option<(Link, u64)> {
        let sentinel = self.sentinel.as_ref()?;
        let renewed = tokio::time::timeout(self.timeout, async {
            let mut sentinel = sentinel.lock().await;
            if self.generation() == generation {
                tracing::info!(error = %error, "resolving the master again before retrying a command");
                self.switch_master(&mut sentinel).await;
            }
        })
        .await;
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        (renewed.is_ok() && current.generation != generation)
            .then(|| (current.link.clone(), current.generation))
    }

    fn generation(&self) -> u64 {
        self.current.read().unwrap_or_else(|p| p.into_inner()).generation
    }

    /// After a failed command: with Sentinel, and an error a failover explains, resolve the
    /// master again in the background and switch to it. Other topologies reconnect by themselves.
    pub fn note_error(self: &Arc<Self>, error: &RedisError) {
        if self.sentinel.is_none() {
            return;
        }
        let explained = error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_timeout()
            || read_only(error);
        if explained {
            let this = self.clone();
            tokio::spawn(async move { this.resolve_master().await });
        }
    }

    async fn resolve_master(&self) {
        let Some(sentinel) = &self.sentinel else { return };
        // One re-resolution at a time; others that failed meanwhile find it done.
        let Ok(mut sentinel) = sentinel.try_lock() else { return };
        self.switch_master(&mut sentinel).await;
    }

    /// Asks the sentinels for the master and switches to it (a new generation).
    async fn switch_master(&self, sentinel: &mut SentinelClient) {
        match sentinel.async_get_client().await {
            Ok(client) => match manager(client.clone(), self.timeout).await {
                Ok(conn) => {
                    let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                    let generation = current.generation.wrapping_add(1);
                    *current = Current { link: Link::Single(conn), client, generation };
                    tracing::info!("switched to the master the sentinels name now");
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect to the master the sentinels name"),
            },
            Err(e) => tracing::warn!(error = %e, "sentinels cannot name a master"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_topology() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:1/0"),
            Ok(Topology::Standalone("redis://127.0.0.1:1/0".into()))
        );
        assert_eq!(
            Topology::parse("redis+cluster://127.0.0.1:1,127.0.0.1:2"),
            Ok(Topology::Cluster(vec!["redis://127.0.0.1:1".into(), "redis://127.0.0.1:2".into()]))
        );
        assert_eq!(
            Topology::parse("redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster"),
            Ok(Topology::Sentinel {
                sentinels: vec!["redis://127.0.0.1:1".into(), "redis://127.0.0.1:2".into()],
                master: "mymaster".into()
            })
        );
        assert!(Topology::parse("redis+sentinel://127.0.0.1:1").is_err());
        assert!(Topology::parse("redis+cluster://").is_err());
        assert!(Topology::parse("http://x").is_err());
    }
}
