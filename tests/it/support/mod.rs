//! Real processes for the integration tests: `redis-server` and `switchboard serve`
//! on free loopback ports, started per test and stopped by pid on drop. Nothing here
//! uses a service the test did not start.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The switchboard binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard")
}

/// A port nobody listens on right now, and never handed out before in this test binary
/// (tests run in parallel: two servers must not be given the same port).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// A private `redis-server` on a free port, no persistence.
pub struct Redis {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test.sh installs it)")
}

impl Redis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let child = spawn_redis(port, dir.path(), &extra);
            let mut redis = Self { port, child, dir, extra: extra.clone() };
            if redis.wait_ready() {
                return redis;
            }
            let _ = redis.child.kill();
        }
        panic!("redis-server did not start");
    }

    /// Ready, and really ours: with tests in parallel, another test's server may have taken
    /// the free port first, and a PING would then reach that one.
    fn wait_ready(&mut self) -> bool {
        let pid = format!("process_id:{}", self.child.id());
        let mine = wait_until(Duration::from_secs(5), || {
            matches!(self.child.try_wait(), Ok(None))
                && self.cli(&["INFO", "server"]).is_ok_and(|info| info.lines().any(|l| l.trim() == pid))
        });
        mine && matches!(self.child.try_wait(), Ok(None))
    }

    /// Starts it again on the same port (after [`Redis::stop`]); the data is gone.
    pub fn start_again(&mut self) {
        self.child = spawn_redis(self.port, self.dir.path(), &self.extra);
        assert!(self.wait_ready(), "redis-server did not start again");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a command with `redis-cli` and returns its raw output.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Every key, by SCAN.
    pub fn keys(&self) -> Vec<String> {
        self.cli(&["--scan"]).unwrap_or_default().lines().map(String::from).collect()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `switchboard serve`.
pub struct Worker {
    pub port: u16,
    pub child: Child,
    env: Vec<(String, String)>,
    config: Option<PathBuf>,
}

impl Worker {
    /// Starts a worker with `env` on a free port (or `SWITCHBOARD_LISTEN` if given).
    pub fn start(env: &[(&str, &str)], config: Option<&Path>) -> Self {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let port = env
            .iter()
            .find(|(k, _)| k == "SWITCHBOARD_LISTEN")
            .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(free_port);
        let fixed_port = env.iter().any(|(k, _)| k == "SWITCHBOARD_LISTEN");
        let mut worker =
            Self { port, child: Self::spawn(port, &env, config), env, config: config.map(Path::to_path_buf) };
        // With tests in parallel another process may take the free port first: then this
        // worker exits (it cannot bind) and is started again on another port.
        for _ in 0..5 {
            if worker.wait_ready() || fixed_port {
                break;
            }
            worker.port = free_port();
            worker.child = Self::spawn(worker.port, &worker.env, worker.config.as_deref());
        }
        assert!(matches!(worker.child.try_wait(), Ok(None)), "worker on port {} did not start", worker.port);
        worker
    }

    /// A worker on `redis` with the test secret key and the token `demo`.
    pub fn with_redis(redis: &Redis, extra: &[(&str, &str)]) -> Self {
        let url = redis.url();
        let mut env = vec![
            ("SWITCHBOARD_REDIS_URL", url.as_str()),
            ("SWITCHBOARD_SECRET_KEY", SECRET_KEY),
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo"),
        ];
        env.extend_from_slice(extra);
        Self::start(&env, None)
    }

    fn spawn(port: u16, env: &[(String, String)], config: Option<&Path>) -> Child {
        let mut command = Command::new(bin());
        if let Some(path) = config {
            command.arg("--config").arg(path);
        }
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard serve")
    }

    /// Listening, and still alive a moment later (so the listener is this worker's).
    fn wait_ready(&mut self) -> bool {
        let url = format!("127.0.0.1:{}", self.port);
        let listening = wait_until(Duration::from_secs(15), || {
            matches!(self.child.try_wait(), Ok(None)) && std::net::TcpStream::connect(&url).is_ok()
        });
        std::thread::sleep(Duration::from_millis(50));
        listening && matches!(self.child.try_wait(), Ok(None))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        signal(self.child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same worker again (same port and settings).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, &self.env, self.config.as_deref());
        assert!(self.wait_ready(), "worker on port {} did not restart", self.port);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// (pid, ppid, pgid) of every process, from /proc.
pub fn processes() -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the parenthesised command: state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(ppid), Some(pgid)) = (fields.get(1), fields.get(2)) {
            out.push((pid, ppid.parse().unwrap_or(0), pgid.parse().unwrap_or(0)));
        }
    }
    out
}

/// Children (direct, alive or zombie) of `pid`, except a worker's process sentinel (part
/// of the worker, alive as long as it is).
pub fn children_of(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(p, ppid, _)| *ppid == pid && !is_sentinel(*p))
        .map(|(p, _, _)| p)
        .collect()
}

/// Whether `pid` is a worker's process sentinel (`switchboard __process-sentinel`).
pub fn is_sentinel(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"__process-sentinel".as_slice()))
}

/// Members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    processes().into_iter().filter(|(_, _, g)| *g == pgid).map(|(p, _, _)| p).collect()
}

/// Waits up to `limit` for `check` to hold; returns whether it did.
pub fn eventually(limit: Duration, check: impl FnMut() -> bool) -> bool {
    wait_until(limit, check)
}

/// [`eventually`] for a condition that is itself asynchronous (an HTTP request, a store
/// read): checks every 20 ms, without blocking the runtime, for up to `limit`.
pub async fn eventually_async<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The worker's `switchboard_store_failures_total`, summed over operations and kinds.
pub async fn store_failures(client: &reqwest::Client, worker: &Worker) -> f64 {
    metric_total(client, worker, "switchboard_store_failures_total{").await
}

