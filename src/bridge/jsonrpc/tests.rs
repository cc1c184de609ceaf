#![allow(clippy::unwrap_used)]

use serde_json::value::RawValue;

use super::*;
use crate::protocol::jsonrpc::code::METHOD_NOT_FOUND;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

#[test]
fn request_keeps_id_and_params_byte_for_byte() {
    let line = br#"{"jsonrpc":"2.0","id":  7,"method":"tools/call","params":{"n":12345678901234567890,"x-new":1.50}}"#;
    match parse(line).unwrap() {
        Message::Request { id, method, params } => {
            assert_eq!(id.get(), "7");
            assert_eq!(method, "tools/call");
            assert_eq!(params.unwrap().get(), r#"{"n":12345678901234567890,"x-new":1.50}"#);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn notification_and_response_are_classified() {
    assert!(matches!(
        parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(),
        Message::Notification { .. }
    ));
    assert!(matches!(
        parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap(),
        Message::Response { outcome: Outcome::Result(_), .. }
    ));
    assert!(matches!(
        parse(br#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"m"}}"#).unwrap(),
        Message::Response { outcome: Outcome::Error(_), .. }
    ));
}

#[test]
fn bad_lines_map_to_the_right_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"not json", r#""code":-32700"#),
        (b"\xff\xfe", r#""code":-32700"#),
        (b"{\"id\":1,", r#""code":-32700"#),
        (b"[1,2]", r#""code":-32600"#),
        (b"42", r#""code":-32600"#),
        (br#"{"id":null,"method":"x"}"#, r#""code":-32600"#),
        (br#"{"id":{},"method":"x"}"#, r#""code":-32600"#),
        (br#"{"jsonrpc":"2.0"}"#, r#""code":-32600"#),
        (br#"{"id":3,"method":5}"#, r#""id":3,"error":{"code":-32600"#),
        (br#"{"id":4,"method":"m","params":"s"}"#, r#""id":4,"error":{"code":-32600"#),
        (br#"{"id":5,"result":{},"error":{}}"#, r#""id":5,"error":{"code":-32600"#),
    ];
    for (line, expected) in cases {
        let failure = parse(line).unwrap_err();
        let answer = failure.to_error_line();
        assert!(answer.contains(expected), "{line:?} -> {answer}");
        serde_json::from_str::<serde_json::Value>(&answer).unwrap();
    }
}

#[test]
fn id_key_is_canonical_but_keeps_types_apart() {
    assert_eq!(id_key(&raw(r#""a""#)), id_key(&raw(r#""\u0061""#)));
    assert_ne!(id_key(&raw("1")), id_key(&raw(r#""1""#)));
}

#[test]
fn built_lines_are_single_line_json_with_raw_payloads() {
    let id = raw("1");
    let line = result_line(&id, "{\n  \"big\": 12345678901234567890\n}");
    assert!(!line.contains('\n'));
    assert!(line.contains("12345678901234567890"));
    let line = request_line(Some("\"b-1\""), "sampling/createMessage", Some(&raw(r#"{"a":1}"#)));
    assert_eq!(line, r#"{"jsonrpc":"2.0","id":"b-1","method":"sampling/createMessage","params":{"a":1}}"#);
    let line = request_line(None, "notifications/initialized", None);
    assert_eq!(line, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let line = error_line(None, METHOD_NOT_FOUND, "say \"hi\"\n");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["error"]["message"], "say \"hi\"\n");
}
