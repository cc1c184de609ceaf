//! Drives [`serve`] with byte buffers: what each conformance scenario reads, and the rules
//! of the module docs (round trips to the client, cancellation, malformed input).

use std::io::Cursor;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::catalog::{RED_PIXEL_PNG, SILENCE_WAV};
use super::tools::Tool;
use super::{
    DEFAULT_RECONNECTION_MS, MAX_MESSAGE_BYTES, MAX_NESTING, MAX_RECONNECTION_MS, RECONNECTION_VAR,
    SUPPORTED_VERSIONS, reconnection_ms, serve,
};

/// Runs one session over `input` with the given environment; returns every output line.
fn session_raw(input: &[u8], env: &[(&str, &str)]) -> Vec<Value> {
    let lookup = |key: &str| env.iter().find(|(name, _)| *name == key).map(|(_, value)| (*value).to_owned());
    let mut output = Vec::new();
    serve(Cursor::new(input), &mut output, &lookup).unwrap();
    let text = String::from_utf8(output).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "unterminated output: {text}");
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Runs one session of `messages` (one per line), `test_reconnection` made instant.
fn session(messages: &[Value]) -> Vec<Value> {
    session_raw(lines(messages).as_bytes(), &[(RECONNECTION_VAR, "0")])
}

fn lines(messages: &[Value]) -> String {
    let mut input = String::new();
    for message in messages {
        input.push_str(&message.to_string());
        input.push('\n');
    }
    input
}

fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// What the gateway sends first: `initialize` (with `capabilities`) and `initialized`.
fn handshake(capabilities: Value) -> [Value; 2] {
    [
        request(
            0,
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities,
                "clientInfo": {"name": "test", "version": "1"}
            }),
        ),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ]
}

/// The single response to one request (no handshake).
fn answer(message: Value) -> Value {
    let mut replies = session(&[message]);
    assert_eq!(replies.len(), 1, "expected one reply: {replies:?}");
    replies.remove(0)
}

/// The `result` of one request, asserting success.
fn result_of(method: &str, params: Value) -> Value {
    let reply = answer(request(7, method, params));
    assert_eq!(reply["id"], 7);
    assert!(reply.get("error").is_none(), "unexpected error: {reply}");
    reply["result"].clone()
}

/// The `error` of one request, asserting failure.
fn error_of(method: &str, params: Value) -> Value {
    let reply = answer(request(7, method, params));
    assert_eq!(reply["id"], 7);
    assert!(reply.get("result").is_none(), "unexpected result: {reply}");
    reply["error"].clone()
}

/// The result of calling `tool` with `arguments`, nothing else expected on the wire.
fn call(tool: &str, arguments: Value) -> Value {
    result_of("tools/call", json!({"name": tool, "arguments": arguments}))
}

fn texts(result: &Value) -> Vec<String> {
    result["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|block| block["type"] == "text")
        .map(|block| block["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Minimal standard base64 decoder (with padding), enough to look inside the payloads.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_eq!(text.len() % 4, 0, "base64 length");
    let mut out = Vec::new();
    let mut bits = 0u32;
    let mut count = 0;
    for byte in text.bytes().filter(|&b| b != b'=') {
        let value = ALPHABET.iter().position(|&a| a == byte).unwrap();
        bits = (bits << 6) | u32::try_from(value).unwrap();
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).unwrap());
        }
    }
    out
}

// ---------------------------------------------------------------- lifecycle, utilities

#[test]
fn initialize_echoes_known_versions_and_offers_newest_otherwise() {
    for version in SUPPORTED_VERSIONS {
        let result = result_of("initialize", json!({"protocolVersion": version, "capabilities": {}}));
        assert_eq!(result["protocolVersion"], version);
    }
    let result = result_of("initialize", json!({"protocolVersion": "1999-01-01"}));
    assert_eq!(result["protocolVersion"], SUPPORTED_VERSIONS[0]);
    let capabilities = &result["capabilities"];
    for capability in ["tools", "prompts", "logging", "completions"] {
        assert!(capabilities[capability].is_object(), "{capability} missing: {capabilities}");
    }
    assert_eq!(capabilities["resources"]["subscribe"], true);
    assert_eq!(result["serverInfo"]["name"], "switchboard-conformance");
    assert!(result["serverInfo"]["version"].is_string());
}

