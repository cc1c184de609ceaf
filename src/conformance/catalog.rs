//! The fixture's resources, resource templates, prompts and completions, plus the fixed
//! binary payloads the tools share. Pure: no I/O, no session state.
//!
//! What the conformance suite reads (0.1.16 and 0.2.0-alpha.12):
//! * `resources-list`: every entry has `uri` and `name`;
//! * `resources-read-text`: `test://static-text` gives `uri`, `mimeType` and `text`;
//! * `resources-read-binary`: `test://static-binary` gives `uri`, `mimeType` and `blob`;
//! * `resources-templates-read`: `test://template/123/data`'s text contains `123`;
//! * `resources-(un)subscribe`: `test://watched-resource` answers `{}`;
//! * `prompts-list`: every prompt has `name` and `description`;
//! * `prompts-get-*`: `test_simple_prompt`, `test_prompt_with_arguments` (`arg1`, `arg2`
//!   substituted), `test_prompt_with_embedded_resource` (`resourceUri`; a `resource`
//!   content), `test_prompt_with_image` (an `image` content with `data` and `mimeType`);
//! * `completion-complete`: `ref/prompt` `test_prompt_with_arguments`, argument `arg1`,
//!   answers `completion.values` as an array.

use serde_json::{Map, Value, json};

use super::{INVALID_PARAMS, RESOURCE_NOT_FOUND, RpcError};

/// A 1x1 red pixel, RGB, 8 bits per channel (PNG, base64).
pub(super) const RED_PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC";

/// One millisecond of silence: 8 samples of 8-bit mono PCM at 8 kHz (WAV, base64).
pub(super) const SILENCE_WAV: &str =
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_TEXT: &str = "This is the content of the static text resource.";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const WATCHED_TEXT: &str = "This resource can be subscribed to; its content never changes.";
const TEMPLATE: &str = "test://template/{id}/data";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

/// The `resources/list` result: the direct resources (templates are listed separately).
pub(super) fn resources() -> Value {
    json!({"resources": [
        {
            "uri": STATIC_TEXT_URI,
            "name": "static-text",
            "title": "Static text resource",
            "description": "A fixed plain-text resource.",
            "mimeType": "text/plain"
        },
        {
            "uri": STATIC_BINARY_URI,
            "name": "static-binary",
            "title": "Static binary resource",
            "description": "A fixed binary resource: a 1x1 red PNG.",
            "mimeType": "image/png"
        },
        {
            "uri": WATCHED_URI,
            "name": "watched-resource",
            "title": "Watched resource",
            "description": "A resource clients may subscribe to (it never changes).",
            "mimeType": "text/plain"
        }
    ]})
}

/// The `resources/templates/list` result.
pub(super) fn resource_templates() -> Value {
    json!({"resourceTemplates": [{
        "uriTemplate": TEMPLATE,
        "name": "template-data",
        "title": "Templated data",
        "description": "JSON data for any id, substituted into the URI: test://template/{id}/data.",
        "mimeType": "application/json"
    }]})
}

/// `resources/read`.
pub(super) fn read_resource(params: Option<&Map<String, Value>>) -> Result<Value, RpcError> {
    let uri = required_uri(params)?;
    let contents = match uri {
        STATIC_TEXT_URI => json!({"uri": uri, "mimeType": "text/plain", "text": STATIC_TEXT}),
        STATIC_BINARY_URI => json!({"uri": uri, "mimeType": "image/png", "blob": RED_PIXEL_PNG}),
        WATCHED_URI => json!({"uri": uri, "mimeType": "text/plain", "text": WATCHED_TEXT}),
        _ => match template_id(uri) {
            Some(id) => {
                let data = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                json!({"uri": uri, "mimeType": "application/json", "text": data.to_string()})
            }
            None => {
                return Err(RpcError::new(RESOURCE_NOT_FOUND, format!("Resource not found: {uri}"))
                    .with_data(json!({"uri": uri})));
            }
        },
    };
    Ok(json!({"contents": [contents]}))
}

