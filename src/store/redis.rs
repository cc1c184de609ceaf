//! The Redis implementation of [`SessionStore`]: one hash per session under
//! `prefix{id}`, read-modify-write only inside Lua scripts (never WATCH/MULTI on
//! the shared multiplexed connection), one round trip per operation. Every
//! operation runs through [`RedisStore::run`], where its failure is reported once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use tokio::sync::mpsc;

use super::connection::{Conn, Connector, Topology};
use super::{Admitted, CasOutcome, Failures, Keys, Rate, SessionStore, StoreError, ttl_ms};
use crate::config::redact_url_password;
use crate::session::{COMPAT_VERSION, OLDEST_SCHEMA, READS_SCHEMA, SessionId, SessionRecord};
use crate::telemetry::Metrics;
use crate::telemetry::events::store::{
    RecordUnreadable, StoreErrorKind, StoreOp, StoredKind, UnreadableReason,
};

/// Creates the hash unless it exists, then sets its expiry. Returns 1 if created, also when
/// the hash is this very write (same sealed credentials, which carry a random nonce): a retry
/// after a connection dropped mid-call must not report a collision.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 2, #ARGV - 1, 2 do
    if ARGV[i] == 'creds' then
      if redis.call('HGET', KEYS[1], 'creds') == ARGV[i + 1] then return 1 end
    end
  end
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

/// Touches and reads a session: last-seen and the full idle TTL on all its keys, atomically
/// with the read, plus one result-cache entry when ARGV[3] names one. A record whose `compat`
/// (else `schema`) is above ARGV[4], what this worker reads, is returned untouched.
const LOAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local compat = redis.call('HGET', KEYS[1], 'compat') or redis.call('HGET', KEYS[1], 'schema')
if tonumber(compat or '') and tonumber(compat) > tonumber(ARGV[4]) then
  return {redis.call('HGETALL', KEYS[1]), false}
end
redis.call('HSET', KEYS[1], 'last_seen_ms', ARGV[1])
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
local cached = false
if ARGV[3] ~= '' then cached = redis.call('HGET', KEYS[2], ARGV[3]) end
return {redis.call('HGETALL', KEYS[1]), cached}
";

/// What [`LOAD`] answers: nil, or the record's fields and the cache entry asked for.
type LoadReply = Option<(Vec<(String, String)>, Option<String>)>;

/// Stores a cache entry and evicts the oldest while over budget.
/// KEYS: session, cache, age. ARGV: field, value, now_ms, ttl_ms, budget.
const CACHE_PUT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then redis.call('HINCRBY', KEYS[2], '__bytes', -string.len(old)) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local bytes = redis.call('HINCRBY', KEYS[2], '__bytes', string.len(ARGV[2]))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local budget = tonumber(ARGV[5])
while bytes > budget do
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not oldest then break end
  redis.call('ZREM', KEYS[3], oldest)
  local v = redis.call('HGET', KEYS[2], oldest)
  if v then
    redis.call('HDEL', KEYS[2], oldest)
    bytes = redis.call('HINCRBY', KEYS[2], '__bytes', -string.len(v))
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
";

/// Appends to the activity log of an existing session, capped, with the session's TTL.
/// KEYS: session, log. ARGV: entry, length cap, ttl_ms.
const LOG_ACTIVITY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// Sets one field of an existing session and touches it (TTL reset on all its keys):
/// 1 if set, 0 if there is no session. KEYS: session, cache, age, log.
const SET_FIELD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'last_seen_ms', ARGV[3])
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return 1
";

/// Compare-and-set of `state` on `state_rev`: -1 missing, 0 conflict, 1 applied.
/// KEYS: session, cache, age, log (all touched when applied).
const REPLACE_STATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local rev = tonumber(redis.call('HGET', KEYS[1], 'state_rev') or '0')
if rev ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'state_rev', rev + 1, 'last_seen_ms', ARGV[3])
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return 1
";

/// Counts a new session in its principal's index. KEYS: the index. ARGV: id, last-seen ms,
/// quota, ttl_ms, evict (`1`: at the quota, the lowest entry makes room). Returns the id of
/// the entry that made room ('' if none was needed), or nil when at the quota without evict.
const ADMIT: &str = r"
local victim = ''
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  if ARGV[5] ~= '1' then return false end
  victim = redis.call('ZPOPMIN', KEYS[1])[1] or ''
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return victim
";

