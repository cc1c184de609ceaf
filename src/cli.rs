//! Command-line definitions and wiring only: each subcommand hands over to one
//! component. `anyhow` is used here and in `main.rs`, nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::results::Policies;
use crate::telemetry::{self, LogFormat};
// What only `serve` needs, which is Linux only (the crate docs' "Platforms").
#[cfg(target_os = "linux")]
use {
    crate::server::{self, AppState},
    crate::store::{MemoryStore, RedisStore, SessionStore},
    crate::telemetry::Metrics,
    crate::upstream::process,
    std::sync::Arc,
};

/// `--version`: the release, and the session-record layouts it writes and reads.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("{}\n{}", env!("CARGO_PKG_VERSION"), crate::session::schema_summary())
});

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    long_version = LONG_VERSION.as_str(),
    about = "Stateless HTTP workers in front of stdio MCP servers, sessions in Redis"
)]
pub struct Cli {
    /// Config file (TOML). Default: switchboard.toml if it exists.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an HTTP worker (Linux only).
    Serve,
    /// Run the demo analytics MCP server on stdio.
    DemoServer,
    /// Load and validate the config, print it with secrets redacted.
    CheckConfig,
    /// Inspect and end sessions straight from Redis (never prints a credential).
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// Load generator against a running deployment: latency histogram and calls/s.
    Bench {
        /// Base URL of the deployment (a worker or the load balancer).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// init, call (uncached), call-cached, mcp (tools/call over Streamable HTTP), or
        /// mcp-modern (the same in the 2026-07-28 era: no session, `_meta` on every request).
        #[arg(long, default_value = "call")]
        scenario: crate::bench::Scenario,
        /// Concurrent clients (closed loop).
        #[arg(long, short = 'c', default_value_t = 1)]
        concurrency: usize,
        /// How long to run, e.g. 10s, 500ms, 2m.
        #[arg(long, short = 'd', default_value = "10s", value_parser = crate::bench::parse_duration)]
        duration: std::time::Duration,
        /// Stop after this many calls (whichever comes first with --duration).
        #[arg(long, short = 'n')]
        requests: Option<u64>,
        /// Tool to call.
        #[arg(long, default_value = "echo")]
        tool: String,
        /// Tool arguments, a JSON object.
        #[arg(long, default_value = r#"{"text":"hello"}"#, value_parser = crate::bench::parse_arguments)]
        arguments: serde_json::Value,
        /// Credential token for /init or the Bearer header.
        #[arg(long, env = "SWITCHBOARD_BENCH_TOKEN", default_value = "demo", hide_env_values = true)]
        token: String,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// A stdio MCP server for Claude Desktop that relays to a gateway. Credentials come
    /// from SWITCHBOARD_TOKEN or SWITCHBOARD_CREDENTIALS (a JSON object), never from argv.
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Bridge {
        #[command(subcommand)]
        action: Option<BridgeAction>,
        /// Base URL of the gateway (the load balancer), e.g. http://127.0.0.1:8080.
        #[arg(long, env = "SWITCHBOARD_URL", required = true)]
        url: Option<String>,
        /// `legacy` uses /init, /tools, /call-tool; `mcp` relays to /mcp (Streamable HTTP).
        #[arg(long, default_value = "legacy")]
        transport: crate::bridge::Transport,
        /// Bound on each HTTP call to the gateway, in seconds.
        #[arg(long, default_value_t = 60.0)]
        timeout_secs: f64,
        /// Protocol era of `--transport mcp`: `auto` probes `server/discover` and falls back
        /// to `initialize`; `legacy` (2025-11-25) or `modern` (2026-07-28) force one.
        #[arg(long, default_value = "auto")]
        protocol: crate::bridge::Protocol,
        /// OAuth (mcp transport, when the gateway asks for it and no token is set).
        #[command(flatten)]
        oauth: crate::bridge::oauth::OAuthArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BridgeAction {
    /// Write the bridge into Claude Desktop's claude_desktop_config.json (merged: other
    /// servers are kept, the old file is backed up). The token comes from
    /// SWITCHBOARD_TOKEN (or SWITCHBOARD_CREDENTIALS) or a prompt that does not echo,
    /// and goes into the entry's `env`, never its `args`.
    Install {
        /// Base URL of the gateway (the load balancer), e.g. https://switchboard.example.com.
        #[arg(long, env = "SWITCHBOARD_URL")]
        url: String,
        /// Name of the entry under `mcpServers` (what Claude Desktop shows).
        #[arg(long, default_value = "switchboard")]
        name: String,
        /// `legacy` uses /init, /tools, /call-tool; `mcp` relays to /mcp.
        #[arg(long, default_value = "legacy")]
        transport: crate::bridge::Transport,
        /// The file to merge into. Default: where Claude Desktop keeps it on this OS.
        #[arg(long)]
        config_file: Option<PathBuf>,
        /// Print the JSON entry instead of writing the file.
        #[arg(long)]
        print: bool,
    },
    /// Do what Claude Desktop will do (start the bridge, initialize, open a session,
    /// list tools; call nothing) and print one line per step with what is wrong and how
    /// to fix it. Exits non-zero when a step fails.
    Check {
        /// Base URL of the gateway (the load balancer).
        #[arg(long, env = "SWITCHBOARD_URL")]
        url: String,
        /// `legacy` uses /init, /tools, /call-tool; `mcp` relays to /mcp.
        #[arg(long, default_value = "legacy")]
        transport: crate::bridge::Transport,
        /// Bound on each HTTP call to the gateway, in seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout_secs: f64,
        /// OAuth (mcp transport): the stored authorization is reported and used.
        #[command(flatten)]
        oauth: crate::bridge::oauth::OAuthArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// Every session: id, age, idle time, TTL left, principal, state size.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One session: its record (credentials stay sealed) and its activity log.
    Show { id: String },
    /// End a session now.
    Expire { id: String },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::DemoServer => {
            crate::demo::run().context("demo server")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bridge { action: Some(action), .. } => bridge_action(action),
        Command::Bridge { action: None, url, transport, timeout_secs, protocol, oauth } => {
            let url = url.context("--url (or SWITCHBOARD_URL) is required")?;
            telemetry::init_logging(cli.log_format, "warn");
            let credentials = crate::bridge::credentials_from_env(&process_env)?;
            let oauth = oauth.options(&process_env).map_err(anyhow::Error::msg)?;
            let oauth_on = oauth.is_some() && transport == crate::bridge::Transport::Mcp;
            if credentials.as_object().is_none_or(|o| o.is_empty()) && !oauth_on {
                tracing::warn!(
                    "neither {} nor {} is set: a gateway that requires a token will refuse every call; \
                     set {} in the \"env\" block of this server's entry in claude_desktop_config.json",
                    crate::bridge::TOKEN_ENV,
                    crate::bridge::CREDENTIALS_ENV,
                    crate::bridge::TOKEN_ENV
                );
            }
            let mut options = crate::bridge::BridgeOptions::new(url, transport, credentials);
            options.protocol = protocol;
            options.request_timeout = std::time::Duration::try_from_secs_f64(timeout_secs)
                .context("--timeout-secs must be a positive number")?;
            options.oauth = oauth;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(crate::bridge::run(options, tokio::io::stdin(), tokio::io::stdout()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { url, scenario, concurrency, duration, requests, tool, arguments, token, json } => {
            use std::io::IsTerminal;
            telemetry::init_logging(cli.log_format, "warn");
            let options = crate::bench::BenchOptions {
                url,
                scenario,
                concurrency,
                duration,
                requests,
                tool,
                arguments,
                token,
                json,
                progress: !json && std::io::stderr().is_terminal(),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = runtime.block_on(crate::bench::run(&options))?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.render_table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sessions { action } => {
            telemetry::init_logging(cli.log_format, "warn");
            let config = load_config(cli.config.as_deref())?;
            let Some(url) = config.redis_url.clone() else {
                anyhow::bail!(
                    "sessions live in Redis: set SWITCHBOARD_REDIS_URL (the embedded store of a \
                     single worker cannot be inspected from outside it)"
                );
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(sessions(&url, &config.key_prefix, action))
        }
        Command::CheckConfig => {
            let config = load_config(cli.config.as_deref())?;
            print!("{}", config.redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            telemetry::init_logging(cli.log_format, "info");
            let config = load_config(cli.config.as_deref())?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn bridge_action(action: BridgeAction) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    match action {
        BridgeAction::Install { url, name, transport, config_file, print } => {
            let config_file = match config_file {
                Some(path) => path,
                None => crate::bridge::install::default_config_file(&process_env)?,
            };
            let mut token = process_env(crate::bridge::TOKEN_ENV);
            let credentials = process_env(crate::bridge::CREDENTIALS_ENV);
            let unset = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
            if unset(&token) && unset(&credentials) {
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!(
                        "no token: set {} (or {}) or run this in a terminal to be asked for it",
                        crate::bridge::TOKEN_ENV,
                        crate::bridge::CREDENTIALS_ENV
                    );
                }
                let typed = rpassword::prompt_password("switchboard token for this gateway (input hidden): ")
                    .context("reading the token")?;
                if typed.trim().is_empty() {
                    eprintln!(
                        "no token given: the entry has none (fine for a gateway without authentication)"
                    );
                }
                token = Some(typed);
            }
            let command = std::env::current_exe().context("locating the running binary")?;
            #[cfg(not(windows))]
            let command = command.canonicalize().unwrap_or(command);
            let plan = crate::bridge::install::InstallPlan {
                config_file,
                name,
                command,
                url,
                transport,
                env: crate::bridge::install::entry_env(token, credentials),
            };
            if print {
                println!("{}", plan.snippet());
                return Ok(ExitCode::SUCCESS);
            }
            let installed = plan.write()?;
            let verb = if installed.updated { "updated" } else { "added" };
            println!("{verb} \"{}\" in {}", plan.name, plan.config_file.display());
            if let Some(backup) = installed.backup {
                println!("the previous file is saved as {}", backup.display());
            }
            println!("restart Claude Desktop to load it");
            Ok(ExitCode::SUCCESS)
        }
        BridgeAction::Check { url, transport, timeout_secs, oauth } => {
            let credentials = crate::bridge::credentials_from_env(&process_env)?;
            let mut options = crate::bridge::BridgeOptions::new(url.clone(), transport, credentials);
            options.request_timeout = std::time::Duration::try_from_secs_f64(timeout_secs)
                .context("--timeout-secs must be a positive number")?;
            options.oauth = oauth.options(&process_env).map_err(anyhow::Error::msg)?;
            println!("switchboard bridge check: {url} (transport {transport})");
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let report = runtime.block_on(crate::bridge::check::run(options));
            for step in &report.steps {
                println!("{step}");
            }
            Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Reads the config file (explicit, or `switchboard.toml` if present) and the environment.
pub fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let default = PathBuf::from("switchboard.toml");
    let path = path.map(PathBuf::from).or_else(|| default.exists().then_some(default));
    let text = match &path {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let exe = std::env::current_exe().context("locating the running binary")?;
    // Every check `serve` makes at start-up, so `check-config` accepts exactly what `serve`
    // does; all problems are reported together.
    let secret_key = |c: &Config| match &c.secret_key {
        Some(key) => crate::crypto::Sealer::from_config(key, &c.secret_keys_old)
            .map(drop)
            .map_err(|e| format!("SWITCHBOARD_SECRET_KEY (or SWITCHBOARD_SECRET_KEYS_OLD): {e}")),
        None => Ok(()),
    };
    let redis_url = |c: &Config| match &c.redis_url {
        Some(url) => {
            crate::store::Topology::parse(url).map(drop).map_err(|e| format!("SWITCHBOARD_REDIS_URL: {e}"))
        }
        None => Ok(()),
    };
    let filters = |c: &Config| Policies::from_config(c).map(drop);
    let config = Config::load_checked(
        text.as_deref(),
        &process_env,
        &exe.to_string_lossy(),
        &[&secret_key, &redis_url, &filters],
    )?;
    Ok(config)
}

#[cfg(not(target_os = "linux"))]
async fn serve(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!(
        "`serve` runs on Linux only: a worker relies on process groups, a child subreaper and \
         a parent-death signal to leave no MCP server behind. Run workers on Linux (a container \
         will do) and use `switchboard bridge --url <gateway>` on this machine"
    )
}

#[cfg(target_os = "linux")]
async fn serve(config: Config) -> anyhow::Result<()> {
    process::init_worker();
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn SessionStore> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisStore::connect(url, &config.key_prefix, std::time::Duration::from_secs(2), metrics.clone())
                .await
                .context("connecting to Redis")?,
        ),
        None => {
            tracing::warn!(
                "EMBEDDED SESSION STORE: no SWITCHBOARD_REDIS_URL, so sessions live in this process only; \
                 they are lost on restart and not shared with other workers. Set SWITCHBOARD_REDIS_URL for production."
            );
            Arc::new(MemoryStore::new(metrics.clone()).with_capacity(config.limits.embedded_max_sessions))
        }
    };
    let state = AppState::new(config, store, metrics, &process_env)?;
    let listener = tokio::net::TcpListener::bind(state.config.listen)
        .await
        .with_context(|| format!("binding {}", state.config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        store = %state.store.describe(),
        auth = ?state.config.auth_mode(),
        servers = ?state.manager.server_names(),
        max_children = state.config.max_children,
        "switchboard worker ready"
    );
    server::run(listener, state, shutdown_signal()).await?;
    Ok(())
}

async fn sessions(url: &str, prefix: &str, action: SessionsAction) -> anyhow::Result<ExitCode> {
    let admin = crate::store::admin::Admin::connect(url, prefix).await?;
    match action {
        SessionsAction::List { limit, json } => {
            let sessions = admin.list(limit).await?;
            if json {
                for s in &sessions {
                    println!("{}", serde_json::to_string(s)?);
                }
            } else {
                println!(
                    "{:<43}  {:>8}  {:>8}  {:>8}  {:>6}  principal",
                    "id", "age_s", "idle_s", "ttl_s", "state"
                );
                for s in &sessions {
                    println!(
                        "{:<43}  {:>8}  {:>8}  {:>8}  {:>6}  {}",
                        s.id, s.age_secs, s.idle_secs, s.ttl_secs, s.state_bytes, s.principal
                    );
                }
                eprintln!("{} session(s)", sessions.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsAction::Show { id } => match admin.show(&id).await? {
            Some(view) => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no such session");
                Ok(ExitCode::from(1))
            }
        },
        SessionsAction::Expire { id } => {
            if admin.expire(&id).await? {
                println!("expired");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no such session");
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
#[cfg(target_os = "linux")]
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