/// The `{id}` of a URI matching [`TEMPLATE`]: one non-empty path segment.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri.strip_prefix(TEMPLATE_PREFIX)?.strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains(['/', '?', '#'])).then_some(id)
}

/// `resources/subscribe` and `resources/unsubscribe`: acknowledged for any resource we
/// have. The process serves one request, so no update can ever follow.
pub(super) fn subscription(params: Option<&Map<String, Value>>) -> Result<Value, RpcError> {
    let uri = required_uri(params)?;
    if matches!(uri, STATIC_TEXT_URI | STATIC_BINARY_URI | WATCHED_URI) || template_id(uri).is_some() {
        Ok(json!({}))
    } else {
        Err(RpcError::new(RESOURCE_NOT_FOUND, format!("Resource not found: {uri}"))
            .with_data(json!({"uri": uri})))
    }
}

fn required_uri(params: Option<&Map<String, Value>>) -> Result<&str, RpcError> {
    params
        .and_then(|p| p.get("uri"))
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("Invalid params: a string 'uri' is required"))
}

/// A prompt this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prompt {
    Simple,
    WithArguments,
    WithEmbeddedResource,
    WithImage,
}

impl Prompt {
    const ALL: [Self; 4] = [Self::Simple, Self::WithArguments, Self::WithEmbeddedResource, Self::WithImage];

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|prompt| prompt.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Simple => "test_simple_prompt",
            Self::WithArguments => "test_prompt_with_arguments",
            Self::WithEmbeddedResource => "test_prompt_with_embedded_resource",
            Self::WithImage => "test_prompt_with_image",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Simple => "A prompt without arguments.",
            Self::WithArguments => "A prompt with two required arguments, substituted into its text.",
            Self::WithEmbeddedResource => "A prompt that embeds the resource named by its argument.",
            Self::WithImage => "A prompt that includes an image.",
        }
    }

    /// The arguments, as `(name, description)`; all are required.
    fn arguments(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Simple | Self::WithImage => &[],
            Self::WithArguments => &[("arg1", "First test argument"), ("arg2", "Second test argument")],
            Self::WithEmbeddedResource => &[("resourceUri", "URI of the resource to embed")],
        }
    }

    fn definition(self) -> Value {
        let mut prompt = json!({"name": self.name(), "description": self.description()});
        if !self.arguments().is_empty() {
            let arguments: Vec<Value> = self
                .arguments()
                .iter()
                .map(
                    |(name, description)| json!({"name": name, "description": description, "required": true}),
                )
                .collect();
            prompt["arguments"] = Value::Array(arguments);
        }
        prompt
    }

    /// The `messages` of `prompts/get`, given validated arguments (in [`Self::arguments`] order).
    fn messages(self, values: &[&str]) -> Value {
        match (self, values) {
            (Self::WithArguments, [arg1, arg2]) => json!([{
                "role": "user",
                "content": {"type": "text", "text": format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")}
            }]),
            (Self::WithEmbeddedResource, [uri]) => json!([
                {
                    "role": "user",
                    "content": {
                        "type": "resource",
                        "resource": {
                            "uri": uri,
                            "mimeType": "text/plain",
                            "text": "Embedded resource content for testing."
                        }
                    }
                },
                {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}}
            ]),
            (Self::WithImage, _) => json!([
                {"role": "user", "content": {"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"}},
                {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}}
            ]),
            _ => json!([{
                "role": "user",
                "content": {"type": "text", "text": "This is a simple prompt for testing."}
            }]),
        }
    }
}

/// The `prompts/list` result.
pub(super) fn prompts() -> Value {
    let prompts: Vec<Value> = Prompt::ALL.into_iter().map(Prompt::definition).collect();
    json!({"prompts": prompts})
}