/// Takes a token of a principal's request bucket (the same arithmetic as
/// `store::token_bucket`). KEYS: the bucket. ARGV: now_ms (the worker's clock, so the
/// script stays deterministic), tokens per second, burst. Returns 0 if taken, else the
/// milliseconds until a token.
const TAKE_TOKEN: &str = r"
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at_ms')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at_ms', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
";

/// Index entries probed per round when a principal is at its quota.
const PROBE: usize = 8;

/// Rounds of probing before the least recently used candidate found is taken as is.
const PROBE_ROUNDS: usize = 4;

/// Sessions in a standalone Redis (a reconnecting multiplexed connection).
pub struct RedisStore {
    connector: Arc<Connector>,
    keys: Keys,
    url: String,
    create: Script,
    admit: Script,
    take_token: Script,
    load: Script,
    cache_put: Script,
    log_activity: Script,
    set_field: Script,
    replace_state: Script,
    failures: Failures,
}

/// Why an operation failed, before [`RedisStore::run`] reports it.
enum Fault {
    Redis(redis::RedisError),
    Corrupt(String),
    /// A stored record this worker cannot read (counted as unreadable too).
    Unreadable(Unreadable),
}

/// Why a stored session hash cannot be read.
enum Unreadable {
    /// Its `compat` is above [`READS_SCHEMA`].
    Skew(u32),
    /// A field is not in the format of its name; the text names the field, never its value.
    Malformed(String),
}

impl From<redis::RedisError> for Fault {
    fn from(e: redis::RedisError) -> Self {
        Fault::Redis(e)
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    // The error text of redis-rs never includes the URL's password.
    StoreError::Unavailable(e.to_string())
}

/// The kind an operator tells outages apart by.
fn kind_of(e: &redis::RedisError) -> StoreErrorKind {
    if e.is_timeout() {
        StoreErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        StoreErrorKind::Connection
    } else {
        StoreErrorKind::Rejected
    }
}

impl RedisStore {
    /// Connects to `url`. Operations time out after `op_timeout` so a dead Redis is a
    /// quick 503, never a hang; the connection is re-established in the background.
    /// Failed operations are counted in `metrics`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        op_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let topology = Topology::parse(url).map_err(StoreError::Unavailable)?;
        let connector = Connector::connect(&topology, op_timeout).await.map_err(unavailable)?;
        Ok(Self {
            connector,
            keys: Keys::new(prefix),
            url: redact_url_password(url),
            create: Script::new(CREATE),
            admit: Script::new(ADMIT),
            take_token: Script::new(TAKE_TOKEN),
            load: Script::new(LOAD),
            cache_put: Script::new(CACHE_PUT),
            log_activity: Script::new(LOG_ACTIVITY),
            set_field: Script::new(SET_FIELD),
            replace_state: Script::new(REPLACE_STATE),
            failures: Failures { metrics },
        })
    }

    /// A connection for one operation.
    fn conn(&self) -> Conn {
        self.connector.conn()
    }

    /// Runs one operation; a failure is reported once, here, and mapped to [`StoreError`].
    /// With Sentinel, a failure that a failover explains starts resolving the master again
    /// in the background.
    async fn run<T>(
        &self,
        op: StoreOp,
        session: Option<&SessionId>,
        work: impl Future<Output = Result<T, Fault>>,
    ) -> Result<T, StoreError> {
        work.await.map_err(|fault| {
            let (kind, error) = match fault {
                Fault::Redis(e) => {
                    self.connector.note_error(&e);
                    (kind_of(&e), unavailable(e))
                }
                Fault::Corrupt(why) => (StoreErrorKind::Corrupt, StoreError::Corrupt(why)),
                Fault::Unreadable(why) => {
                    let reason = match why {
                        Unreadable::Skew(_) => UnreadableReason::VersionSkew,
                        Unreadable::Malformed(_) => UnreadableReason::Malformed,
                    };
                    RecordUnreadable { kind: StoredKind::Session, reason, session }
                        .emit(&self.failures.metrics);
                    match why {
                        Unreadable::Skew(compat) => (
                            StoreErrorKind::VersionSkew,
                            StoreError::VersionSkew { compat, reads: READS_SCHEMA },
                        ),
                        Unreadable::Malformed(why) => (StoreErrorKind::Corrupt, StoreError::Corrupt(why)),
                    }
                }
            };
            self.failures.report(op, session, kind, error)
        })
    }

    /// All keys of a session, the record first: what a touch resets the TTL of.
    fn session_keys(&self, id: &SessionId) -> [String; 4] {
        let (cache, age) = self.keys.cache(id);
        [self.keys.session(id), cache, age, self.keys.log(id)]
    }

