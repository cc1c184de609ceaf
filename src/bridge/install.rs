//! `switchboard bridge install`: writes the bridge's entry into Claude Desktop's
//! `claude_desktop_config.json`, the way `mcp install` of the Python SDK does for
//! its servers.
//!
//! The file is merged, never clobbered: every other key and every other server
//! entry is kept byte for byte (as raw JSON, in their order); an entry of the same
//! name is replaced in place, so a second run updates rather than duplicates. The
//! old file is copied to a backup next to it first, and the new one is written to a
//! temporary file and renamed over the old one, so a crash never leaves half a file.
//!
//! **Invariant:** the token goes into the entry's `env`, never into `args` (every
//! user of the machine can read a process's arguments), and never into a log line.

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::value::RawValue;

use super::{CREDENTIALS_ENV, TOKEN_ENV, Transport};

/// What `bridge install` writes and where.
pub struct InstallPlan {
    /// The Claude Desktop config file to merge into.
    pub config_file: PathBuf,
    /// Name of the entry under `mcpServers`.
    pub name: String,
    /// The `command` of the entry: the absolute path of the switchboard binary.
    pub command: PathBuf,
    /// Base URL of the gateway, passed as `--url`.
    pub url: String,
    /// Which gateway API the bridge speaks.
    pub transport: Transport,
    /// Environment of the entry: the token or the credentials object, nothing else.
    pub env: Vec<(String, String)>,
}

/// Values are redacted: only the names of the variables are shown.
impl fmt::Debug for InstallPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("InstallPlan")
            .field("config_file", &self.config_file)
            .field("name", &self.name)
            .field("command", &self.command)
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("env", &format_args!("<redacted values of {env:?}>"))
            .finish()
    }
}

/// Why the config file was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "cannot tell where Claude Desktop keeps its config on this system ({0} is not set); \
         pass --config-file"
    )]
    NoConfigDir(&'static str),
    #[error("{path} is not valid JSON ({source}); fix or move it, nothing was written")]
    NotJson { path: String, source: serde_json::Error },
    #[error("{path}: {what}; fix or move it, nothing was written")]
    Shape { path: String, what: &'static str },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
}

/// What happened, for the one line printed to the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Installed {
    /// True when an entry of that name existed and was replaced.
    pub updated: bool,
    /// Where the previous file was copied, if there was one.
    pub backup: Option<PathBuf>,
}

/// Where Claude Desktop keeps `claude_desktop_config.json` on this OS, from the
/// (injected) environment: `%APPDATA%\Claude` on Windows,
/// `~/Library/Application Support/Claude` on macOS, `$XDG_CONFIG_HOME/Claude` (or
/// `~/.config/Claude`) elsewhere.
pub fn default_config_file(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, InstallError> {
    config_file_for(std::env::consts::OS, env)
}

fn config_file_for(os: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, InstallError> {
    let var = |name: &'static str| {
        env(name).filter(|v| !v.is_empty()).map(PathBuf::from).ok_or(InstallError::NoConfigDir(name))
    };
    let dir = match os {
        "windows" => var("APPDATA")?.join("Claude"),
        "macos" => var("HOME")?.join("Library").join("Application Support").join("Claude"),
        _ => match var("XDG_CONFIG_HOME") {
            Ok(dir) => dir.join("Claude"),
            Err(_) => var("HOME")?.join(".config").join("Claude"),
        },
    };
    Ok(dir.join("claude_desktop_config.json"))
}

/// The entry's environment: `SWITCHBOARD_TOKEN` and/or `SWITCHBOARD_CREDENTIALS`
/// as given (a prompted token counts as `SWITCHBOARD_TOKEN`). Empty values are left out.
pub fn entry_env(token: Option<String>, credentials: Option<String>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(token) = token.filter(|t| !t.trim().is_empty()) {
        env.push((TOKEN_ENV.to_owned(), token));
    }
    if let Some(credentials) = credentials.filter(|c| !c.trim().is_empty()) {
        env.push((CREDENTIALS_ENV.to_owned(), credentials));
    }
    env
}

impl InstallPlan {
    /// The `mcpServers` entry: `command`, `args` (no secret) and `env`.
    pub fn entry(&self) -> serde_json::Value {
        let mut args = vec!["bridge".to_owned(), "--url".to_owned(), self.url.clone()];
        if self.transport == Transport::Mcp {
            args.extend(["--transport".to_owned(), "mcp".to_owned()]);
        }
        let env: serde_json::Map<String, serde_json::Value> =
            self.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        serde_json::json!({
            "command": self.command.to_string_lossy(),
            "args": args,
            "env": env,
        })
    }

    /// `{"mcpServers": {name: entry}}`, pretty-printed: what `--print` shows.
    pub fn snippet(&self) -> String {
        let snippet = serde_json::json!({ "mcpServers": { self.name.clone(): self.entry() } });
        serde_json::to_string_pretty(&snippet).unwrap_or_default()
    }

    /// Merges the entry into the config file (created with its folder if missing),
    /// after a backup of the old file.
    pub fn write(&self) -> Result<Installed, InstallError> {
        let path = &self.config_file;
        let shown = path.display().to_string();
        let io = |action: &'static str| {
            let shown = shown.clone();
            move |source| InstallError::Io { action, path: shown, source }
        };
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading")(e)),
        };
        let (merged, updated) = merge(existing.as_deref(), &self.name, &self.entry(), &shown)?;
        let backup = match &existing {
            Some(_) => {
                let backup = backup_path(path);
                std::fs::copy(path, &backup).map_err(io("backing up"))?;
                Some(backup)
            }
            None => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io("creating the folder of"))?;
                }
                None
            }
        };
        write_atomically(path, merged.as_bytes()).map_err(io("writing"))?;
        Ok(Installed { updated, backup })
    }
}

