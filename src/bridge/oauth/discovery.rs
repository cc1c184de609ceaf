//! Discovery: protected resource metadata (RFC 9728) and authorization server
//! metadata (RFC 8414, OpenID Connect Discovery), in the orders the MCP
//! authorization spec prescribes. URL construction and validation are pure and
//! unit-tested; the fetches are bounded in size and time.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::AuthError;

/// Largest metadata document read.
const MAX_DOCUMENT: usize = 256 * 1024;
/// Bound on each discovery request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Protected resource metadata (the fields the client uses).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ResourceMetadata {
    /// The resource identifier; must match the MCP endpoint.
    pub(crate) resource: String,
    #[serde(default)]
    pub(crate) authorization_servers: Vec<String>,
    #[serde(default)]
    pub(crate) scopes_supported: Option<Vec<String>>,
}

/// Authorization server metadata (the fields the client uses).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ServerMetadata {
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    #[serde(default)]
    pub(crate) registration_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) grant_types_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) client_id_metadata_document_supported: Option<bool>,
    /// RFC 9207: the AS sends `iss` in the authorization response.
    #[serde(default)]
    pub(crate) authorization_response_iss_parameter_supported: Option<bool>,
}

/// The URL with another path and no query or fragment.
fn with_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Where to look for the protected resource metadata of `endpoint`, in order: the
/// URL from the `WWW-Authenticate` challenge, then the path-suffixed well-known
/// URL (`/.well-known/oauth-protected-resource/mcp`), then the root one.
pub(crate) fn resource_metadata_urls(endpoint: &Url, from_challenge: Option<&str>) -> Vec<Url> {
    let mut urls = Vec::new();
    if let Some(url) = from_challenge.and_then(|u| endpoint.join(u).ok())
        && matches!(url.scheme(), "http" | "https")
    {
        urls.push(url);
    }
    let path = endpoint.path().trim_end_matches('/');
    if !path.is_empty() {
        urls.push(with_path(endpoint, &format!("/.well-known/oauth-protected-resource{path}")));
    }
    urls.push(with_path(endpoint, "/.well-known/oauth-protected-resource"));
    urls.dedup();
    urls
}

/// Where to look for the metadata of the authorization server `issuer`, in the
/// spec's order: RFC 8414 path insertion, OIDC path insertion, OIDC path appending
/// (for an issuer with a path); RFC 8414 then OIDC (for one without).
pub(crate) fn server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            with_path(issuer, "/.well-known/oauth-authorization-server"),
            with_path(issuer, "/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            with_path(issuer, &format!("/.well-known/oauth-authorization-server{path}")),
            with_path(issuer, &format!("/.well-known/openid-configuration{path}")),
            with_path(issuer, &format!("{path}/.well-known/openid-configuration")),
        ]
    }
}

/// RFC 9728 §3.3 / RFC 8707: the metadata's `resource` must name this MCP server —
/// the endpoint itself or a parent of it on the same origin (a root document names
/// the origin).
pub(crate) fn resource_matches(resource: &str, endpoint: &Url) -> bool {
    let Ok(resource) = Url::parse(resource) else {
        return false;
    };
    if resource.scheme() != endpoint.scheme()
        || resource.host_str().map(str::to_ascii_lowercase)
            != endpoint.host_str().map(str::to_ascii_lowercase)
        || resource.port_or_known_default() != endpoint.port_or_known_default()
    {
        return false;
    }
    let parent = resource.path().trim_end_matches('/');
    let child = endpoint.path().trim_end_matches('/');
    child == parent || child.starts_with(&format!("{parent}/"))
}

/// RFC 8414 §3.3: the document's `issuer` must be the issuer identifier the
/// well-known URL was built from (compared as strings; a lone trailing slash on
/// either side is not a difference).
pub(crate) fn issuer_matches(document_issuer: &str, expected: &str) -> bool {
    document_issuer == expected || document_issuer.trim_end_matches('/') == expected.trim_end_matches('/')
}

/// The MCP spec: refuse an authorization server that does not advertise `S256`.
pub(crate) fn supports_s256(metadata: &ServerMetadata) -> bool {
    metadata.code_challenge_methods_supported.as_ref().is_some_and(|m| m.iter().any(|m| m == "S256"))
}

/// GETs a JSON document: `Ok(None)` for a 4xx (try the next URL), an error for
/// anything else that is not a readable 2xx.
pub(crate) async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<Option<T>, AuthError> {
    let request = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .header(crate::protocol::VERSION_HEADER, crate::protocol::LATEST_VERSION)
        .timeout(FETCH_TIMEOUT);
    let response =
        request.send().await.map_err(|e| AuthError::new(format!("GET {url}: {}", e.without_url())))?;
    let status = response.status();
    if status.is_client_error() {
        tracing::debug!(%url, status = status.as_u16(), "no metadata here");
        return Ok(None);
    }
    if !status.is_success() {
        return Err(AuthError::new(format!("GET {url} answered HTTP {}", status.as_u16())));
    }
    let body = read_limited(response, MAX_DOCUMENT).await?;
    match serde_json::from_slice::<T>(&body) {
        Ok(document) => Ok(Some(document)),
        Err(e) => {
            tracing::debug!(%url, error = %e, "not a usable metadata document");
            Ok(None)
        }
    }
}

