//! Client of the worker's JSON API (the `legacy` transport): `POST /init`,
//! `GET /tools`, `POST /call-tool`, `DELETE /session`.
//!
//! The session (its id) is opened with `/init` and renewed on a 404 as
//! [`super::session`] says. Tool arguments and results stay raw JSON.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{GatewayError, from_reqwest};
use super::session::{Failure, GatewaySession};
use crate::protocol::SESSION_HEADER;

/// What a session route is asked to do.
enum Op<'a> {
    ListTools,
    CallTool { body: &'a str },
}

pub(crate) struct LegacyGateway {
    /// The HTTP client, shared by every call.
    http: reqwest::Client,
    /// The gateway's base URL, without a trailing `/`.
    base: String,
    /// The user's credentials, sent to `/init`.
    credentials: serde_json::Value,
    /// Bound on every HTTP call.
    timeout: Duration,
    /// clientInfo reported by the host's `initialize`, sent to `/init`.
    client: std::sync::Mutex<serde_json::Value>,
    /// The session id, opened by `/init`.
    session: GatewaySession<String>,
}

#[derive(Deserialize)]
struct InitResponse {
    session_id: String,
    #[serde(default)]
    idle_ttl_secs: Option<u64>,
}

#[derive(Deserialize)]
struct CallToolResponse {
    result: Box<RawValue>,
    #[serde(default)]
    cached: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl LegacyGateway {
    pub(crate) fn new(
        http: reqwest::Client,
        base: &str,
        credentials: serde_json::Value,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            timeout,
            client: std::sync::Mutex::new(serde_json::json!({
                "name": "switchboard-bridge",
                "version": env!("CARGO_PKG_VERSION"),
            })),
            session: GatewaySession::new(),
        }
    }

    /// Records the host's clientInfo (name, version) for the next `/init`.
    pub(crate) fn set_client_info(&self, info: &serde_json::Value) {
        let name = info.get("name").and_then(|v| v.as_str());
        let version = info.get("version").and_then(|v| v.as_str());
        if let (Some(name), Some(version)) = (name, version)
            && let Ok(mut client) = self.client.lock()
        {
            *client = serde_json::json!({"name": name, "version": version});
        }
    }

    /// `GET /tools`: the raw body, which is a `ListToolsResult` (`{"tools": [...]}`).
    pub(crate) async fn list_tools(&self) -> Result<Bytes, GatewayError> {
        let body = self.with_session(&Op::ListTools).await?;
        // Validate the shape without re-serializing what is forwarded.
        #[derive(Deserialize)]
        struct Tools<'a> {
            #[serde(borrow)]
            #[allow(dead_code)]
            tools: &'a RawValue,
        }
        serde_json::from_slice::<Tools<'_>>(&body)
            .map_err(|e| GatewayError::Protocol(format!("GET /tools: {e}")))?;
        Ok(body)
    }

    /// `POST /call-tool`: the raw `CallToolResult`.
    pub(crate) async fn call_tool(
        &self,
        name: &str,
        arguments: Option<&RawValue>,
    ) -> Result<Box<RawValue>, GatewayError> {
        let tool = serde_json::Value::String(name.to_owned()).to_string();
        let arguments = arguments.map_or("{}", |a| a.get());
        let body = format!(r#"{{"tool":{tool},"arguments":{arguments}}}"#);
        let raw = self.with_session(&Op::CallTool { body: &body }).await?;
        let response: CallToolResponse = serde_json::from_slice(&raw)
            .map_err(|e| GatewayError::Protocol(format!("POST /call-tool: {e}")))?;
        tracing::debug!(tool = name, cached = response.cached, "tool call answered");
        Ok(response.result)
    }

    /// Ends the session (`DELETE /session`), best effort, bounded by `limit`.
    pub(crate) async fn close(&self, limit: Duration) {
        let Some(session) = self.session.lock().await.take() else {
            return;
        };
        let request = self
            .http
            .delete(format!("{}/session", self.base))
            .header(SESSION_HEADER, &session)
            .timeout(limit)
            .send();
        match request.await {
            Ok(r) => tracing::debug!(status = r.status().as_u16(), "gateway session ended"),
            Err(e) => {
                tracing::debug!(error = %e.without_url(), "could not end the gateway session")
            }
        }
    }

    async fn with_session(&self, op: &Op<'_>) -> Result<Bytes, GatewayError> {
        self.session.with_renewal(|| self.init(), |id: String| async move { self.send(op, &id).await }).await
    }

    async fn init(&self) -> Result<String, GatewayError> {
        let client = self.client.lock().map(|c| c.clone()).unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({"credentials": &self.credentials, "client": client});
        let url = format!("{}/init", self.base);
        let response = self
            .http
            .post(&url)
            .json(&body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| from_reqwest(&e, &self.base, self.timeout))?;
        let raw = match self.read(response).await {
            Ok(raw) => raw,
            Err(Failure::SessionGone(message)) => {
                return Err(GatewayError::Protocol(format!("POST /init answered 404: {message}")));
            }
            Err(Failure::Other(e)) => return Err(e),
        };
        let init: InitResponse =
            serde_json::from_slice(&raw).map_err(|e| GatewayError::Protocol(format!("POST /init: {e}")))?;
        tracing::info!(idle_ttl_secs = init.idle_ttl_secs, "gateway session opened");
        Ok(init.session_id)
    }

    async fn send(&self, op: &Op<'_>, session: &str) -> Result<Bytes, Failure> {
        let request = match op {
            Op::ListTools => self.http.get(format!("{}/tools", self.base)),
            Op::CallTool { body } => self
                .http
                .post(format!("{}/call-tool", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
        };
        let response = request
            .header(SESSION_HEADER, session)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| Failure::Other(from_reqwest(&e, &self.base, self.timeout)))?;
        self.read(response).await
    }

    /// Reads a response: the body on success, the mapped error otherwise.
    async fn read(&self, response: reqwest::Response) -> Result<Bytes, Failure> {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body =
            response.bytes().await.map_err(|e| Failure::Other(from_reqwest(&e, &self.base, self.timeout)))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error).unwrap_or_default();
        let message = if detail.message.is_empty() {
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned()
        } else {
            detail.message
        };
        Err(Failure::Other(match status {
            401 | 403 => GatewayError::Refused {
                message,
                no_credentials: self.credentials.as_object().is_none_or(|o| o.is_empty()),
            },
            404 => return Err(Failure::SessionGone(message)),
            400 | 413 | 422 => GatewayError::BadRequest { status, message },
            _ => GatewayError::Status { status, code: detail.code, message, retry_after },
        }))
    }
}
