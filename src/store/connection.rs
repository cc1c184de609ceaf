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
//!   not re-resolve by itself on every path.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, RedisError, RedisFuture, Value};

/// A connection of any topology; cheap to clone (all share one multiplexed link).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
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
    current: RwLock<(Conn, redis::Client)>,
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    timeout: Duration,
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
                (Conn::Single(manager(client.clone(), timeout).await?), client, None)
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
                (Conn::Cluster(conn), client, None)
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
                    Conn::Single(manager(client.clone(), timeout).await?),
                    client,
                    Some(tokio::sync::Mutex::new(sentinel)),
                )
            }
        };
        Ok(Arc::new(Self { current: RwLock::new((conn, client)), sentinel, timeout }))
    }

    /// The connection to run a command on.
    pub fn conn(&self) -> Conn {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// A client for pub/sub subscriptions (the current master, or a cluster node).
    pub fn client(&self) -> redis::Client {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
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
            || error.to_string().contains("READONLY");
        if explained {
            let this = self.clone();
            tokio::spawn(async move { this.resolve_master().await });
        }
    }

    async fn resolve_master(&self) {
        let Some(sentinel) = &self.sentinel else { return };
        // One re-resolution at a time; others that failed meanwhile find it done.
        let Ok(mut sentinel) = sentinel.try_lock() else { return };
        match sentinel.async_get_client().await {
            Ok(client) => match manager(client.clone(), self.timeout).await {
                Ok(conn) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = (Conn::Single(conn), client);
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
