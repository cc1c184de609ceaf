//! The fixture's tools: their `tools/list` entries and what `tools/call` does.
//!
//! What the conformance suite checks, per tool (0.1.16 and 0.2.0-alpha.12):
//! * `test_simple_text`: a `text` content with non-empty `text`;
//! * `test_image_content`: an `image` content with `data` and `mimeType`;
//! * `test_audio_content`: an `audio` content with `data` and `mimeType: audio/wav`;
//! * `test_embedded_resource`: a `resource` content with `uri`, `mimeType` and `text`;
//! * `test_multiple_content_types`: at least two contents, among them text, image, resource;
//! * `test_tool_with_logging`: at least 3 `notifications/message` before the result (the
//!   suite first sets the level to `debug`; we log at `info`, ~50 ms apart);
//! * `test_tool_with_progress`: at least 3 non-decreasing `notifications/progress` carrying
//!   the request's `_meta.progressToken` (we send 0, 50, 100 of 100, ~50 ms apart);
//! * `test_error_handling`: `isError: true` with a text;
//! * `test_sampling` (`prompt`) and `test_elicitation` (`message`): the client received
//!   `sampling/createMessage` / `elicitation/create`, and the result has content;
//! * `test_elicitation_sep1034_defaults`: the requested schema's `name`, `age`, `score`,
//!   `status` and `verified` carry the exact types and defaults of SEP-1034;
//! * `test_elicitation_sep1330_enums`: the five enum shapes of SEP-1330;
//! * `json_schema_2020_12_tool`: its listed `inputSchema` keeps `$schema`, `$defs.address`
//!   and `additionalProperties: false` (SEP-1613);
//! * `test_reconnection`: answers (not an error) after a while; the suite's checks are
//!   about the HTTP layer (see `mod.rs`).

use std::io::{self, BufRead, Write};
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::catalog::{RED_PIXEL_PNG, SILENCE_WAV};
use super::{ClientAnswer, LogLevel, Reply, RpcError, Session};

/// Pause between the log messages and between the progress notifications.
const STEP_MS: u64 = 50;

/// JSON Schema 2020-12's meta-schema URI, kept in `json_schema_2020_12_tool`'s schema.
const JSON_SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// A tool this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tool {
    SimpleText,
    ImageContent,
    AudioContent,
    EmbeddedResource,
    MultipleContentTypes,
    WithLogging,
    WithProgress,
    ErrorHandling,
    Sampling,
    Elicitation,
    ElicitationDefaults,
    ElicitationEnums,
    JsonSchema202012,
    Reconnection,
}

impl Tool {
    /// Every tool, in the order `tools/list` reports them.
    pub(super) const ALL: [Self; 14] = [
        Self::SimpleText,
        Self::ImageContent,
        Self::AudioContent,
        Self::EmbeddedResource,
        Self::MultipleContentTypes,
        Self::WithLogging,
        Self::WithProgress,
        Self::ErrorHandling,
        Self::Sampling,
        Self::Elicitation,
        Self::ElicitationDefaults,
        Self::ElicitationEnums,
        Self::JsonSchema202012,
        Self::Reconnection,
    ];

