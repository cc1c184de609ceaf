//! Child processes: spawn an MCP server in its own process group, and take it
//! down with the ladder close stdin → grace → SIGTERM → grace → SIGKILL on the
//! group → reap, on every path.
//!
//! The only place that creates a `Command` and the only `unsafe` of the crate
//! (the `pre_exec` hook and the `killpg`/`waitpid`/`prctl` calls, each
//! documented). A [`ChildProcess`] that is dropped without [`ChildProcess::finish`]
//! (an error, a timeout, a client that went away) is still taken down and reaped
//! in the background: the guard owns the process group.
//!
//! Two things outlive a single child, both started by [`init_worker`]:
//! - the **sentinel**, a small process (this binary, re-executed with [`SENTINEL_ARG`])
//!   that learns every guarded group through a pipe and, when the pipe's write end closes
//!   because the worker died (SIGKILL included), SIGKILLs each group still registered: the
//!   parent-death signal only reaches the direct child, not what it started in its group.
//!   It costs one 5-byte pipe write per spawn and per reap, no process per child.
//! - the **orphan reaper**: the worker is a child subreaper, so a descendant that left the
//!   group (`setsid`) and whose parent died is re-parented to it; on SIGCHLD (at most five
//!   times a second, and every few seconds anyway) it reaps every exited child of the worker
//!   that is not one tokio waits for (those are registered while they are spawned).

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
    /// Take the child's whole group down when the worker dies, SIGKILL included: the kernel
    /// SIGKILLs the child (`PR_SET_PDEATHSIG`, set in a `pre_exec` hook) and the worker's
    /// sentinel SIGKILLs its group. A `pre_exec` hook makes std start the child with `fork`;
    /// without one it uses `posix_spawn` (vfork), about 0.3 ms less per spawn. A worker killed
    /// with SIGKILL then leaves its children to their stdin's end of file and to the service
    /// manager.
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
    /// Registered with the sentinel (the spec's `parent_death_signal`).
    guarded: bool,
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
fn become_subreaper() -> io::Result<()> {
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
    // From the fork until the child is registered, the orphan reaper keeps its hands off.
    let gate = GATE.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = command.spawn()?;
    let (Some(pgid), Some(stdout)) = (child.id().and_then(|id| i32::try_from(id).ok()), child.stdout.take())
    else {
        return Err(io::Error::other("child has no pid or stdout")); // kill_on_drop: tokio kills and reaps it
    };
    Registry::lock().register(pgid, spec.parent_death_signal);
    drop(gate);
    let stdin = child.stdin.take();
    if let Some(stderr) = child.stderr.take() {
        let label = spec.label.clone();
        let max = spec.max_stderr_lines;
        reaper.tracker.spawn(super::stdio::drain_stderr(stderr, label, max, spec.metrics.clone()));
    }
    reaper.live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let guarded = spec.parent_death_signal;
    let inner = Inner { child, pgid, guarded, stdin, grace, label: spec.label.clone(), permit: Some(permit) };
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
        // Outside a runtime (never the case in the worker) kill_on_drop still SIGKILLs the child
        // (and the registry keeps its pid: the orphan reaper leaves it to tokio).
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
    // The group is gone (or SIGKILLed and past its bound): nothing left for the sentinel.
    Registry::lock().unregister(inner.pgid, inner.guarded);
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

// ---------------------------------------------------------------------------------------
// The worker's own children: which are tokio's, the sentinel, the orphan reaper.

/// The argument that makes this binary run as a worker's sentinel ([`sentinel_main`]).
pub const SENTINEL_ARG: &str = "__process-sentinel";

/// One record on the sentinel's pipe: an op byte and a pgid (little endian). Five bytes is
/// far below `PIPE_BUF`, so writes from several threads never interleave.
const RECORD: usize = 5;
const ADD: u8 = b'+';
const REMOVE: u8 = b'-';
/// The most groups a sentinel keeps (far above any cap; a bound against a runaway writer).
const SENTINEL_MAX_GROUPS: usize = 1 << 20;
/// A sentinel that died is started again at most this often.
const SENTINEL_RESTART: Duration = Duration::from_secs(1);
/// The most children one orphan scan looks at.
const SCAN_MAX_CHILDREN: usize = 65_536;

/// Held for reading from just before a child is forked until it is registered, and for
/// writing by the orphan reaper while it reaps: the reaper never sees a child of tokio's
/// that is not yet registered, so it never takes an exit status tokio waits for.
static GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());
static REGISTRY: std::sync::Mutex<Registry> = std::sync::Mutex::new(Registry::new());

struct Sentinel {
    pid: i32,
    /// The pipe's write end (non-blocking, close-on-exec): only this process holds it.
    pipe: std::fs::File,
}

struct Registry {
    /// Children tokio reaps (the MCP servers; pid = pgid), counted: a pid reused before the
    /// ladder of its previous owner ended is registered twice.
    owned: Vec<(i32, u32)>,
    /// Groups the sentinel kills if the worker dies (servers with `parent_death_signal`).
    guarded: Vec<(i32, u32)>,
    sentinel: Option<Sentinel>,
    /// Whether this process keeps a sentinel (a worker, after [`init_worker`]).
    wants_sentinel: bool,
    last_start: Option<std::time::Instant>,
}

