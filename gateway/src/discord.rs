//! `POST /discord/interactions`: Discord's HTTP interactions endpoint.

use crate::config;
use crate::error::{GatewayError, json_response};
use bugbot_shared::signature::{DiscordKeys, verify_discord};
use worker::{Env, Request, Response};

/// Verifies the signature (before reading anything else of the request), then answers.
pub async fn handle(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    let body = crate::read_body(req).await?;
    let keys = DiscordKeys::from_hex_list(&config::string(env, "DISCORD_PUBLIC_KEY")?)
        .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
    let signature = req.headers().get("x-signature-ed25519")?;
    let timestamp = req.headers().get("x-signature-timestamp")?;
    verify_discord(&keys, signature.as_deref(), timestamp.as_deref(), &body)
        .map_err(|_| GatewayError::Unauthorized)?;

    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| GatewayError::BadRequest("body is not valid JSON".into()))?;
    match value.get("type").and_then(serde_json::Value::as_u64) {
        Some(1) => Ok(json_response(200, &serde_json::json!({ "type": 1 }))?),
        Some(_) => Ok(json_response(
            200,
            &serde_json::json!({
                "type": 4,
                "data": { "content": "bugbot does not handle this kind of interaction.", "flags": 64 }
            }),
        )?),
        None => Err(GatewayError::BadRequest(
            "interaction has no numeric `type`".into(),
        )),
    }
}