/// `prompts/get`: unknown prompts and missing or non-string arguments are `-32602`.
pub(super) fn get_prompt(params: Option<&Map<String, Value>>) -> Result<Value, RpcError> {
    let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return Err(RpcError::invalid_params("Invalid params: prompts/get needs a string 'name'"));
    };
    let Some(prompt) = Prompt::from_name(name) else {
        return Err(RpcError::invalid_params(format!("Unknown prompt: {name}")));
    };
    let given = match params.and_then(|p| p.get("arguments")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(arguments)) => Some(arguments),
        Some(_) => return Err(RpcError::invalid_params("Invalid params: 'arguments' must be an object")),
    };
    let mut values = Vec::new();
    for (argument, _) in prompt.arguments() {
        match given.and_then(|arguments| arguments.get(*argument)) {
            Some(Value::String(value)) => values.push(value.as_str()),
            None | Some(Value::Null) => {
                return Err(RpcError::invalid_params(format!(
                    "Invalid params: prompt {name} needs the argument '{argument}'"
                )));
            }
            Some(_) => {
                return Err(RpcError::invalid_params(format!(
                    "Invalid params: prompt argument '{argument}' must be a string"
                )));
            }
        }
    }
    Ok(json!({"description": prompt.description(), "messages": prompt.messages(&values)}))
}

/// Values offered by `completion/complete`, per prompt argument.
const ARG1_VALUES: [&str; 5] = ["paris", "park", "party", "test", "testValue1"];
const ARG2_VALUES: [&str; 3] = ["hello", "world", "testValue2"];
/// Values offered for the template's `{id}`.
const ID_VALUES: [&str; 4] = ["1", "2", "3", "123"];

/// `completion/complete` for the arguments of `test_prompt_with_arguments` and of the
/// resource template: the known values starting with the typed prefix (case-insensitive).
/// Unknown prompts, templates and malformed requests are `-32602`; an argument without
/// suggestions gets an empty list.
pub(super) fn complete(params: Option<&Map<String, Value>>) -> Result<Value, RpcError> {
    let reference = params.and_then(|p| p.get("ref")).and_then(Value::as_object);
    let argument = params.and_then(|p| p.get("argument")).and_then(Value::as_object);
    let (Some(reference), Some(argument)) = (reference, argument) else {
        return Err(RpcError::invalid_params(
            "Invalid params: completion/complete needs an object 'ref' and an object 'argument'",
        ));
    };
    let (Some(argument_name), Some(prefix)) =
        (argument.get("name").and_then(Value::as_str), argument.get("value").and_then(Value::as_str))
    else {
        return Err(RpcError::invalid_params("Invalid params: 'argument' needs a string 'name' and 'value'"));
    };
    let field = |key: &str| reference.get(key).and_then(Value::as_str);
    let candidates: &[&str] = match (field("type"), field("name"), field("uri")) {
        (Some("ref/prompt"), Some(name), _) => match (Prompt::from_name(name), argument_name) {
            (None, _) => return Err(RpcError::invalid_params(format!("Unknown prompt: {name}"))),
            (Some(Prompt::WithArguments), "arg1") => &ARG1_VALUES,
            (Some(Prompt::WithArguments), "arg2") => &ARG2_VALUES,
            (Some(_), _) => &[],
        },
        (Some("ref/resource"), _, Some(uri)) => match (uri, argument_name) {
            (TEMPLATE, "id") => &ID_VALUES,
            (TEMPLATE, _) => &[],
            _ => {
                return Err(RpcError::new(INVALID_PARAMS, format!("Unknown resource template: {uri}")));
            }
        },
        _ => {
            return Err(RpcError::invalid_params(
                "Invalid params: 'ref' must be a ref/prompt with a name or a ref/resource with a uri",
            ));
        }
    };
    let prefix = prefix.to_lowercase();
    let values: Vec<&str> =
        candidates.iter().copied().filter(|value| value.to_lowercase().starts_with(&prefix)).collect();
    Ok(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
}