fn count_up(set: &mut Vec<(i32, u32)>, pid: i32) {
    match set.iter_mut().find(|(p, _)| *p == pid) {
        Some((_, n)) => *n += 1,
        None => set.push((pid, 1)),
    }
}

fn count_down(set: &mut Vec<(i32, u32)>, pid: i32) {
    if let Some(i) = set.iter().position(|(p, _)| *p == pid) {
        set[i].1 -= 1;
        if set[i].1 == 0 {
            set.swap_remove(i);
        }
    }
}

impl Registry {
    const fn new() -> Self {
        Self {
            owned: Vec::new(),
            guarded: Vec::new(),
            sentinel: None,
            wants_sentinel: false,
            last_start: None,
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, Registry> {
        REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&mut self, pgid: i32, guarded: bool) {
        count_up(&mut self.owned, pgid);
        if guarded {
            count_up(&mut self.guarded, pgid);
            self.tell(ADD, pgid);
        }
    }

    fn unregister(&mut self, pgid: i32, guarded: bool) {
        count_down(&mut self.owned, pgid);
        if guarded {
            count_down(&mut self.guarded, pgid);
            self.tell(REMOVE, pgid);
        }
    }

    fn owns(&self, pid: i32) -> bool {
        self.owned.iter().any(|(p, _)| *p == pid)
    }

    /// Writes one record to the sentinel; a sentinel that cannot take it is replaced.
    fn tell(&mut self, op: u8, pgid: i32) {
        let Some(sentinel) = self.sentinel.as_mut() else {
            self.ensure_sentinel();
            return;
        };
        if write_record(&mut sentinel.pipe, op, pgid).is_err() {
            self.replace_sentinel();
        }
    }

    /// Starts a sentinel if this process wants one and has none (at most once a second).
    fn ensure_sentinel(&mut self) {
        if self.sentinel.is_some() || !self.wants_sentinel {
            return;
        }
        if self.last_start.is_some_and(|t| t.elapsed() < SENTINEL_RESTART) {
            return;
        }
        self.last_start = Some(std::time::Instant::now());
        match start_sentinel() {
            Ok(mut sentinel) => {
                // Every group registered so far, so that the new sentinel knows them all.
                let told = self
                    .guarded
                    .iter()
                    .all(|&(pgid, n)| (0..n).all(|_| write_record(&mut sentinel.pipe, ADD, pgid).is_ok()));
                if told {
                    self.sentinel = Some(sentinel);
                } else {
                    tracing::warn!("the process sentinel did not take the live groups; starting another");
                    kill_sentinel(&sentinel);
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "cannot start the process sentinel: a worker killed with SIGKILL leaves what its MCP servers started"
            ),
        }
    }

    /// The sentinel died or is stuck: SIGKILL it (so that it never kills live groups once
    /// its pipe closes) and start another.
    fn replace_sentinel(&mut self) {
        if let Some(old) = self.sentinel.take() {
            tracing::warn!(pid = old.pid, "the process sentinel stopped taking records; replacing it");
            kill_sentinel(&old);
        }
        self.ensure_sentinel();
    }
}

fn write_record(pipe: &mut std::fs::File, op: u8, pgid: i32) -> io::Result<()> {
    use std::io::Write;
    let mut record = [0u8; RECORD];
    record[0] = op;
    record[1..].copy_from_slice(&pgid.to_le_bytes());
    // Non-blocking and below PIPE_BUF: all five bytes or an error (EAGAIN: a full pipe).
    let n = pipe.write(&record)?;
    if n == RECORD { Ok(()) } else { Err(io::Error::other("short write to the sentinel")) }
}

fn kill_sentinel(sentinel: &Sentinel) {
    // SAFETY: kill only sends a signal; the pid is our own unreaped child (the orphan reaper
    // forgets the sentinel, under the registry lock, when it reaps it), so it is not reused.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(sentinel.pid, libc::SIGKILL);
    }
    // The orphan reaper reaps it: it is a child of ours that tokio does not wait for.
}

/// Starts `/proc/self/exe` (this binary, even if replaced on disk since) as a sentinel,
/// reading the read end of a fresh pipe as its stdin, in a process group of its own.
fn start_sentinel() -> io::Result<Sentinel> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    #[allow(unsafe_code)]
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The sentinel blocks on its end; only the worker's end stays non-blocking.
    // SAFETY: fcntl on a descriptor we own, with integer flags.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&read), libc::F_SETFL, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::disallowed_methods)] // the sentinel: its own reaping is the orphan reaper's
    let child = std::process::Command::new("/proc/self/exe")
        .arg0("switchboard")
        .arg(SENTINEL_ARG)
        .env_clear()
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("sentinel pid out of range"))?;
    // Dropping a std Child neither kills nor waits: the orphan reaper reaps the sentinel.
    drop(child);
    Ok(Sentinel { pid, pipe: std::fs::File::from(write) })
}

