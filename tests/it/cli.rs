//! The command line as a user runs it (`bridge check`, `bridge install`, `check-config`):
//! the real binary, against a real worker where one is needed.

use std::process::{Command, Output};

use crate::support::{Worker, bin, free_port};

fn bridge(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("bridge")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run switchboard bridge")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The one line of `check` about `what`.
fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(what))
        .unwrap_or_else(|| panic!("no {what} line in:\n{out}"))
}

#[test]
fn bridge_check_names_each_cause_in_one_line() {
    let worker = Worker::start(&[("SWITCHBOARD_AUTH_STATIC_TOKENS", "right-token")], None);
    let base = worker.url("");
    for transport in ["legacy", "mcp"] {
        let good = bridge(
            &["check", "--url", &base, "--transport", transport],
            &[("SWITCHBOARD_TOKEN", "right-token")],
        );
        let out = text(&good);
        assert!(good.status.success(), "{transport}: {out}");
        assert!(line(&out, "gateway").starts_with("ok"), "{out}");
        assert!(line(&out, "initialize").starts_with("ok"), "{out}");
        assert!(out.contains("tool(s)") && !out.contains("FAIL"), "{out}");
        assert!(!out.contains("right-token"), "the token is never printed: {out}");

        let wrong =
            bridge(&["check", "--url", &base, "--transport", transport], &[("SWITCHBOARD_TOKEN", "wrong")]);
        let out = text(&wrong);
        assert!(!wrong.status.success(), "{out}");
        assert!(out.contains("refused the token"), "{transport}: {out}");

        let none = bridge(&["check", "--url", &base, "--transport", transport], &[]);
        let out = text(&none);
        assert!(!none.status.success(), "{out}");
        if transport == "mcp" {
            // Without a token the mcp transport would authorize with OAuth: check says so.
            assert!(line(&out, "oauth").starts_with("warn") && out.contains("no OAuth token"), "{out}");
        } else {
            assert!(line(&out, "token").starts_with("warn") && out.contains("SWITCHBOARD_TOKEN"), "{out}");
        }
        assert!(out.contains("no token"), "{transport}: {out}");
    }

    let path = bridge(&["check", "--url", &worker.url("/api/v1")], &[("SWITCHBOARD_TOKEN", "right-token")]);
    let out = text(&path);
    assert!(!path.status.success(), "{out}");
    assert!(line(&out, "gateway").starts_with("FAIL") && out.contains("URL path looks wrong"), "{out}");

    let stopped = format!("http://127.0.0.1:{}", free_port());
    let down = bridge(&["check", "--url", &stopped], &[("SWITCHBOARD_TOKEN", "right-token")]);
    let out = text(&down);
    assert!(!down.status.success(), "{out}");
    assert!(line(&out, "gateway").starts_with("FAIL") && out.contains("unreachable"), "{out}");
}

#[test]
fn bridge_install_writes_claude_desktops_file_and_keeps_the_token_out_of_args() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claude_desktop_config.json");
    std::fs::write(&file, r#"{"mcpServers": {"a": {"command": "x"}, "b": {"command": "y"}}}"#).unwrap();
    let file_arg = file.to_str().unwrap();
    for _ in 0..2 {
        let out = bridge(
            &["install", "--url", "http://127.0.0.1:9", "--config-file", file_arg],
            &[("SWITCHBOARD_TOKEN", "tok-install")],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(!text(&out).contains("tok-install"));
    }
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let servers = config["mcpServers"].as_object().unwrap();
    assert_eq!(servers.len(), 3, "{config}");
    let entry = &servers["switchboard"];
    assert!(std::path::Path::new(entry["command"].as_str().unwrap()).is_absolute());
    assert!(!entry["args"].to_string().contains("tok-install"));
    assert_eq!(entry["env"]["SWITCHBOARD_TOKEN"], "tok-install");
    assert!(dir.path().join("claude_desktop_config.json.bak").exists());

    // Without a token and without a terminal it refuses, naming the variable.
    let out = bridge(&["install", "--url", "http://127.0.0.1:9", "--config-file", file_arg], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("SWITCHBOARD_TOKEN"), "{}", text(&out));
}

fn check_config(env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("check-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run switchboard check-config")
}

#[test]
fn check_config_refuses_what_serve_refuses_and_names_every_problem_at_once() {
    let out = check_config(&[
        ("SWITCHBOARD_REDIS_URL", "redis//oops"),
        ("SWITCHBOARD_SECRET_KEY", "c2hvcnQ="),
        ("SWITCHBOARD_AUTH_STATIC_TOKENS", "t"),
        ("SWITCHBOARD_MAX_CHILDREN", "0"),
    ]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("3 problems"), "{said}");
    assert!(said.contains("SWITCHBOARD_REDIS_URL") && said.contains("SWITCHBOARD_SECRET_KEY"), "{said}");
    assert!(said.contains("max_children"), "{said}");
    assert!(!said.contains("c2hvcnQ="), "the key is never printed: {said}");

    // serve makes the same checks, and says the same.
    let serve = Command::new(bin())
        .arg("serve")
        .env_clear()
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{}", free_port()))
        .envs([
            ("SWITCHBOARD_REDIS_URL", "redis//oops"),
            ("SWITCHBOARD_SECRET_KEY", "c2hvcnQ="),
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "t"),
        ])
        .output()
        .expect("run switchboard serve");
    let said = text(&serve);
    assert!(!serve.status.success());
    assert!(said.contains("2 problems") && said.contains("SWITCHBOARD_REDIS_URL"), "{said}");

    let good = check_config(&[]);
    assert!(good.status.success(), "{}", text(&good));
}