#[test]
fn ping_and_set_level_answer_empty_objects() {
    assert_eq!(result_of("ping", Value::Null), json!({}));
    for level in ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"] {
        assert_eq!(result_of("logging/setLevel", json!({"level": level})), json!({}));
    }
    assert_eq!(error_of("logging/setLevel", json!({"level": "loud"}))["code"], -32602);
    assert_eq!(error_of("logging/setLevel", json!({}))["code"], -32602);
}

#[test]
fn the_gateway_sequence_gets_exactly_two_responses() {
    let [init, initialized] = handshake(json!({}));
    let replies = session(&[init, initialized, request(1, "tools/list", json!({}))]);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[0]["id"], 0);
    assert_eq!(replies[1]["id"], 1);
    assert!(replies[1]["result"]["tools"].is_array());
}

// ---------------------------------------------------------------- tools

#[test]
fn tools_list_has_every_fixture_tool_with_a_valid_entry() {
    let result = result_of("tools/list", json!({}));
    let tools = result["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool["name"].as_str().unwrap()).collect();
    for expected in [
        "test_simple_text",
        "test_image_content",
        "test_audio_content",
        "test_embedded_resource",
        "test_multiple_content_types",
        "test_tool_with_logging",
        "test_tool_with_progress",
        "test_error_handling",
        "test_sampling",
        "test_elicitation",
        "test_elicitation_sep1034_defaults",
        "test_elicitation_sep1330_enums",
        "json_schema_2020_12_tool",
        "test_reconnection",
    ] {
        assert!(names.contains(&expected), "{expected} not listed: {names:?}");
    }
    assert_eq!(names.len(), Tool::ALL.len());
    for tool in tools {
        let name = tool["name"].as_str().unwrap();
        assert!(
            (1..=128).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
            "{name} breaks the tool name rules"
        );
        assert!(!tool["description"].as_str().unwrap().is_empty(), "{name}");
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
        assert_eq!(Tool::from_name(name).map(Tool::name), Some(name));
    }
    assert_eq!(error_of("tools/list", json!({"cursor": "x"}))["code"], -32602);
}

#[test]
fn json_schema_2020_12_tool_keeps_its_keywords() {
    let result = result_of("tools/list", json!({}));
    let tool =
        result["tools"].as_array().unwrap().iter().find(|t| t["name"] == "json_schema_2020_12_tool").unwrap();
    let schema = &tool["inputSchema"];
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(schema["$defs"]["address"]["properties"]["city"].is_object());
    assert_eq!(schema["properties"]["address"]["$ref"], "#/$defs/address");
    assert_eq!(schema["additionalProperties"], false);

    let ok = call("json_schema_2020_12_tool", json!({"name": "Ada", "address": {"city": "London"}}));
    assert!(ok.get("isError").is_none(), "{ok}");
    assert!(texts(&ok)[0].contains("London"));
    for bad in
        [json!({"extra": 1}), json!({"name": 3}), json!({"address": {"city": 1}}), json!({"address": []})]
    {
        assert_eq!(call("json_schema_2020_12_tool", bad.clone())["isError"], true, "{bad}");
    }
}

#[test]
fn content_tools_return_what_the_suite_checks() {
    let text = call("test_simple_text", json!({}));
    assert_eq!(texts(&text), ["This is a simple text response for testing."]);
    assert!(text.get("isError").is_none());

    let image = call("test_image_content", json!({}));
    assert_eq!(image["content"][0], json!({"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"}));

    let audio = call("test_audio_content", json!({}));
    assert_eq!(audio["content"][0]["type"], "audio");
    assert_eq!(audio["content"][0]["mimeType"], "audio/wav");
    assert_eq!(audio["content"][0]["data"], SILENCE_WAV);

    let embedded = call("test_embedded_resource", json!({}));
    assert_eq!(
        embedded["content"][0],
        json!({"type": "resource", "resource": {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content."
        }})
    );

    let mixed = call("test_multiple_content_types", json!({}));
    let types: Vec<&str> =
        mixed["content"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text", "image", "resource"]);
    let resource = &mixed["content"][2]["resource"];
    assert_eq!(resource["uri"], "test://mixed-content-resource");
    assert_eq!(resource["mimeType"], "application/json");
    let data: Value = serde_json::from_str(resource["text"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"test": "data", "value": 123}));

    let failure = call("test_error_handling", json!({}));
    assert_eq!(failure["isError"], true);
    assert_eq!(texts(&failure), ["This tool intentionally returns an error for testing"]);
}

#[test]
fn payloads_are_a_real_png_and_a_real_wav() {
    let png = base64_decode(RED_PIXEL_PNG);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(&png[16..24], [0, 0, 0, 1, 0, 0, 0, 1], "1x1");
    assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");

    let wav = base64_decode(SILENCE_WAV);
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let riff_size = u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]);
    assert_eq!(usize::try_from(riff_size).unwrap() + 8, wav.len());
    assert_eq!(&wav[36..40], b"data");
}

