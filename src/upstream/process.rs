//! Child processes: spawn an MCP server in its own process group, and take it
//! down with the ladder close stdin → grace → SIGTERM → grace → SIGKILL on the
//! group → reap, on every path.
//!
//! The only place that creates a `Command` and the only `unsafe` of the crate
//! (the `pre_exec` hook and the `killpg`/`waitpid`/`prctl` calls, each
//! documented). A [`ChildProcess`] that is dropped without [`ChildProcess::finish`]
//! (an error, a timeout, a client that went away) is still taken down and reaped
//! in the background: the guard owns the process group.

use std::io;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What to run. The program is executed directly, never through a shell.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub program: String,
    pub args: Vec<String>,
    /// The child's whole environment (the worker's own is not inherited).
    pub env: Vec<(String, String)>,
    /// Name for logs.
    pub label: Arc<str>,
    /// Lines of stderr logged; the rest are counted.
    pub max_stderr_lines: usize,
    /// Where cut stderr lines are counted.
    pub metrics: Option<Arc<crate::telemetry::Metrics>>,
    /// Have the kernel SIGKILL the child when the worker dies (`PR_SET_PDEATHSIG`, set in a
    /// `pre_exec` hook). A `pre_exec` hook makes std start the child with `fork`; without one
    /// it uses `posix_spawn` (vfork), about 0.3 ms less per spawn. A worker killed with SIGKILL
    /// then leaves its children to their stdin's end of file and to the service manager.
    pub parent_death_signal: bool,
}

/// Shared by every child of a worker: the tracker that reaping tasks run in, and
/// the token that worker shutdown cancels to skip the graces.
#[derive(Clone, Default)]
pub struct Reaper {
    tracker: TaskTracker,
    kill_now: CancellationToken,
    live: Arc<std::sync::atomic::AtomicI64>,
}

impl Reaper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Children spawned and not yet reaped.
    pub fn live(&self) -> i64 {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves when worker shutdown has begun: in-flight requests give up their children.
    pub async fn killing(&self) {
        self.kill_now.cancelled().await;
    }

    /// Worker shutdown: SIGKILL every child at once and wait (bounded) until all are reaped.
    pub async fn shutdown(&self, bound: Duration) -> bool {
        self.kill_now.cancel();
        self.tracker.close();
        tokio::time::timeout(bound, self.tracker.wait()).await.is_ok()
    }
}

struct Inner {
    child: Child,
    pgid: i32,
    stdin: Option<ChildStdin>,
    grace: Duration,
    label: Arc<str>,
    /// Held until the child is reaped: the live-children cap counts it until then.
    permit: Option<OwnedSemaphorePermit>,
}

/// A running MCP server process; see the module docs for how it ends.
pub struct ChildProcess {
    inner: Option<Inner>,
    reaper: Reaper,
    /// A line to write before stdin closes (the `notifications/cancelled` of an abandoned request).
    on_abandon: Option<String>,
}

