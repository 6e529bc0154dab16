//! bugbot's gateway Worker: the only door from the internet.
//!
//! It verifies each request's signature before anything else, turns Discord interactions and GitHub
//! webhooks into job messages (the decisions live in `bugbot_shared`), admits them through its
//! ledger (a Durable Object that dedupes, limits, stores and forwards them to the queue; webhooks
//! arriving together share its requests, see `admission`) and answers as soon as the job is
//! recorded. It makes no calls to outside services on the request path.
//!
//! The Worker's entry module is `src/entry.mjs`: worker-build's output, with the ledger's class
//! declared so that it serves Workers RPC (see `ledger`).

mod admin;
mod admission;
mod config;
mod discord;
mod ed25519;
mod error;
mod github;
mod ledger;
mod log;
mod mentions;
mod steer;
mod task;

pub use ledger::AdmissionLedger;
pub use mentions::DiscordGateway;

use error::GatewayError;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, Method, Request, Response, event, js_sys, web_sys};

/// Bodies above this are refused with 413 before they are read in full.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Runs once when the runtime instantiates the Worker.
#[event(start)]
fn start() {
    bugbot_edge::install_panic_hook("gateway");
}

/// The Worker's fetch handler (worker-build's entry calls the wasm export `fetch`). Its future is
/// driven by `task` (polled at once, and again straight from the reaction that wakes it), not
/// through `#[event(fetch)]` and wasm-bindgen-futures. An error is logged and answered 500, as
/// `#[event(fetch)]` does. The execution context (`ctx`, for `waitUntil`) is unused: nothing on the
/// request's path outlives its answer.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn fetch(req: web_sys::Request, env: Env, _ctx: worker::worker_sys::Context) -> JsValue {
    task::drive(async move {
        match handle(req, env).await {
            Ok(response) => Ok(response.into()),
            Err(e) => {
                log::error("request failed", &[("error", &e.to_string())]);
                let answer =
                    error::json_answer(500, &serde_json::json!({ "error": "internal error" }));
                answer
                    .map(Into::into)
                    .map_err(|e| JsValue::from_str(&e.detail()))
            }
        }
    })
}

/// The webhooks and `/health` take the runtime's request as it is; the other routes wrap it in a
/// `worker::Request`, which reads the request's `cf` object (a parse, per request, that the
/// busiest paths do not need).
async fn handle(req: web_sys::Request, env: Env) -> worker::Result<web_sys::Response> {
    let url = req.url();
    let answered = match (req.method().as_str(), path_of(&url).trim_matches('/')) {
        ("GET" | "HEAD", "health") => {
            error::json_answer(200, &serde_json::json!({ "status": "ok" }))
        }
        ("POST", "discord/interactions") => discord::handle(&req, &env).await,
        ("POST", "github/webhook") => github::handle(&req, &env).await,
        _ => route(&mut Request::from(req), &env).await.map(Into::into),
    };
    answered.or_else(|e| e.into_response().map(Into::into))
}

/// The path of an absolute URL as the runtime serializes it (`scheme://host/path?query`).
fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    path.split(['?', '#']).next().unwrap_or("/")
}