#[test]
fn unknown_tools_and_bad_calls() {
    let error = error_of("tools/call", json!({"name": "nope"}));
    assert_eq!(error["code"], -32602);
    assert_eq!(error["message"], "Unknown tool: nope");
    assert_eq!(error_of("tools/call", json!({}))["code"], -32602);
    assert_eq!(error_of("tools/call", json!([1]))["code"], -32602);
    let result = result_of("tools/call", json!({"name": "test_simple_text", "arguments": [1]}));
    assert_eq!(result["isError"], true);
}

#[test]
fn logging_tool_sends_three_info_messages_before_its_result() {
    let started = Instant::now();
    let replies = session(&[request(1, "tools/call", json!({"name": "test_tool_with_logging"}))]);
    assert!(started.elapsed() >= Duration::from_millis(100), "the steps are ~50 ms apart");
    assert_eq!(replies.len(), 4, "{replies:?}");
    let data: Vec<&str> = replies[..3]
        .iter()
        .map(|log| {
            assert_eq!(log["method"], "notifications/message");
            assert!(log.get("id").is_none());
            assert_eq!(log["params"]["level"], "info");
            log["params"]["data"].as_str().unwrap()
        })
        .collect();
    assert_eq!(data, ["Tool execution started", "Tool processing data", "Tool execution completed"]);
    assert_eq!(replies[3]["id"], 1);
    assert!(replies[3]["result"]["content"].is_array());
}

#[test]
fn set_level_filters_later_logs_of_the_same_process() {
    let replies = session(&[
        request(1, "logging/setLevel", json!({"level": "warning"})),
        request(2, "tools/call", json!({"name": "test_tool_with_logging"})),
    ]);
    assert_eq!(replies.len(), 2, "info logs must be filtered: {replies:?}");
    assert_eq!(replies[1]["id"], 2);
}

