//! The OAuth exchanges themselves: client registration (pre-registered, client ID
//! metadata document, RFC 7591 dynamic registration), the authorization request
//! URL, and the token endpoint (authorization code with PKCE, refresh), each
//! with the RFC 8707 `resource` parameter and the client's token endpoint
//! authentication method.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::Url;
use serde::Deserialize;

use super::AuthError;
use super::discovery::{ServerMetadata, read_limited};
use super::store::{AuthMethod, ClientInfo, Secret};

/// Largest token or registration answer read.
const MAX_ANSWER: usize = 256 * 1024;
/// Bound on each token or registration request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A token endpoint answer.
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub(crate) access_token: Secret,
    #[serde(default)]
    pub(crate) token_type: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) refresh_token: Option<Secret>,
}

impl TokenAnswer {
    /// Unix seconds at which the access token expires, if the server said.
    pub(crate) fn expires_at(&self) -> Option<u64> {
        let secs = match self.expires_in.as_ref()? {
            serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))?,
            serde_json::Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        Some(now().saturating_add(secs.min(10 * 365 * 24 * 3600)))
    }
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The token endpoint authentication method for a client that has (or has not) a
/// secret, given what the server supports (RFC 8414: absent means
/// `client_secret_basic`).
pub(crate) fn choose_auth_method(has_secret: bool, supported: Option<&[String]>) -> AuthMethod {
    if !has_secret {
        return AuthMethod::None;
    }
    let Some(supported) = supported else {
        return AuthMethod::ClientSecretBasic;
    };
    let has = |m: &str| supported.iter().any(|s| s == m);
    if has("client_secret_basic") {
        AuthMethod::ClientSecretBasic
    } else if has("client_secret_post") {
        AuthMethod::ClientSecretPost
    } else if has("none") {
        AuthMethod::None
    } else {
        AuthMethod::ClientSecretBasic
    }
}

fn method_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::None => "none",
        AuthMethod::ClientSecretBasic => "client_secret_basic",
        AuthMethod::ClientSecretPost => "client_secret_post",
    }
}

/// RFC 7591 dynamic client registration of a native client with one loopback
/// redirect URI.
pub(crate) async fn register(
    http: &reqwest::Client,
    metadata: &ServerMetadata,
    registration_endpoint: &str,
    redirect_uri: &str,
    scopes: &[String],
) -> Result<ClientInfo, AuthError> {
    #[derive(Deserialize)]
    struct Registered {
        client_id: String,
        #[serde(default)]
        client_secret: Option<Secret>,
        #[serde(default)]
        token_endpoint_auth_method: Option<String>,
    }
    let supported = metadata.token_endpoint_auth_methods_supported.as_deref();
    // A native app cannot keep a secret: ask for a public client where allowed.
    let wanted = match supported {
        Some(s) if !s.iter().any(|m| m == "none") => method_name(choose_auth_method(true, Some(s))),
        _ => "none",
    };
    let mut body = serde_json::json!({
        "client_name": "switchboard bridge",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": wanted,
        "application_type": "native",
        "software_id": "switchboard-bridge",
        "software_version": env!("CARGO_PKG_VERSION"),
    });
    if !scopes.is_empty()
        && let Some(object) = body.as_object_mut()
    {
        object.insert("scope".into(), serde_json::Value::String(scopes.join(" ")));
    }
    let response = http
        .post(registration_endpoint)
        .json(&body)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| AuthError::new(format!("client registration: {}", e.without_url())))?;
    let status = response.status();
    let answer = read_limited(response, MAX_ANSWER).await?;
    if !status.is_success() {
        return Err(AuthError::new(format!(
            "client registration at {registration_endpoint} answered HTTP {}: {}",
            status.as_u16(),
            oauth_error_text(&answer)
        )));
    }
    let registered: Registered = serde_json::from_slice(&answer)
        .map_err(|e| AuthError::new(format!("client registration answer: {e}")))?;
    let auth_method = match registered.token_endpoint_auth_method.as_deref() {
        Some("none") => AuthMethod::None,
        Some("client_secret_basic") if registered.client_secret.is_some() => AuthMethod::ClientSecretBasic,
        Some("client_secret_post") if registered.client_secret.is_some() => AuthMethod::ClientSecretPost,
        _ => choose_auth_method(registered.client_secret.is_some(), supported),
    };
    tracing::info!(method = method_name(auth_method), "registered the bridge with the authorization server");
    Ok(ClientInfo {
        client_id: registered.client_id,
        client_secret: registered.client_secret,
        auth_method,
        redirect_uri: Some(redirect_uri.to_owned()),
        kind: "dynamic".into(),
    })
}

