//! Discord's Gateway stand-in: a WebSocket at `/discord-gateway` that speaks the real protocol
//! (HELLO, IDENTIFY → READY, RESUME → replay + RESUMED, heartbeats → ACKs) and that tests steer:
//! dispatch a `MESSAGE_CREATE`, drop the connection (optionally replaying the last events on the
//! next resume), ask for a reconnect, or stop acknowledging heartbeats.

use super::Sandbox;
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the Gateway stand-in holds.
#[derive(Debug, Serialize)]
pub struct GatewayState {
    /// A client is connected now.
    pub connected: bool,
    /// Connections accepted.
    pub connections: u32,
    /// IDENTIFYs accepted.
    pub identifies: u32,
    /// IDENTIFYs received, accepted or not (each spends a session start).
    pub identify_attempts: u32,
    /// Close codes the stand-in sent, in order.
    pub closes: Vec<u16>,
    /// RESUMEs received.
    pub resumes: u32,
    /// Heartbeats received.
    pub heartbeats: u32,
    /// Heartbeats not acknowledged on purpose.
    pub acks_skipped: u32,
    /// Dispatched `MESSAGE_CREATE` frames (with their sequence numbers), replayed on RESUME.
    pub events: Vec<Value>,
    /// The last sequence number handed out (READY and RESUMED take one too).
    pub last_seq: u64,
    /// HELLO's heartbeat interval.
    pub heartbeat_interval_ms: u64,
    #[serde(skip)]
    acks_to_skip: u32,
    #[serde(skip)]
    replay_last: u64,
    #[serde(skip)]
    session_id: String,
    #[serde(skip)]
    control: Option<mpsc::UnboundedSender<Control>>,
}

impl Default for GatewayState {
    fn default() -> Self {
        Self {
            connected: false,
            connections: 0,
            identifies: 0,
            identify_attempts: 0,
            closes: Vec::new(),
            resumes: 0,
            heartbeats: 0,
            acks_skipped: 0,
            events: Vec::new(),
            last_seq: 0,
            // Short, so that tests see heartbeats (and missed ACKs) within seconds.
            heartbeat_interval_ms: 1000,
            acks_to_skip: 0,
            replay_last: 0,
            session_id: String::new(),
            control: None,
        }
    }
}

#[derive(Debug)]
enum Control {
    Send(Value),
    Drop,
    Close(u16),
}

/// Session starts (IDENTIFYs) a bot may make a day.
const SESSION_STARTS_PER_DAY: u32 = 1000;

/// `GET /discord/api/v10/gateway/bot`'s answer: the remaining session starts count the IDENTIFYs
/// made (accepted or not).
pub fn gateway_bot(host: &str, identify_attempts: u32) -> Value {
    json!({
        "url": format!("ws://{host}/discord-gateway"),
        "shards": 1,
        "session_start_limit": {"total": SESSION_STARTS_PER_DAY,
                                "remaining": SESSION_STARTS_PER_DAY.saturating_sub(identify_attempts),
                                "reset_after": 86_400_000, "max_concurrency": 1}
    })
}

/// `GET /discord-gateway`: the WebSocket.
pub async fn connect(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    ws.on_upgrade(move |socket| session(sb, socket, host))
}

async fn session(sb: Sandbox, mut socket: WebSocket, host: String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let interval = {
        let mut s = sb.lock();
        s.discord_gateway.connected = true;
        s.discord_gateway.connections += 1;
        s.discord_gateway.control = Some(tx);
        s.discord_gateway.heartbeat_interval_ms
    };
    let send = |v: Value| Message::Text(v.to_string().into());
    if socket
        .send(send(
            json!({"op": 10, "d": {"heartbeat_interval": interval}}),
        ))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(Message::Text(text))) = incoming else { break };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { break };
                let replies = answer(&sb, &frame, &host);
                let mut closed = false;
                for r in replies {
                    match r {
                        Reply::Frame(v) => { if socket.send(send(v)).await.is_err() { closed = true; } }
                        Reply::Close(code, reason) => {
                            sb.lock().discord_gateway.closes.push(code);
                            let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                            closed = true;
                        }
                    }
                }
                if closed { break; }
            }
            control = rx.recv() => {
                match control {
                    Some(Control::Send(v)) => { if socket.send(send(v)).await.is_err() { break; } }
                    Some(Control::Close(code)) => {
                        sb.lock().discord_gateway.closes.push(code);
                        let reason = close_reason(code);
                        let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                        break;
                    }
                    Some(Control::Drop) | None => break, // dropped without a close frame, as a network failure would
                }
            }
        }
    }
    let mut s = sb.lock();
    s.discord_gateway.connected = false;
    s.discord_gateway.control = None;
}

