//! The demo server's tool catalogue and the tools themselves.
//!
//! Turns `tools/call` arguments into queries on [`Feedback`] and the answers into
//! `CallToolResult` JSON. Invalid arguments become `isError: true` results, as MCP
//! 2025-11-25 asks for input validation errors, so a model can correct itself.
//!
//! Must not touch the environment or the output stream: the credentials gate and the
//! simulated latency belong to the session in `mod.rs`.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::feedback::Feedback;

/// Default number of `search_feedback` hits when `limit` is not given.
const DEFAULT_SEARCH_LIMIT: i64 = 10;
/// Largest `limit` accepted, so one answer stays small enough for a model's context.
const MAX_SEARCH_LIMIT: i64 = 100;

/// A tool this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tool {
    Echo,
    ListSurveys,
    SurveySummary,
    SegmentBreakdown,
    SearchFeedback,
}

impl Tool {
    /// Every tool, in the order `tools/list` reports them.
    pub(super) const ALL: [Self; 5] =
        [Self::Echo, Self::ListSurveys, Self::SurveySummary, Self::SegmentBreakdown, Self::SearchFeedback];

    /// The tool called `name`, if there is one (names are case-sensitive).
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// The name clients call the tool by.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::ListSurveys => "list_surveys",
            Self::SurveySummary => "survey_summary",
            Self::SegmentBreakdown => "segment_breakdown",
            Self::SearchFeedback => "search_feedback",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Echo => "Echo",
            Self::ListSurveys => "List surveys",
            Self::SurveySummary => "Survey summary",
            Self::SegmentBreakdown => "Segment breakdown",
            Self::SearchFeedback => "Search feedback",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Echo => "Returns the given text unchanged. Useful to check that calls reach the server.",
            Self::ListSurveys => {
                "Lists the customer-feedback surveys in the data set, with each survey's number \
                 of responses and the dates of its first and last response."
            }
            Self::SurveySummary => {
                "Summarises one survey: number of responses, Net Promoter Score (percent of \
                 promoters scoring 9-10 minus percent of detractors scoring 0-6, one decimal), \
                 average score (two decimals) and the promoter, passive and detractor counts."
            }
            Self::SegmentBreakdown => {
                "Breaks one survey down by customer segment (enterprise, smb, consumer, \
                 education): responses, Net Promoter Score and average score per segment."
            }
            Self::SearchFeedback => {
                "Finds survey comments containing the query text (case-insensitive substring \
                 match), optionally within one survey. Returns up to `limit` matches in id \
                 order and the total number of matches."
            }
        }
    }

    fn input_schema(self) -> Value {
        let survey = json!({
            "type": "string",
            "description": "Survey id, as reported by list_surveys (e.g. \"support-q3\")."
        });
        match self {
            Self::Echo => json!({
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "Text to return unchanged."}
                },
                "required": ["text"],
                "additionalProperties": false
            }),
            Self::ListSurveys => json!({
                "type": "object",
                "properties": {},
                "additionalProperties": false
            }),
            Self::SurveySummary | Self::SegmentBreakdown => json!({
                "type": "object",
                "properties": {"survey": survey},
                "required": ["survey"],
                "additionalProperties": false
            }),
            Self::SearchFeedback => json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "minLength": 1,
                        "description": "Text to look for in comments, case-insensitive."
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_SEARCH_LIMIT,
                        "default": DEFAULT_SEARCH_LIMIT,
                        "description": "Most matches to return."
                    },
                    "survey": {
                        "type": "string",
                        "description": "Only search this survey's comments."
                    }
                },
                "required": ["query"],
                "additionalProperties": false
            }),
        }
    }

    /// The tool's entry in `tools/list`.
    fn definition(self) -> Value {
        json!({
            "name": self.name(),
            "title": self.title(),
            "description": self.description(),
            "inputSchema": self.input_schema(),
            "annotations": {
                "title": self.title(),
                "readOnlyHint": true,
                "destructiveHint": false,
                "idempotentHint": true,
                "openWorldHint": false
            }
        })
    }
}

/// The `tools/list` result: every tool, in [`Tool::ALL`] order, on one page.
pub(super) fn catalogue() -> Value {
    let tools = Tool::ALL.into_iter().map(Tool::definition).collect();
    json!({ "tools": Value::Array(tools) })
}

/// Runs `tool` and returns its `CallToolResult`; failures become `isError: true` results.
pub(super) fn call(tool: Tool, arguments: Option<&Value>, feedback: &Feedback) -> Value {
    match execute(tool, arguments, feedback) {
        Ok(result) => result,
        Err(error) => error_result(&error.to_string()),
    }
}

/// A `CallToolResult` that reports a failure the caller can fix.
pub(super) fn error_result(message: &str) -> Value {
    json!({
        "content": [{"type": "text", "text": message}],
        "isError": true
    })
}