    /// The touch-and-read of [`SessionStore::load_with_cache`].
    async fn touch(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
        field: &str,
    ) -> Result<Option<(SessionRecord, Option<String>)>, Fault> {
        let reply: LoadReply = self
            .load
            .key(&self.session_keys(id))
            .arg(now_ms)
            .arg(ttl_ms(ttl))
            .arg(field)
            .arg(READS_SCHEMA)
            .invoke_async(&mut self.conn())
            .await?;
        reply
            .map(|(fields, cached)| Ok((from_fields(fields).map_err(Fault::Unreadable)?, cached)))
            .transpose()
    }

    /// Writes a new session record (`op` names it in the failure counts).
    async fn insert(
        &self,
        op: StoreOp,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.run(op, Some(id), async {
            let mut invocation = self.create.key(self.keys.session(id));
            invocation.arg(ttl_ms(ttl));
            for (name, value) in to_fields(record) {
                invocation.arg(name).arg(value);
            }
            let created: i64 = invocation.invoke_async(&mut self.conn()).await?;
            if created == 1 { Ok(()) } else { Err(Fault::Corrupt("session id collision".into())) }
        })
        .await
    }

    /// The least recently used session of a principal's index, its estimates checked
    /// against the sessions' real last-seen times. Index scores only ever lag (a touch
    /// does not update the index), so an entry whose real time is at most the lowest score
    /// not yet probed is the true least recently used. `None` when the probe found ended
    /// sessions (they are dropped from the index: there is room now) or an empty index.
    async fn least_recent(&self, index: &str) -> Result<Option<SessionId>, Fault> {
        let probe = isize::try_from(PROBE).unwrap_or(8);
        for round in 0..PROBE_ROUNDS {
            let entries: Vec<(String, f64)> = self.conn().zrange_withscores(index, 0, probe).await?;
            let beyond = entries.get(PROBE).map(|(_, score)| *score);
            let probed = &entries[..entries.len().min(PROBE)];
            let seen = futures_util::future::join_all(probed.iter().map(|(member, _)| async move {
                let Some(id) = SessionId::parse(member) else { return Ok(None) };
                let seen: Option<u64> = self.conn().hget(self.keys.session(&id), "last_seen_ms").await?;
                Ok::<_, redis::RedisError>(seen.map(|ms| (ms, id)))
            }))
            .await;
            let (mut gone, mut refreshed, mut best) = (Vec::new(), Vec::new(), None::<(u64, SessionId)>);
            for ((member, score), seen) in probed.iter().zip(seen) {
                match seen? {
                    None => gone.push(member.clone()),
                    Some((ms, id)) => {
                        if ms as f64 > *score {
                            refreshed.push((ms, member.clone()));
                        }
                        if best.as_ref().is_none_or(|(b, _)| ms < *b) {
                            best = Some((ms, id));
                        }
                    }
                }
            }
            if !gone.is_empty() {
                let _: i64 = self.conn().zrem(index, &gone).await?;
                return Ok(None);
            }
            if !refreshed.is_empty() {
                let _: i64 = redis::cmd("ZADD")
                    .arg(index)
                    .arg("XX")
                    .arg(refreshed.iter().flat_map(|(ms, m)| [ms.to_string(), m.clone()]).collect::<Vec<_>>())
                    .query_async(&mut self.conn())
                    .await?;
            }
            let Some((ms, id)) = best else { return Ok(None) };
            if beyond.is_none_or(|b| ms as f64 <= b) || round + 1 == PROBE_ROUNDS {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The key layout, for tools that inspect Redis directly.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

/// Forwards messages of one pub/sub connection until it fails or the sink closes.
async fn pump(
    client: &redis::Client,
    channels: &[String],
    sink: &mpsc::Sender<(String, String)>,
) -> Result<(), redis::RedisError> {
    use futures_util::StreamExt;
    let mut pubsub = client.get_async_pubsub().await?;
    for channel in channels {
        pubsub.subscribe(channel).await?;
    }
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else { continue };
        if sink.send((message.get_channel_name().to_string(), payload)).await.is_err() {
            return Ok(());
        }
    }
    Err(redis::RedisError::from((redis::ErrorKind::Io, "pub/sub stream ended")))
}

fn to_fields(record: &SessionRecord) -> Vec<(&'static str, String)> {
    vec![
        ("schema", record.schema.to_string()),
        ("compat", COMPAT_VERSION.to_string()),
        ("created_ms", record.created_ms.to_string()),
        ("last_seen_ms", record.last_seen_ms.to_string()),
        ("principal", record.principal.clone()),
        ("identity", record.identity.to_string()),
        ("sealed_identity", record.sealed_identity.clone().unwrap_or_default()),
        ("client", record.client.to_string()),
        ("protocol_version", record.protocol_version.clone().unwrap_or_default()),
        ("creds", record.sealed_credentials.clone()),
        ("state", record.state.to_string()),
        ("state_rev", record.state_rev.to_string()),
        ("log_level", record.log_level.clone().unwrap_or_default()),
    ]
}

/// Reads a stored hash; the error names the unreadable field, never its value. A record is
/// readable when its `compat` (absent: its `schema`, the rule before `compat` existed) is at
/// most [`READS_SCHEMA`]; fields it does not know are ignored here and kept by Redis.
fn from_fields(fields: Vec<(String, String)>) -> Result<SessionRecord, Unreadable> {
    let mut record = SessionRecord {
        schema: 0,
        created_ms: 0,
        last_seen_ms: 0,
        principal: String::new(),
        identity: serde_json::Value::Null,
        sealed_identity: None,
        client: serde_json::Value::Null,
        protocol_version: None,
        sealed_credentials: String::new(),
        state: serde_json::Value::Object(serde_json::Map::new()),
        state_rev: 0,
        log_level: None,
    };
    let mut compat = None;
    let corrupt = |field: &str, e: &dyn std::fmt::Display| Unreadable::Malformed(format!("{field}: {e}"));
    let num = |field: &str, v: &str| v.parse::<u64>().map_err(|e| corrupt(field, &e));
    let json = |field: &str, v: &str| serde_json::from_str(v).map_err(|e| corrupt(field, &e));
    for (name, value) in fields {
        match name.as_str() {
            "schema" => record.schema = u32::try_from(num("schema", &value)?).unwrap_or(u32::MAX),
            "compat" => compat = Some(u32::try_from(num("compat", &value)?).unwrap_or(u32::MAX)),
            "created_ms" => record.created_ms = num("created_ms", &value)?,
            "last_seen_ms" => record.last_seen_ms = num("last_seen_ms", &value)?,
            "principal" => record.principal = value,
            "identity" => record.identity = json("identity", &value)?,
            "sealed_identity" => record.sealed_identity = Some(value).filter(|v| !v.is_empty()),
            "client" => record.client = json("client", &value)?,
            "protocol_version" => record.protocol_version = Some(value).filter(|v| !v.is_empty()),
            "creds" => record.sealed_credentials = value,
            "state" => record.state = json("state", &value)?,
            "state_rev" => record.state_rev = num("state_rev", &value)?,
            "log_level" => record.log_level = Some(value).filter(|v| !v.is_empty()),
            // Fields written by a newer version are kept by Redis and ignored here.
            _ => {}
        }
    }
    let compat = compat.unwrap_or(record.schema);
    if record.schema < OLDEST_SCHEMA || compat == 0 || compat > record.schema {
        return Err(Unreadable::Malformed(format!("record schema {} compat {compat}", record.schema)));
    }
    if compat > READS_SCHEMA {
        return Err(Unreadable::Skew(compat));
    }
    Ok(record)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, id: &SessionId, record: &SessionRecord, ttl: Duration) -> Result<(), StoreError> {
        self.insert(StoreOp::Create, id, record, ttl).await
    }

    async fn admit(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
        quota: usize,
    ) -> Result<Option<Admitted>, StoreError> {
        if quota == 0 {
            self.create(id, record, ttl).await?;
            return Ok(Some(Admitted::default()));
        }
        let index = self.keys.principal_sessions(&record.principal);
        let mut admitted = Admitted::default();
        // The record first, then its entry in the index: an entry whose record is missing is
        // stale (dropped by the probe), never a session still being created.
        self.insert(StoreOp::Admit, id, record, ttl).await?;
        // First only count it in; when the index is full, refresh the scores of its lowest
        // entries (the sessions' real last-seen times) and then take the lowest entry as the
        // victim in the same step as the new session is counted, so concurrent creations
        // never evict more than one session each, nor starve each other.
        let counted = async {
            for evict in [false, true] {
                if evict {
                    self.run(StoreOp::Admit, Some(id), self.least_recent(&index)).await?;
                }
                let counted: Option<String> = self
                    .run(StoreOp::Admit, Some(id), async {
                        Ok(self
                            .admit
                            .key(&index)
                            .arg(id.as_str())
                            .arg(record.last_seen_ms)
                            .arg(quota)
                            .arg(ttl_ms(ttl))
                            .arg(if evict { "1" } else { "0" })
                            .invoke_async(&mut self.conn())
                            .await?)
                    })
                    .await?;
                if counted.is_some() {
                    return Ok(counted);
                }
            }
            Ok::<_, StoreError>(None)
        };
        let victim = match counted.await {
            Ok(Some(victim)) => victim,
            outcome => {
                // Not counted in: the record goes too (best effort, the failure is counted
                // once already; it expires anyway).
                let _: Result<i64, _> = self.conn().del(self.keys.session(id)).await;
                return outcome.map(|_| None);
            }
        };
        if let Some(victim) = SessionId::parse(&victim)
            && self.delete(&victim).await?
        {
            admitted.evicted.push(victim);
        }
        Ok(Some(admitted))
    }

    async fn take_token(
        &self,
        principal: &str,
        now_ms: u64,
        per_sec: u32,
        burst: u32,
    ) -> Result<Rate, StoreError> {
        let wait_ms: u64 = self
            .run(StoreOp::TakeToken, None, async {
                Ok(self
                    .take_token
                    .key(self.keys.principal_rate(principal))
                    .arg(now_ms)
                    .arg(per_sec.max(1))
                    .arg(burst.max(1))
                    .invoke_async(&mut self.conn())
                    .await?)
            })
            .await?;
        Ok(if wait_ms == 0 { Rate::Allowed } else { Rate::Limited(Duration::from_millis(wait_ms)) })
    }

    async fn load(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let touched = self.run(StoreOp::Load, Some(id), self.touch(id, now_ms, ttl, "")).await?;
        Ok(touched.map(|(record, _)| record))
    }

    async fn load_with_cache(
        &self,
        id: &SessionId,
        now_ms: u64,
        ttl: Duration,
        field: &str,
    ) -> Result<Option<(SessionRecord, Option<String>)>, StoreError> {
        self.run(StoreOp::LoadWithCache, Some(id), self.touch(id, now_ms, ttl, field)).await
    }

    async fn cache_get(&self, id: &SessionId, field: &str) -> Result<Option<String>, StoreError> {
        self.run(StoreOp::CacheGet, Some(id), async {
            Ok(self.conn().hget(self.keys.cache(id).0, field).await?)
        })
        .await
    }

    async fn cache_put(
        &self,
        id: &SessionId,
        field: &str,
        value: &str,
        now_ms: u64,
        ttl: Duration,
        budget: usize,
    ) -> Result<(), StoreError> {
        let (cache, age) = self.keys.cache(id);
        self.run(StoreOp::CachePut, Some(id), async {
            let _: i64 = self
                .cache_put
                .key(self.keys.session(id))
                .key(cache)
                .key(age)
                .arg(field)
                .arg(value)
                .arg(now_ms)
                .arg(ttl_ms(ttl))
                .arg(budget)
                .invoke_async(&mut self.conn())
                .await?;
            Ok(())
        })
        .await
    }

    async fn log_activity(&self, id: &SessionId, entry: &str, ttl: Duration) -> Result<(), StoreError> {
        self.run(StoreOp::LogActivity, Some(id), async {
            let _: i64 = self
                .log_activity
                .key(self.keys.session(id))
                .key(self.keys.log(id))
                .arg(entry)
                .arg(super::ACTIVITY_LOG_LEN)
                .arg(ttl_ms(ttl))
                // An append is not idempotent: not sent again when the outcome is unknown.
                .invoke_async(&mut self.conn().at_most_once())
                .await?;
            Ok(())
        })
        .await
    }

    async fn try_lock(&self, id: &SessionId, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(ttl_ms(ttl)));
        self.run(StoreOp::TryLock, Some(id), async {
            let taken: Option<String> =
                self.conn().set_options(self.keys.lock(id, name), "1", options).await?;
            Ok(taken.is_some())
        })
        .await
    }

    async fn unlock(&self, id: &SessionId, name: &str) -> Result<(), StoreError> {
        self.run(StoreOp::Unlock, Some(id), async { Ok(self.conn().del(self.keys.lock(id, name)).await?) })
            .await
    }

    async fn replace_state(
        &self,
        id: &SessionId,
        expected_rev: u64,
        state: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<CasOutcome, StoreError> {
        self.run(StoreOp::ReplaceState, Some(id), async {
            // What is stored must load again: a malformed state would make the session unreadable.
            serde_json::from_str::<serde::de::IgnoredAny>(state)
                .map_err(|e| Fault::Corrupt(format!("state: {e}")))?;
            let outcome: i64 = self
                .replace_state
                .key(&self.session_keys(id))
                .arg(expected_rev)
                .arg(state)
                .arg(now_ms)
                .arg(ttl_ms(ttl))
                .invoke_async(&mut self.conn())
                .await?;
            Ok(match outcome {
                1 => CasOutcome::Applied,
                0 => CasOutcome::Conflict,
                _ => CasOutcome::Missing,
            })
        })
        .await
    }

    async fn set_field(
        &self,
        id: &SessionId,
        field: &str,
        value: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.run(StoreOp::SetField, Some(id), async {
            let set: i64 = self
                .set_field
                .key(&self.session_keys(id))
                .arg(field)
                .arg(value)
                .arg(now_ms)
                .arg(ttl_ms(ttl))
                .invoke_async(&mut self.conn())
                .await?;
            Ok(set == 1)
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        // One slot (the hash tag), so one multi-key DEL is fine in Cluster mode too.
        let keys = self.session_keys(id);
        self.run(StoreOp::Delete, Some(id), async {
            let principal: Option<String> = self.conn().hget(&keys[0], "principal").await?;
            let _: i64 = self.conn().del(&keys).await?;
            if let Some(principal) = &principal {
                // Its place in the principal's quota (another slot, so another command).
                let _: i64 = self.conn().zrem(self.keys.principal_sessions(principal), id.as_str()).await?;
            }
            Ok(principal.is_some())
        })
        .await
    }

    async fn get_shared(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.run(StoreOp::GetShared, None, async { Ok(self.conn().get(self.keys.shared(name)).await?) }).await
    }

    async fn put_shared(&self, name: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        self.run(StoreOp::PutShared, None, async {
            Ok(self.conn().pset_ex(self.keys.shared(name), value, ttl_ms(ttl)).await?)
        })
        .await
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        self.run(StoreOp::Publish, None, async { Ok(self.conn().publish(channel, message).await?) }).await
    }

    fn subscribe(&self, channels: Vec<String>, sink: mpsc::Sender<(String, String)>) {
        let connector = self.connector.clone();
        let failures = self.failures.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while !sink.is_closed() {
                // Asked anew each time: after a Sentinel failover it is the new master.
                let client = connector.client();
                let started = std::time::Instant::now();
                if let Err(e) = pump(&client, &channels, &sink).await {
                    // Reported like any failed operation; the loop subscribes again after the backoff.
                    failures.report(StoreOp::Subscribe, None, kind_of(&e), unavailable(e));
                }
                // A connection that lived a while was healthy: start the backoff again.
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(200);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(StoreOp::Ping, None, async {
            Ok(redis::cmd("PING").query_async::<()>(&mut self.conn()).await?)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("redis at {}", self.url)
    }
}

#[cfg(test)]
mod compat_tests {
    use super::*;

    fn record(pairs: &[(&str, &str)]) -> Result<SessionRecord, Unreadable> {
        from_fields(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn what_this_release_writes_has_compat_and_reads_back() {
        let fields = to_fields(&record(&[("schema", "1")]).ok().expect("a schema-1 record"));
        assert!(fields.contains(&("compat", COMPAT_VERSION.to_string())));
        let back: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert!(from_fields(back).is_ok());
    }

    #[test]
    fn compat_decides_who_reads_a_record_and_absent_compat_is_the_schema() {
        // The previous release's records: no compat.
        assert!(record(&[("schema", "1")]).is_ok());
        // A newer layout for old readers too: read, its unknown fields ignored.
        assert!(record(&[("schema", "2"), ("compat", "1"), ("sealed_future", "x")]).is_ok());
        // Only for newer readers, with or without compat.
        assert!(matches!(record(&[("schema", "3"), ("compat", "2")]), Err(Unreadable::Skew(2))));
        assert!(matches!(record(&[("schema", "2")]), Err(Unreadable::Skew(2))));
        // Nonsense is malformed, never skew.
        for bad in [&[("schema", "1"), ("compat", "2")][..], &[("schema", "0")], &[], &[("compat", "x")]] {
            assert!(matches!(record(bad), Err(Unreadable::Malformed(_))), "{bad:?}");
        }
    }
}