#[test]
fn progress_tool_reports_increasing_progress_with_the_token() {
    for token in [json!("progress-test-1"), json!(42)] {
        let replies = session(&[request(
            1,
            "tools/call",
            json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": token}}),
        )]);
        assert_eq!(replies.len(), 4, "{replies:?}");
        let progress: Vec<u64> = replies[..3]
            .iter()
            .map(|note| {
                assert_eq!(note["method"], "notifications/progress");
                assert_eq!(note["params"]["progressToken"], token);
                assert_eq!(note["params"]["total"], 100);
                note["params"]["progress"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(progress, [0, 50, 100]);
        assert_eq!(replies[3]["id"], 1);
    }
    // Without a token: no notifications, just the result.
    let replies = session(&[request(1, "tools/call", json!({"name": "test_tool_with_progress"}))]);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["id"], 1);
}

#[test]
fn reconnection_tool_answers_after_the_configured_delay() {
    let started = Instant::now();
    let input = lines(&[request(1, "tools/call", json!({"name": "test_reconnection", "arguments": {}}))]);
    let replies = session_raw(input.as_bytes(), &[(RECONNECTION_VAR, "120")]);
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(replies.len(), 1);
    assert_eq!(texts(&replies[0]["result"]), ["Reconnection test completed"]);
    assert!(replies[0]["result"].get("isError").is_none());
}

#[test]
fn reconnection_delay_parsing() {
    let env = |value: Option<&'static str>| move |_: &str| value.map(str::to_owned);
    assert_eq!(reconnection_ms(&env(None)), DEFAULT_RECONNECTION_MS);
    assert_eq!(reconnection_ms(&env(Some(" "))), DEFAULT_RECONNECTION_MS);
    assert_eq!(reconnection_ms(&env(Some("soon"))), DEFAULT_RECONNECTION_MS);
    assert_eq!(reconnection_ms(&env(Some("-5"))), DEFAULT_RECONNECTION_MS);
    assert_eq!(reconnection_ms(&env(Some(" 250 "))), 250);
    assert_eq!(reconnection_ms(&env(Some("99999999999"))), MAX_RECONNECTION_MS);
}

// ---------------------------------------------------------------- server-to-client requests

const OWN_ID: &str = "switchboard-conformance-1";

fn client_result(id: &str, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

#[test]
fn sampling_round_trip() {
    let [init, initialized] = handshake(json!({"sampling": {}, "elicitation": {}}));
    let replies = session(&[
        init,
        initialized,
        request(1, "tools/call", json!({"name": "test_sampling", "arguments": {"prompt": "Say hi"}})),
        client_result(
            OWN_ID,
            json!({
                "role": "assistant",
                "content": {"type": "text", "text": "hi there"},
                "model": "test-model",
                "stopReason": "endTurn"
            }),
        ),
    ]);
    assert_eq!(replies.len(), 3, "{replies:?}");
    let asked = &replies[1];
    assert_eq!(asked["method"], "sampling/createMessage");
    assert_eq!(asked["id"], OWN_ID);
    assert_eq!(asked["params"]["maxTokens"], 100);
    assert_eq!(
        asked["params"]["messages"][0],
        json!({"role": "user", "content": {"type": "text", "text": "Say hi"}})
    );
    assert_eq!(replies[2]["id"], 1);
    assert_eq!(texts(&replies[2]["result"]), ["LLM response: hi there"]);
}

#[test]
fn sampling_accepts_array_content() {
    let replies = session(&[
        request(1, "tools/call", json!({"name": "test_sampling", "arguments": {"prompt": "p"}})),
        client_result(
            OWN_ID,
            json!({"role": "assistant", "content": [{"type": "text", "text": "a"}], "model": "m"}),
        ),
    ]);
    assert_eq!(texts(&replies[1]["result"]), ["LLM response: a"]);
}

#[test]
fn sampling_needs_the_capability_and_a_prompt() {
    let [init, initialized] = handshake(json!({"elicitation": {}}));
    let replies = session(&[
        init,
        initialized,
        request(1, "tools/call", json!({"name": "test_sampling", "arguments": {"prompt": "p"}})),
    ]);
    assert_eq!(replies.len(), 2, "no request may be sent: {replies:?}");
    assert_eq!(replies[1]["result"]["isError"], true);

    let missing = call("test_sampling", json!({}));
    assert_eq!(missing["isError"], true);
    assert!(texts(&missing)[0].contains("prompt"));
    assert_eq!(call("test_sampling", json!({"prompt": 5}))["isError"], true);
}

#[test]
fn client_errors_and_closed_input_become_error_results() {
    let replies = session(&[
        request(1, "tools/call", json!({"name": "test_sampling", "arguments": {"prompt": "p"}})),
        json!({"jsonrpc": "2.0", "id": OWN_ID, "error": {"code": -1, "message": "User rejected sampling"}}),
    ]);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1]["result"]["isError"], true);
    assert!(texts(&replies[1]["result"])[0].contains("User rejected sampling"));

    let replies = session(&[request(
        1,
        "tools/call",
        json!({"name": "test_elicitation", "arguments": {"message": "m"}}),
    )]);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[0]["method"], "elicitation/create");
    assert_eq!(replies[1]["id"], 1);
    assert_eq!(replies[1]["result"]["isError"], true);
}

