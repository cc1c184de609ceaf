//! The JSON-RPC envelope parser on any bytes: no panic, a [`Kind`] that follows the
//! JSON-RPC rules, and a message rebuilt from the parsed parts by the project's own
//! builders parses back to the same parts (raw values byte for byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::jsonrpc::{self, Envelope, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(envelope) = Envelope::parse(text) else {
        return;
    };
    let raw = |v: Option<&serde_json::value::RawValue>| v.map(|v| v.get().to_owned());
    let answered = envelope.result.is_some() || envelope.error.is_some();
    let kind = envelope.kind();
    match kind {
        Kind::Request => assert!(envelope.method.is_some() && envelope.id.is_some() && !answered),
        Kind::Notification => assert!(envelope.method.is_some() && envelope.id.is_none() && !answered),
        Kind::Response => assert!(envelope.method.is_none() && envelope.id.is_some() && answered),
        Kind::Invalid => {}
    }

    // Rebuild with the builders the gateway answers and forwards with, parse again.
    let id = envelope.id.map(|id| id.get());
    let method = envelope.method.as_deref();
    let rebuilt = match (&kind, id, method) {
        (Kind::Request, Some(id), Some(method)) => jsonrpc::request(id, method, envelope.params),
        (Kind::Notification, None, Some(method)) => jsonrpc::notification(method, envelope.params),
        (Kind::Response, Some(id), None) => match (envelope.result, envelope.error) {
            (Some(result), None) => jsonrpc::response(id, result.get()),
            (None, Some(error)) => jsonrpc::raw_error_response(id, error.get()),
            _ => return, // both: invalid JSON-RPC, nothing of ours builds it
        },
        _ => return,
    };
    let again = Envelope::parse(&rebuilt).expect("a rebuilt message parses");
    assert_eq!(again.kind(), kind, "{rebuilt}");
    assert_eq!(raw(again.id), raw(envelope.id));
    assert_eq!(again.method, envelope.method);
    if kind != Kind::Response {
        assert_eq!(raw(again.params), raw(envelope.params)); // a response's are not rebuilt
    }
    assert_eq!(raw(again.result), raw(envelope.result));
    assert_eq!(raw(again.error), raw(envelope.error));

    // An error answer to this id carrying the method name as its message parses too.
    if let (Some(id), Some(method)) = (id, method) {
        let error = jsonrpc::error_response(id, jsonrpc::code::INVALID_REQUEST, method);
        let parsed = Envelope::parse(&error).expect("an error response parses");
        assert_eq!(parsed.kind(), Kind::Response);
        let object: serde_json::Value =
            serde_json::from_str(parsed.error.expect("error").get()).expect("JSON");
        assert_eq!(object["message"].as_str(), Some(method));
    }
});