/// What an authorization request needs.
pub(crate) struct AuthorizationRequest<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) redirect_uri: &'a str,
    pub(crate) state: &'a str,
    pub(crate) code_challenge: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) scopes: &'a [String],
}

/// The authorization URL (the endpoint's own query is kept).
pub(crate) fn authorization_url(
    endpoint: &str,
    request: &AuthorizationRequest<'_>,
) -> Result<Url, AuthError> {
    let mut url = Url::parse(endpoint)
        .map_err(|e| AuthError::new(format!("authorization endpoint {endpoint:?}: {e}")))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", request.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("state", request.state)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", request.resource);
        if !request.scopes.is_empty() {
            query.append_pair("scope", &request.scopes.join(" "));
        }
    }
    Ok(url)
}

/// A token grant.
pub(crate) enum Grant<'a> {
    /// The authorization code with its PKCE verifier.
    Code { code: &'a str, verifier: &'a str, redirect_uri: &'a str },
    /// A refresh (scopes: RFC 6749 §6, the same or fewer; omitted = as granted).
    Refresh { refresh_token: &'a Secret },
}

/// The form fields and Basic credentials of a token request (pure, for tests).
pub(crate) fn token_request_parts(
    grant: &Grant<'_>,
    client: &ClientInfo,
    resource: &str,
) -> (Vec<(&'static str, String)>, Option<String>) {
    let mut form: Vec<(&'static str, String)> = match grant {
        Grant::Code { code, verifier, redirect_uri } => vec![
            ("grant_type", "authorization_code".into()),
            ("code", (*code).into()),
            ("redirect_uri", (*redirect_uri).into()),
            ("code_verifier", (*verifier).into()),
        ],
        Grant::Refresh { refresh_token } => {
            vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh_token.expose().into())]
        }
    };
    form.push(("resource", resource.into()));
    let secret = client.client_secret.as_ref().map(Secret::expose);
    let mut basic = None;
    match (client.auth_method, secret) {
        (AuthMethod::ClientSecretBasic, Some(secret)) => {
            // RFC 6749 §2.3.1: both parts form-encoded before base64.
            let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&client.client_id), encode(secret));
            basic = Some(base64::engine::general_purpose::STANDARD.encode(pair));
        }
        (AuthMethod::ClientSecretPost, Some(secret)) => {
            form.push(("client_id", client.client_id.clone()));
            form.push(("client_secret", secret.to_owned()));
        }
        _ => form.push(("client_id", client.client_id.clone())),
    }
    (form, basic)
}

/// POSTs a token request; the answer must carry a Bearer access token.
pub(crate) async fn token_request(
    http: &reqwest::Client,
    token_endpoint: &str,
    grant: &Grant<'_>,
    client: &ClientInfo,
    resource: &str,
) -> Result<TokenAnswer, TokenError> {
    let (form, basic) = token_request_parts(grant, client, resource);
    let mut request = http
        .post(token_endpoint)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .timeout(REQUEST_TIMEOUT);
    if let Some(basic) = basic {
        request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
    }
    let response = request
        .send()
        .await
        .map_err(|e| TokenError::Other(AuthError::new(format!("token request: {}", e.without_url()))))?;
    let status = response.status();
    let answer = read_limited(response, MAX_ANSWER).await.map_err(TokenError::Other)?;
    if !status.is_success() {
        let text = oauth_error_text(&answer);
        if status.as_u16() == 400 || status.as_u16() == 401 {
            return Err(TokenError::Rejected(text));
        }
        return Err(TokenError::Other(AuthError::new(format!(
            "the token endpoint answered HTTP {}: {text}",
            status.as_u16()
        ))));
    }
    let token: TokenAnswer = serde_json::from_slice(&answer)
        .map_err(|e| TokenError::Other(AuthError::new(format!("token answer: {e}"))))?;
    if let Some(kind) = token.token_type.as_deref()
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(TokenError::Other(AuthError::new(format!("unsupported token type {kind:?}"))));
    }
    Ok(token)
}