#[test]
fn other_traffic_while_waiting_is_served_or_ignored() {
    let replies = session(&[
        request(1, "tools/call", json!({"name": "test_sampling", "arguments": {"prompt": "p"}})),
        client_result("someone-else", json!({})),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}),
        json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}),
        request(2, "ping", Value::Null),
        request(3, "resources/read", json!({"uri": "test://static-text"})),
        client_result(
            OWN_ID,
            json!({"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"}),
        ),
        request(4, "ping", Value::Null),
    ]);
    let ids: Vec<Value> = replies.iter().map(|reply| reply["id"].clone()).collect();
    assert_eq!(ids, [json!(OWN_ID), json!(2), json!(3), json!(1), json!(4)], "{replies:?}");
    assert_eq!(replies[1]["result"], json!({}));
    assert!(replies[2]["result"]["contents"].is_array());
    assert_eq!(texts(&replies[3]["result"]), ["LLM response: ok"]);
}

#[test]
fn cancelling_the_waiting_call_abandons_it() {
    let replies = session(&[
        request(5, "tools/call", json!({"name": "test_elicitation", "arguments": {"message": "m"}})),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "user"}}),
        client_result(OWN_ID, json!({"action": "accept", "content": {}})),
        request(6, "ping", Value::Null),
    ]);
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0]["method"], "elicitation/create");
    assert_eq!(replies[1]["method"], "notifications/cancelled");
    assert_eq!(replies[1]["params"]["requestId"], OWN_ID);
    assert_eq!(replies[2]["id"], 6, "the cancelled call got no response");
}

#[test]
fn nested_waits_are_bounded() {
    let sampling =
        |id: i64| request(id, "tools/call", json!({"name": "test_sampling", "arguments": {"prompt": "p"}}));
    let nested = i64::try_from(MAX_NESTING).unwrap();
    // Call 0 waits; calls 1..=MAX_NESTING nest inside it; one more is refused.
    let messages: Vec<Value> = (0..=nested + 1).map(sampling).collect();
    let replies = session(&messages);
    let own_requests = replies.iter().filter(|reply| reply["method"] == "sampling/createMessage").count();
    assert_eq!(own_requests, MAX_NESTING + 1, "{replies:?}");
    let refused = replies.iter().find(|reply| reply["id"] == nested + 1).unwrap();
    assert_eq!(refused["error"]["code"], -32603);
    // Input then ends: every waiting call finishes with an error result, innermost first.
    let finished: Vec<Value> = replies
        .iter()
        .filter(|reply| reply["result"]["isError"] == true)
        .map(|reply| reply["id"].clone())
        .collect();
    let expected: Vec<Value> = (0..=nested).rev().map(Value::from).collect();
    assert_eq!(finished, expected);
}

