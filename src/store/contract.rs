//! The behaviour every [`SessionStore`] must have, written once and run on both
//! implementations: on [`super::MemoryStore`] by the unit tests (`store/tests.rs`)
//! and on [`super::RedisStore`] against a real `redis-server` by `tests/it`.
//!
//! A check sees the store through a [`Harness`], which also lets time pass and reads
//! expiries: the embedded store's clock is moved, and on Redis every key's `PTTL` is
//! shortened, so no check sleeps and TTLs are compared as ranges. The [`store_contract`]
//! macro turns every check into one test.
//!
//! Public (and hidden from the docs) only so the integration tests can run it; the
//! binary never calls it.
//!
//! [`store_contract`]: crate::store_contract

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use super::{ACTIVITY_LOG_LEN, CasOutcome, Rate, SessionStore, StoreError};
use crate::session::{SCHEMA_VERSION, SessionId, SessionRecord};
use crate::telemetry::Metrics;

/// The idle TTL the checks use: long enough that real time passing during a check
/// does not matter.
pub const TTL: Duration = Duration::from_secs(60);

/// How far below the full TTL a just-touched key may be (time spent by the check itself).
const SLACK: Duration = Duration::from_secs(2);

/// A time the checks pass as `now_ms`.
const NOW: u64 = 1_790_000_000_000;

