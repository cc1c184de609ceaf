//! Drives [`serve`] with byte buffers, one test per rule of the module docs.

use serde_json::{Value, json};

use super::feedback::Feedback;
use super::serve;
use crate::protocol::STDIO_VERSIONS;
use crate::protocol::stdio_server::{MAX_MESSAGE_BYTES, transcript};

/// A credential value the tests can search the output for.
const TOKEN: &str = "tok-3f9a-very-secret";

/// Runs one session over `input` with the given environment; returns every output line.
fn session_raw(input: &[u8], env: &[(&str, &str)]) -> Vec<Value> {
    transcript(input, env, |input, output, env| serve(input, output, env)).unwrap()
}

/// Runs one session of `messages` (one per line) with the given environment.
fn session(messages: &[Value], env: &[(&str, &str)]) -> Vec<Value> {
    let mut input = String::new();
    for message in messages {
        input.push_str(&message.to_string());
        input.push('\n');
    }
    session_raw(input.as_bytes(), env)
}

fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The single response to one request.
fn answer(message: Value, env: &[(&str, &str)]) -> Value {
    let mut replies = session(&[message], env);
    assert_eq!(replies.len(), 1, "expected one reply: {replies:?}");
    replies.remove(0)
}

/// The `result` of calling `tool` with `arguments`, credentials present.
fn call(tool: &str, arguments: Value) -> Value {
    let reply = answer(
        request(1, "tools/call", json!({"name": tool, "arguments": arguments})),
        &[("DEMO_TOKEN", TOKEN)],
    );
    assert_eq!(reply["id"], 1);
    reply["result"].clone()
}

/// Asserts a successful tool result and returns its structured content, checking that the
/// text block is the same JSON.
fn structured(result: &Value) -> Value {
    assert_eq!(result.get("isError"), None, "unexpected error: {result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    assert_eq!(result["content"][0]["type"], "text");
    let parsed: Value = serde_json::from_str(text).unwrap();
    assert_eq!(parsed, result["structuredContent"]);
    result["structuredContent"].clone()
}

/// Asserts an `isError` tool result whose text mentions `needle`.
fn check_tool_error(result: &Value, needle: &str) {
    assert_eq!(result["isError"], true, "expected a tool error: {result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.contains(needle), "{text:?} does not mention {needle:?}");
}

#[test]
fn initialize_echoes_each_supported_version() {
    for &version in STDIO_VERSIONS {
        let reply = answer(request(1, "initialize", json!({"protocolVersion": version})), &[]);
        assert_eq!(reply["result"]["protocolVersion"], version);
    }
}

#[test]
fn initialize_offers_newest_version_for_unknown_or_missing_one() {
    for params in
        [json!({"protocolVersion": "2099-01-01"}), json!({"protocolVersion": 7}), json!({}), Value::Null]
    {
        let reply = answer(request(1, "initialize", params), &[]);
        assert_eq!(reply["result"]["protocolVersion"], "2025-11-25");
    }
}

#[test]
fn initialize_declares_tools_and_server_info() {
    let reply = answer(
        request(
            7,
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}
            }),
        ),
        &[],
    );
    assert_eq!(
        reply,
        json!({
            "jsonrpc": "2.0",
            "id": 7,
            "result": {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "switchboard-demo", "version": env!("CARGO_PKG_VERSION")}
            }
        })
    );
}

#[test]
fn ping_answers_empty_object() {
    let reply = answer(json!({"jsonrpc": "2.0", "id": "p-1", "method": "ping"}), &[]);
    assert_eq!(reply, json!({"jsonrpc": "2.0", "id": "p-1", "result": {}}));
}

