//! Anthropic Messages API stand-in: answers from a scripted scenario, so the real Claude Code CLI
//! runs its real tools (Write, Edit, Read, ...) in the executor's workspace with only the model
//! replaced.
//!
//! A scenario is a list of steps; the step answered is the number of assistant turns already in the
//! request's `messages`, so the script follows the conversation the CLI keeps. Requests without
//! tools (the CLI's side requests) get a short text answer.

use super::{Sandbox, error};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One scripted model answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Call a tool (`{"tool_use": {"name": "Write", "input": {...}}}`).
    ToolUse {
        /// Tool name as the CLI offers it.
        name: String,
        /// Tool input.
        input: Value,
    },
    /// Answer with text and end the turn.
    Text(String),
}

/// `POST /_sandbox/anthropic/scenario` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// After the last step, repeat it forever (a model that never stops).
    #[serde(default)]
    pub repeat_last: bool,
}

/// What the stand-in keeps.
#[derive(Debug, Default, Serialize)]
pub struct AnthropicState {
    /// The active scenario.
    pub scenario: Option<Scenario>,
    /// Bodies of the requests received (as JSON), for assertions.
    pub requests: Vec<Value>,
    /// Requests refused for a wrong or missing key (as Anthropic answers them: 401).
    pub refused_keys: u32,
}

/// Sets the scenario.
pub async fn set_scenario(State(sb): State<Sandbox>, Json(scenario): Json<Scenario>) -> StatusCode {
    sb.lock().anthropic.scenario = Some(scenario);
    StatusCode::NO_CONTENT
}

/// `POST /anthropic/v1/messages`.
pub async fn messages(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if key.is_empty() || key != sb.credentials.anthropic_api_key {
        sb.lock().anthropic.refused_keys += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})),
        )
            .into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    for field in ["model", "messages", "max_tokens"] {
        if request.get(field).is_none() {
            return error(StatusCode::BAD_REQUEST, &format!("{field}: Field required"));
        }
    }
    let stream = request["stream"].as_bool().unwrap_or(false);
    let has_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let turn = request["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0);

    let step = {
        let mut s = sb.lock();
        s.anthropic.requests.push(request.clone());
        if has_tools {
            s.anthropic.scenario.as_ref().and_then(|sc| {
                sc.steps
                    .get(turn)
                    .or(if sc.repeat_last {
                        sc.steps.last()
                    } else {
                        None
                    })
                    .cloned()
            })
        } else {
            Some(Step::Text("OK".into()))
        }
    };
    let step = step.unwrap_or_else(|| Step::Text("Nothing more to do.".into()));
    let model = request["model"]
        .as_str()
        .unwrap_or("claude-sandbox")
        .to_owned();
    if stream {
        sse(&model, &step, turn)
    } else {
        Json(message(&model, &step, turn)).into_response()
    }
}

fn content(step: &Step, turn: usize) -> (Value, &'static str) {
    match step {
        Step::ToolUse { name, input } => (
            json!({"type": "tool_use", "id": format!("toolu_sandbox_{turn}"), "name": name, "input": input}),
            "tool_use",
        ),
        Step::Text(text) => (json!({"type": "text", "text": text}), "end_turn"),
    }
}

fn message(model: &str, step: &Step, turn: usize) -> Value {
    let (block, stop) = content(step, turn);
    json!({
        "id": format!("msg_sandbox_{turn}"), "type": "message", "role": "assistant", "model": model,
        "content": [block], "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 20}
    })
}

fn sse(model: &str, step: &Step, turn: usize) -> Response {
    let (block, stop) = content(step, turn);
    let (start_block, delta) = match step {
        Step::ToolUse { .. } => (
            json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
            json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
        ),
        Step::Text(text) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
        ),
    };
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {
            "id": format!("msg_sandbox_{turn}"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": start_block}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 20}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from(body))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not build the stream",
            )
        })
}
