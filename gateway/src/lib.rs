//! bugbot's gateway Worker: the only door from the internet.
//!
//! It verifies each request's signature before anything else, turns Discord interactions and GitHub
//! webhooks into job messages (the decisions live in `bugbot_shared`), admits them through its
//! ledger (a Durable Object that dedupes, limits, stores and forwards them to the queue) and answers
//! at once. It makes no calls to outside services on the request path.

mod admin;
mod admission;
mod config;
mod discord;
mod error;
mod github;
mod ledger;
mod log;
mod mentions;

pub use ledger::AdmissionLedger;
pub use mentions::DiscordGateway;

use error::{GatewayError, json_response};
use worker::{Context, Env, Method, Request, Response, event, web_sys};

/// Bodies above this are refused with 413 before they are read in full.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    // The webhooks' answers are made as their jobs are admitted (see `admission`); the rest here.
    let path = req.path();
    let answered = match (req.method(), path.trim_matches('/')) {
        (Method::Post, "discord/interactions") => discord::handle(&mut req, &env, &ctx).await,
        (Method::Post, "github/webhook") => github::handle(&mut req, &env, &ctx).await,
        _ => route(&mut req, &env).await.map(Into::into),
    };
    Ok(answered.unwrap_or_else(|e| admission::raw_response(Err(e))))
}

async fn route(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    let path = req.path();
    let method = req.method();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (segments.as_slice(), method) {
        (["health"], Method::Get | Method::Head) => {
            Ok(json_response(200, &serde_json::json!({ "status": "ok" }))?)
        }
        (["health"], _) => Err(GatewayError::MethodNotAllowed("GET, HEAD")),

        (["discord", "interactions"], _) => Err(GatewayError::MethodNotAllowed("POST")),

        (["github", "webhook"], _) => Err(GatewayError::MethodNotAllowed("POST")),

        (["v1", "dev", "enqueue-raw"], Method::Post) => admin::enqueue_raw(req, env).await,
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

/// Reads the body, refusing anything over [`MAX_BODY_BYTES`] (by `Content-Length` first, so a
/// large upload is not buffered, then by what actually arrived).
pub(crate) async fn read_body(req: &mut Request) -> Result<Vec<u8>, GatewayError> {
    if let Some(len) = req.headers().get("content-length")? {
        match len.trim().parse::<u64>() {
            Ok(n) if n > MAX_BODY_BYTES as u64 => return Err(GatewayError::PayloadTooLarge),
            Ok(_) => {}
            Err(_) => return Err(GatewayError::BadRequest("invalid Content-Length".into())),
        }
    }
    let body = req
        .bytes()
        .await
        .map_err(|_| GatewayError::BadRequest("could not read the request body".into()))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(body)
}

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub(crate) fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