#[test]
fn tools_list_works_without_token_in_fixed_order() {
    let reply = answer(request(2, "tools/list", json!({})), &[]);
    let tools = reply["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "list_surveys", "survey_summary", "segment_breakdown", "search_feedback"]);
    for tool in tools {
        assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(tool["inputSchema"]["type"], "object");
        assert_eq!(tool["inputSchema"]["additionalProperties"], false);
        let annotations = &tool["annotations"];
        assert_eq!(annotations["readOnlyHint"], true);
        assert_eq!(annotations["idempotentHint"], true);
        assert_eq!(annotations["openWorldHint"], false);
        assert_eq!(annotations["destructiveHint"], false);
    }
    assert_eq!(tools[4]["inputSchema"]["required"], json!(["query"]), "search_feedback requires only query");
    assert_eq!(reply, answer(request(2, "tools/list", Value::Null), &[]));
}

#[test]
fn tools_list_rejects_a_cursor_it_never_issued() {
    let reply = answer(request(2, "tools/list", json!({"cursor": "abc"})), &[]);
    assert_eq!(reply["error"]["code"], -32602);
}

#[test]
fn echo_returns_the_text_as_content_and_structured_content() {
    let result = call("echo", json!({"text": "héllo, \"world\"\nline two"}));
    assert_eq!(
        result,
        json!({
            "content": [{"type": "text", "text": "héllo, \"world\"\nline two"}],
            "structuredContent": {"text": "héllo, \"world\"\nline two"}
        })
    );
}

#[test]
fn list_surveys_reports_counts_and_date_ranges() {
    let surveys = structured(&call("list_surveys", json!({})));
    assert_eq!(
        surveys,
        json!({"surveys": [
            {"survey": "onboarding-2025", "responses": 110, "first_date": "2025-01-07", "last_date": "2025-12-10"},
            {"survey": "pricing-2025", "responses": 50, "first_date": "2025-04-02", "last_date": "2025-06-27"},
            {"survey": "product-nps-2025", "responses": 140, "first_date": "2025-02-05", "last_date": "2025-11-23"},
            {"survey": "support-q3", "responses": 100, "first_date": "2025-07-01", "last_date": "2025-09-29"}
        ]})
    );
    // No arguments at all is the same call.
    assert_eq!(call("list_surveys", Value::Null), call("list_surveys", json!({})));
}

#[test]
fn survey_summary_text_is_stable() {
    let cases = [
        (
            "product-nps-2025",
            r#"{"survey":"product-nps-2025","responses":140,"nps":25.7,"average_score":7.93,"promoters":63,"passives":50,"detractors":27}"#,
        ),
        (
            "support-q3",
            r#"{"survey":"support-q3","responses":100,"nps":-24.0,"average_score":6.11,"promoters":24,"passives":28,"detractors":48}"#,
        ),
    ];
    for (survey, text) in cases {
        let result = call("survey_summary", json!({"survey": survey}));
        assert_eq!(result["content"][0]["text"], text);
    }
}

#[test]
fn survey_summary_agrees_with_the_rows() {
    let feedback = Feedback::bundled().unwrap();
    for survey in feedback.survey_ids() {
        let summary = structured(&call("survey_summary", json!({"survey": survey})));
        let scores: Vec<i64> =
            feedback.entries().iter().filter(|e| e.survey == survey).map(|e| i64::from(e.score)).collect();
        let n = scores.len() as f64;
        let promoters = scores.iter().filter(|&&s| s >= 9).count();
        let detractors = scores.iter().filter(|&&s| s <= 6).count();
        assert_eq!(summary["responses"], scores.len());
        assert_eq!(summary["promoters"], promoters);
        assert_eq!(summary["detractors"], detractors);
        assert_eq!(summary["passives"], scores.len() - promoters - detractors);
        let nps = (promoters as f64 - detractors as f64) * 100.0 / n;
        let average = scores.iter().sum::<i64>() as f64 / n;
        assert!((summary["nps"].as_f64().unwrap() - nps).abs() <= 0.05 + 1e-9);
        assert!((summary["average_score"].as_f64().unwrap() - average).abs() <= 0.005 + 1e-9);
    }
}

#[test]
fn segment_breakdown_covers_every_response_of_the_survey() {
    let breakdown = structured(&call("segment_breakdown", json!({"survey": "product-nps-2025"})));
    assert_eq!(breakdown["survey"], "product-nps-2025");
    let segments = breakdown["segments"].as_array().unwrap();
    let names: Vec<&str> = segments.iter().map(|s| s["segment"].as_str().unwrap()).collect();
    assert_eq!(names, ["consumer", "education", "enterprise", "smb"]);
    let total: u64 = segments.iter().map(|s| s["responses"].as_u64().unwrap()).sum();
    assert_eq!(total, 140);
    for segment in segments {
        assert!(segment["nps"].is_f64() && segment["average_score"].is_f64());
    }
}

#[test]
fn search_feedback_is_case_insensitive_and_reports_the_total() {
    let lower = structured(&call("search_feedback", json!({"query": "slow"})));
    let upper = structured(&call("search_feedback", json!({"query": "SLOW"})));
    assert_eq!(lower["total_matches"], upper["total_matches"]);
    assert_eq!(lower["matches"], upper["matches"]);
    let total = lower["total_matches"].as_u64().unwrap();
    assert!(total > 10, "expected plenty of 'slow' comments, got {total}");
    let matches = lower["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 10, "default limit");
    for hit in matches {
        assert!(hit["comment"].as_str().unwrap().to_lowercase().contains("slow"));
        for field in ["id", "survey", "date", "segment", "score"] {
            assert!(!hit[field].is_null(), "{field} missing in {hit}");
        }
    }
    let ids: Vec<&str> = matches.iter().map(|h| h["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "matches come in id order");
}

#[test]
fn search_feedback_honours_limit_and_survey() {
    let all = structured(&call("search_feedback", json!({"query": "invoice", "limit": 100})));
    let total = all["total_matches"].as_u64().unwrap();
    assert_eq!(all["matches"].as_array().unwrap().len() as u64, total.min(100));

    let two = structured(&call("search_feedback", json!({"query": "invoice", "limit": 2.0})));
    assert_eq!(two["matches"].as_array().unwrap().len(), 2);
    assert_eq!(two["total_matches"], total);

    let scoped = structured(&call(
        "search_feedback",
        json!({"query": "Invoice", "survey": "pricing-2025", "limit": 100}),
    ));
    assert_eq!(scoped["survey"], "pricing-2025");
    let hits = scoped["matches"].as_array().unwrap();
    assert!(!hits.is_empty() && (hits.len() as u64) < total);
    assert!(hits.iter().all(|h| h["survey"] == "pricing-2025"));

    let none = structured(&call("search_feedback", json!({"query": "zebra"})));
    assert_eq!(none["total_matches"], 0);
    assert_eq!(none["matches"], json!([]));
}

#[test]
fn bad_arguments_are_tool_errors() {
    let cases = [
        ("echo", json!({}), "missing required argument 'text'"),
        ("echo", json!({"text": 5}), "'text' must be a string"),
        ("echo", json!({"text": "a", "loud": true}), "argument named 'loud'"),
        ("echo", json!(["text"]), "expected a JSON object"),
        ("list_surveys", json!({"survey": "x"}), "argument named 'survey'"),
        ("survey_summary", json!({}), "missing required argument 'survey'"),
        ("survey_summary", json!({"survey": null}), "missing required argument 'survey'"),
        (
            "survey_summary",
            json!({"survey": "nope"}),
            "Unknown survey 'nope'. Known surveys: onboarding-2025, pricing-2025, product-nps-2025, support-q3.",
        ),
        ("segment_breakdown", json!({"survey": "nope"}), "Unknown survey 'nope'"),
        ("search_feedback", json!({}), "missing required argument 'query'"),
        ("search_feedback", json!({"query": ""}), "'query' must not be empty"),
        ("search_feedback", json!({"query": "a", "limit": 0}), "from 1 to 100"),
        ("search_feedback", json!({"query": "a", "limit": 101}), "from 1 to 100"),
        ("search_feedback", json!({"query": "a", "limit": -5}), "from 1 to 100"),
        ("search_feedback", json!({"query": "a", "limit": 1e300}), "from 1 to 100"),
        ("search_feedback", json!({"query": "a", "limit": u64::MAX}), "from 1 to 100"),
        ("search_feedback", json!({"query": "a", "limit": 2.5}), "'limit' must be an integer"),
        ("search_feedback", json!({"query": "a", "limit": "3"}), "'limit' must be an integer"),
        ("search_feedback", json!({"query": "a", "survey": "nope"}), "Unknown survey 'nope'"),
    ];
    for (tool, arguments, needle) in cases {
        check_tool_error(&call(tool, arguments), needle);
    }
}

#[test]
fn unknown_tool_is_an_invalid_params_error() {
    let reply = answer(
        request(3, "tools/call", json!({"name": "drop_tables", "arguments": {}})),
        &[("DEMO_TOKEN", TOKEN)],
    );
    assert_eq!(
        reply,
        json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "Unknown tool: drop_tables"}})
    );
    for params in [json!({}), json!({"name": 5}), json!([1])] {
        let reply = answer(request(4, "tools/call", params), &[("DEMO_TOKEN", TOKEN)]);
        assert_eq!(reply["error"]["code"], -32602);
    }
}

#[test]
fn tool_calls_are_refused_without_demo_token() {
    for env in [vec![], vec![("DEMO_TOKEN", "")], vec![("DEMO_TOKEN", "  ")]] {
        let reply =
            answer(request(5, "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}})), &env);
        check_tool_error(&reply["result"], "DEMO_TOKEN is not set");
        assert_eq!(reply["result"].get("structuredContent"), None);
    }
}

#[test]
fn the_token_never_appears_in_output() {
    let messages = [
        request(1, "initialize", json!({"protocolVersion": "2025-11-25"})),
        request(2, "tools/list", json!({})),
        request(3, "tools/call", json!({"name": "echo", "arguments": {"text": "x"}})),
        request(4, "tools/call", json!({"name": "survey_summary", "arguments": {"survey": "nope"}})),
        request(5, "tools/call", json!({"name": "search_feedback", "arguments": {"query": "a"}})),
    ];
    let replies = session(&messages, &[("DEMO_TOKEN", TOKEN)]);
    assert_eq!(replies.len(), 5);
    for reply in replies {
        assert!(!reply.to_string().contains(TOKEN));
    }
}

#[test]
fn malformed_line_gets_parse_error_and_serving_continues() {
    let input = b"{not json\n\xff\xfe\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
    let replies = session_raw(input, &[]);
    assert_eq!(replies.len(), 3);
    for reply in &replies[..2] {
        assert_eq!(reply["id"], Value::Null);
        assert_eq!(reply["error"]["code"], -32700);
    }
    assert_eq!(replies[2], json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
}

#[test]
fn oversized_line_gets_parse_error_and_serving_continues() {
    let mut input = vec![b'x'; MAX_MESSAGE_BYTES + 10];
    input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
    let replies = session_raw(&input, &[]);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["error"]["code"], -32700);
    assert_eq!(replies[1]["id"], 2);
}

#[test]
fn invalid_messages_get_invalid_request() {
    let cases = [
        json!([1, 2]),
        json!("ping"),
        json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 9, "method": 12}),
        json!({"jsonrpc": "2.0", "id": 9}),
    ];
    for message in cases {
        let reply = answer(message.clone(), &[]);
        assert_eq!(reply["error"]["code"], -32600, "for {message}");
    }
}

#[test]
fn unknown_method_is_method_not_found() {
    let reply = answer(request(8, "resources/list", json!({})), &[]);
    assert_eq!(reply["id"], 8);
    assert_eq!(reply["error"]["code"], -32601);
    assert_eq!(reply["error"]["message"], "Method not found: resources/list");
}

#[test]
fn notifications_and_responses_get_no_reply() {
    let messages = [
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
        json!({"jsonrpc": "2.0", "method": "no/such/method"}),
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
        json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -1, "message": "m"}}),
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "m"}}),
        json!({"jsonrpc": "2.0", "method": 5}),
        json!({"jsonrpc": "2.0"}),
    ];
    assert_eq!(session(&messages, &[("DEMO_TOKEN", TOKEN)]), Vec::<Value>::new());
    // Blank lines are not messages either.
    assert_eq!(session_raw(b"\n  \r\n\n", &[]), Vec::<Value>::new());
}