#[test]
fn elicitation_round_trip() {
    let replies = session(&[
        request(
            1,
            "tools/call",
            json!({"name": "test_elicitation", "arguments": {"message": "Please provide"}}),
        ),
        client_result(OWN_ID, json!({"action": "accept", "content": {"username": "u", "email": "e@x"}})),
    ]);
    assert_eq!(replies.len(), 2);
    let asked = &replies[0]["params"];
    assert_eq!(asked["message"], "Please provide");
    assert_eq!(asked["requestedSchema"]["type"], "object");
    assert_eq!(asked["requestedSchema"]["required"], json!(["username", "email"]));
    let text = &texts(&replies[1]["result"])[0];
    assert!(text.starts_with("User response: action=accept"), "{text}");
    assert!(text.contains("e@x"), "{text}");

    let replies = session(&[
        request(1, "tools/call", json!({"name": "test_elicitation", "arguments": {"message": "m"}})),
        client_result(OWN_ID, json!({"action": "decline"})),
    ]);
    assert_eq!(texts(&replies[1]["result"]), ["User response: action=decline, content={}"]);

    let [init, initialized] = handshake(json!({"sampling": {}}));
    let replies = session(&[
        init,
        initialized,
        request(1, "tools/call", json!({"name": "test_elicitation_sep1330_enums"})),
    ]);
    assert_eq!(replies.len(), 2, "no elicitation without the capability: {replies:?}");
    assert_eq!(replies[1]["result"]["isError"], true);
}

/// The `requestedSchema.properties` that `tool` elicits.
fn elicited_properties(tool: &str) -> Value {
    let replies = session(&[
        request(1, "tools/call", json!({"name": tool, "arguments": {}})),
        client_result(OWN_ID, json!({"action": "accept", "content": {}})),
    ]);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[0]["method"], "elicitation/create");
    assert!(texts(&replies[1]["result"])[0].starts_with("Elicitation completed: action=accept"));
    replies[0]["params"]["requestedSchema"]["properties"].clone()
}

#[test]
fn sep1034_defaults_have_exact_types_and_values() {
    let properties = elicited_properties("test_elicitation_sep1034_defaults");
    let expect = |field: &str, kind: &str, default: Value| {
        assert_eq!(properties[field]["type"], kind, "{field}");
        assert_eq!(properties[field]["default"], default, "{field}");
    };
    expect("name", "string", json!("John Doe"));
    expect("age", "integer", json!(30));
    expect("score", "number", json!(95.5));
    expect("status", "string", json!("active"));
    expect("verified", "boolean", json!(true));
    assert_eq!(properties["status"]["enum"], json!(["active", "inactive", "pending"]));
}

#[test]
fn sep1330_has_the_five_enum_shapes() {
    let p = elicited_properties("test_elicitation_sep1330_enums");
    let untitled = &p["untitledSingle"];
    assert_eq!(untitled["type"], "string");
    assert!(
        untitled["enum"].is_array() && untitled.get("oneOf").is_none() && untitled.get("enumNames").is_none()
    );

    let titled = &p["titledSingle"];
    assert_eq!(titled["type"], "string");
    assert!(titled.get("enum").is_none());
    for option in titled["oneOf"].as_array().unwrap() {
        assert!(option["const"].is_string() && option["title"].is_string());
    }

    let legacy = &p["legacyEnum"];
    assert_eq!(legacy["type"], "string");
    assert_eq!(legacy["enum"].as_array().unwrap().len(), legacy["enumNames"].as_array().unwrap().len());

    let multi = &p["untitledMulti"];
    assert_eq!(multi["type"], "array");
    assert_eq!(multi["items"]["type"], "string");
    assert!(multi["items"]["enum"].is_array() && multi["items"].get("anyOf").is_none());

    let titled_multi = &p["titledMulti"];
    assert_eq!(titled_multi["type"], "array");
    assert!(titled_multi["items"].get("enum").is_none());
    for option in titled_multi["items"]["anyOf"].as_array().unwrap() {
        assert!(option["const"].is_string() && option["title"].is_string());
    }
}

// ---------------------------------------------------------------- resources

#[test]
fn resources_list_and_templates() {
    let result = result_of("resources/list", json!({}));
    let resources = result["resources"].as_array().unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r["uri"].as_str().unwrap()).collect();
    assert_eq!(uris, ["test://static-text", "test://static-binary", "test://watched-resource"]);
    for resource in resources {
        assert!(
            resource["name"].is_string()
                && resource["description"].is_string()
                && resource["mimeType"].is_string()
        );
    }
    let result = result_of("resources/templates/list", json!({}));
    assert_eq!(result["resourceTemplates"][0]["uriTemplate"], "test://template/{id}/data");
    assert!(result["resourceTemplates"][0]["name"].is_string());
    assert_eq!(error_of("resources/list", json!({"cursor": "2"}))["code"], -32602);
}