    /// The tool called `name`, if there is one (names are case-sensitive).
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::SimpleText => "test_simple_text",
            Self::ImageContent => "test_image_content",
            Self::AudioContent => "test_audio_content",
            Self::EmbeddedResource => "test_embedded_resource",
            Self::MultipleContentTypes => "test_multiple_content_types",
            Self::WithLogging => "test_tool_with_logging",
            Self::WithProgress => "test_tool_with_progress",
            Self::ErrorHandling => "test_error_handling",
            Self::Sampling => "test_sampling",
            Self::Elicitation => "test_elicitation",
            Self::ElicitationDefaults => "test_elicitation_sep1034_defaults",
            Self::ElicitationEnums => "test_elicitation_sep1330_enums",
            Self::JsonSchema202012 => "json_schema_2020_12_tool",
            Self::Reconnection => "test_reconnection",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::SimpleText => "Returns a fixed text.",
            Self::ImageContent => "Returns an image content: a 1x1 red PNG.",
            Self::AudioContent => "Returns an audio content: a tiny WAV.",
            Self::EmbeddedResource => "Returns an embedded text resource.",
            Self::MultipleContentTypes => "Returns a text, an image and an embedded resource.",
            Self::WithLogging => "Sends three info log messages about 50 ms apart, then answers.",
            Self::WithProgress => {
                "Reports progress 0, 50 and 100 of 100 about 50 ms apart when the request carries \
                 a progress token, then answers."
            }
            Self::ErrorHandling => "Always fails with a tool execution error (isError: true).",
            Self::Sampling => {
                "Asks the client to sample an LLM completion of the prompt (sampling/createMessage) \
                 and returns the answer. Needs the client's sampling capability."
            }
            Self::Elicitation => {
                "Asks the user, through the client, for a username and an email \
                 (elicitation/create) and returns the answer. Needs the elicitation capability."
            }
            Self::ElicitationDefaults => {
                "Elicits a form whose string, integer, number, enum and boolean fields all have \
                 default values (SEP-1034)."
            }
            Self::ElicitationEnums => {
                "Elicits a form with the five enum shapes of SEP-1330: untitled and titled \
                 single-select, legacy enumNames, untitled and titled multi-select."
            }
            Self::JsonSchema202012 => "Tool with JSON Schema 2020-12 features",
            Self::Reconnection => {
                "Works for a while before answering, so that an HTTP server can close the \
                 request's SSE stream mid-call and resume it after the client reconnects (SEP-1699)."
            }
        }
    }

    fn input_schema(self) -> Value {
        match self {
            Self::Sampling => json!({
                "type": "object",
                "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
                "required": ["prompt"]
            }),
            Self::Elicitation => json!({
                "type": "object",
                "properties": {"message": {"type": "string", "description": "The message to show the user"}},
                "required": ["message"]
            }),
            Self::JsonSchema202012 => json!({
                "$schema": JSON_SCHEMA_2020_12,
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
                    }
                },
                "properties": {
                    "name": {"type": "string"},
                    "address": {"$ref": "#/$defs/address"}
                },
                "additionalProperties": false
            }),
            _ => json!({"type": "object", "properties": {}}),
        }
    }

    /// The tool's entry in `tools/list`.
    fn definition(self) -> Value {
        json!({
            "name": self.name(),
            "description": self.description(),
            "inputSchema": self.input_schema()
        })
    }
}

/// The `tools/list` result: every tool, in [`Tool::ALL`] order, on one page.
pub(super) fn catalogue() -> Value {
    let tools: Vec<Value> = Tool::ALL.into_iter().map(Tool::definition).collect();
    json!({ "tools": tools })
}

/// A successful `CallToolResult` with one text content.
fn text_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}]})
}

/// A `CallToolResult` reporting a tool execution error.
pub(super) fn error_result(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

/// The string argument `name`, required. `Err` is the `isError` result to return.
fn string_argument<'a>(arguments: Option<&'a Map<String, Value>>, name: &str) -> Result<&'a str, Value> {
    match arguments.and_then(|arguments| arguments.get(name)) {
        Some(Value::String(value)) => Ok(value),
        None | Some(Value::Null) => Err(error_result(&format!("Missing required argument '{name}'"))),
        Some(_) => Err(error_result(&format!("Argument '{name}' must be a string"))),
    }
}