/// Why a call was not answered; the text is what the model reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ToolError {
    /// `arguments` was present but not a JSON object.
    ArgumentsNotObject,
    /// An argument the tool's schema does not list (`additionalProperties: false`).
    UnknownArgument { tool: &'static str, name: String },
    /// A required argument was absent or null.
    MissingArgument(&'static str),
    /// An argument had the wrong JSON type.
    WrongType { name: &'static str, expected: &'static str },
    /// An integer argument outside its range.
    OutOfRange { name: &'static str, min: i64, max: i64 },
    /// A string argument that must not be empty was.
    Empty(&'static str),
    /// No survey has this id.
    UnknownSurvey { survey: String, known: Vec<String> },
    /// The answer could not be serialized (a bug, never the caller's fault).
    Internal(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ArgumentsNotObject => write!(f, "Invalid arguments: expected a JSON object"),
            Self::UnknownArgument { tool, name } => {
                write!(f, "Invalid arguments: {tool} does not take an argument named '{name}'")
            }
            Self::MissingArgument(name) => {
                write!(f, "Invalid arguments: missing required argument '{name}'")
            }
            Self::WrongType { name, expected } => {
                write!(f, "Invalid arguments: '{name}' must be {expected}")
            }
            Self::OutOfRange { name, min, max } => {
                write!(f, "Invalid arguments: '{name}' must be an integer from {min} to {max}")
            }
            Self::Empty(name) => write!(f, "Invalid arguments: '{name}' must not be empty"),
            Self::UnknownSurvey { survey, known } => {
                write!(f, "Unknown survey '{survey}'. Known surveys: {}.", known.join(", "))
            }
            Self::Internal(reason) => write!(f, "Internal error: {reason}"),
        }
    }
}

impl std::error::Error for ToolError {}

fn execute(tool: Tool, arguments: Option<&Value>, feedback: &Feedback) -> Result<Value, ToolError> {
    let args = Arguments::new(tool, arguments)?;
    match tool {
        Tool::Echo => {
            args.only(&["text"])?;
            let text = args.required_str("text")?;
            Ok(json!({
                "content": [{"type": "text", "text": text}],
                "structuredContent": {"text": text}
            }))
        }
        Tool::ListSurveys => {
            args.only(&[])?;
            structured(&feedback.surveys())
        }
        Tool::SurveySummary => {
            args.only(&["survey"])?;
            let survey = args.required_str("survey")?;
            let summary = feedback.summary(survey).ok_or_else(|| unknown_survey(survey, feedback))?;
            structured(&summary)
        }
        Tool::SegmentBreakdown => {
            args.only(&["survey"])?;
            let survey = args.required_str("survey")?;
            let breakdown = feedback.segments(survey).ok_or_else(|| unknown_survey(survey, feedback))?;
            structured(&breakdown)
        }
        Tool::SearchFeedback => {
            args.only(&["query", "limit", "survey"])?;
            let query = args.required_str("query")?;
            if query.is_empty() {
                return Err(ToolError::Empty("query"));
            }
            let limit = args.optional_int("limit", 1, MAX_SEARCH_LIMIT)?.unwrap_or(DEFAULT_SEARCH_LIMIT);
            let survey = args.optional_str("survey")?;
            if let Some(survey) = survey
                && !feedback.has_survey(survey)
            {
                return Err(unknown_survey(survey, feedback));
            }
            // The range check above keeps `limit` within 1..=100.
            let limit = usize::try_from(limit).unwrap_or(0);
            structured(&feedback.search(query, survey, limit))
        }
    }
}

fn unknown_survey(survey: &str, feedback: &Feedback) -> ToolError {
    ToolError::UnknownSurvey {
        survey: survey.to_owned(),
        known: feedback.survey_ids().into_iter().map(str::to_owned).collect(),
    }
}

/// A successful result whose text block is `value` serialized (fields in declaration
/// order, so the text is stable) and whose `structuredContent` is the same object.
fn structured<T: Serialize>(value: &T) -> Result<Value, ToolError> {
    let text = serde_json::to_string(value).map_err(|e| ToolError::Internal(e.to_string()))?;
    let object = serde_json::to_value(value).map_err(|e| ToolError::Internal(e.to_string()))?;
    Ok(json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": object
    }))
}

/// Typed access to a call's `arguments` object.
struct Arguments<'a> {
    /// The tool being called, named in error messages.
    tool: Tool,
    /// The arguments; `None` when the call sent none (or `null`).
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Arguments<'a> {
    fn new(tool: Tool, arguments: Option<&'a Value>) -> Result<Self, ToolError> {
        match arguments {
            None | Some(Value::Null) => Ok(Self { tool, map: None }),
            Some(Value::Object(map)) => Ok(Self { tool, map: Some(map) }),
            Some(_) => Err(ToolError::ArgumentsNotObject),
        }
    }

    /// Rejects any argument not in `allowed` (the first one, in name order).
    fn only(&self, allowed: &[&str]) -> Result<(), ToolError> {
        let unknown = self.map.into_iter().flat_map(Map::keys).find(|name| !allowed.contains(&name.as_str()));
        match unknown {
            Some(name) => Err(ToolError::UnknownArgument { tool: self.tool.name(), name: name.clone() }),
            None => Ok(()),
        }
    }

    /// The argument, treating `null` as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.and_then(|map| map.get(name)).filter(|value| !value.is_null())
    }

    fn required_str(&self, name: &'static str) -> Result<&'a str, ToolError> {
        self.optional_str(name)?.ok_or(ToolError::MissingArgument(name))
    }

    fn optional_str(&self, name: &'static str) -> Result<Option<&'a str>, ToolError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(ToolError::WrongType { name, expected: "a string" }),
        }
    }

    /// An integer argument within `min..=max`; `3.0` counts as an integer, as in JSON Schema.
    fn optional_int(&self, name: &'static str, min: i64, max: i64) -> Result<Option<i64>, ToolError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let out_of_range = ToolError::OutOfRange { name, min, max };
        let Value::Number(number) = value else {
            return Err(ToolError::WrongType { name, expected: "an integer" });
        };
        if let Some(int) = number.as_i64() {
            return if (min..=max).contains(&int) { Ok(Some(int)) } else { Err(out_of_range) };
        }
        match number.as_f64() {
            Some(float) if float.fract() == 0.0 => {
                // Compare as floats first so a huge value (e.g. 1e300 or u64::MAX) cannot
                // wrap when converted.
                if float >= min as f64 && float <= max as f64 {
                    Ok(Some(float as i64))
                } else {
                    Err(out_of_range)
                }
            }
            _ => Err(ToolError::WrongType { name, expected: "an integer" }),
        }
    }
}