/// The body, at most `limit` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, AuthError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(AuthError::new(format!("an answer over {limit} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(AuthError::new(format!("reading an answer: {}", e.without_url()))),
        }
    }
}

/// Protected resource metadata for `endpoint`: the first URL that yields one whose
/// `resource` matches. `Ok(None)` when no URL has one (a 2025-03-26 server).
pub(crate) async fn resource_metadata(
    http: &reqwest::Client,
    endpoint: &Url,
    from_challenge: Option<&str>,
) -> Result<Option<ResourceMetadata>, AuthError> {
    for url in resource_metadata_urls(endpoint, from_challenge) {
        if let Some(document) = fetch_json::<ResourceMetadata>(http, &url).await? {
            if !resource_matches(&document.resource, endpoint) {
                return Err(AuthError::new(format!(
                    "the protected resource metadata at {url} is for {:?}, not for {endpoint}: refusing to authorize",
                    document.resource
                )));
            }
            return Ok(Some(document));
        }
    }
    Ok(None)
}

/// Authorization server metadata for `issuer`: the first well-known URL that yields
/// a document, validated (S256; and the issuer when `issuer` was named by the
/// resource's metadata — a 2025-03-26 server names none, its origin is only a guess
/// and that revision did not compare it). `Ok(None)` when none has one.
pub(crate) async fn server_metadata(
    http: &reqwest::Client,
    issuer: &str,
    check_issuer: bool,
) -> Result<Option<ServerMetadata>, AuthError> {
    let issuer_url = Url::parse(issuer)
        .map_err(|e| AuthError::new(format!("authorization server URL {issuer:?}: {e}")))?;
    for url in server_metadata_urls(&issuer_url) {
        if let Some(document) = fetch_json::<ServerMetadata>(http, &url).await? {
            if check_issuer && !issuer_matches(&document.issuer, issuer) {
                return Err(AuthError::new(format!(
                    "the authorization server metadata at {url} names issuer {:?}, not {issuer:?}: refusing to use it",
                    document.issuer
                )));
            }
            if !supports_s256(&document) {
                return Err(AuthError::new(format!(
                    "the authorization server {issuer} does not advertise PKCE S256 \
                     (code_challenge_methods_supported): refusing to authorize"
                )));
            }
            return Ok(Some(document));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strings(urls: Vec<Url>) -> Vec<String> {
        urls.into_iter().map(String::from).collect()
    }

    #[test]
    fn resource_metadata_url_order() {
        let endpoint = Url::parse("https://gw.example.com/public/mcp").unwrap();
        assert_eq!(
            strings(resource_metadata_urls(&endpoint, None)),
            [
                "https://gw.example.com/.well-known/oauth-protected-resource/public/mcp",
                "https://gw.example.com/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            strings(resource_metadata_urls(&endpoint, Some("https://gw.example.com/custom/prm.json"))),
            [
                "https://gw.example.com/custom/prm.json",
                "https://gw.example.com/.well-known/oauth-protected-resource/public/mcp",
                "https://gw.example.com/.well-known/oauth-protected-resource",
            ]
        );
        // a root endpoint has only the root document; a non-http challenge URL is ignored
        let root = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            strings(resource_metadata_urls(&root, Some("file:///etc/passwd"))),
            ["http://127.0.0.1:8080/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn server_metadata_url_order() {
        let with_path = Url::parse("https://auth.example.com/tenant1").unwrap();
        assert_eq!(
            strings(server_metadata_urls(&with_path)),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let bare = Url::parse("https://auth.example.com").unwrap();
        assert_eq!(
            strings(server_metadata_urls(&bare)),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        let slash = Url::parse("https://auth.example.com/tenant1/").unwrap();
        assert_eq!(server_metadata_urls(&slash), server_metadata_urls(&with_path));
    }

    #[test]
    fn resource_and_issuer_validation() {
        let endpoint = Url::parse("https://gw.example.com/mcp").unwrap();
        assert!(resource_matches("https://gw.example.com/mcp", &endpoint));
        assert!(resource_matches("https://GW.example.com:443/mcp/", &endpoint));
        assert!(resource_matches("https://gw.example.com", &endpoint));
        assert!(!resource_matches("https://evil.example.com/mcp", &endpoint));
        assert!(!resource_matches("http://gw.example.com/mcp", &endpoint));
        assert!(!resource_matches("https://gw.example.com/mcp2", &endpoint));
        assert!(!resource_matches("https://gw.example.com/other", &endpoint));
        assert!(!resource_matches("not a url", &endpoint));

        assert!(issuer_matches("https://auth.example.com", "https://auth.example.com"));
        assert!(issuer_matches("https://auth.example.com/", "https://auth.example.com"));
        assert!(!issuer_matches("https://attacker.example.com", "https://auth.example.com"));
    }

    #[test]
    fn s256_is_required() {
        let mut m: ServerMetadata = serde_json::from_value(serde_json::json!({
            "issuer": "https://a", "authorization_endpoint": "https://a/authorize", "token_endpoint": "https://a/token"
        }))
        .unwrap();
        assert!(!supports_s256(&m));
        m.code_challenge_methods_supported = Some(vec!["plain".into()]);
        assert!(!supports_s256(&m));
        m.code_challenge_methods_supported = Some(vec!["plain".into(), "S256".into()]);
        assert!(supports_s256(&m));
    }
}