/// `json_schema_2020_12_tool`'s arguments against its schema (no `$ref` resolution needed:
/// `address` is checked inline).
fn check_schema_tool_arguments(arguments: Option<&Map<String, Value>>) -> Result<(), String> {
    let Some(arguments) = arguments else { return Ok(()) };
    for (key, value) in arguments {
        match (key.as_str(), value) {
            ("name", Value::String(_)) => {}
            ("address", Value::Object(address)) => {
                for (field, value) in address {
                    if matches!(field.as_str(), "street" | "city") && !value.is_string() {
                        return Err(format!("address.{field} must be a string"));
                    }
                }
            }
            ("name", _) => return Err("name must be a string".to_owned()),
            ("address", _) => return Err("address must be an object".to_owned()),
            _ => return Err(format!("unexpected argument '{key}' (additionalProperties is false)")),
        }
    }
    Ok(())
}

/// The `requestedSchema` of `test_elicitation`.
fn contact_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"}
        },
        "required": ["username", "email"]
    })
}

/// The `requestedSchema` of `test_elicitation_sep1034_defaults`: a default per primitive type.
fn defaults_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": true}
        }
    })
}

/// The `requestedSchema` of `test_elicitation_sep1330_enums`: the five enum shapes.
fn enums_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum (enumNames, deprecated)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}
                    ]
                }
            }
        }
    })
}

/// `action=…, content=…` of an `ElicitResult`.
fn describe_elicitation(result: &Value) -> String {
    let action = result.get("action").and_then(Value::as_str).unwrap_or("unknown");
    let content = result.get("content").cloned().unwrap_or_else(|| json!({}));
    format!("action={action}, content={content}")
}

/// The text of a `CreateMessageResult`'s content (a block or, from 2025-11-25, an array).
fn sampled_text(result: &Value) -> String {
    let content = result.get("content");
    let first = match content {
        Some(Value::Array(blocks)) => blocks.first(),
        other => other,
    };
    match first {
        Some(block) if block.get("type").and_then(Value::as_str) == Some("text") => {
            block.get("text").and_then(Value::as_str).unwrap_or_default().to_owned()
        }
        Some(block) => block.to_string(),
        None => String::new(),
    }
}

/// The `isError` result for a client request that did not succeed.
fn client_failure(what: &str, answer: &ClientAnswer) -> Value {
    match answer {
        ClientAnswer::Error(error) => {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("no message");
            error_result(&format!("{what} failed: the client answered with an error: {message}"))
        }
        _ => error_result(&format!("{what} failed: the client closed the connection before answering")),
    }
}

