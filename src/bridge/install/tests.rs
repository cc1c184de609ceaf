use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;

fn plan(dir: &Path, token: &str) -> InstallPlan {
    InstallPlan {
        config_file: dir.join("Claude").join("claude_desktop_config.json"),
        name: "switchboard".to_owned(),
        command: PathBuf::from("/opt/switchboard/bin/switchboard"),
        url: "https://gw.example.com".to_owned(),
        transport: Transport::Mcp,
        env: entry_env(Some(token.to_owned()), None),
    }
}

const TWO_SERVERS: &str = r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "big": 12345678901234567890},
    "time": {"command": "uvx", "args": ["mcp-server-time"]}
  },
  "zeta": [1, 2.50, "x"]
}"#;

#[test]
fn install_keeps_other_servers_writes_a_backup_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), "s3cret-token");
    std::fs::create_dir_all(plan.config_file.parent().unwrap()).unwrap();
    std::fs::write(&plan.config_file, TWO_SERVERS).unwrap();

    let installed = plan.write().unwrap();
    assert!(!installed.updated);
    let backup = installed.backup.expect("a backup of the old file");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), TWO_SERVERS);

    let text = std::fs::read_to_string(&plan.config_file).unwrap();
    let config: Value = serde_json::from_str(&text).unwrap();
    let servers = config["mcpServers"].as_object().unwrap();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers["time"], json!({"command": "uvx", "args": ["mcp-server-time"]}));
    assert_eq!(config["globalShortcut"], "Ctrl+Space");
    // Other entries are kept as they were written, numbers included, in their order.
    assert!(text.contains("12345678901234567890") && text.contains("2.50"), "{text}");
    let order: Vec<usize> =
        ["globalShortcut", "mcpServers", "zeta"].iter().map(|k| text.find(k).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");

    let entry = &servers["switchboard"];
    assert_eq!(entry["command"], "/opt/switchboard/bin/switchboard");
    assert_eq!(entry["args"], json!(["bridge", "--url", "https://gw.example.com", "--transport", "mcp"]));
    assert_eq!(entry["env"], json!({"SWITCHBOARD_TOKEN": "s3cret-token"}));
}

#[test]
fn a_second_install_updates_the_entry_instead_of_adding_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = plan(dir.path(), "old-token");
    assert_eq!(first.write().unwrap(), Installed { updated: false, backup: None });
    let mut second = plan(dir.path(), "new-token");
    second.transport = Transport::Legacy;
    let installed = second.write().unwrap();
    assert!(installed.updated);
    assert!(installed.backup.is_some());

    let text = std::fs::read_to_string(&second.config_file).unwrap();
    assert_eq!(text.matches("\"switchboard\"").count(), 1, "{text}");
    assert!(!text.contains("old-token"), "{text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        config["mcpServers"]["switchboard"]["args"],
        json!(["bridge", "--url", "https://gw.example.com"])
    );
    assert_eq!(config["mcpServers"]["switchboard"]["env"]["SWITCHBOARD_TOKEN"], "new-token");

    // A third run keeps the earlier backup rather than overwriting it.
    let third = plan(dir.path(), "third").write().unwrap();
    assert_ne!(third.backup, installed.backup);
}

#[test]
fn the_token_is_in_env_only() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), "tok-123");
    let entry = plan.entry();
    assert!(!entry["args"].to_string().contains("tok-123"));
    assert!(entry["env"].to_string().contains("tok-123"));
    assert!(!format!("{plan:?}").contains("tok-123"));
    assert!(plan.snippet().contains("\"mcpServers\""));
}

#[cfg(unix)]
#[test]
fn the_written_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), "t");
    plan.write().unwrap();
    let mode = std::fs::metadata(&plan.config_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_file_that_is_not_a_config_is_left_untouched() {
    for (text, why) in [
        ("{\"mcpServers\": [", "not valid JSON"),
        ("[1, 2]", "top level is not a JSON object"),
        ("{\"mcpServers\": 3}", "\"mcpServers\" is not a JSON object"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path(), "t");
        std::fs::create_dir_all(plan.config_file.parent().unwrap()).unwrap();
        std::fs::write(&plan.config_file, text).unwrap();
        let error = plan.write().unwrap_err().to_string();
        assert!(error.contains(why) && error.contains("nothing was written"), "{error}");
        assert_eq!(std::fs::read_to_string(&plan.config_file).unwrap(), text);
        assert_eq!(std::fs::read_dir(plan.config_file.parent().unwrap()).unwrap().count(), 1);
    }
}

#[test]
fn an_empty_file_becomes_a_config_with_one_server() {
    let (text, updated) = merge(Some("  \n"), "sb", &json!({"command": "x"}), "f").unwrap();
    assert!(!updated);
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config, json!({"mcpServers": {"sb": {"command": "x"}}}));
}

#[test]
fn the_config_file_is_where_claude_desktop_looks() {
    let env: HashMap<&str, &str> =
        [("HOME", "/home/ana"), ("APPDATA", "C:\\Users\\ana\\AppData\\Roaming")].into_iter().collect();
    let get = |k: &str| env.get(k).map(|v| v.to_string());
    let mac = config_file_for("macos", &get).unwrap();
    assert_eq!(mac, Path::new("/home/ana/Library/Application Support/Claude/claude_desktop_config.json"));
    let linux = config_file_for("linux", &get).unwrap();
    assert_eq!(linux, Path::new("/home/ana/.config/Claude/claude_desktop_config.json"));
    let windows = config_file_for("windows", &get).unwrap();
    assert!(windows.starts_with("C:\\Users\\ana\\AppData\\Roaming"), "{windows:?}");
    assert!(windows.ends_with("claude_desktop_config.json"));
    let none = |_: &str| None;
    assert!(matches!(config_file_for("windows", &none), Err(InstallError::NoConfigDir("APPDATA"))));
    assert!(entry_env(Some(" ".into()), None).is_empty());
}

#[test]
fn a_file_in_claude_desktops_style_keeps_its_lines() {
    let before = serde_json::to_string_pretty(&json!({
        "mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}},
        "preferences": {"menuBarEnabled": false}
    }))
    .unwrap();
    let (after, _) =
        merge(Some(&before), "switchboard", &json!({"command": "/bin/sb", "args": ["bridge"]}), "f").unwrap();
    for line in before.lines().filter(|l| l.trim() != "}" && l.trim() != "},") {
        assert!(after.contains(line.trim_end_matches(',')), "{line:?} lost in\n{after}");
    }
    assert!(
        after.contains("\n    \"switchboard\": {\n      \"args\": [\n        \"bridge\"\n      ],"),
        "{after}"
    );
    serde_json::from_str::<Value>(&after).unwrap();
}