/// The sum of the worker's metric samples whose line starts with `prefix`.
async fn metric_total(client: &reqwest::Client, worker: &Worker, prefix: &str) -> f64 {
    let response = client.get(worker.url("/metrics")).send().await.expect("GET /metrics");
    let text = response.text().await.expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An HTTP client for the tests.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client")
}

/// GET `path` of a worker with the session header; the JSON body.
pub async fn get_json(
    client: &reqwest::Client,
    worker: &Worker,
    path: &str,
    session: &str,
) -> serde_json::Value {
    let response = client.get(worker.url(path)).header("Mcp-Session-Id", session).send().await.expect("GET");
    response.json().await.expect("JSON body")
}

/// Children that served requests on a worker, summed over servers: spawns made for a request,
/// plus warm children (started ahead for a session) that a request used.
pub async fn spawns(client: &reqwest::Client, worker: &Worker) -> f64 {
    let response = client.get(worker.url("/metrics")).send().await.expect("GET /metrics");
    let text = response.text().await.expect("metrics text");
    served_by_children(&text)
}

/// [`spawns`] from a metrics text.
pub fn served_by_children(metrics: &str) -> f64 {
    let sum = |prefix: &str, suffix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(prefix) && l.rsplit_once(' ').is_some_and(|(name, _)| name.ends_with(suffix))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    sum("switchboard_mcp_spawns_total", "") - sum("switchboard_warm_spawns_total", "")
        + sum("switchboard_warm_starts_total", r#"outcome="hit"}"#)
}

/// POST /init with the token `demo`; returns the session id.
pub async fn init(client: &reqwest::Client, worker: &Worker) -> String {
    init_with(client, worker, serde_json::json!({"token": "demo"})).await
}

pub async fn init_with(client: &reqwest::Client, worker: &Worker, credentials: serde_json::Value) -> String {
    let response = client
        .post(worker.url("/init"))
        .json(&serde_json::json!({ "credentials": credentials }))
        .send()
        .await
        .expect("POST /init");
    assert_eq!(response.status(), 200, "init failed");
    let body: serde_json::Value = response.json().await.expect("init body");
    body["session_id"].as_str().expect("session_id").to_string()
}

/// POST /call-tool; returns (status, body).
pub async fn call_tool(
    client: &reqwest::Client,
    worker: &Worker,
    session: &str,
    tool: &str,
    arguments: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client
        .post(worker.url("/call-tool"))
        .header("Mcp-Session-Id", session)
        .json(&serde_json::json!({ "tool": tool, "arguments": arguments }))
        .send()
        .await
        .expect("POST /call-tool");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// Writes a config file into `dir` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Path of a fixture script.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid());
    me.is_ok_and(|uid| uid == 0)
}

/// A private nginx running `deploy/nginx.conf`, rewritten to the given worker ports.
pub struct Nginx {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(worker_ports: &[u16]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
            .expect("deploy/nginx.conf");
        let port = free_port();
        let mut config = String::new();
        // As root, nginx workers would drop to `nobody` and could not write their temp files here.
        if is_root() {
            config.push_str("user root;\n");
        }
        let mut servers_written = false;
        for line in template.lines() {
            if line.trim_start().starts_with("server ") && line.ends_with("# upstream-server") {
                if !servers_written {
                    for p in worker_ports {
                        config.push_str(&format!(
                            "        server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n"
                        ));
                    }
                    servers_written = true;
                }
            } else if line.trim_start().starts_with("listen ") && line.ends_with("# listen") {
                config.push_str(&format!("        listen 127.0.0.1:{port};\n"));
            } else if line.trim_start().starts_with("pid ") {
                config.push_str(&format!("pid {}/nginx.pid;\n", dir.path().display()));
            } else {
                config.push_str(line);
                config.push('\n');
            }
        }
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-e")
            .arg("stderr")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx must be installed (scripts/test.sh installs it)");
        let url = format!("127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(&url).is_ok()),
            "nginx did not start"
        );
        Self { port, child, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT is nginx's graceful stop; its workers exit with the master.
        signal(self.child.id(), 3);
        if !wait_until(Duration::from_secs(5), || matches!(self.child.try_wait(), Ok(Some(_)))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Redis Cluster or Sentinel setup started by the project's own `deploy/` script.
pub struct DeployedRedis {
    script: &'static str,
    dir: tempfile::TempDir,
    /// The `KEY=value` lines the script printed.
    pub vars: std::collections::HashMap<String, String>,
}

impl DeployedRedis {
    /// `script` is `redis-cluster.sh` or `redis-sentinel.sh`.
    pub fn start(script: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = format!("{}/deploy/{script}", env!("CARGO_MANIFEST_DIR"));
        let out =
            Command::new("bash").arg(&path).arg("start").arg(dir.path()).output().expect("run deploy script");
        assert!(out.status.success(), "{script} start failed: {}", String::from_utf8_lossy(&out.stderr));
        let vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self { script, dir, vars }
    }
}

impl Drop for DeployedRedis {
    fn drop(&mut self) {
        let path = format!("{}/deploy/{}", env!("CARGO_MANIFEST_DIR"), self.script);
        let _ = Command::new("bash").arg(&path).arg("stop").arg(self.dir.path()).output();
    }
}

/// `redis-cli` against `host:port` (cluster mode follows redirects).
pub fn redis_cli_at(addr: &str, cluster: bool, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut command = Command::new("redis-cli");
    command.args(["-h", host, "-p", port]);
    if cluster {
        command.arg("-c");
    }
    let out = command.args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
