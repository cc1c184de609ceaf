//! Request bodies, read with the worker's own bound so every rejection is a clear
//! error (a 413 for an over-limit body, a 400 naming what is wrong).

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::gateway::GatewayError;

/// Most bytes of an over-limit body read and discarded so the client gets its 413
/// (a server that stops reading mid-body makes many clients see a reset instead).
const MAX_DISCARD_BYTES: usize = 64 * 1024 * 1024;

/// Reads a body of at most `limit` bytes. Over the limit: the rest is drained
/// (bounded) and the error is [`GatewayError::BodyTooLarge`].
pub async fn read(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| GatewayError::BadRequest(format!("could not read the request body: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            if seen > MAX_DISCARD_BYTES {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if seen > limit {
        return Err(GatewayError::BodyTooLarge(limit));
    }
    Ok(buf.freeze())
}

/// Reads and parses a JSON body, mapping every failure to a [`GatewayError::BadRequest`].
pub async fn parse<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, GatewayError> {
    let bytes = read(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::BadRequest("the request body is empty; a JSON object is expected".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::BadRequest(format!("invalid JSON body: {e}")))
}