#[test]
fn resources_read() {
    let text = result_of("resources/read", json!({"uri": "test://static-text"}));
    assert_eq!(
        text["contents"][0],
        json!({"uri": "test://static-text", "mimeType": "text/plain", "text": "This is the content of the static text resource."})
    );
    let binary = result_of("resources/read", json!({"uri": "test://static-binary"}));
    assert_eq!(binary["contents"][0]["blob"], RED_PIXEL_PNG);
    assert_eq!(binary["contents"][0]["mimeType"], "image/png");
    let templated = result_of("resources/read", json!({"uri": "test://template/123/data"}));
    let content = &templated["contents"][0];
    assert_eq!(content["uri"], "test://template/123/data");
    let data: Value = serde_json::from_str(content["text"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"id": "123", "templateTest": true, "data": "Data for ID: 123"}));

    for missing in ["test://nope", "test://template//data", "test://template/a/b/data", "test://template/1"] {
        let error = error_of("resources/read", json!({"uri": missing}));
        assert_eq!(error["code"], -32002, "{missing}");
        assert_eq!(error["data"]["uri"], missing);
    }
    assert_eq!(error_of("resources/read", json!({}))["code"], -32602);
}

#[test]
fn subscriptions_are_acknowledged() {
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        assert_eq!(result_of(method, json!({"uri": "test://watched-resource"})), json!({}));
        assert_eq!(error_of(method, json!({"uri": "test://nope"}))["code"], -32002);
        assert_eq!(error_of(method, json!({"uri": 1}))["code"], -32602);
    }
}

// ---------------------------------------------------------------- prompts, completion

#[test]
fn prompts_list_and_get() {
    let result = result_of("prompts/list", json!({}));
    let prompts = result["prompts"].as_array().unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "test_simple_prompt",
            "test_prompt_with_arguments",
            "test_prompt_with_embedded_resource",
            "test_prompt_with_image"
        ]
    );
    assert!(prompts.iter().all(|p| p["description"].is_string()));
    assert_eq!(
        prompts[1]["arguments"][0],
        json!({"name": "arg1", "description": "First test argument", "required": true})
    );

    let simple = result_of("prompts/get", json!({"name": "test_simple_prompt"}));
    assert_eq!(
        simple["messages"],
        json!([{"role": "user", "content": {"type": "text", "text": "This is a simple prompt for testing."}}])
    );
    let with_args = result_of(
        "prompts/get",
        json!({"name": "test_prompt_with_arguments", "arguments": {"arg1": "hello", "arg2": "world"}}),
    );
    assert_eq!(
        with_args["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='hello', arg2='world'"
    );
    let embedded = result_of(
        "prompts/get",
        json!({"name": "test_prompt_with_embedded_resource", "arguments": {"resourceUri": "test://example-resource"}}),
    );
    assert_eq!(embedded["messages"][0]["content"]["type"], "resource");
    assert_eq!(embedded["messages"][0]["content"]["resource"]["uri"], "test://example-resource");
    let image = result_of("prompts/get", json!({"name": "test_prompt_with_image"}));
    assert_eq!(
        image["messages"][0]["content"],
        json!({"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"})
    );
}

#[test]
fn prompt_errors() {
    assert_eq!(error_of("prompts/get", json!({"name": "nope"}))["code"], -32602);
    assert_eq!(error_of("prompts/get", json!({}))["code"], -32602);
    let missing =
        error_of("prompts/get", json!({"name": "test_prompt_with_arguments", "arguments": {"arg1": "a"}}));
    assert_eq!(missing["code"], -32602);
    assert!(missing["message"].as_str().unwrap().contains("arg2"));
    let wrong = json!({"name": "test_prompt_with_arguments", "arguments": {"arg1": "a", "arg2": 2}});
    assert_eq!(error_of("prompts/get", wrong)["code"], -32602);
    let not_object = json!({"name": "test_simple_prompt", "arguments": "x"});
    assert_eq!(error_of("prompts/get", not_object)["code"], -32602);
}

