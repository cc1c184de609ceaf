//! Credential validation for `/init` and `initialize` on `/mcp`: `static` tokens
//! (constant-time comparison), an `http` check against the external API, `none`, or
//! `oauth` (bearer access tokens of an authorization server, checked on every request:
//! `oauth.rs`).
//!
//! Returns who the credentials belong to (the principal) and never logs them. A principal
//! derived from a secret (a token, credentials) is a keyed MAC of it (see
//! [`crate::crypto::MacKey`]): equal on every worker sharing the secret key, and of no use to
//! a dictionary without that key.

use std::time::Duration;

use serde_json::Value;

use crate::config::{AuthMode, Config};
use crate::crypto::MacKey;

#[cfg(target_os = "linux")]
mod oauth;
#[cfg(target_os = "linux")]
pub use oauth::{granted_scopes, metadata_urls};

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)] // tests may panic on purpose
mod tests;

/// Keys of a session's credentials that auth mode `oauth` never stores: the access token
/// itself (it is presented on every request) and what the gateway fills in from it.
const OAUTH_RESERVED: [&str; 3] = ["token", "access_token", "claims"];

/// Why credentials were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Nothing to check: no credentials, an empty object, or no `token` where one is needed.
    #[error(
        "no credentials: send a token (POST /init: {{\"credentials\": {{\"token\": \"...\"}}}}; \
         /mcp: the header `Authorization: Bearer <token>`)"
    )]
    Missing,
    #[error("credentials must be a JSON object{0}")]
    Malformed(&'static str),
    #[error("the credentials were refused")]
    Invalid,
    #[error("the credentials service failed: {0}")]
    Unavailable(String),
    /// `oauth`: the bearer token is not an access token in force for this gateway.
    #[error("invalid access token: {0}")]
    InvalidToken(String),
    /// `oauth`: the token lacks scopes this request needs (`scope`: all it needs,
    /// space-separated).
    #[error("the access token lacks a scope this request needs (needed: {scope})")]
    InsufficientScope { scope: String },
}

/// Accepted credentials.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who they belong to: safe to store and show, never a secret.
    pub principal: String,
    /// What the credentials service said about them (`http` mode), else null.
    pub identity: serde_json::Value,
}

/// Checks credentials by the configured mode.
pub struct Authenticator {
    mode: AuthMode,
    /// BLAKE3 hashes of the accepted tokens: compared in constant time, never kept in clear.
    token_hashes: Vec<blake3::Hash>,
    http: Option<(reqwest::Client, String)>,
    /// Keys the principals derived from secrets.
    mac: MacKey,
    /// `oauth` mode's token validator.
    #[cfg(target_os = "linux")]
    oauth: Option<oauth::OAuthValidator>,
    /// `oauth` mode: scopes needed per server and per (server, tool), beyond the global ones.
    server_scopes: std::collections::HashMap<String, Vec<String>>,
    tool_scopes: std::collections::HashMap<(String, String), Vec<String>>,
    /// `oauth` mode: whether some server receives the client's access token.
    passes_token: bool,
}

impl Authenticator {
    pub fn new(config: &Config, mac: MacKey) -> Result<Self, AuthError> {
        let mode = config.auth_mode();
        let token_hashes = config.auth.static_tokens.iter().map(|t| blake3::hash(t.as_bytes())).collect();
        let http = match (mode, &config.auth.url) {
            (AuthMode::Http, Some(url)) => {
                let client = reqwest::Client::builder()
                    .timeout(config.auth.timeout)
                    .connect_timeout(config.auth.timeout.min(Duration::from_secs(5)))
                    .build()
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                Some((client, url.clone()))
            }
            _ => None,
        };
        #[cfg(target_os = "linux")]
        let oauth = match mode {
            AuthMode::OAuth => Some(oauth::OAuthValidator::new(config)?),
            _ => None,
        };
        #[cfg(not(target_os = "linux"))]
        if mode == AuthMode::OAuth {
            return Err(AuthError::Unavailable("auth mode oauth is served on Linux only".into()));
        }
        let mut server_scopes = std::collections::HashMap::new();
        let mut tool_scopes = std::collections::HashMap::new();
        for (name, server) in &config.servers {
            server_scopes.insert(name.clone(), server.required_scopes.clone());
            for (tool, policy) in &server.tools {
                if !policy.required_scopes.is_empty() {
                    tool_scopes.insert((name.clone(), tool.clone()), policy.required_scopes.clone());
                }
            }
        }
        let passes_token = config.servers.values().any(|s| s.pass_access_token);
        Ok(Self {
            mode,
            token_hashes,
            http,
            mac,
            #[cfg(target_os = "linux")]
            oauth,
            server_scopes,
            tool_scopes,
            passes_token,
        })
    }

