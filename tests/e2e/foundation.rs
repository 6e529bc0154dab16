//! The foundation: every part answers, signatures are checked, and the queue reaches the consumer.

use crate::context::E2e;
use crate::ensure_eq;
use anyhow::Result;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub async fn gateway_health(ctx: Arc<E2e>) -> Result<()> {
    let a = E2e::answer(ctx.http.get(ctx.gateway("/health")).send().await?).await?;
    ensure_eq!(a.status, 200);
    ensure_eq!(a.json["status"], "ok");
    Ok(())
}

fn ping() -> serde_json::Value {
    json!({
        "id": "1200000000000000001",
        "application_id": "1100000000000000001",
        "type": 1,
        "token": "test-interaction-token",
        "version": 1
    })
}

pub async fn discord_ping_signed_gets_pong(ctx: Arc<E2e>) -> Result<()> {
    let a = ctx.discord_interaction(&ping()).await?;
    ensure_eq!(a.status, 200, "body: {}", a.text);
    ensure_eq!(a.json, json!({ "type": 1 }));
    Ok(())
}

pub async fn discord_ping_with_a_wrong_signature_is_401(ctx: Arc<E2e>) -> Result<()> {
    let body = serde_json::to_vec(&ping())?;
    let ts = bugbot_tests::signing::unix_timestamp();
    let (sig, _) = bugbot_tests::signing::discord_headers(
        &ctx.env.get("DISCORD_TEST_SIGNING_SEED"),
        &ts,
        &body,
    );

    // A valid signature over different bytes.
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] = b'2';
    let a = ctx.discord_raw(tampered, Some(&sig), Some(&ts)).await?;
    ensure_eq!(a.status, 401, "tampered body: {}", a.text);

    // Signed by another key.
    let other = hex::encode([9u8; 32]);
    let (bad_sig, _) = bugbot_tests::signing::discord_headers(&other, &ts, &body);
    ensure_eq!(
        ctx.discord_raw(body.clone(), Some(&bad_sig), Some(&ts))
            .await?
            .status,
        401
    );

    // No signature headers at all.
    ensure_eq!(ctx.discord_raw(body.clone(), None, None).await?.status, 401);

    // The untampered request still passes, so the 401s above are about the signature.
    ensure_eq!(
        ctx.discord_raw(body, Some(&sig), Some(&ts)).await?.status,
        200
    );
    Ok(())
}

pub async fn queue_message_reaches_the_consumer(ctx: Arc<E2e>) -> Result<()> {
    let a = ctx.admin_post("/v1/selftest").await?;
    ensure_eq!(a.status, 202, "body: {}", a.text);
    let id = a.json["job_id"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(id.starts_with("st-"), "unexpected job id {id:?}");
    let record = ctx
        .wait_for_job(&id, Duration::from_secs(20), |r| r["status"] == "succeeded")
        .await?;
    let steps: Vec<&str> = record["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["step"].as_str()).collect())
        .unwrap_or_default();
    ensure_eq!(steps, vec!["queued", "started", "done"]);
    ensure_eq!(record["attempts"], 1);

    // Without the admin token the record is not shown.
    let r = ctx
        .http
        .get(ctx.gateway(&format!("/v1/jobs/{id}")))
        .send()
        .await?;
    ensure_eq!(r.status().as_u16(), 401);
    Ok(())
}

pub async fn executor_and_sandbox_answer(ctx: Arc<E2e>) -> Result<()> {
    let r = ctx
        .http
        .get(format!("{}/healthz", ctx.env.get("EXECUTOR_URL")))
        .send()
        .await?;
    ensure_eq!(r.status().as_u16(), 200);
    let state = ctx.sandbox_state().await?;
    anyhow::ensure!(state["requests"].is_object(), "sandbox state: {state}");
    Ok(())
}