/// Something of the store that expires.
#[derive(Debug, Clone, Copy)]
pub enum Expiring<'a> {
    Session(&'a SessionId),
    /// The session's result cache.
    Cache(&'a SessionId),
    /// The session's activity log.
    Log(&'a SessionId),
    Lock(&'a SessionId, &'a str),
    Shared(&'a str),
}

/// What a check needs besides the store.
#[async_trait]
pub trait Harness: Send + Sync {
    fn store(&self) -> &dyn SessionStore;

    /// The registry the store counts its failures in.
    fn metrics(&self) -> &Metrics;

    /// Lets `by` pass for every expiry the store keeps.
    async fn advance(&self, by: Duration);

    /// Time left before `what` expires; `None` if it does not exist.
    async fn expires_in(&self, what: Expiring<'_>) -> Option<Duration>;

    /// The session's activity log, newest first (the trait writes it; operators read it).
    async fn activity(&self, id: &SessionId) -> Vec<String>;
}

/// Generates one `#[tokio::test]` per check of the contract; `$harness` is an expression
/// (it may `.await`) giving a fresh [`Harness`] for each test.
#[doc(hidden)]
#[macro_export]
macro_rules! store_contract {
    ($harness:expr) => {
        $crate::store_contract!(@each $harness;
            a_created_session_loads_back_with_its_last_seen_time_updated,
            a_new_session_expires_after_the_idle_ttl,
            a_second_create_with_the_same_id_is_refused_and_the_first_session_kept,
            every_load_resets_the_idle_ttl_of_all_the_session_keys,
            state_and_field_writes_reset_the_idle_ttl_of_all_the_session_keys,
            an_idle_session_expires_with_its_cache_and_log,
            a_session_in_use_outlives_its_ttl,
            an_unknown_session_is_absent_everywhere_and_nothing_is_created_for_it,
            replace_state_applies_on_the_expected_revision_only,
            replace_state_refuses_malformed_json_and_counts_it_once,
            set_field_sets_the_log_level,
            delete_ends_the_session_with_its_cache_and_log,
            load_with_cache_reads_the_entry_in_the_same_step,
            a_cache_entry_is_replaced_by_a_newer_one,
            the_cache_evicts_the_oldest_entries_beyond_its_budget,
            an_entry_larger_than_the_budget_is_not_kept,
            caches_are_kept_per_session,
            a_lock_is_taken_once_until_released,
            a_lock_lapses_after_its_ttl,
            locks_are_per_session_and_per_name,
            the_activity_log_keeps_the_newest_entries_first,
            shared_values_round_trip_and_expire,
            published_messages_reach_the_subscribers_of_their_channels_only,
            publishing_with_a_closed_subscriber_still_succeeds,
            the_store_answers_a_ping_and_describes_itself,
            a_principal_at_its_quota_loses_its_least_recently_used_session_to_a_new_one,
            ended_sessions_free_their_place_in_the_quota,
            a_quota_of_zero_admits_any_number,
            concurrent_admissions_at_the_quota_keep_exactly_the_quota,
            the_request_bucket_allows_a_burst_then_refills_at_the_rate,
        );
    };
    (@each $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let harness = $harness;
                $crate::store::contract::$check(&harness).await;
            }
        )*
    };
}

/// A record as a worker creates it.
pub fn record() -> SessionRecord {
    SessionRecord {
        schema: SCHEMA_VERSION,
        created_ms: NOW,
        last_seen_ms: NOW,
        principal: "alice".into(),
        identity: json!({"sub": "alice", "groups": ["ops"]}),
        sealed_identity: Some("sealed-identity".into()),
        client: json!({"name": "contract", "version": "1.0"}),
        protocol_version: Some("2025-06-18".into()),
        sealed_credentials: "sealed-credentials".into(),
        state: json!({"step": 1}),
        state_rev: 0,
        log_level: None,
    }
}

fn new_id() -> SessionId {
    SessionId::generate().expect("OS random source")
}

async fn created(h: &dyn Harness) -> SessionId {
    let id = new_id();
    h.store().create(&id, &record(), TTL).await.expect("create");
    id
}

async fn load(h: &dyn Harness, id: &SessionId) -> Option<SessionRecord> {
    h.store().load(id, NOW + 1, TTL).await.expect("load")
}

async fn cache_get(h: &dyn Harness, id: &SessionId, field: &str) -> Option<String> {
    h.store().cache_get(id, field).await.expect("cache_get")
}

async fn cache_put(h: &dyn Harness, id: &SessionId, field: &str, value: &str, at: u64, budget: usize) {
    h.store().cache_put(id, field, value, NOW + at, TTL, budget).await.expect("cache_put");
}

/// A session with a result-cache entry `f` and one activity entry: every key it can have.
async fn created_with_cache_and_log(h: &dyn Harness) -> SessionId {
    let id = created(h).await;
    cache_put(h, &id, "f", "cached", 1, 1 << 20).await;
    h.store().log_activity(&id, "called", TTL).await.expect("log_activity");
    id
}

/// Asserts that the session, its cache and its log all expire in `full`.
async fn assert_session_keys_expire_in(h: &dyn Harness, id: &SessionId, full: Duration) {
    for what in [Expiring::Session(id), Expiring::Cache(id), Expiring::Log(id)] {
        assert_expires_in(h, what, full).await;
    }
}

/// Asserts that nothing is left of the session: record, cache, log.
async fn assert_session_keys_gone(h: &dyn Harness, id: &SessionId) {
    for what in [Expiring::Session(id), Expiring::Cache(id), Expiring::Log(id)] {
        assert_eq!(h.expires_in(what).await, None, "{what:?} exists without its session");
    }
}

/// Asserts that `what` expires in `full` (less the time the check took).
async fn assert_expires_in(h: &dyn Harness, what: Expiring<'_>, full: Duration) {
    let left = h.expires_in(what).await;
    let Some(left) = left else { panic!("{what:?} does not exist") };
    assert!(left <= full && left + SLACK >= full, "{what:?} expires in {left:?}, expected {full:?}");
}

/// `store_failures_total{op, kind}` of the harness's registry.
pub fn failures(h: &dyn Harness, op: &str, kind: &str) -> u64 {
    let sample = format!("switchboard_store_failures_total{{op=\"{op}\",kind=\"{kind}\"}} ");
    let text = h.metrics().render();
    text.lines().find_map(|l| l.strip_prefix(sample.as_str())?.trim().parse().ok()).unwrap_or(0)
}

/// Every failure counted so far, whatever its operation.
pub fn all_failures(h: &dyn Harness) -> u64 {
    let text = h.metrics().render();
    let counted = text.lines().filter(|l| l.starts_with("switchboard_store_failures_total{"));
    counted.filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

pub async fn a_created_session_loads_back_with_its_last_seen_time_updated(h: &dyn Harness) {
    let id = created(h).await;
    let loaded = h.store().load(&id, NOW + 5_000, TTL).await.expect("load");
    assert_eq!(loaded, Some(SessionRecord { last_seen_ms: NOW + 5_000, ..record() }));
    let again = load(h, &id).await.expect("still there");
    assert_eq!(again.last_seen_ms, NOW + 1, "every load records the time");
    assert_eq!(all_failures(h), 0);
}

pub async fn a_new_session_expires_after_the_idle_ttl(h: &dyn Harness) {
    let id = created(h).await;
    assert_expires_in(h, Expiring::Session(&id), TTL).await;
}

pub async fn a_second_create_with_the_same_id_is_refused_and_the_first_session_kept(h: &dyn Harness) {
    let id = created(h).await;
    // Another writer's record: other credentials (a retry of our own create would carry ours).
    let other = SessionRecord {
        principal: "mallory".into(),
        sealed_credentials: "sealed-elsewhere".into(),
        ..record()
    };
    let refused = h.store().create(&id, &other, TTL).await;
    assert!(matches!(refused, Err(StoreError::Corrupt(_))), "{refused:?}");
    assert_eq!(load(h, &id).await.map(|r| r.principal), Some("alice".into()));
    assert_eq!(failures(h, "create", "corrupt"), 1);
}

pub async fn every_load_resets_the_idle_ttl_of_all_the_session_keys(h: &dyn Harness) {
    let id = created_with_cache_and_log(h).await;
    h.advance(Duration::from_secs(40)).await;
    assert_expires_in(h, Expiring::Session(&id), TTL - Duration::from_secs(40)).await;
    assert_expires_in(h, Expiring::Cache(&id), TTL - Duration::from_secs(40)).await;
    assert!(load(h, &id).await.is_some());
    assert_session_keys_expire_in(h, &id, TTL).await;
    h.advance(Duration::from_secs(40)).await;
    let loaded = h.store().load_with_cache(&id, NOW + 2, TTL, "f").await.expect("load_with_cache");
    assert_eq!(loaded.and_then(|(_, cached)| cached), Some("cached".into()));
    assert_session_keys_expire_in(h, &id, TTL).await;
}

pub async fn state_and_field_writes_reset_the_idle_ttl_of_all_the_session_keys(h: &dyn Harness) {
    let id = created_with_cache_and_log(h).await;
    let longer = TTL * 2;
    let outcome = h.store().replace_state(&id, 0, r#"{"step":2}"#, NOW + 2, longer).await;
    assert_eq!(outcome.expect("replace_state"), CasOutcome::Applied);
    assert_session_keys_expire_in(h, &id, longer).await;
    let longest = TTL * 3;
    assert!(h.store().set_field(&id, "log_level", "debug", NOW + 3, longest).await.expect("set_field"));
    assert_session_keys_expire_in(h, &id, longest).await;
}

pub async fn an_idle_session_expires_with_its_cache_and_log(h: &dyn Harness) {
    let id = created_with_cache_and_log(h).await;
    h.advance(TTL + Duration::from_secs(1)).await;
    assert_eq!(cache_get(h, &id, "f").await, None);
    assert_eq!(load(h, &id).await, None);
    assert_session_keys_gone(h, &id).await;
    assert!(h.activity(&id).await.is_empty());
    assert!(!h.store().delete(&id).await.expect("delete"), "nothing left to delete");
}

pub async fn a_session_in_use_outlives_its_ttl(h: &dyn Harness) {
    let id = created(h).await;
    for _ in 0..3 {
        h.advance(TTL * 2 / 3).await;
        assert!(load(h, &id).await.is_some(), "a session in use must not expire");
    }
}

pub async fn an_unknown_session_is_absent_everywhere_and_nothing_is_created_for_it(h: &dyn Harness) {
    let id = new_id();
    let store = h.store();
    assert_eq!(load(h, &id).await, None);
    assert_eq!(store.load_with_cache(&id, NOW, TTL, "f").await.expect("load_with_cache"), None);
    assert_eq!(cache_get(h, &id, "f").await, None);
    cache_put(h, &id, "f", "value", 1, 1 << 20).await;
    store.log_activity(&id, "called", TTL).await.expect("log_activity");
    assert_eq!(
        store.replace_state(&id, 0, "{}", NOW, TTL).await.expect("replace_state"),
        CasOutcome::Missing
    );
    assert!(!store.set_field(&id, "log_level", "debug", NOW, TTL).await.expect("set_field"));
    assert!(!store.delete(&id).await.expect("delete"));
    assert_eq!(cache_get(h, &id, "f").await, None, "no cache entry for a session that does not exist");
    assert_session_keys_gone(h, &id).await;
    assert!(h.activity(&id).await.is_empty());
    assert_eq!(all_failures(h), 0, "an absent session is no failure");
}

pub async fn replace_state_applies_on_the_expected_revision_only(h: &dyn Harness) {
    let id = created(h).await;
    let store = h.store();
    assert_eq!(
        store.replace_state(&id, 0, r#"{"a":1}"#, NOW + 7, TTL).await.expect("cas"),
        CasOutcome::Applied
    );
    let loaded = store.load(&id, NOW + 8, TTL).await.expect("load").expect("session");
    assert_eq!((loaded.state, loaded.state_rev), (json!({"a": 1}), 1));
    assert_eq!(store.replace_state(&id, 0, r#"{"b":2}"#, NOW, TTL).await.expect("cas"), CasOutcome::Conflict);
    assert_eq!(load(h, &id).await.map(|r| r.state), Some(json!({"a": 1})), "a conflict writes nothing");
    assert_eq!(store.replace_state(&id, 1, r#"{"b":2}"#, NOW, TTL).await.expect("cas"), CasOutcome::Applied);
    let loaded = load(h, &id).await.expect("session");
    assert_eq!((loaded.state, loaded.state_rev), (json!({"b": 2}), 2));
    assert_eq!(loaded.principal, "alice", "the rest of the record is untouched");
}

pub async fn replace_state_refuses_malformed_json_and_counts_it_once(h: &dyn Harness) {
    let id = created(h).await;
    let refused = h.store().replace_state(&id, 0, "{not json", NOW, TTL).await;
    assert!(matches!(refused, Err(StoreError::Corrupt(_))), "{refused:?}");
    let loaded = load(h, &id).await.expect("the session stays readable");
    assert_eq!((loaded.state, loaded.state_rev), (json!({"step": 1}), 0));
    assert_eq!(failures(h, "replace_state", "corrupt"), 1);
    assert_eq!(all_failures(h), 1);
}

pub async fn set_field_sets_the_log_level(h: &dyn Harness) {
    let id = created(h).await;
    assert!(h.store().set_field(&id, "log_level", "debug", NOW + 9, TTL).await.expect("set_field"));
    let loaded = h.store().load(&id, NOW + 9, TTL).await.expect("load").expect("session");
    assert_eq!(loaded, SessionRecord { log_level: Some("debug".into()), last_seen_ms: NOW + 9, ..record() });
}

pub async fn delete_ends_the_session_with_its_cache_and_log(h: &dyn Harness) {
    let id = created(h).await;
    let kept = created(h).await;
    for session in [&id, &kept] {
        cache_put(h, session, "f", "cached", 1, 1 << 20).await;
        h.store().log_activity(session, "called", TTL).await.expect("log_activity");
    }
    assert!(h.store().delete(&id).await.expect("delete"));
    assert_eq!(load(h, &id).await, None);
    assert_eq!(cache_get(h, &id, "f").await, None);
    assert_session_keys_gone(h, &id).await;
    assert!(!h.store().delete(&id).await.expect("delete"), "a second delete finds nothing");
    assert_eq!(cache_get(h, &kept, "f").await, Some("cached".into()), "other sessions are untouched");
    assert_eq!(h.activity(&kept).await, ["called"]);
}

pub async fn load_with_cache_reads_the_entry_in_the_same_step(h: &dyn Harness) {
    let id = created(h).await;
    cache_put(h, &id, "f", "v1", 1, 1 << 20).await;
    let store = h.store();
    let (record, cached) =
        store.load_with_cache(&id, NOW + 4, TTL, "f").await.expect("load").expect("session");
    assert_eq!((record.last_seen_ms, cached), (NOW + 4, Some("v1".into())));
    let (_, other) = store.load_with_cache(&id, NOW, TTL, "other").await.expect("load").expect("session");
    assert_eq!(other, None);
    let (_, none) = store.load_with_cache(&id, NOW, TTL, "").await.expect("load").expect("session");
    assert_eq!(none, None, "an empty field reads no entry");
}

pub async fn a_cache_entry_is_replaced_by_a_newer_one(h: &dyn Harness) {
    let id = created(h).await;
    cache_put(h, &id, "f", "v1", 1, 1 << 20).await;
    cache_put(h, &id, "f", "v2", 2, 1 << 20).await;
    assert_eq!(cache_get(h, &id, "f").await, Some("v2".into()));
}

pub async fn the_cache_evicts_the_oldest_entries_beyond_its_budget(h: &dyn Harness) {
    let id = created(h).await;
    let budget = 10;
    cache_put(h, &id, "a", "aaaa", 1, budget).await;
    cache_put(h, &id, "b", "bbbb", 2, budget).await;
    cache_put(h, &id, "c", "cccc", 3, budget).await;
    assert_eq!(cache_get(h, &id, "a").await, None, "the oldest goes first");
    assert_eq!(cache_get(h, &id, "b").await, Some("bbbb".into()));
    assert_eq!(cache_get(h, &id, "c").await, Some("cccc".into()));
    // Rewriting b makes it the newest and frees two bytes; d then pushes out c, now the oldest.
    cache_put(h, &id, "b", "bb", 4, budget).await;
    cache_put(h, &id, "d", "dddddd", 5, budget).await;
    assert_eq!(cache_get(h, &id, "c").await, None);
    assert_eq!(cache_get(h, &id, "b").await, Some("bb".into()));
    assert_eq!(cache_get(h, &id, "d").await, Some("dddddd".into()));
}

pub async fn an_entry_larger_than_the_budget_is_not_kept(h: &dyn Harness) {
    let id = created(h).await;
    cache_put(h, &id, "small", "ab", 1, 4).await;
    cache_put(h, &id, "big", "123456", 2, 4).await;
    assert_eq!(cache_get(h, &id, "big").await, None);
    assert_eq!(cache_get(h, &id, "small").await, None, "evicted on the way, being older");
    cache_put(h, &id, "again", "abcd", 3, 4).await;
    assert_eq!(cache_get(h, &id, "again").await, Some("abcd".into()), "the budget is free again");
}

pub async fn caches_are_kept_per_session(h: &dyn Harness) {
    let (a, b) = (created(h).await, created(h).await);
    cache_put(h, &a, "f", "for a", 1, 1 << 20).await;
    cache_put(h, &b, "f", "for b", 2, 1 << 20).await;
    assert_eq!(cache_get(h, &a, "f").await, Some("for a".into()));
    assert_eq!(cache_get(h, &b, "f").await, Some("for b".into()));
}

pub async fn a_lock_is_taken_once_until_released(h: &dyn Harness) {
    let id = created(h).await;
    let store = h.store();
    assert!(store.try_lock(&id, "f", TTL).await.expect("try_lock"));
    assert!(!store.try_lock(&id, "f", TTL).await.expect("try_lock"), "held");
    store.unlock(&id, "f").await.expect("unlock");
    assert!(store.try_lock(&id, "f", TTL).await.expect("try_lock"), "free again");
    store.unlock(&id, "f").await.expect("unlock");
    store.unlock(&id, "f").await.expect("unlocking a free lock is fine");
}

pub async fn a_lock_lapses_after_its_ttl(h: &dyn Harness) {
    let id = created(h).await;
    let ttl = Duration::from_secs(5);
    assert!(h.store().try_lock(&id, "f", ttl).await.expect("try_lock"));
    assert_expires_in(h, Expiring::Lock(&id, "f"), ttl).await;
    h.advance(Duration::from_secs(3)).await;
    assert!(!h.store().try_lock(&id, "f", ttl).await.expect("try_lock"), "still held");
    h.advance(Duration::from_secs(3)).await;
    assert!(h.store().try_lock(&id, "f", ttl).await.expect("try_lock"), "a lost holder's lock lapses");
}

pub async fn locks_are_per_session_and_per_name(h: &dyn Harness) {
    let (a, b) = (created(h).await, created(h).await);
    let store = h.store();
    assert!(store.try_lock(&a, "x", TTL).await.expect("try_lock"));
    assert!(store.try_lock(&a, "y", TTL).await.expect("try_lock"));
    assert!(store.try_lock(&b, "x", TTL).await.expect("try_lock"));
    assert!(!store.try_lock(&a, "x", TTL).await.expect("try_lock"));
}

pub async fn the_activity_log_keeps_the_newest_entries_first(h: &dyn Harness) {
    let id = created(h).await;
    let total = ACTIVITY_LOG_LEN + 2;
    for n in 0..total {
        h.store().log_activity(&id, &format!("entry {n}"), TTL).await.expect("log_activity");
    }
    let expected: Vec<String> = (2..total).rev().map(|n| format!("entry {n}")).collect();
    assert_eq!(h.activity(&id).await, expected);
    assert_expires_in(h, Expiring::Log(&id), TTL).await;
}

pub async fn shared_values_round_trip_and_expire(h: &dyn Harness) {
    let store = h.store();
    assert_eq!(store.get_shared("tools:a").await.expect("get_shared"), None);
    let ttl = Duration::from_secs(30);
    store.put_shared("tools:a", "[1]", ttl).await.expect("put_shared");
    store.put_shared("tools:b", "[2]", ttl * 2).await.expect("put_shared");
    assert_eq!(store.get_shared("tools:a").await.expect("get_shared"), Some("[1]".into()));
    assert_expires_in(h, Expiring::Shared("tools:a"), ttl).await;
    store.put_shared("tools:a", "[3]", ttl).await.expect("put_shared");
    assert_eq!(store.get_shared("tools:a").await.expect("get_shared"), Some("[3]".into()));
    h.advance(ttl + Duration::from_secs(1)).await;
    assert_eq!(store.get_shared("tools:a").await.expect("get_shared"), None);
    assert_eq!(store.get_shared("tools:b").await.expect("get_shared"), Some("[2]".into()));
}

/// Waits until a subscription made with `subscribe` delivers (Redis subscribes in the
/// background), publishing on `channel` until something arrives; bounded.
async fn until_subscribed(h: &dyn Harness, channel: &str, rx: &mut mpsc::Receiver<(String, String)>) {
    for _ in 0..250 {
        h.store().publish(channel, "hello").await.expect("publish");
        if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
            assert_eq!(message, (channel.to_string(), "hello".to_string()));
            return;
        }
    }
    panic!("the subscription to {channel} never delivered");
}

/// The next message that is not a leftover `hello` of [`until_subscribed`]; bounded.
async fn next_message(rx: &mut mpsc::Receiver<(String, String)>) -> (String, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((_, payload))) if payload == "hello" => {}
            Ok(Some(message)) => return message,
            other => panic!("no message arrived: {other:?}"),
        }
    }
}

pub async fn published_messages_reach_the_subscribers_of_their_channels_only(h: &dyn Harness) {
    let (tx, mut rx) = mpsc::channel(64);
    h.store().subscribe(vec!["contract:a".into(), "contract:b".into()], tx);
    until_subscribed(h, "contract:a", &mut rx).await;
    let store = h.store();
    store.publish("contract:c", "not for us").await.expect("publish");
    store.publish("contract:b", "one").await.expect("publish");
    store.publish("contract:a", "two").await.expect("publish");
    // Messages arrive in order, so had `c` been delivered it would come first.
    assert_eq!(next_message(&mut rx).await, ("contract:b".into(), "one".into()));
    assert_eq!(next_message(&mut rx).await, ("contract:a".into(), "two".into()));
}

pub async fn publishing_with_a_closed_subscriber_still_succeeds(h: &dyn Harness) {
    let (tx, mut rx) = mpsc::channel(4);
    h.store().subscribe(vec!["contract:gone".into()], tx);
    until_subscribed(h, "contract:gone", &mut rx).await;
    drop(rx);
    for _ in 0..3 {
        h.store().publish("contract:gone", "into the void").await.expect("publish");
    }
    assert_eq!(all_failures(h), 0);
}

pub async fn the_store_answers_a_ping_and_describes_itself(h: &dyn Harness) {
    h.store().ping().await.expect("ping");
    assert!(!h.store().describe().is_empty());
}

/// A record of `principal`, created at `NOW`.
fn record_of(principal: &str) -> SessionRecord {
    SessionRecord { principal: principal.into(), ..record() }
}

/// Admits a new session of `principal` within `quota`; returns its id and the ids evicted.
async fn admitted(h: &dyn Harness, principal: &str, quota: usize) -> (SessionId, Vec<SessionId>) {
    let id = new_id();
    let admitted = h.store().admit(&id, &record_of(principal), TTL, quota).await.expect("admit");
    let admitted = admitted.expect("room was made");
    assert_eq!(admitted.lru_evicted, 0, "no store is at capacity here");
    (id, admitted.evicted)
}

async fn exists(h: &dyn Harness, id: &SessionId) -> bool {
    h.expires_in(Expiring::Session(id)).await.is_some()
}

pub async fn a_principal_at_its_quota_loses_its_least_recently_used_session_to_a_new_one(h: &dyn Harness) {
    let (first, _) = admitted(h, "alice", 3).await;
    let (second, _) = admitted(h, "alice", 3).await;
    let (third, _) = admitted(h, "alice", 3).await;
    let (bob, _) = admitted(h, "bob", 3).await;
    // The first and the third are used after the second: the second is the idlest.
    h.advance(Duration::from_secs(1)).await;
    h.store().load(&first, NOW + 1_000, TTL).await.expect("load");
    h.advance(Duration::from_secs(1)).await;
    h.store().load(&third, NOW + 2_000, TTL).await.expect("load");
    let (fourth, evicted) = admitted(h, "alice", 3).await;
    assert_eq!(evicted, vec![second.clone()]);
    assert!(!exists(h, &second).await, "the evicted session is gone");
    for id in [&first, &third, &fourth, &bob] {
        assert!(exists(h, id).await, "{id:?} was kept");
    }
    // Again: now the first is the idlest of alice's (the fourth was created after it was used).
    h.advance(Duration::from_secs(1)).await;
    h.store().load(&fourth, NOW + 3_000, TTL).await.expect("load");
    h.store().load(&third, NOW + 3_000, TTL).await.expect("load");
    let (_, evicted) = admitted(h, "alice", 3).await;
    assert_eq!(evicted, vec![first]);
    assert!(exists(h, &bob).await, "another principal's session is never evicted");
    assert_eq!(all_failures(h), 0);
}

pub async fn ended_sessions_free_their_place_in_the_quota(h: &dyn Harness) {
    let (a, _) = admitted(h, "alice", 2).await;
    let (b, _) = admitted(h, "alice", 2).await;
    assert!(h.store().delete(&a).await.expect("delete"));
    let (c, evicted) = admitted(h, "alice", 2).await;
    assert!(evicted.is_empty(), "a deleted session frees its place: {evicted:?}");
    assert!(exists(h, &b).await && exists(h, &c).await);
    h.advance(TTL + Duration::from_secs(1)).await;
    let (d, evicted) = admitted(h, "alice", 2).await;
    assert!(evicted.is_empty(), "expired sessions free their places: {evicted:?}");
    let (_, evicted) = admitted(h, "alice", 2).await;
    assert!(evicted.is_empty(), "{evicted:?}");
    assert!(exists(h, &d).await);
}

pub async fn a_quota_of_zero_admits_any_number(h: &dyn Harness) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (id, evicted) = admitted(h, "alice", 0).await;
        assert!(evicted.is_empty());
        ids.push(id);
    }
    for id in &ids {
        assert!(exists(h, id).await);
    }
}

pub async fn concurrent_admissions_at_the_quota_keep_exactly_the_quota(h: &dyn Harness) {
    // Sixty creations, sixteen at a time, against a quota of five: whatever the interleaving,
    // five sessions stay, every other one was evicted once, and none is left uncounted.
    let admissions = futures_util::stream::iter(0..60)
        .map(|_| admitted(h, "alice", 5))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let evicted: Vec<&SessionId> = admissions.iter().flat_map(|(_, evicted)| evicted).collect();
    let mut kept = Vec::new();
    for (id, _) in &admissions {
        if exists(h, id).await {
            kept.push(id);
        }
    }
    assert_eq!(kept.len(), 5, "the quota holds: {} kept", kept.len());
    assert_eq!(evicted.len(), 55, "each other session was evicted once");
    assert!(evicted.iter().all(|id| !kept.contains(id)), "no kept session is counted as evicted");
    // The next one still makes room for itself.
    let (newest, evicted) = admitted(h, "alice", 5).await;
    assert_eq!(evicted.len(), 1);
    assert!(exists(h, &newest).await);
    assert_eq!(all_failures(h), 0);
}

pub async fn the_request_bucket_allows_a_burst_then_refills_at_the_rate(h: &dyn Harness) {
    let take = |principal: &'static str, at: u64| async move {
        h.store().take_token(principal, NOW + at, 10, 3).await.expect("take_token")
    };
    for _ in 0..3 {
        assert_eq!(take("alice", 0).await, Rate::Allowed, "the burst passes");
    }
    assert_eq!(take("alice", 0).await, Rate::Limited(Duration::from_millis(100)), "10/s: a token in 100 ms");
    assert_eq!(take("bob", 0).await, Rate::Allowed, "buckets are per principal");
    assert_eq!(take("alice", 50).await, Rate::Limited(Duration::from_millis(50)));
    assert_eq!(take("alice", 100).await, Rate::Allowed, "refilled at the rate");
    assert_eq!(take("alice", 100).await, Rate::Limited(Duration::from_millis(100)));
    // A long pause refills the bucket to the burst, never beyond.
    for _ in 0..3 {
        assert_eq!(take("alice", 60_000).await, Rate::Allowed);
    }
    assert!(matches!(take("alice", 60_000).await, Rate::Limited(_)));
    // A worker whose clock is behind refills nothing and takes nothing it does not have.
    assert!(matches!(take("alice", 59_000).await, Rate::Limited(_)));
    assert_eq!(all_failures(h), 0);
}