    /// Whether sessions are bound to the principal of an access token checked on every
    /// request (auth mode `oauth`) rather than to the token they were opened with.
    pub fn is_oauth(&self) -> bool {
        self.mode == AuthMode::OAuth
    }

    /// `oauth`: the principal and claims of a bearer access token presented on a request.
    pub async fn verify_bearer(&self, token: &str) -> Result<Verified, AuthError> {
        #[cfg(target_os = "linux")]
        if let Some(validator) = &self.oauth {
            return validator.validate(token).await;
        }
        let _ = token;
        Err(AuthError::Unavailable("auth mode oauth is not configured".into()))
    }

    /// What a session keeps of the credentials it was opened with. `oauth`: never the
    /// access token (it is presented again on every request, and passing it on to a
    /// server is an explicit opt-in); the token's claims under `claims`.
    pub fn stored_credentials(&self, presented: &Value, verified: &Verified) -> Value {
        if !self.is_oauth() {
            return presented.clone();
        }
        let mut kept = presented.as_object().cloned().unwrap_or_default();
        for key in OAUTH_RESERVED {
            kept.remove(key);
        }
        kept.insert("claims".into(), verified.identity.clone());
        Value::Object(kept)
    }

    /// The credentials a request's servers see (`oauth`): the stored ones with the claims
    /// of this request's token, and the token itself when a server is configured to receive
    /// it (`pass_access_token`; only such servers may name it in their `env`).
    pub fn request_credentials(&self, stored: &mut Value, verified: &Verified, token: &str) {
        let Some(object) = stored.as_object_mut() else { return };
        object.insert("claims".into(), verified.identity.clone());
        if self.passes_token {
            object.insert("access_token".into(), Value::String(token.to_string()));
        } else {
            object.remove("access_token");
        }
    }