/// Makes this process a worker: a child subreaper, with a sentinel that takes the guarded
/// children's groups down if it dies, and the orphan reaper running. Call once, inside the
/// runtime, before the first spawn; what cannot be set up is logged and left out.
pub fn init_worker() {
    if let Err(e) = become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphaned grandchildren will go to init");
    }
    {
        let mut registry = Registry::lock();
        registry.wants_sentinel = true;
        registry.ensure_sentinel();
    }
    tokio::spawn(reap_orphans());
}

/// The orphan reaper's loop: a scan on SIGCHLD, at most five a second, and one every five
/// seconds in any case (a SIGCHLD handler that could not be installed, a sentinel to restart).
async fn reap_orphans() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGCHLD handler; re-parented descendants are reaped every 5 s");
            None
        }
    };
    loop {
        let wake = async {
            match sigchld.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wake => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        // /proc reads and a lock that waits for spawns in progress: off the async threads.
        let _ = tokio::task::spawn_blocking(reap_orphans_once).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One scan: reaps every exited child of this process that tokio does not wait for (a
/// descendant re-parented here, the sentinel, a group member the ladder did not get to).
/// Returns how many it reaped.
pub fn reap_orphans_once() -> usize {
    let candidates = child_pids();
    let mut reaped = 0;
    let _gate = GATE.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut registry = Registry::lock();
    for pid in candidates {
        if pid <= 0 || registry.owns(pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on one pid that is a child of ours and not one tokio waits for
        // (every such child is registered before the gate is released); WNOHANG never blocks.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            reaped += 1;
            if registry.sentinel.as_ref().is_some_and(|s| s.pid == pid) {
                tracing::warn!(pid, "the process sentinel exited; starting another");
                registry.sentinel = None;
            }
        }
    }
    registry.ensure_sentinel();
    reaped
}

/// Pids of this process's children (all threads'), from `/proc/self/task/*/children`, or,
/// where the kernel lacks that file, from every `/proc/<pid>/stat` whose parent is us.
/// Bounded by [`SCAN_MAX_CHILDREN`].
fn child_pids() -> Vec<i32> {
    let mut out = Vec::new();
    let mut have_children_files = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Ok(text) = read_bounded(&task.path().join("children")) else { continue };
            have_children_files = true;
            out.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            if out.len() >= SCAN_MAX_CHILDREN {
                break;
            }
        }
    }
    if have_children_files {
        out.truncate(SCAN_MAX_CHILDREN);
        return out;
    }
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for entry in procs.flatten().take(4 * SCAN_MAX_CHILDREN) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = read_bounded(&entry.path().join("stat")) else { continue };
        // After the parenthesised command: state ppid ...
        let ppid =
            stat.rfind(')').and_then(|i| stat.get(i + 1..)).and_then(|rest| rest.split_whitespace().nth(1));
        if ppid == Some(me.as_str()) {
            out.push(pid);
            if out.len() >= SCAN_MAX_CHILDREN {
                break;
            }
        }
    }
    out
}

fn read_bounded(path: &std::path::Path) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(1 << 20).read_to_string(&mut text)?;
    Ok(text)
}

/// The sentinel process (`switchboard __process-sentinel`, started by a worker): reads
/// records from stdin and, once stdin ends (the worker is gone, whatever killed it),
/// SIGKILLs every group still registered, then exits. Ignores the signals a terminal or a
/// service manager sends for a graceful stop: the worker's end of the pipe decides.
pub fn sentinel_main() -> std::process::ExitCode {
    use std::io::Read;
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: setting a signal's disposition to ignore installs no handler.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    let mut groups: std::collections::HashMap<i32, u32> = std::collections::HashMap::new();
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; RECORD * 512];
    let mut have = 0;
    loop {
        match stdin.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let whole = have - have % RECORD;
        for record in buf[..whole].chunks_exact(RECORD) {
            let mut pgid = [0u8; 4];
            pgid.copy_from_slice(&record[1..]);
            let pgid = i32::from_le_bytes(pgid);
            match record[0] {
                ADD if groups.len() < SENTINEL_MAX_GROUPS || groups.contains_key(&pgid) => {
                    *groups.entry(pgid).or_insert(0) += 1;
                }
                REMOVE => {
                    if let Some(n) = groups.get_mut(&pgid) {
                        *n -= 1;
                        if *n == 0 {
                            groups.remove(&pgid);
                        }
                    }
                }
                _ => {}
            }
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
    // SAFETY: getpgrp only reads our own process group.
    #[allow(unsafe_code)]
    let own = unsafe { libc::getpgrp() };
    for &pgid in groups.keys() {
        // Never 0 or 1 (our own group, init's) or our own group: only the groups a worker named.
        if pgid > 1 && pgid != own {
            // SAFETY: killpg only sends a signal.
            #[allow(unsafe_code)]
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