impl<R: BufRead, W: Write> Session<R, W> {
    /// `tools/call`. Unknown tools are `-32602`; everything that goes wrong inside a tool
    /// is an `isError: true` result.
    pub(super) fn call_tool(&mut self, id: &Value, params: Option<&Map<String, Value>>) -> io::Result<Reply> {
        let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return Ok(Reply::Failed(RpcError::invalid_params(
                "Invalid params: tools/call needs a string 'name'",
            )));
        };
        let Some(tool) = Tool::from_name(name) else {
            return Ok(Reply::Failed(RpcError::invalid_params(format!("Unknown tool: {name}"))));
        };
        let arguments = match params.and_then(|p| p.get("arguments")) {
            None | Some(Value::Null) => None,
            Some(Value::Object(arguments)) => Some(arguments),
            Some(_) => return Ok(Reply::Done(error_result("'arguments' must be an object"))),
        };
        let progress_token = params
            .and_then(|p| p.get("_meta"))
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| token.is_string() || token.is_number());
        let result = match tool {
            Tool::SimpleText => text_result("This is a simple text response for testing."),
            Tool::ImageContent => json!({"content": [image()]}),
            Tool::AudioContent => {
                json!({"content": [{"type": "audio", "data": SILENCE_WAV, "mimeType": "audio/wav"}]})
            }
            Tool::EmbeddedResource => json!({"content": [{
                "type": "resource",
                "resource": {
                    "uri": "test://embedded-resource",
                    "mimeType": "text/plain",
                    "text": "This is an embedded resource content."
                }
            }]}),
            Tool::MultipleContentTypes => json!({"content": [
                {"type": "text", "text": "Multiple content types test:"},
                image(),
                {
                    "type": "resource",
                    "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": json!({"test": "data", "value": 123}).to_string()
                    }
                }
            ]}),
            Tool::WithLogging => {
                self.log(LogLevel::Info, "Tool execution started")?;
                sleep_ms(STEP_MS);
                self.log(LogLevel::Info, "Tool processing data")?;
                sleep_ms(STEP_MS);
                self.log(LogLevel::Info, "Tool execution completed")?;
                text_result("Tool with logging executed successfully")
            }
            Tool::WithProgress => {
                for (step, progress) in [0, 50, 100].into_iter().enumerate() {
                    if step > 0 {
                        sleep_ms(STEP_MS);
                    }
                    if let Some(token) = progress_token {
                        self.progress(token, progress, 100, &format!("step {} of 3", step + 1))?;
                    }
                }
                text_result("Tool with progress executed successfully")
            }
            Tool::ErrorHandling => error_result("This tool intentionally returns an error for testing"),
            Tool::Sampling => return self.sample(id, arguments),
            Tool::Elicitation => {
                let message = match string_argument(arguments, "message") {
                    Ok(message) => message,
                    Err(result) => return Ok(Reply::Done(result)),
                };
                return self.elicit(id, message, contact_schema(), "User response: ");
            }
            Tool::ElicitationDefaults => {
                let message = "Please review and update the form fields with defaults";
                return self.elicit(id, message, defaults_schema(), "Elicitation completed: ");
            }
            Tool::ElicitationEnums => {
                let message = "Please select options from the enum fields";
                return self.elicit(id, message, enums_schema(), "Elicitation completed: ");
            }
            Tool::JsonSchema202012 => match check_schema_tool_arguments(arguments) {
                Ok(()) => {
                    let received = arguments.cloned().unwrap_or_default();
                    text_result(&format!("Received arguments: {}", Value::Object(received)))
                }
                Err(problem) => error_result(&format!("Invalid arguments: {problem}")),
            },
            Tool::Reconnection => {
                sleep_ms(self.reconnection_ms);
                text_result("Reconnection test completed")
            }
        };
        Ok(Reply::Done(result))
    }

    /// `test_sampling`: one `sampling/createMessage` round trip.
    fn sample(&mut self, id: &Value, arguments: Option<&Map<String, Value>>) -> io::Result<Reply> {
        let prompt = match string_argument(arguments, "prompt") {
            Ok(prompt) => prompt,
            Err(result) => return Ok(Reply::Done(result)),
        };
        if !self.client_supports("sampling") {
            return Ok(Reply::Done(error_result(
                "Sampling is not possible: the client did not declare the sampling capability",
            )));
        }
        let params = json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": 100
        });
        Ok(match self.ask_client(id, "sampling/createMessage", params)? {
            ClientAnswer::Result(result) => {
                Reply::Done(text_result(&format!("LLM response: {}", sampled_text(&result))))
            }
            ClientAnswer::Cancelled => Reply::Cancelled,
            failure => Reply::Done(client_failure("Sampling", &failure)),
        })
    }

    /// One `elicitation/create` round trip (form mode); the answer is described after `label`.
    fn elicit(&mut self, id: &Value, message: &str, schema: Value, label: &str) -> io::Result<Reply> {
        if !self.client_supports("elicitation") {
            return Ok(Reply::Done(error_result(
                "Elicitation is not possible: the client did not declare the elicitation capability",
            )));
        }
        let params = json!({"message": message, "requestedSchema": schema});
        Ok(match self.ask_client(id, "elicitation/create", params)? {
            ClientAnswer::Result(result) => {
                Reply::Done(text_result(&format!("{label}{}", describe_elicitation(&result))))
            }
            ClientAnswer::Cancelled => Reply::Cancelled,
            failure => Reply::Done(client_failure("Elicitation", &failure)),
        })
    }
}

/// The image content used by the tools.
fn image() -> Value {
    json!({"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"})
}

fn sleep_ms(ms: u64) {
    if ms > 0 {
        thread::sleep(Duration::from_millis(ms));
    }
}