#[test]
fn completion_for_prompt_arguments_and_the_template() {
    let complete = |reference: Value, name: &str, value: &str| {
        result_of(
            "completion/complete",
            json!({"ref": reference, "argument": {"name": name, "value": value}}),
        )
    };
    let prompt = json!({"type": "ref/prompt", "name": "test_prompt_with_arguments"});
    let result = complete(prompt.clone(), "arg1", "PAR");
    assert_eq!(
        result,
        json!({"completion": {"values": ["paris", "park", "party"], "total": 3, "hasMore": false}})
    );
    assert!(complete(prompt.clone(), "arg1", "test")["completion"]["values"].is_array());
    assert_eq!(
        complete(prompt.clone(), "arg2", "")["completion"]["values"],
        json!(["hello", "world", "testValue2"])
    );
    assert_eq!(complete(prompt, "other", "")["completion"]["values"], json!([]));
    let template = json!({"type": "ref/resource", "uri": "test://template/{id}/data"});
    assert_eq!(complete(template, "id", "1")["completion"]["values"], json!(["1", "123"]));

    let error = |params: Value| error_of("completion/complete", params)["code"].clone();
    let arg = json!({"name": "arg1", "value": ""});
    assert_eq!(error(json!({"ref": {"type": "ref/prompt", "name": "nope"}, "argument": arg})), -32602);
    assert_eq!(
        error(json!({"ref": {"type": "ref/resource", "uri": "test://x/{y}"}, "argument": arg})),
        -32602
    );
    assert_eq!(error(json!({"ref": {"type": "ref/other"}, "argument": arg})), -32602);
    assert_eq!(error(json!({"ref": {"type": "ref/prompt", "name": "test_simple_prompt"}})), -32602);
    assert_eq!(
        error(
            json!({"ref": {"type": "ref/prompt", "name": "test_simple_prompt"}, "argument": {"name": "a"}})
        ),
        -32602
    );
}

// ---------------------------------------------------------------- the edges

#[test]
fn unknown_methods_and_bad_params() {
    let error = error_of("tasks/list", json!({}));
    assert_eq!(error["code"], -32601);
    assert_eq!(error["message"], "Method not found: tasks/list");
    assert_eq!(error_of("ping", json!("x"))["code"], -32602);
}

#[test]
fn malformed_lines_get_errors_and_serving_goes_on() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{not json\n");
    input.extend_from_slice(b"[1,2]\n");
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":7}\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":4}\n");
    input.extend_from_slice(b"   \n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"whatever\"}\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\r\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}"); // no final newline
    let replies = session_raw(&input, &[]);
    let codes: Vec<Value> = replies.iter().map(|reply| reply["error"]["code"].clone()).collect();
    assert_eq!(
        codes,
        [
            json!(-32700),
            json!(-32600),
            json!(-32700),
            json!(-32600),
            json!(-32600),
            json!(-32600),
            Value::Null,
            Value::Null
        ]
    );
    let ids: Vec<Value> = replies.iter().map(|reply| reply["id"].clone()).collect();
    assert_eq!(
        ids,
        [Value::Null, Value::Null, Value::Null, Value::Null, json!(3), json!(4), json!(5), json!(6)]
    );
}

#[test]
fn an_oversized_line_is_skipped() {
    let mut input = vec![b'x'; MAX_MESSAGE_BYTES + 10];
    input.push(b'\n');
    input.extend_from_slice(lines(&[request(1, "ping", Value::Null)]).as_bytes());
    let replies = session_raw(&input, &[]);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["error"]["code"], -32700);
    assert_eq!(replies[1]["id"], 1);
    assert_eq!(replies[1]["result"], json!({}));
}

#[test]
fn empty_input_ends_quietly() {
    assert!(session_raw(b"", &[]).is_empty());
}
