use super::*;

fn kind(text: &str) -> Option<Kind> {
    Envelope::parse(text).ok().map(|e| e.kind())
}

#[test]
fn classifies_messages_like_json_rpc() {
    assert_eq!(kind(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Some(Kind::Request));
    assert_eq!(kind(r#"{"jsonrpc":"2.0","id":"a","method":"x","params":{}}"#), Some(Kind::Request));
    assert_eq!(kind(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#), Some(Kind::Notification));
    assert_eq!(kind(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#), Some(Kind::Response));
    assert_eq!(kind(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#), Some(Kind::Response));
    assert_eq!(kind(r#"{"jsonrpc":"2.0","id":1}"#), Some(Kind::Invalid));
    assert_eq!(kind(r#"{"jsonrpc":"2.0","method":"m","result":1}"#), Some(Kind::Invalid));
    assert_eq!(kind("[1,2]"), None);
    assert_eq!(kind("not json"), None);
    assert_eq!(kind(r#"{"method":"a\"b","id":2}"#), Some(Kind::Request));
}

#[test]
fn raw_params_pass_through_byte_for_byte() {
    let params = r#"{"b": 1.000, "a": 123456789012345678901234567890, "x": "\u00e9"}"#;
    let line = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{params}}}"#);
    let env = Envelope::parse(&line).expect("parse");
    let out = request("1", env.method.as_deref().unwrap_or_default(), env.params);
    assert_eq!(out, format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#));
}

#[test]
fn builders_escape_strings() {
    assert_eq!(
        error_response("null", code::PARSE_ERROR, "bad \"x\""),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad \"x\""}}"#
    );
    assert_eq!(notification("a", None), r#"{"jsonrpc":"2.0","method":"a"}"#);
}
