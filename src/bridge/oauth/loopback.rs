//! The loopback redirect listener (RFC 8252 §7.3): `http://127.0.0.1:{port}/callback`
//! on a random (or the registered) port, serving exactly one callback request.
//! Other paths (a browser's `/favicon.ico`) get a 404 and do not count; every
//! connection is bounded in size and time, and the whole wait by the caller.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The callback path.
pub(crate) const CALLBACK_PATH: &str = "/callback";
/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// Bound on reading one request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

const DONE_PAGE: &str = "<!doctype html><meta charset=utf-8><title>switchboard</title>\
<body style=\"font-family:sans-serif\"><h3>switchboard: authorization received</h3>\
<p>You can close this window and return to your application.</p></body>";

/// A bound listener.
pub(crate) struct Listener {
    inner: TcpListener,
    port: u16,
}

impl Listener {
    /// Binds `127.0.0.1:{port}` (`0`: any free port).
    pub(crate) async fn bind(port: u16) -> std::io::Result<Self> {
        let inner = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = inner.local_addr()?.port();
        Ok(Self { inner, port })
    }

    /// The redirect URI this listener answers.
    pub(crate) fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Waits (unbounded: the caller bounds it) for the one request to the callback
    /// path and returns its query parameters.
    pub(crate) async fn next_callback(&self) -> HashMap<String, String> {
        loop {
            let Ok((stream, _)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if let Some(params) = serve_one(stream).await {
                return params;
            }
        }
    }
}

/// Reads one request; answers it; returns the query of a callback request.
async fn serve_one(mut stream: TcpStream) -> Option<HashMap<String, String>> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return None,
    };
    let target = request_target(&head);
    match target.as_deref().and_then(callback_query) {
        Some(params) => {
            let _ = respond(&mut stream, "200 OK", DONE_PAGE).await;
            Some(params)
        }
        None => {
            let _ = respond(&mut stream, "404 Not Found", "not found").await;
            None
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return (!head.is_empty()).then_some(head);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Some(head);
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

/// The target of a `GET` request line.
fn request_target(head: &[u8]) -> Option<String> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).ok()?.trim_end();
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    (method == "GET").then(|| target.to_owned())
}

/// The query parameters if `target` is the callback path.
pub(crate) fn callback_query(target: &str) -> Option<HashMap<String, String>> {
    let url = reqwest::Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    if url.path() != CALLBACK_PATH {
        return None;
    }
    let mut params = HashMap::new();
    for (k, v) in url.query_pairs() {
        params.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    Some(params)
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_callback_only() {
        let params = callback_query("/callback?code=abc%20d&state=xyz&state=second").unwrap();
        assert_eq!(params.get("code").map(String::as_str), Some("abc d"));
        assert_eq!(params.get("state").map(String::as_str), Some("xyz"), "the first value wins");
        assert!(callback_query("/favicon.ico").is_none());
        assert!(callback_query("/callbackx?code=1").is_none());
        assert_eq!(
            request_target(b"GET /callback?a=1 HTTP/1.1\r\nHost: x\r\n\r\n").as_deref(),
            Some("/callback?a=1")
        );
        assert_eq!(request_target(b"POST /callback HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_target(b"\xff\xfe"), None);
    }

    #[tokio::test]
    async fn serves_one_callback_and_ignores_other_paths() {
        let listener = Listener::bind(0).await.unwrap();
        let uri = listener.redirect_uri();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"));
        let client = reqwest::Client::new();
        let base = uri.trim_end_matches("/callback").to_owned();
        let wait = tokio::spawn(async move { listener.next_callback().await });
        let favicon = client.get(format!("{base}/favicon.ico")).send().await.unwrap();
        assert_eq!(favicon.status().as_u16(), 404);
        let done = client.get(format!("{uri}?code=c1&state=s1")).send().await.unwrap();
        assert_eq!(done.status().as_u16(), 200);
        let params = tokio::time::timeout(Duration::from_secs(5), wait).await.unwrap().unwrap();
        assert_eq!(params.get("code").map(String::as_str), Some("c1"));
        assert_eq!(params.get("state").map(String::as_str), Some("s1"));
    }
}