enum Reply {
    Frame(Value),
    Close(u16, &'static str),
}

fn answer(sb: &Sandbox, frame: &Value, host: &str) -> Vec<Reply> {
    let token_ok = |t: &Value| t.as_str() == Some(sb.credentials.discord_bot_token.as_str());
    let mut s = sb.lock();
    let content_intent = s.discord.app.message_content_intent;
    let g = &mut s.discord_gateway;
    match frame["op"].as_u64() {
        Some(1) => {
            g.heartbeats += 1;
            if g.acks_to_skip > 0 {
                g.acks_to_skip -= 1;
                g.acks_skipped += 1;
                Vec::new()
            } else {
                vec![Reply::Frame(json!({"op": 11}))]
            }
        }
        Some(2) => {
            let d = &frame["d"];
            g.identify_attempts += 1;
            if !token_ok(&d["token"]) {
                return vec![Reply::Close(4004, close_reason(4004))];
            }
            let intents = d["intents"].as_u64().unwrap_or(0);
            if intents & (1 << 9) == 0 || intents & (1 << 15) == 0 {
                return vec![Reply::Close(4013, close_reason(4013))];
            }
            if intents & (1 << 15) != 0 && !content_intent {
                // A privileged intent the application has not enabled in the Developer Portal.
                return vec![Reply::Close(4014, close_reason(4014))];
            }
            g.identifies += 1;
            g.session_id = format!("sandbox-session-{}", g.identifies);
            let seq = next_seq(g);
            vec![Reply::Frame(json!({"op": 0, "t": "READY", "s": seq, "d": {
                "v": 10, "session_id": g.session_id,
                "resume_gateway_url": format!("ws://{host}/discord-gateway"),
                "user": {"id": sb.credentials.discord_application_id, "username": "bugbot", "bot": true, "discriminator": "0"},
                "guilds": [], "application": {"id": sb.credentials.discord_application_id, "flags": 0}
            }}))]
        }
        Some(6) => {
            let d = &frame["d"];
            if !token_ok(&d["token"]) || d["session_id"].as_str() != Some(g.session_id.as_str()) {
                return vec![Reply::Frame(json!({"op": 9, "d": false}))];
            }
            g.resumes += 1;
            let from = d["seq"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(std::mem::take(&mut g.replay_last));
            let mut out: Vec<Reply> = g
                .events
                .iter()
                .filter(|e| e["s"].as_u64().unwrap_or(0) > from)
                .cloned()
                .map(Reply::Frame)
                .collect();
            let seq = next_seq(g);
            out.push(Reply::Frame(
                json!({"op": 0, "t": "RESUMED", "s": seq, "d": null}),
            ));
            out
        }
        _ => vec![Reply::Close(4002, "Error while decoding payload.")],
    }
}

/// Discord's reason text for a close code.
fn close_reason(code: u16) -> &'static str {
    match code {
        4004 => "Authentication failed.",
        4010 => "Invalid shard.",
        4011 => "Sharding required.",
        4012 => "Invalid API version.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        _ => "Unknown error.",
    }
}

fn next_seq(g: &mut GatewayState) -> u64 {
    g.last_seq += 1;
    g.last_seq
}

/// `POST /_sandbox/discord/gateway/dispatch`: a message to send as `MESSAGE_CREATE` (its fields as
/// Discord's message object has them; `id`, `timestamp` and `type` are filled in if absent).
pub async fn dispatch(State(sb): State<Sandbox>, Json(mut message): Json<Value>) -> Response {
    let mut s = sb.lock();
    if message.get("id").is_none() {
        let id = s.discord.id();
        message["id"] = id.into();
    }
    for (k, v) in [
        ("type", json!(0)),
        ("tts", json!(false)),
        ("mentions", json!([])),
        ("attachments", json!([])),
        ("embeds", json!([])),
    ] {
        if message.get(k).is_none() {
            message[k] = v;
        }
    }
    let message = super::discord::as_read_by(
        &sb.credentials.discord_application_id,
        &s.discord.app,
        &message,
    );
    let g = &mut s.discord_gateway;
    let seq = next_seq(g);
    let frame = json!({"op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": message});
    g.events.push(frame.clone());
    match &g.control {
        Some(tx) if tx.send(Control::Send(frame)).is_ok() => (
            StatusCode::OK,
            Json(json!({"seq": seq, "message": message})),
        )
            .into_response(),
        _ => super::error(StatusCode::CONFLICT, "no Gateway client is connected"),
    }
}

/// `POST /_sandbox/discord/gateway/drop` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropRequest {
    /// On the next RESUME, replay this many already-delivered events too (as Discord may).
    #[serde(default)]
    pub replay_last: u64,
}

/// Drops the connection without a close frame.
pub async fn drop_connection(
    State(sb): State<Sandbox>,
    Json(req): Json<DropRequest>,
) -> StatusCode {
    let mut s = sb.lock();
    s.discord_gateway.replay_last = req.replay_last;
    match s.discord_gateway.control.take() {
        Some(tx) => {
            let _ = tx.send(Control::Drop);
            StatusCode::NO_CONTENT
        }
        None => StatusCode::CONFLICT,
    }
}

/// `POST /_sandbox/discord/gateway/skip-acks`: `{ "count": n }` heartbeats go unacknowledged.
pub async fn skip_acks(State(sb): State<Sandbox>, Json(req): Json<Value>) -> StatusCode {
    sb.lock().discord_gateway.acks_to_skip = req["count"].as_u64().unwrap_or(1) as u32;
    StatusCode::NO_CONTENT
}

/// `POST /_sandbox/discord/gateway/reconnect`: sends op 7 (the client should resume).
pub async fn reconnect(State(sb): State<Sandbox>) -> StatusCode {
    let s = sb.lock();
    match &s.discord_gateway.control {
        Some(tx) if tx.send(Control::Send(json!({"op": 7, "d": null}))).is_ok() => {
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::CONFLICT,
    }
}

/// `POST /_sandbox/discord/gateway/close`: `{ "code": n }` closes the connection with that code, as
/// Discord does (4010–4014 forbid reconnecting).
pub async fn close(State(sb): State<Sandbox>, Json(req): Json<Value>) -> StatusCode {
    let code = req["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(4000);
    let mut s = sb.lock();
    match s.discord_gateway.control.take() {
        Some(tx) if tx.send(Control::Close(code)).is_ok() => StatusCode::NO_CONTENT,
        _ => StatusCode::CONFLICT,
    }
}