/// A request header, if present and readable.
pub(crate) fn header(req: &web_sys::Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

async fn route(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    let path = req.path();
    let method = req.method();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (segments.as_slice(), method) {
        (["health"], _) => Err(GatewayError::MethodNotAllowed("GET, HEAD")),

        (["discord", "interactions"], _) => Err(GatewayError::MethodNotAllowed("POST")),

        (["github", "webhook"], _) => Err(GatewayError::MethodNotAllowed("POST")),

        (["v1", "dev", "enqueue-raw"], Method::Post) => admin::enqueue_raw(req, env).await,
        (["v1", "dev", "panic"], Method::Post) => admin::dev_panic(req, env).await,
        (["v1", "dev", "deliver"], Method::Post) => admin::dev_deliver(req, env).await,
        (["v1", "dev", "spend"], Method::Post) => admin::dev_spend(req, env).await,
        (["v1", "dev", "queue-outage"], Method::Post) => {
            admin::dev_outage(req, env, admin::Outage::Queue).await
        }
        (["v1", "dev", "poison-outbox"], Method::Post) => admin::dev_poison(req, env).await,
        (["v1", "dev", "ledger-outage"], Method::Post) => {
            admin::dev_outage(req, env, admin::Outage::Ledger).await
        }
        (["v1", "dev", "discord-gateway-storage-faults"], Method::Post) => {
            admin::dev_gateway_storage_faults(req, env).await
        }
        (["v1", "selftest"], Method::Post) => admin::selftest(req, env).await,
        (["v1", "selftest"], _) => Err(GatewayError::MethodNotAllowed("POST")),
        (["v1", "jobs"], Method::Get) => admin::list_jobs(req, env).await,
        (["v1", "jobs"], _) => Err(GatewayError::MethodNotAllowed("GET")),
        (["v1", "jobs", id], Method::Get) => admin::get_job(req, env, id).await,
        (["v1", "jobs", _], _) => Err(GatewayError::MethodNotAllowed("GET")),
        (["v1", "discord", "gateway"], Method::Get) => {
            admin::discord_gateway(req, env, "/status").await
        }
        (["v1", "discord", "gateway", "start"], Method::Post) => {
            admin::discord_gateway(req, env, "/start").await
        }
        (["v1", "spend"], Method::Get) => admin::get_spend(req, env).await,
        (["v1", "dlq"], Method::Get) => admin::list_dlq(req, env).await,
        (["v1", "dlq"], _) => Err(GatewayError::MethodNotAllowed("GET")),
        (["v1", "dlq", id], Method::Get) => admin::get_dead(req, env, id).await,
        (["v1", "dlq", id], Method::Delete) => admin::purge_dead(req, env, id).await,
        (["v1", "dlq", _], _) => Err(GatewayError::MethodNotAllowed("GET, DELETE")),
        (["v1", "dlq", id, "replay"], Method::Post) => admin::replay(req, env, id).await,
        (["v1", "dlq", _, "replay"], _) => Err(GatewayError::MethodNotAllowed("POST")),

        _ => Err(GatewayError::NotFound),
    }
}

/// Reads the body, refusing anything over [`MAX_BODY_BYTES`] without buffering more than that.
///
/// With a `Content-Length` (what Discord and GitHub send) the length is checked first and the body
/// read whole: the runtime holds a body to its declared length. Without one (a chunked upload)
/// the body is read chunk by chunk and no more than the limit is kept, so no sender can make the
/// isolate buffer an unbounded body (its memory is 128 MB).
pub(crate) async fn read_body(req: &web_sys::Request) -> Result<Vec<u8>, GatewayError> {
    let unreadable = |_| GatewayError::BadRequest("could not read the request body".into());
    let Some(len) = header(req, "content-length") else {
        return read_capped(req).await.map_err(unreadable)?;
    };
    match len.trim().parse::<u64>() {
        Ok(n) if n > MAX_BODY_BYTES as u64 => return Err(GatewayError::PayloadTooLarge),
        Ok(_) => {}
        Err(_) => return Err(GatewayError::BadRequest("invalid Content-Length".into())),
    }
    let buffer = task::Settled::new(&req.array_buffer().map_err(unreadable)?)
        .await
        .map_err(unreadable)?;
    let body = js_sys::Uint8Array::new(&buffer).to_vec();
    if body.len() > MAX_BODY_BYTES {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(body)
}

/// Reads a body of unknown length from its stream, keeping at most [`MAX_BODY_BYTES`]; past that
/// the rest is read and dropped, and the answer is 413. (Answering before a partly read chunked
/// body has ended left the connection it came on unusable under `wrangler dev`: the proxy
/// answered the next request on it 503. Cloudflare's edge ends bodies at 100 MB in any case.)
/// The outer error is a stream that failed.
async fn read_capped(req: &web_sys::Request) -> Result<Result<Vec<u8>, GatewayError>, JsValue> {
    let Some(stream) = req.body() else {
        return Ok(Ok(Vec::new()));
    };
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut body = Vec::new();
    let mut too_large = false;
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if js_sys::Reflect::get(&chunk, &JsValue::from_str("done"))?.is_truthy() {
            return Ok(if too_large {
                Err(GatewayError::PayloadTooLarge)
            } else {
                Ok(body)
            });
        }
        let bytes: js_sys::Uint8Array =
            js_sys::Reflect::get(&chunk, &JsValue::from_str("value"))?.dyn_into()?;
        let start = body.len();
        too_large |= start + bytes.length() as usize > MAX_BODY_BYTES;
        if !too_large {
            body.resize(start + bytes.length() as usize, 0);
            bytes.copy_to(&mut body[start..]);
        }
    }
}

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub(crate) fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