    /// `oauth`: the scopes a call of `tool` on `server` needs that the session's current
    /// token (its claims in `credentials`) lacks: `InsufficientScope` naming all it needs.
    /// Other modes: always allowed.
    pub fn check_scopes(
        &self,
        credentials: &Value,
        server: &str,
        tool: Option<&str>,
    ) -> Result<(), AuthError> {
        let needed = self.needed_scopes(server, tool);
        if !self.is_oauth() || needed.is_empty() {
            return Ok(());
        }
        let claims = credentials.get("claims").and_then(Value::as_object);
        let granted: Vec<&str> = claims.map(scopes_of).unwrap_or_default();
        if needed.iter().all(|n| granted.contains(&n.as_str())) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope { scope: needed.join(" ") })
        }
    }

    /// Scopes of the server and tool (the global ones are checked with the token).
    fn needed_scopes(&self, server: &str, tool: Option<&str>) -> Vec<String> {
        let mut needed: Vec<String> = self.server_scopes.get(server).cloned().unwrap_or_default();
        if let Some(tool) = tool
            && let Some(more) = self.tool_scopes.get(&(server.to_string(), tool.to_string()))
        {
            needed.extend(more.iter().filter(|s| !needed.contains(s)).cloned().collect::<Vec<_>>());
        }
        needed
    }

    /// Validates `credentials` (a JSON object).
    pub async fn verify(&self, credentials: &serde_json::Value) -> Result<Verified, AuthError> {
        let empty = credentials.as_object().is_some_and(|o| o.is_empty());
        if credentials.is_null() || empty {
            if self.mode != AuthMode::None {
                return Err(AuthError::Missing);
            }
        } else if !credentials.is_object() {
            return Err(AuthError::Malformed(""));
        }
        match self.mode {
            AuthMode::None => {
                Ok(Verified { principal: "anonymous".into(), identity: serde_json::Value::Null })
            }
            AuthMode::Static => {
                let Some(token) = credentials.get("token") else {
                    return Err(AuthError::Missing);
                };
                let Some(token) = token.as_str() else {
                    return Err(AuthError::Malformed(" with a string field `token`"));
                };
                let hash = blake3::hash(token.as_bytes());
                // blake3::Hash equality is constant-time; every candidate is compared.
                let matched = self.token_hashes.iter().fold(false, |acc, h| acc | (*h == hash));
                if matched {
                    let principal = self.principal("token", token.as_bytes());
                    Ok(Verified { principal, identity: serde_json::Value::Null })
                } else {
                    Err(AuthError::Invalid)
                }
            }
            AuthMode::Http => self.verify_http(credentials).await,
            AuthMode::OAuth => match credentials.get("token").and_then(Value::as_str) {
                Some(token) if !token.is_empty() => self.verify_bearer(token).await,
                _ => Err(AuthError::Missing),
            },
        }
    }

    /// The principal of credentials presented on a request, when it can be told without a
    /// call out (`static`: a configured token; `none`): a request's rate limit then runs
    /// alongside its session's load. `None` in `http` mode or for a token not configured.
    pub fn known_principal(&self, token: Option<&str>) -> Option<String> {
        match self.mode {
            AuthMode::None => Some("anonymous".into()),
            AuthMode::Static => {
                let token = token?;
                let hash = blake3::hash(token.as_bytes());
                let matched = self.token_hashes.iter().fold(false, |acc, h| acc | (*h == hash));
                matched.then(|| self.principal("token", token.as_bytes()))
            }
            // Checked per request by `verify_bearer` instead.
            AuthMode::Http | AuthMode::OAuth => None,
        }
    }

    async fn verify_http(&self, credentials: &serde_json::Value) -> Result<Verified, AuthError> {
        let Some((client, url)) = &self.http else {
            return Err(AuthError::Unavailable("no auth URL configured".into()));
        };
        let response = client.post(url).json(credentials).send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out" } else { "unreachable" };
            AuthError::Unavailable(what.into())
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(AuthError::Invalid);
        }
        if !status.is_success() {
            return Err(AuthError::Unavailable(format!("answered HTTP {}", status.as_u16())));
        }
        let body = response.bytes().await.map_err(|_| AuthError::Unavailable("response cut short".into()))?;
        let identity: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|_| AuthError::Unavailable("answered with invalid JSON".into()))?
        };
        let named = ["sub", "id", "user_id", "user", "email"].iter().find_map(|k| {
            identity
                .get(k)
                .and_then(|v| v.as_str().map(String::from).or_else(|| v.as_i64().map(|n| n.to_string())))
        });
        let principal = match named {
            Some(name) => format!("user:{name}"),
            None => self.principal("creds", credentials.to_string().as_bytes()),
        };
        Ok(Verified { principal, identity })
    }

    /// A stable, non-secret name for a secret: `kind:` and 128 bits of its keyed MAC.
    fn principal(&self, kind: &str, secret: &[u8]) -> String {
        format!("{kind}:{}", &self.mac.tag(secret).to_hex()[..32])
    }
}

/// The scopes granted by a token's claims (see `oauth::granted_scopes`).
fn scopes_of(claims: &serde_json::Map<String, Value>) -> Vec<&str> {
    #[cfg(target_os = "linux")]
    return granted_scopes(claims);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = claims;
        Vec::new()
    }
}
