//! Inspecting and ending sessions straight from Redis, for `switchboard sessions`.
//!
//! Reads never touch a session's TTL (inspection must not keep a session alive),
//! SCAN is used rather than KEYS, a Cluster is scanned master by master, and
//! sealed credentials are never read out.

use std::time::Duration;

use redis::AsyncCommands;

use super::connection::{Conn, Connector, Topology};
use super::{Keys, StoreError};
use crate::session::{SessionId, now_ms};

/// One session as `sessions list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub id: String,
    pub age_secs: u64,
    pub idle_secs: u64,
    pub ttl_secs: i64,
    pub principal: String,
    pub state_bytes: usize,
}

/// Direct access to the sessions of a deployment.
pub struct Admin {
    connector: std::sync::Arc<Connector>,
    topology: Topology,
    keys: Keys,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

const FIELDS: [&str; 4] = ["created_ms", "last_seen_ms", "principal", "state"];

impl Admin {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let topology = Topology::parse(url).map_err(StoreError::Unavailable)?;
        let connector = Connector::connect(&topology, Duration::from_secs(5)).await.map_err(unavailable)?;
        Ok(Self { connector, topology, keys: Keys::new(prefix) })
    }

    /// Connections to scan: every master of a Cluster, else the one server.
    async fn scan_targets(&self) -> Result<Vec<redis::aio::MultiplexedConnection>, StoreError> {
        let clients = match &self.topology {
            Topology::Cluster(_) => {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut self.connector.conn())
                    .await
                    .map_err(unavailable)?;
                nodes
                    .lines()
                    .filter(|l| l.contains("master") && !l.contains("fail"))
                    .filter_map(|l| l.split_whitespace().nth(1))
                    .filter_map(|addr| addr.split('@').next())
                    .map(|addr| redis::Client::open(format!("redis://{addr}")).map_err(unavailable))
                    .collect::<Result<Vec<_>, _>>()?
            }
            _ => vec![self.connector.client()],
        };
        let mut conns = Vec::new();
        for client in clients {
            conns.push(client.get_multiplexed_async_connection().await.map_err(unavailable)?);
        }
        Ok(conns)
    }

    /// Every session, by SCAN (bounded by `limit`).
    pub async fn list(&self, limit: usize) -> Result<Vec<Summary>, StoreError> {
        let pattern = format!("{}{{*}}", glob_escape(self.keys.prefix()));
        let mut ids = Vec::new();
        for mut conn in self.scan_targets().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                ids.extend(keys.iter().filter_map(|k| self.id_of(k)));
                cursor = next;
                if cursor == 0 || ids.len() >= limit {
                    break;
                }
            }
        }
        ids.truncate(limit);
        let mut out = Vec::new();
        for id in ids {
            if let Some(summary) = self.summary(&id).await? {
                out.push(summary);
            }
        }
        Ok(out)
    }

    fn id_of(&self, key: &str) -> Option<SessionId> {
        let inner = key.strip_prefix(self.keys.prefix())?.strip_prefix('{')?.strip_suffix('}')?;
        SessionId::parse(inner)
    }

    async fn summary(&self, id: &SessionId) -> Result<Option<Summary>, StoreError> {
        let mut conn: Conn = self.connector.conn();
        let key = self.keys.session(id);
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(&FIELDS[..])
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let ttl_ms: i64 = conn.pttl(&key).await.map_err(unavailable)?;
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        let num = |i: usize| values[i].as_deref().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let now = now_ms();
        Ok(Some(Summary {
            id: id.to_string(),
            age_secs: now.saturating_sub(num(0)) / 1000,
            idle_secs: now.saturating_sub(num(1)) / 1000,
            ttl_secs: if ttl_ms < 0 { ttl_ms } else { ttl_ms / 1000 },
            principal: values[2].clone().unwrap_or_default(),
            state_bytes: values[3].as_ref().map_or(0, String::len),
        }))
    }

    /// One session: its summary, its non-secret fields, and its activity log (newest first).
    pub async fn show(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(id) = SessionId::parse(id) else { return Ok(None) };
        let Some(summary) = self.summary(&id).await? else { return Ok(None) };
        let mut conn = self.connector.conn();
        let fields: Vec<(String, String)> =
            conn.hgetall(self.keys.session(&id)).await.map_err(unavailable)?;
        let log: Vec<String> = conn.lrange(self.keys.log(&id), 0, -1).await.map_err(unavailable)?;
        let mut record = serde_json::Map::new();
        for (name, value) in fields {
            if name == "creds" {
                record.insert(name, serde_json::Value::String("<sealed>".into()));
                continue;
            }
            let parsed = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            record.insert(name, parsed);
        }
        let log: Vec<serde_json::Value> = log
            .iter()
            .map(|e| serde_json::from_str(e).unwrap_or(serde_json::Value::String(e.clone())))
            .collect();
        Ok(Some(serde_json::json!({ "summary": summary, "record": record, "activity": log })))
    }

    /// Ends a session now; false if there was none.
    pub async fn expire(&self, id: &str) -> Result<bool, StoreError> {
        let Some(id) = SessionId::parse(id) else { return Ok(false) };
        let (cache, age) = self.keys.cache(&id);
        let keys = [self.keys.session(&id), cache, age, self.keys.log(&id)];
        let mut conn = self.connector.conn();
        let exists: i64 = conn.exists(&keys[0]).await.map_err(unavailable)?;
        let _: i64 = conn.del(&keys).await.map_err(unavailable)?;
        Ok(exists > 0)
    }
}

/// Escapes glob metacharacters of a key prefix for SCAN MATCH.
fn glob_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