/// Makes the calling process a child subreaper, so that grandchildren whose parent
/// exits are re-parented to the worker (and reaped by it) instead of to init.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Spawns `spec` in a new process group (with a parent-death signal if the spec asks for
/// one), stdin/stdout piped, stderr logged line by line (bounded).
pub fn spawn(
    spec: &SpawnSpec,
    grace: Duration,
    permit: OwnedSemaphorePermit,
    reaper: &Reaper,
) -> io::Result<(ChildProcess, ChildStdout)> {
    #[allow(clippy::disallowed_methods)] // the one place a child is made: the guard below owns it
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if spec.parent_death_signal {
        set_parent_death_signal(&mut command);
    }
    let mut child = command.spawn()?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| io::Error::other("child has no pid"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or_else(|| io::Error::other("child stdout missing"))?;
    if let Some(stderr) = child.stderr.take() {
        let label = spec.label.clone();
        let max = spec.max_stderr_lines;
        reaper.tracker.spawn(super::stdio::drain_stderr(stderr, label, max, spec.metrics.clone()));
    }
    reaper.live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let inner = Inner { child, pgid, stdin, grace, label: spec.label.clone(), permit: Some(permit) };
    Ok((ChildProcess { inner: Some(inner), reaper: reaper.clone(), on_abandon: None }, stdout))
}

/// A worker killed with SIGKILL takes the child along: `PR_SET_PDEATHSIG` in the child.
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: getpid is async-signal-safe; the hook below only calls prctl, getppid and _exit,
    // which are async-signal-safe, allocates nothing and touches no shared state.
    #[allow(unsafe_code)]
    let parent = unsafe { libc::getpid() };
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            // A worker killed with SIGKILL takes its children along.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

impl ChildProcess {
    /// The child's process id (also its process group id), while this guard owns it.
    pub fn pid(&self) -> Option<u32> {
        self.inner.as_ref().and_then(|i| u32::try_from(i.pgid).ok())
    }

    /// The child's stdin, while it is open.
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.inner.as_mut().and_then(|i| i.stdin.as_mut())
    }

    /// The child has answered its one request: while it exits it holds a slot of `exiting`
    /// (a separate, larger bound) instead of a slot of the cap, so a server that is slow to
    /// exit does not hold back the next request. Without a free exiting slot it keeps its own.
    pub fn move_to_exiting(&mut self, exiting: &Arc<tokio::sync::Semaphore>) {
        if let (Some(inner), Ok(slot)) = (self.inner.as_mut(), exiting.clone().try_acquire_owned()) {
            inner.permit = Some(slot);
        }
    }

    /// Sets the line written to the child if it is taken down before [`ChildProcess::finish`]
    /// (a request abandoned by its client); `None` once the request is answered.
    pub fn set_on_abandon(&mut self, line: Option<String>) {
        self.on_abandon = line;
    }

    /// Ends the child in the background (the caller does not wait): close stdin, grace,
    /// SIGTERM, grace, SIGKILL the group, reap.
    pub fn finish(mut self) {
        self.on_abandon = None;
        self.take_down();
    }

    fn take_down(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        let abandon = self.on_abandon.take();
        let kill_now = self.reaper.kill_now.clone();
        let live = self.reaper.live.clone();
        let ladder = async move {
            ladder(inner, abandon, kill_now).await;
            live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.reaper.tracker.spawn_on(ladder, &handle);
        }
        // Outside a runtime (never the case in the worker) kill_on_drop still SIGKILLs the child.
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.take_down();
    }
}

async fn ladder(mut inner: Inner, abandon: Option<String>, kill_now: CancellationToken) {
    use tokio::io::AsyncWriteExt;
    if let (Some(line), Some(stdin)) = (abandon, inner.stdin.as_mut()) {
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        let _ = tokio::time::timeout(Duration::from_millis(100), write).await;
    }
    drop(inner.stdin.take());
    let grace = inner.grace;
    let mut exited = wait_or(&mut inner.child, grace, &kill_now).await;
    if !exited {
        signal_group(inner.pgid, libc::SIGTERM);
        exited = wait_or(&mut inner.child, grace, &kill_now).await;
    }
    if !exited && !kill_now.is_cancelled() {
        tracing::warn!(server = %inner.label, "MCP server ignored stdin close and SIGTERM; killing its group");
    }
    // Whatever is left of the group (grandchildren included) goes now.
    signal_group(inner.pgid, libc::SIGKILL);
    if !exited {
        let _ = inner.child.wait().await;
    }
    reap_group(inner.pgid).await;
    drop(inner.permit.take());
}

/// Waits for the child's exit for at most `grace`, or until worker shutdown. True if it exited.
async fn wait_or(child: &mut Child, grace: Duration, kill_now: &CancellationToken) -> bool {
    tokio::select! {
        status = child.wait() => status.is_ok(),
        () = tokio::time::sleep(grace) => false,
        () = kill_now.cancelled() => false,
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; pgid is the group this guard created and still owns
    // (the kernel does not reuse a pid while it names a live process group).
    #[allow(unsafe_code)]
    unsafe {
        libc::killpg(pgid, signal);
    }
}

fn group_exists(pgid: i32) -> bool {
    // SAFETY: signal 0 checks for existence only.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::killpg(pgid, 0) };
    rc == 0
}

/// Reaps members of the group that were re-parented to this (subreaper) process after
/// their parent died. Bounded: a member that will not die within a second is left to
/// the kernel's SIGKILL already sent, and the loop ends.
async fn reap_group(pgid: i32) {
    for _ in 0..100 {
        let mut status = 0;
        // SAFETY: waitpid on a negative pid only reaps children of this process in that group;
        // no tokio-managed child is in it any more (the leader was reaped above).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        if rc > 0 {
            continue; // reaped one; look again
        }
        // rc == 0: members of ours alive. ECHILD: none of ours, but members may still be
        // on their way to us (their parent is dying); the group is empty only on ESRCH.
        if rc < 0 && !group_exists(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
