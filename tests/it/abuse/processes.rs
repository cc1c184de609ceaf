//! Abuse findings: processes. A grandchild in the server's group survived a worker SIGKILL
//! (the parent-death signal reaches only the direct child); a descendant that called
//! `setsid` and was re-parented to the worker (a subreaper) stayed `<defunct>` for ever.

use std::time::Duration;

use serde_json::json;

use crate::core::{assert_nothing_left, misbehaving_worker, read_pids};
use crate::support::*;

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The process's state letter (`Z`: a zombie, exited and not reaped) and parent.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// The worker's children that have exited and were not reaped.
fn zombies_of(worker: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(p, ppid, _)| *ppid == worker && state_and_parent(*p).is_some_and(|(s, _)| s == 'Z'))
        .map(|(p, _, _)| p)
        .collect()
}

/// The worker's process sentinel, once it runs.
fn sentinel_of(worker: u32) -> Option<u32> {
    processes().into_iter().find(|(p, ppid, _)| *ppid == worker && is_sentinel(*p)).map(|(p, _, _)| p)
}

/// Starts a call to the stubborn server (it hangs, ignores SIGTERM and has a `sleep 300` in
/// its group) and returns once the server is up: (pid, pgid, grandchild).
async fn stubborn_call_in_flight(
    worker: &Worker,
    pidfile: &str,
) -> (tokio::task::JoinHandle<()>, (u32, u32, u32)) {
    let client = http();
    let session = init(&client, worker).await;
    let url = worker.url("/call-tool");
    let call = tokio::spawn(async move {
        let _ = client.post(url).header("Mcp-Session-Id", session).json(&json!({"tool": "x"})).send().await;
    });
    assert!(eventually(Duration::from_secs(10), || std::path::Path::new(pidfile).exists()));
    let pids = read_pids(pidfile);
    assert_ne!(pids.2, 0, "the stubborn fixture starts a grandchild");
    assert_eq!(group_members(pids.1).len(), 2, "server and grandchild share the group");
    (call, pids)
}

fn assert_group_gone(pids: (u32, u32, u32)) {
    let (pid, pgid, grandchild) = pids;
    let gone = eventually(Duration::from_secs(5), || group_members(pgid).is_empty() && !alive(grandchild));
    assert!(gone, "server {pid} left group {pgid} behind its SIGKILLed worker: {:?}", group_members(pgid));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_a_worker_takes_the_whole_group_of_its_children_along() {
    let dir = tempfile::tempdir().unwrap();
    let (mut worker, pidfile) = misbehaving_worker(dir.path(), "stubborn", 60.0);
    let sentinel = eventually(Duration::from_secs(5), || sentinel_of(worker.pid()).is_some());
    assert!(sentinel, "the worker runs a process sentinel");
    let (call, pids) = stubborn_call_in_flight(&worker, &pidfile).await;
    worker.kill9();
    assert_group_gone(pids);
    call.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sentinel_is_replaced_and_the_group_still_dies_with_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (mut worker, pidfile) = misbehaving_worker(dir.path(), "stubborn", 60.0);
    let (call, pids) = stubborn_call_in_flight(&worker, &pidfile).await;
    let mut first = None;
    assert!(eventually(Duration::from_secs(5), || {
        first = sentinel_of(worker.pid());
        first.is_some()
    }));
    let first = first.unwrap();
    signal(first, 9);
    // The worker reaps the dead sentinel and starts another that knows the live group.
    let replaced = eventually(Duration::from_secs(10), || {
        sentinel_of(worker.pid()).is_some_and(|s| s != first) && !alive(first)
    });
    assert!(replaced, "the sentinel was not replaced: {:?}", children_of(worker.pid()));
    worker.kill9();
    assert_group_gone(pids);
    call.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_descendant_that_called_setsid_is_reaped_once_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, pidfile) = misbehaving_worker(dir.path(), "detach", 10.0);
    let client = http();
    let session = init(&client, &worker).await;
    let (status, body) = call_tool(&client, &worker, &session, "x", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "detached");
    let (pid, pgid, detached) = read_pids(&pidfile);
    assert_ne!(detached, 0);
    // The server is gone; the detached grandchild (`sleep 1`, in a session of its own) was
    // re-parented to the worker, the subreaper, while it ran...
    assert!(eventually(Duration::from_secs(5), || group_members(pgid).is_empty() && !alive(pid)));
    let adopted = eventually(Duration::from_secs(2), || {
        !alive(detached) || state_and_parent(detached).is_some_and(|(_, ppid)| ppid == worker.pid())
    });
    assert!(adopted, "the detached grandchild {detached} was not re-parented to the worker");
    // ...and once it has exited the worker reaps it: no `<defunct>` child is left.
    let reaped =
        eventually(Duration::from_secs(10), || !alive(detached) && zombies_of(worker.pid()).is_empty());
    assert!(reaped, "defunct children of the worker: {:?}", zombies_of(worker.pid()));
    // The normal path leaves nothing behind and the worker keeps serving.
    let (status, body) = call_tool(&client, &worker, &session, "x", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let pids = read_pids(&pidfile);
    assert_ne!(pids.0, pid, "a fresh server answered");
    assert_nothing_left(&worker, (pids.0, pids.1, 0));
    assert!(eventually(Duration::from_secs(10), || !alive(pids.2) && zombies_of(worker.pid()).is_empty()));
    assert!(sentinel_of(worker.pid()).is_some(), "the sentinel lives as long as the worker");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sentinel_ends_with_a_worker_that_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (mut worker, _) = misbehaving_worker(dir.path(), "detach", 10.0);
    let mut sentinel = None;
    assert!(eventually(Duration::from_secs(5), || {
        sentinel = sentinel_of(worker.pid());
        sentinel.is_some()
    }));
    let sentinel = sentinel.unwrap();
    worker.stop();
    assert!(
        eventually(Duration::from_secs(5), || state_and_parent(sentinel).is_none_or(|(s, _)| s == 'Z')),
        "the sentinel outlived its worker"
    );
}
