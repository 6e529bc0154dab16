//! `@bugbot` mentions: Discord delivers messages only over its Gateway (a WebSocket), so one
//! Durable Object (`DiscordGateway`, a single named instance: never two connections) holds that
//! connection. The protocol lives in `bugbot_shared::discord_gateway` (a pure state machine); this
//! object performs it: connect, send, heartbeat on time, reconnect and resume, and turn each mention
//! into the same job a slash command makes (`bugbot_shared::discord::decide_mention`, then the usual
//! admission: dedupe by message id, the per-user limit, the queue).
//!
//! An alarm every 30 s keeps the object alive and restarts the connection loop if the object was
//! evicted (the session, persisted in the object's storage, is then resumed).

use crate::admission::{Admission, admit};
use crate::{config, log};
use bugbot_shared::discord::{GatewayMessage, MentionDecision, decide_mention};
use bugbot_shared::discord_api::DiscordApi;
use bugbot_shared::discord_gateway::{Action, Frame, Session, connect_url, op};
use bugbot_shared::http::HttpRequest;
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use worker::{
    Date, Delay, DurableObject, Env, Fetch, Headers, Request, RequestInit, Response, Result, State,
    WebSocket, WebsocketEvent, durable_object,
};

/// Storage keys of the object.
const SESSION_KEY: &str = "session";
const WANTED_KEY: &str = "wanted";
/// The keep-alive alarm's period.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// What `GET /v1/discord/gateway` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The connection loop runs.
    pub running: bool,
    /// READY or RESUMED was received on the current connection.
    pub connected: bool,
    /// Connections opened.
    pub connections: u32,
    /// Sessions resumed.
    pub resumes: u32,
    /// When the last heartbeat ACK came (ms since the epoch).
    pub last_heartbeat_ack_ms: Option<u64>,
    /// The last sequence number received.
    pub last_sequence: Option<u64>,
    /// Mentions that became jobs.
    pub mentions_enqueued: u32,
    /// The last problem (no secret in it).
    pub last_error: Option<String>,
}

/// The Durable Object holding the Gateway connection.
#[allow(missing_debug_implementations)] // State and Env hold JS handles with no useful Debug.
#[durable_object]
pub struct DiscordGateway {
    state: Rc<State>,
    env: Env,
    status: Rc<RefCell<Status>>,
}