/// A failed token request.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// 400/401 (`invalid_grant`, `invalid_client`, …): the grant will not work again.
    Rejected(String),
    /// Transport or server trouble.
    Other(AuthError),
}

/// `error: error_description` from an OAuth error body (RFC 6749 §5.2), or a short
/// excerpt of the body. Never contains a token: error bodies carry none.
fn oauth_error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) => match e.error_description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error,
        },
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn client(method: AuthMethod, secret: Option<&str>) -> ClientInfo {
        ClientInfo {
            client_id: "id:with space".into(),
            client_secret: secret.map(Secret::new),
            auth_method: method,
            redirect_uri: None,
            kind: "dynamic".into(),
        }
    }

    #[test]
    fn auth_method_choice() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(choose_auth_method(false, Some(&s(&["client_secret_basic"]))), AuthMethod::None);
        assert_eq!(choose_auth_method(true, None), AuthMethod::ClientSecretBasic);
        assert_eq!(choose_auth_method(true, Some(&s(&["client_secret_post"]))), AuthMethod::ClientSecretPost);
        assert_eq!(
            choose_auth_method(true, Some(&s(&["client_secret_post", "client_secret_basic"]))),
            AuthMethod::ClientSecretBasic
        );
        assert_eq!(choose_auth_method(true, Some(&s(&["none"]))), AuthMethod::None);
    }

    #[test]
    fn authorization_url_carries_pkce_resource_and_scope() {
        let scopes = vec!["mcp:basic".to_owned(), "offline_access".to_owned()];
        let request = AuthorizationRequest {
            client_id: "https://app.example.com/client.json",
            redirect_uri: "http://127.0.0.1:5555/callback",
            state: "st",
            code_challenge: "ch",
            resource: "https://gw.example.com/mcp",
            scopes: &scopes,
        };
        let url = authorization_url("https://auth.example.com/authorize?tenant=t1", &request).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "t1");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "https://app.example.com/client.json");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["resource"], "https://gw.example.com/mcp");
        assert_eq!(q["scope"], "mcp:basic offline_access");
        let none: Vec<String> = Vec::new();
        let url =
            authorization_url("https://a/authorize", &AuthorizationRequest { scopes: &none, ..request })
                .unwrap();
        assert!(!url.query_pairs().any(|(k, _)| k == "scope"), "no scope parameter without scopes");
    }

    #[test]
    fn token_request_client_authentication() {
        let code = Grant::Code { code: "c", verifier: "v", redirect_uri: "http://127.0.0.1:1/callback" };
        let (form, basic) = token_request_parts(&code, &client(AuthMethod::None, None), "https://gw/mcp");
        assert!(basic.is_none());
        assert!(form.contains(&("client_id", "id:with space".into())));
        assert!(form.contains(&("code_verifier", "v".into())));
        assert!(form.contains(&("resource", "https://gw/mcp".into())));

        let (form, basic) = token_request_parts(
            &code,
            &client(AuthMethod::ClientSecretBasic, Some("s&cret")),
            "https://gw/mcp",
        );
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic.unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "id%3Awith+space:s%26cret");
        assert!(!form.iter().any(|(k, _)| *k == "client_secret"));

        let refresh = Secret::new("r1");
        let (form, basic) = token_request_parts(
            &Grant::Refresh { refresh_token: &refresh },
            &client(AuthMethod::ClientSecretPost, Some("sec")),
            "https://gw/mcp",
        );
        assert!(basic.is_none());
        assert!(form.contains(&("grant_type", "refresh_token".into())));
        assert!(form.contains(&("refresh_token", "r1".into())));
        assert!(form.contains(&("client_secret", "sec".into())));
        assert!(form.contains(&("resource", "https://gw/mcp".into())));
    }

    #[test]
    fn expiry_from_number_or_string() {
        let answer: TokenAnswer =
            serde_json::from_value(serde_json::json!({"access_token": "a", "expires_in": 60})).unwrap();
        let at = answer.expires_at().unwrap();
        assert!(at >= now() + 59 && at <= now() + 61);
        let answer: TokenAnswer =
            serde_json::from_value(serde_json::json!({"access_token": "a", "expires_in": "120"})).unwrap();
        assert!(answer.expires_at().unwrap() >= now() + 119);
        let answer: TokenAnswer = serde_json::from_value(serde_json::json!({"access_token": "a"})).unwrap();
        assert_eq!(answer.expires_at(), None);
    }
}