#[test]
fn full_session_answers_in_order_with_crlf_and_no_final_newline() {
    let input = concat!(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
        "\r\n",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":"three","method":"tools/call","params":{"name":"survey_summary","arguments":{"survey":"onboarding-2025"}}}"#,
    );
    let replies = session_raw(input.as_bytes(), &[("DEMO_TOKEN", TOKEN)]);
    let ids: Vec<&Value> = replies.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2), &json!("three")]);
    assert_eq!(replies[2]["result"]["structuredContent"]["responses"], 110);
}

#[test]
fn slow_mode_reports_progress_before_the_answer() {
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": {"progressToken": "pt"}}
    });
    let replies = session(&[call], &[("DEMO_TOKEN", TOKEN), ("DEMO_SLOW_MS", "250")]);
    let progress: Vec<(&Value, &Value)> = replies[..3]
        .iter()
        .map(|n| {
            assert_eq!(n["method"], "notifications/progress");
            assert_eq!(n["params"]["progressToken"], "pt");
            assert_eq!(n["params"]["total"], 250);
            (&n["params"]["progress"], &n["params"]["total"])
        })
        .collect();
    assert_eq!(progress.iter().map(|(p, _)| p.as_u64().unwrap()).collect::<Vec<_>>(), [100, 200, 250]);
    assert_eq!(replies.len(), 4);
    assert_eq!(replies[3]["id"], 1);
    assert_eq!(replies[3]["result"]["structuredContent"]["text"], "x");
}