impl DurableObject for DiscordGateway {
    fn new(state: State, env: Env) -> Self {
        Self {
            state: Rc::new(state),
            env,
            status: Rc::new(RefCell::new(Status::default())),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if req.path() == "/start" {
            self.state.storage().put(WANTED_KEY, true).await?;
            self.state.storage().set_alarm(KEEPALIVE).await?;
            self.ensure_running();
        }
        Response::from_json(&*self.status.borrow())
    }

    async fn alarm(&self) -> Result<Response> {
        let wanted: bool = self
            .state
            .storage()
            .get(WANTED_KEY)
            .await
            .ok()
            .flatten()
            .unwrap_or(false);
        if wanted {
            self.ensure_running();
            self.state.storage().set_alarm(KEEPALIVE).await?;
        }
        Response::ok("ok")
    }
}

impl DiscordGateway {
    /// Starts the connection loop unless it runs already (one connection, ever).
    fn ensure_running(&self) {
        if self.status.borrow().running {
            return;
        }
        self.status.borrow_mut().running = true;
        let (state, env, status) = (self.state.clone(), self.env.clone(), self.status.clone());
        worker::wasm_bindgen_futures::spawn_local(async move {
            let why = run(&state, &env, &status).await;
            log::error("discord gateway stopped", &[("why", &why)]);
            let mut s = status.borrow_mut();
            s.running = false;
            s.connected = false;
            s.last_error = Some(why);
        });
    }
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// The connection loop; returns only when connecting can no longer help (bad token, no config).
async fn run(state: &State, env: &Env, status: &RefCell<Status>) -> String {
    let Some(token) = config::optional(env, "DISCORD_BOT_TOKEN") else {
        return "DISCORD_BOT_TOKEN is not configured".into();
    };
    let api_base = config::optional(env, "DISCORD_API_URL")
        .unwrap_or_else(|| "https://discord.com/api/v10".into());
    let mut session: Session = state
        .storage()
        .get(SESSION_KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut next_url = session.resume_url.clone();
    let mut delay_ms = 0;
    loop {
        if delay_ms > 0 {
            Delay::from(Duration::from_millis(delay_ms)).await;
        }
        let base = match next_url.take() {
            Some(url) => url,
            None => match gateway_url(&api_base, &token).await {
                Ok(url) => url,
                Err(e) => {
                    session.failures += 1;
                    delay_ms = session.backoff_ms();
                    status.borrow_mut().last_error = Some(e);
                    continue;
                }
            },
        };
        let outcome = connection(state, env, status, &mut session, &token, &base).await;
        let _ = state.storage().put(SESSION_KEY, &session).await;
        match outcome {
            Some((after_ms, url)) => {
                delay_ms = after_ms;
                next_url = url;
            }
            None => return "Discord refused the session (check DISCORD_BOT_TOKEN and the bot's intents)".into(),
        }
    }
}

/// The URL the Gateway is at (`GET /gateway/bot`).
async fn gateway_url(api_base: &str, token: &str) -> std::result::Result<String, String> {
    let req = HttpRequest::new(
        bugbot_shared::http::Service::Discord,
        bugbot_shared::http::Method::Get,
        format!("{}/gateway/bot", api_base.trim_end_matches('/')),
    )
    .header("authorization", format!("Bot {token}"));
    let answer = bugbot_edge::send(&req).await.map_err(|e| e.to_string())?;
    if !answer.is_success() {
        return Err(format!("GET /gateway/bot answered {}", answer.status));
    }
    serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["url"].as_str().map(str::to_owned))
        .ok_or_else(|| "GET /gateway/bot gave no url".to_owned())
}

/// One connection, until it must be replaced: `Some((delay, url))`, or `None` when it must not be.
async fn connection(
    state: &State,
    env: &Env,
    status: &RefCell<Status>,
    session: &mut Session,
    token: &str,
    base: &str,
) -> Option<(u64, Option<String>)> {
    let ws = match open_socket(&connect_url(base)).await {
        Ok(ws) => ws,
        Err(e) => {
            let actions = session.on_closed(None);
            status.borrow_mut().last_error = Some(format!("could not connect to the Gateway: {e}"));
            return reconnect_of(&actions);
        }
    };
    let Ok(mut events) = ws.events() else {
        return Some((session.backoff_ms(), None));
    };
    if ws.accept().is_err() {
        return Some((session.backoff_ms(), None));
    }
    status.borrow_mut().connections += 1;
    let mut every: Option<u64> = None;
    let mut next_beat = u64::MAX;
    loop {
        let wait = next_beat.saturating_sub(now_ms()).clamp(1, 60_000);
        let next = select(events.next(), Delay::from(Duration::from_millis(wait))).await;
        let actions = match next {
            Either::Left((Some(Ok(WebsocketEvent::Message(m))), _)) => {
                let Some(frame) = m
                    .text()
                    .and_then(|t| serde_json::from_str::<Frame>(&t).ok())
                else {
                    continue;
                };
                if frame.op == op::HEARTBEAT_ACK {
                    status.borrow_mut().last_heartbeat_ack_ms = Some(now_ms());
                }
                session.on_frame(frame, token)
            }
            Either::Left((Some(Ok(WebsocketEvent::Close(c))), _)) => {
                let actions = session.on_closed(Some(c.code()));
                if actions.is_empty() {
                    // A close code that forbids reconnecting (bad token, intents).
                    return None;
                }
                actions
            }
            Either::Left((Some(Err(_)) | None, _)) => session.on_closed(None),
            Either::Right(_) => {
                if now_ms() < next_beat {
                    continue;
                }
                next_beat = now_ms() + every.unwrap_or(41_250);
                session.on_heartbeat_due()
            }
        };
        {
            let mut s = status.borrow_mut();
            s.connected = session.connected;
            s.resumes = session.resumes;
            s.last_sequence = session.seq;
        }
        for action in &actions {
            match action {
                Action::Send(frame) => {
                    let _ = ws.send_with_str(frame.to_string());
                }
                Action::HeartbeatEvery(ms) => {
                    every = Some(*ms);
                    next_beat = now_ms() + ms / 2;
                }
                Action::Reconnect { .. } => {
                    // A non-1000 close keeps the session resumable.
                    let _ = ws.close(Some(4000), Some("reconnecting"));
                    return reconnect_of(&actions);
                }
                Action::Event { data, .. } => {
                    on_message(env, status, session, token, data.clone()).await;
                    let _ = state.storage().put(SESSION_KEY, &*session).await;
                }
            }
        }
    }
}

/// Opens a WebSocket as `WebSocket::connect` does (a GET with `Upgrade: websocket` over http(s)),
/// without parsing a `Url`: that would link IDNA tables that double the gateway's wasm size.
async fn open_socket(url: &str) -> Result<WebSocket> {
    let url = url
        .strip_prefix("wss://")
        .map(|rest| format!("https://{rest}"))
        .or_else(|| {
            url.strip_prefix("ws://")
                .map(|rest| format!("http://{rest}"))
        })
        .unwrap_or_else(|| url.to_owned());
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Get).with_headers(headers);
    let response = Fetch::Request(Request::new_with_init(&url, &init)?)
        .send()
        .await?;
    response
        .websocket()
        .ok_or_else(|| worker::Error::RustError("the Gateway did not accept the WebSocket".into()))
}

fn reconnect_of(actions: &[Action]) -> Option<(u64, Option<String>)> {
    actions.iter().find_map(|a| match a {
        Action::Reconnect { after_ms, url } => Some((*after_ms, url.clone())),
        _ => None,
    })
}

/// A `MESSAGE_CREATE`: a mention with a command becomes a job; a refusal is answered in a reply.
async fn on_message(
    env: &Env,
    status: &RefCell<Status>,
    session: &Session,
    token: &str,
    data: serde_json::Value,
) {
    let (Some(bot_id), Ok(message)) = (
        session.bot_user_id.as_deref(),
        serde_json::from_value::<GatewayMessage>(data),
    ) else {
        return;
    };
    let policy = match config::policy(env) {
        Ok(p) => p,
        Err(e) => {
            status.borrow_mut().last_error = Some(format!("{e:?}"));
            return;
        }
    };
    let refusal = match decide_mention(&message, bot_id, &policy, now_ms()) {
        MentionDecision::Ignore => return,
        MentionDecision::Refuse(text) => text,
        MentionDecision::Enqueue(job) => match admit(env, None, &job, &policy, "discord").await {
            Ok(Admission::Admitted) => {
                status.borrow_mut().mentions_enqueued += 1;
                return;
            }
            Ok(Admission::Duplicate) => return,
            Ok(Admission::Refused(r)) => r.to_string(),
            Err(e) => {
                log::error(
                    "mention not enqueued",
                    &[("job", job.id.as_str()), ("error", &format!("{e:?}"))],
                );
                return;
            }
        },
    };
    let base = config::optional(env, "DISCORD_API_URL")
        .unwrap_or_else(|| "https://discord.com/api/v10".into());
    let reply = DiscordApi::new(&base, token).create_reply(
        &message.channel_id,
        &message.id,
        &refusal,
        &bugbot_shared::discord_api::nonce(message.id.as_str(), "refusal"),
    );
    match bugbot_edge::send(&reply).await {
        Ok(answer) if answer.is_success() => {}
        Ok(answer) => log::error(
            "refusal not sent",
            &[("status", &answer.status.to_string())],
        ),
        Err(e) => log::error("refusal not sent", &[("error", &e.to_string())]),
    }
}
