#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use serde_json::{Value, json};

use super::*;

/// A server that answers `ping`, cancels `cancel` and knows nothing else.
struct Pinger<R, W> {
    connection: Connection<R, W>,
}

impl<R: BufRead, W: Write> StdioServer<R, W> for Pinger<R, W> {
    fn connection(&mut self) -> &mut Connection<R, W> {
        &mut self.connection
    }

    fn dispatch(&mut self, _id: &Value, method: &str, params: Option<&Value>) -> io::Result<Reply> {
        Ok(match method {
            "ping" => object_params(params).map(|_| json!({})).into(),
            "cancel" => Reply::Cancelled,
            _ => Reply::Failed(RpcError::new(code::METHOD_NOT_FOUND, format!("Method not found: {method}"))),
        })
    }
}

fn replies(input: &[u8]) -> Vec<Value> {
    let mut output = Vec::new();
    Pinger { connection: Connection::new("test", Cursor::new(input), &mut output) }.serve().unwrap();
    let text = String::from_utf8(output).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "unterminated output: {text}");
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn codes_and_ids(input: &[u8]) -> Vec<(Value, Value)> {
    replies(input).iter().map(|r| (r["error"]["code"].clone(), r["id"].clone())).collect()
}

#[test]
fn requests_are_answered_in_order_and_notifications_never() {
    let input = concat!(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        "\r\n  \n",
        r#"{"jsonrpc":"2.0","id":"c","method":"cancel"}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":2,"method":"nope"}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","method":5}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":4,"method":"ping","params":"x"}"#
    );
    let replies = replies(input.as_bytes());
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0], json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    assert_eq!(replies[1]["error"]["code"], code::METHOD_NOT_FOUND);
    assert_eq!(replies[2]["error"]["code"], code::INVALID_PARAMS);
    assert_eq!(replies[2]["id"], 4);
}

#[test]
fn malformed_lines_get_errors_with_the_id_when_it_is_usable() {
    let input = b"{not json\n[1,2]\n\xff\xfe\n{\"id\":null,\"method\":\"ping\"}\n{\"id\":3,\"method\":7}\n{\"id\":4}\n{\"id\":{},\"method\":\"x\"}\n";
    let parse = json!(code::PARSE_ERROR);
    let invalid = json!(code::INVALID_REQUEST);
    assert_eq!(
        codes_and_ids(input),
        [
            (parse.clone(), Value::Null),
            (invalid.clone(), Value::Null),
            (parse, Value::Null),
            (invalid.clone(), Value::Null),
            (invalid.clone(), json!(3)),
            (invalid.clone(), json!(4)),
            (invalid, Value::Null),
        ]
    );
}

#[test]
fn an_oversized_line_is_a_parse_error_and_serving_goes_on() {
    let mut input = vec![b'x'; MAX_MESSAGE_BYTES + 1];
    input.extend_from_slice(b"\n{\"id\":2,\"method\":\"ping\"}");
    assert_eq!(codes_and_ids(&input), [(json!(code::PARSE_ERROR), Value::Null), (Value::Null, json!(2))]);
}

#[test]
fn responses_are_handed_to_the_server_with_their_outcome() {
    let parsed = parse(br#"{"id":"s-1","error":{"code":1,"message":"m"}}"#).unwrap();
    assert_eq!(
        parsed,
        Some(Incoming::Response { id: json!("s-1"), outcome: Err(json!({"code": 1, "message": "m"})) })
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any line: parsing never panics, and every error goes back with a usable id or null.
        #[test]
        fn any_line_parses_or_fails_cleanly(line in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Err((_, id)) = parse(&line) {
                prop_assert!(id.is_null() || id.is_string() || id.is_number());
            }
        }

        /// JSON-RPC-shaped objects: requests come out only with string or number ids.
        #[test]
        fn requests_only_carry_usable_ids(
            id in prop_oneof![Just(json!(1)), Just(json!("a")), Just(Value::Null), Just(json!([1])), Just(json!({}))],
            method in prop_oneof![Just(json!("ping")), Just(json!(5)), Just(Value::Null)],
        ) {
            let line = json!({"jsonrpc": "2.0", "id": id, "method": method}).to_string();
            if let Ok(Some(Incoming::Request { id, .. })) = parse(line.as_bytes()) {
                prop_assert!(id.is_string() || id.is_number());
            }
        }
    }
}
