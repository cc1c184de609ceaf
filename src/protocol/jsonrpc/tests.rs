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

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    proptest! {
        /// Any text: parsing never panics, and whatever parses classifies.
        #[test]
        fn any_text_parses_or_fails_cleanly(text in ".{0,400}") {
            if let Ok(envelope) = Envelope::parse(&text) {
                let _ = envelope.kind();
            }
        }

        /// JSON-shaped noise around the envelope's fields never panics either.
        #[test]
        fn json_shaped_noise_never_panics(
            id in prop_oneof![Just("1".to_string()), Just("\"x\"".to_string()), Just("null".to_string()), "[0-9a-z\"{}\\[\\],:]{0,12}"],
            method in "[a-z/\"\\\\]{0,20}",
            extra in "[a-z0-9\"{}\\[\\],:]{0,40}",
        ) {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{extra}}}"#);
            if let Ok(envelope) = Envelope::parse(&text) {
                let _ = envelope.kind();
            }
        }

        /// Builders always produce JSON that parses back to the same method.
        #[test]
        fn built_requests_round_trip(method in ".{0,60}", id in 0u64..u64::MAX) {
            let line = request(&id.to_string(), &method, None);
            let envelope = Envelope::parse(&line).expect("a built request parses");
            prop_assert_eq!(envelope.method.as_deref(), Some(method.as_str()));
            prop_assert_eq!(envelope.kind(), Kind::Request);
        }
    }
}