#[test]
fn slow_mode_without_progress_token_sends_only_the_answer() {
    let call = request(1, "tools/call", json!({"name": "echo", "arguments": {"text": "x"}}));
    let replies = session(&[call], &[("DEMO_TOKEN", TOKEN), ("DEMO_SLOW_MS", "120")]);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["result"]["structuredContent"]["text"], "x");
    // A bad value is ignored rather than fatal.
    let call = request(2, "tools/call", json!({"name": "echo", "arguments": {"text": "y"}}));
    assert_eq!(session(&[call], &[("DEMO_TOKEN", TOKEN), ("DEMO_SLOW_MS", "soon")]).len(), 1);
}

#[test]
fn bundled_data_set_is_well_formed() {
    let feedback = Feedback::bundled().unwrap();
    let entries = feedback.entries();
    assert_eq!(entries.len(), 400);
    let mut ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 400, "ids are unique and in order");
    assert_eq!(feedback.survey_ids(), ["onboarding-2025", "pricing-2025", "product-nps-2025", "support-q3"]);
    for entry in entries {
        assert!(entry.date.starts_with("2025-"));
        assert!(entry.score <= 10);
        assert!(["enterprise", "smb", "consumer", "education"].contains(&entry.segment.as_str()));
    }
}

#[test]
fn parser_rejects_broken_rows() {
    let header = "id,survey,date,segment,score,comment\n";
    let cases = [
        ("", 1, "missing or unexpected header"),
        ("id,survey\n", 1, "missing or unexpected header"),
        (header, 1, "no rows"),
        ("fb-1,s,2025-01-01,smb,5\n", 2, "missing comment"),
        ("fb-1,s,2024-01-01,smb,5,c\n", 2, "date is not YYYY-MM-DD within 2025"),
        ("fb-1,s,2025-13-01,smb,5,c\n", 2, "date is not YYYY-MM-DD within 2025"),
        ("fb-1,s,2025-1-011,smb,5,c\n", 2, "date is not YYYY-MM-DD within 2025"),
        ("fb-1,s,2025-01-01,smb,11,c\n", 2, "score is above 10"),
        ("fb-1,s,2025-01-01,smb,-1,c\n", 2, "score is not an integer"),
    ];
    for (body, line, reason) in cases {
        let text = if body.starts_with("id,") || body.is_empty() {
            body.to_owned()
        } else {
            format!("{header}{body}")
        };
        let error = Feedback::parse(&text).unwrap_err();
        assert_eq!((error.line, error.reason), (line, reason), "for {body:?}");
    }
    let ok = Feedback::parse(&format!("{header}fb-1,s,2025-01-01,smb,5,slow, but fine\n")).unwrap();
    assert_eq!(ok.entries()[0].comment, "slow, but fine");
}
