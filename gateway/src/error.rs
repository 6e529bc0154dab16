//! The gateway's one error type and its one conversion to an HTTP answer.
//!
//! Sender mistakes map to 4xx with a short, fixed explanation. Our own failures (KV, queue) map to
//! 503 with a generic message: the details go to the log, never to the sender.

use worker::{Headers, Response};

/// Everything a gateway handler can fail with.
#[derive(Debug)]
pub enum GatewayError {
    /// Missing or wrong signature / token.
    Unauthorized,
    /// The body or a header is not what this endpoint takes.
    BadRequest(String),
    /// Body over the limit.
    PayloadTooLarge,
    /// The path exists, the method does not.
    MethodNotAllowed(&'static str),
    /// No such path or resource.
    NotFound,
    /// Our side failed (storage, queue). Retrying later may work.
    Unavailable(String),
}

impl GatewayError {
    /// The HTTP answer. Never includes internal detail.
    pub fn into_response(self) -> worker::Result<Response> {
        let (status, message) = match &self {
            Self::Unauthorized => (401, "invalid request signature or token".to_owned()),
            Self::BadRequest(why) => (400, why.clone()),
            Self::PayloadTooLarge => (413, "request body is larger than 1 MiB".to_owned()),
            Self::MethodNotAllowed(_) => (405, "method not allowed".to_owned()),
            Self::NotFound => (404, "not found".to_owned()),
            Self::Unavailable(detail) => {
                crate::log::error("unavailable", &[("detail", detail)]);
                (503, "temporarily unavailable, try again".to_owned())
            }
        };
        let response = json_response(status, &serde_json::json!({ "error": message }))?;
        if let Self::MethodNotAllowed(allow) = self {
            response.headers().set("allow", allow)?;
        }
        Ok(response)
    }

    /// What went wrong, for the log (never for the sender).
    pub fn detail(self) -> String {
        match self {
            Self::Unavailable(detail) | Self::BadRequest(detail) => detail,
            other => format!("{other:?}"),
        }
    }
}

impl From<worker::Error> for GatewayError {
    fn from(e: worker::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<worker::kv::KvError> for GatewayError {
    fn from(e: worker::kv::KvError) -> Self {
        Self::Unavailable(format!("kv: {e}"))
    }
}

thread_local! {
    /// The headers of every fast JSON answer (the runtime copies them into each response).
    static JSON_HEADERS: worker::wasm_bindgen::JsValue = {
        let headers = worker::js_sys::Object::new();
        let _ = worker::js_sys::Reflect::set(
            &headers,
            &"content-type".into(),
            &"application/json".into(),
        );
        headers.into()
    };
}

/// A JSON answer built straight as the runtime's `Response` (one call: no `Headers` object, no
/// intermediate `worker::Response`): the webhooks' and `/health`'s answers, on the hot path.
pub fn json_answer(
    status: u16,
    body: &serde_json::Value,
) -> Result<worker::web_sys::Response, GatewayError> {
    let init = worker::web_sys::ResponseInit::new();
    init.set_status(status);
    JSON_HEADERS.with(|h| init.set_headers(h));
    worker::web_sys::Response::new_with_opt_str_and_init(Some(&body.to_string()), &init)
        .map_err(|e| GatewayError::Unavailable(format!("building a response: {e:?}")))
}

/// A JSON answer with a status.
pub fn json_response(status: u16, body: &serde_json::Value) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::from_bytes(body.to_string().into_bytes())?
        .with_status(status)
        .with_headers(headers))
}
