use std::collections::HashMap;

use super::*;

fn load(toml: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::load(toml, &|k| env.get(k).cloned(), "/bin/switchboard")
}

#[test]
fn embedded_default_runs_the_demo_server_with_the_demo_token() {
    let config = load(None, &[]).expect("default config");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.auth_mode(), AuthMode::Static);
    assert_eq!(config.auth.static_tokens, vec!["demo".to_string()]);
    let demo = &config.servers[DEFAULT_SERVER];
    assert_eq!(demo.command, vec!["/bin/switchboard", "demo-server"]);
    assert_eq!(demo.env["DEMO_TOKEN"], "{credentials.token}");
    assert_eq!(config.idle_ttl_secs, 86400);
}

#[test]
fn redis_without_auth_or_key_is_refused_with_what_to_set() {
    let err = load(None, &[("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1")]).unwrap_err();
    assert!(err.to_string().contains("SWITCHBOARD_AUTH_STATIC_TOKENS"), "{err}");
    let err = load(
        None,
        &[("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1"), ("SWITCHBOARD_AUTH_STATIC_TOKENS", "a,b")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("SWITCHBOARD_SECRET_KEY"), "{err}");
}

#[test]
fn env_overrides_file_and_splits_the_command_like_a_shell() {
    let config = load(
        Some("idle_ttl_secs = 5\nkey_prefix = \"x:\"\n[auth]\nstatic_tokens = [\"t\"]\n"),
        &[
            ("SWITCHBOARD_IDLE_TTL_SECS", "7"),
            ("SWITCHBOARD_MCP_COMMAND", "node 'my server.js' --flag"),
            ("SWITCHBOARD_MAX_CHILDREN", "3"),
        ],
    )
    .expect("config");
    assert_eq!(config.idle_ttl_secs, 7);
    assert_eq!(config.key_prefix, "x:");
    assert_eq!(config.max_children, 3);
    assert_eq!(config.servers[DEFAULT_SERVER].command, vec!["node", "my server.js", "--flag"]);
    assert!(config.servers[DEFAULT_SERVER].env.is_empty());
}

#[test]
fn bad_values_are_clear_errors() {
    for (env, needle) in [
        (("SWITCHBOARD_IDLE_TTL_SECS", "soon"), "SWITCHBOARD_IDLE_TTL_SECS"),
        (("SWITCHBOARD_AUTH_MODE", "magic"), "magic"),
        (("SWITCHBOARD_LISTEN", "nowhere"), "SWITCHBOARD_LISTEN"),
        (("SWITCHBOARD_MAX_CHILDREN", "0"), "max_children"),
        (("SWITCHBOARD_AUTH_MODE", "http"), "auth.url"),
    ] {
        let err = load(None, &[env]).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let err = load(Some("nonsense_key = 1"), &[]).unwrap_err();
    assert!(err.to_string().contains("nonsense_key"), "{err}");
}

#[test]
fn redacted_config_shows_no_secret() {
    let config = load(
        None,
        &[
            ("SWITCHBOARD_REDIS_URL", "redis://user:hunter2@127.0.0.1:1/0"),
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "tok-secret"),
            ("SWITCHBOARD_SECRET_KEY", "a2V5LXNlY3JldA=="),
        ],
    )
    .expect("config");
    let text = config.redacted_toml();
    for secret in ["hunter2", "tok-secret", "a2V5LXNlY3JldA==", "user:"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("redis://<redacted>@127.0.0.1:1/0"), "{text}");
}

#[test]
fn redacted_config_hides_every_server_env_value_and_url_userinfo() {
    let file = r#"
        [auth]
        mode = "http"
        url = "https://svc:pa55@auth.example/check?x=1"
        [servers.api]
        command = ["api-server"]
        env = { API_KEY = "sk-constant", TOKEN = "{credentials.token}" }
    "#;
    let config = load(Some(file), &[]).expect("config");
    let text = config.redacted_toml();
    for secret in ["sk-constant", "{credentials.token}", "svc", "pa55"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("https://<redacted>@auth.example/check?x=1"), "{text}");
    assert!(text.contains("API_KEY") && text.contains("TOKEN"), "names stay: {text}");
    assert_eq!(redact_url_password("redis://u:p@h:1/0"), "redis://u:<redacted>@h:1/0");
    assert_eq!(redact_url_userinfo("redis://h:1/0?a=b@c"), "redis://h:1/0?a=b@c");
}

#[test]
fn cache_seal_defaults_on_with_redis_only_and_require_principal_has_an_env_form() {
    assert!(!load(None, &[]).expect("config").cache_seal());
    let redis = [
        ("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1/0"),
        ("SWITCHBOARD_AUTH_STATIC_TOKENS", "t"),
        ("SWITCHBOARD_SECRET_KEY", "a2V5LXNlY3JldA=="),
    ];
    assert!(load(None, &redis).expect("config").cache_seal());
    let off =
        load(None, &[redis[0], redis[1], redis[2], ("SWITCHBOARD_CACHE_SEAL", "false")]).expect("config");
    assert!(!off.cache_seal());
    let strict = load(None, &[("SWITCHBOARD_AUTH_REQUIRE_PRINCIPAL", "true")]).expect("config");
    assert!(strict.auth.require_principal);
    assert!(load(None, &[("SWITCHBOARD_AUTH_REQUIRE_PRINCIPAL", "yes")]).is_err());
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "max_children = 0\nidle_ttl_secs = 0\n[servers.a]\ncommand = []\n";
    let error = Config::load(Some(text), &|_| None, "/bin/sb").unwrap_err().to_string();
    assert!(error.starts_with("3 problems:"), "{error}");
    for part in ["max_children", "idle_ttl_secs", "servers.a: command is empty"] {
        assert!(error.contains(part), "{part} missing from {error}");
    }
    let refuse = |_: &Config| Err("the key is too short".to_owned());
    let error = Config::load_checked(None, &|_| None, "/bin/sb", &[&refuse]).unwrap_err().to_string();
    assert_eq!(error, "the key is too short");
}

#[test]
fn the_switchboard_placeholder_runs_this_binary() {
    let text = "[servers.default]\ncommand = [\"{switchboard}\", \"demo-server\"]\n";
    let config = Config::load(Some(text), &|_| None, "/opt/sb/switchboard").unwrap();
    assert_eq!(config.servers["default"].command, ["/opt/sb/switchboard", "demo-server"]);
}

#[test]
fn a_negative_tool_cache_ttl_is_a_config_error() {
    // The config_load fuzz target's crash: this file made loading the config panic (the
    // tool policies are built from it at start-up and by check-config).
    let text = "[servers.a]\ncommand = [\"x\"]\n[servers.a.tools.t]\ncache_ttl_secs = -1.0\n";
    let config = load(Some(text), &[]).unwrap();
    let Err(err) = crate::results::Policies::from_config(&config) else { panic!("accepted") };
    assert!(err.contains("servers.a.tools.tool `t`: cache_ttl_secs must be 0 or more"), "{err}");
}

#[test]
fn durations_beyond_ten_years_are_config_errors_not_overflows() {
    let error = load(Some("idle_ttl_secs = 18446744073709551615\n"), &[]).unwrap_err().to_string();
    assert!(error.contains("idle_ttl_secs must be at most"), "{error}");
    let error = load(Some("drain_timeout_secs = 1e300\n"), &[]).unwrap_err().to_string();
    assert!(error.contains("ten years"), "{error}");
    assert!(load(Some("idle_ttl_secs = 315360000\n"), &[]).is_ok());
}

#[test]
fn the_http_limits_have_defaults_and_refuse_zero() {
    let config = load(None, &[]).unwrap();
    assert_eq!(config.http.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.http.idle_timeout, Duration::from_secs(75));
    assert_eq!(config.http.max_connections, 4096);
    let text = "[http]\nheader_read_timeout_secs = 0.5\nidle_timeout_secs = 2\nmax_connections = 20\n";
    let config = load(Some(text), &[]).unwrap();
    assert_eq!(
        (config.http.header_read_timeout, config.http.idle_timeout, config.http.max_connections),
        (Duration::from_millis(500), Duration::from_secs(2), 20)
    );
    let error =
        load(Some("[http]\nmax_connections = 0\nidle_timeout_secs = 0\n"), &[]).unwrap_err().to_string();
    assert!(error.contains("http.max_connections must be at least 1"), "{error}");
    assert!(error.contains("idle_timeout_secs must be above 0"), "{error}");
    let hosts = load(None, &[("SWITCHBOARD_HTTP_ALLOWED_HOSTS", "mcp.example.com, b.example")]).unwrap();
    assert_eq!(hosts.http.allowed_hosts, ["mcp.example.com", "b.example"]);
}

#[test]
fn the_demo_token_is_refused_only_beyond_loopback() {
    let on = |listen: &str, tokens: Option<&str>| {
        let mut env = vec![("SWITCHBOARD_LISTEN", listen)];
        if let Some(tokens) = tokens {
            env.push(("SWITCHBOARD_AUTH_STATIC_TOKENS", tokens));
        }
        load(None, &env).unwrap().refuses_demo_token()
    };
    assert!(!on("127.0.0.1:8080", None), "the embedded default on loopback keeps `demo`");
    assert!(!on("[::1]:8080", None));
    assert!(on("0.0.0.0:8080", None), "the embedded default beyond loopback");
    assert!(on("192.0.2.7:8080", Some("real,demo")), "listed explicitly, still public");
    assert!(!on("0.0.0.0:8080", Some("real")), "no `demo` to refuse");
    let open =
        load(None, &[("SWITCHBOARD_LISTEN", "0.0.0.0:8080"), ("SWITCHBOARD_AUTH_MODE", "none")]).unwrap();
    assert!(!open.refuses_demo_token(), "no tokens are checked in mode none");
}

#[test]
fn server_protocol_defaults_to_legacy_and_has_a_file_and_an_env_form() {
    let config = load(Some("[servers.a]\ncommand = [\"a\"]\n"), &[]).expect("config");
    assert_eq!(config.servers["a"].protocol, ServerProtocol::Legacy);
    let config = load(Some("[servers.a]\ncommand = [\"a\"]\nprotocol = \"modern\"\n"), &[])
        .expect("modern from the file");
    assert_eq!(config.servers["a"].protocol, ServerProtocol::Modern);
    let err = load(Some("[servers.a]\ncommand = [\"a\"]\nprotocol = \"future\"\n"), &[]).unwrap_err();
    assert!(err.to_string().contains("protocol"), "{err}");
    let env = [("SWITCHBOARD_MCP_COMMAND", "srv"), ("SWITCHBOARD_MCP_PROTOCOL", "legacy")];
    let config = load(None, &env).expect("legacy from the env");
    assert_eq!(config.servers[DEFAULT_SERVER].protocol, ServerProtocol::Legacy);
    let err =
        load(None, &[("SWITCHBOARD_MCP_COMMAND", "srv"), ("SWITCHBOARD_MCP_PROTOCOL", "x")]).unwrap_err();
    assert!(err.to_string().contains("SWITCHBOARD_MCP_PROTOCOL"), "{err}");
    let err = load(None, &[("SWITCHBOARD_MCP_PROTOCOL", "modern")]).unwrap_err();
    assert!(err.to_string().contains("SWITCHBOARD_MCP_COMMAND"), "{err}");
}

#[test]
fn oauth_mode_reads_its_keys_from_file_and_environment() {
    let config = load(
        Some("[auth]\nmode = \"oauth\"\njwks_url = \"https://as.example/jwks\"\n"),
        &[
            ("SWITCHBOARD_AUTH_ISSUER", "https://as.example"),
            ("SWITCHBOARD_AUTH_AUDIENCE", "https://gw.example/mcp"),
            ("SWITCHBOARD_AUTH_REQUIRED_SCOPES", "mcp, crm:read"),
            ("SWITCHBOARD_AUTH_INTROSPECTION_URL", "https://as.example/introspect"),
            ("SWITCHBOARD_AUTH_INTROSPECTION_CLIENT_ID", "gw"),
            ("SWITCHBOARD_AUTH_INTROSPECTION_CLIENT_SECRET", "s3cret"),
        ],
    )
    .expect("oauth config");
    assert_eq!(config.auth_mode(), AuthMode::OAuth);
    assert_eq!(config.auth.issuer.as_deref(), Some("https://as.example"));
    assert_eq!(config.auth.required_scopes, ["mcp", "crm:read"]);
    assert_eq!(config.auth.leeway, Duration::from_secs(60));
    // The embedded demo server gets the user's `sub`, never the access token.
    assert_eq!(config.servers[DEFAULT_SERVER].env["DEMO_TOKEN"], "{claims.sub}");
    let shown = config.redacted_toml();
    assert!(!shown.contains("s3cret") && shown.contains("introspection_client_id = \"gw\""), "{shown}");
    let env = load(None, &[("SWITCHBOARD_AUTH_MODE", "oauth")]).unwrap_err().to_string();
    assert!(env.contains("auth.issuer") && env.contains("auth.audience"), "{env}");
}

#[test]
fn oauth_mode_refuses_a_token_passed_to_a_server_that_did_not_opt_in() {
    let base =
        "[auth]\nmode = \"oauth\"\nissuer = \"https://as.example\"\naudience = \"https://gw.example/mcp\"\n";
    let leak =
        format!("{base}[servers.a]\ncommand = [\"x\"]\nenv = {{ T = \"{{credentials.access_token}}\" }}\n");
    let err = load(Some(&leak), &[]).unwrap_err().to_string();
    assert!(err.contains("servers.a") && err.contains("pass_access_token"), "{err}");
    let opted = format!("{base}[servers.a]\ncommand = [\"x\"]\npass_access_token = true\n");
    let config = load(Some(&opted), &[]).expect("opt-in");
    assert_eq!(config.servers["a"].env[ACCESS_TOKEN_ENV], ACCESS_TOKEN_TEMPLATE);
    for bad in ["audience = \"gw.example/mcp\"", "audience = \"https://gw.example/mcp#x\""] {
        let text = format!("[auth]\nmode = \"oauth\"\nissuer = \"https://as.example\"\n{bad}\n");
        assert!(load(Some(&text), &[]).unwrap_err().to_string().contains("auth.audience"), "{bad}");
    }
    let scopes = format!(
        "{base}required_scopes = [\"mcp\"]\n[servers.a]\ncommand = [\"x\"]\nrequired_scopes = [\"a\"]\n\
         [servers.a.tools.t]\nrequired_scopes = [\"a\", \"t\"]\n"
    );
    assert_eq!(load(Some(&scopes), &[]).unwrap().scopes_supported(), ["mcp", "a", "t"]);
}