/// Merges `entry` under `mcpServers.name` into the config text; returns the new
/// text and whether an entry of that name was replaced. Everything else is kept as
/// raw JSON in its order.
pub fn merge(
    existing: Option<&str>,
    name: &str,
    entry: &serde_json::Value,
    shown: &str,
) -> Result<(String, bool), InstallError> {
    let not_json = |source| InstallError::NotJson { path: shown.to_owned(), source };
    let shape = |what| InstallError::Shape { path: shown.to_owned(), what };
    let text = existing.map(str::trim).filter(|t| !t.is_empty()).unwrap_or("{}");
    let value: serde_json::Value = serde_json::from_str(text).map_err(not_json)?;
    if !value.is_object() {
        return Err(shape("the top level is not a JSON object"));
    }
    let mut top: IndexMap<String, Box<RawValue>> = serde_json::from_str(text).map_err(not_json)?;
    let mut servers: IndexMap<String, Box<RawValue>> = match top.get("mcpServers") {
        Some(raw) => {
            if !serde_json::from_str::<serde_json::Value>(raw.get()).map_err(not_json)?.is_object() {
                return Err(shape("\"mcpServers\" is not a JSON object"));
            }
            serde_json::from_str(raw.get()).map_err(not_json)?
        }
        None => IndexMap::new(),
    };
    let entry = serde_json::to_string_pretty(entry).map_err(not_json)?;
    let entry = RawValue::from_string(entry.replace('\n', "\n    ")).map_err(not_json)?;
    let updated = servers.insert(name.to_owned(), entry).is_some();
    if !top.contains_key("mcpServers") {
        top.insert("mcpServers".to_owned(), RawValue::from_string("{}".to_owned()).map_err(not_json)?);
    }
    Ok((render(&top, &servers), updated))
}

/// Writes the file two-space indented, as Claude Desktop writes it: each kept value
/// as its raw text (so a file in that style keeps its look), `mcpServers` rebuilt
/// from `servers`.
fn render(top: &IndexMap<String, Box<RawValue>>, servers: &IndexMap<String, Box<RawValue>>) -> String {
    let key = |k: &str| serde_json::to_string(k).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::from("{\n");
    for (i, (name, value)) in top.iter().enumerate() {
        out.push_str(&format!("  {}: ", key(name)));
        if name == "mcpServers" {
            out.push_str("{\n");
            for (j, (server, entry)) in servers.iter().enumerate() {
                let comma = if j + 1 < servers.len() { "," } else { "" };
                out.push_str(&format!("    {}: {}{comma}\n", key(server), entry.get()));
            }
            out.push_str("  }");
        } else {
            out.push_str(value.get());
        }
        out.push_str(if i + 1 < top.len() { ",\n" } else { "\n" });
    }
    out.push_str("}\n");
    out
}

/// `<file>.bak`, or `<file>.bak.N` with the first free N, so an earlier backup is never overwritten.
fn backup_path(path: &Path) -> PathBuf {
    let base = path.as_os_str().to_owned();
    let with = |suffix: String| {
        let mut p = base.clone();
        p.push(suffix);
        PathBuf::from(p)
    };
    let first = with(".bak".to_owned());
    if !first.exists() {
        return first;
    }
    (1..10_000).map(|n| with(format!(".bak.{n}"))).find(|p| !p.exists()).unwrap_or(first)
}

/// Writes to a temporary file beside `path` (owner-only on Unix: it holds a token)
/// and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".switchboard-tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
