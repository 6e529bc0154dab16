//! `@bugbot` mentions: Discord delivers messages only over its Gateway (a WebSocket), so one
//! Durable Object (`DiscordGateway`, a single named instance: never two connections) holds that
//! connection. The protocol lives in `bugbot_shared::discord_gateway` (a pure state machine); this
//! object performs it: connect, send, heartbeat on time, reconnect and resume, and turn each mention
//! into the same job a slash command makes (`bugbot_shared::discord::decide_mention`, then the usual
//! admission: dedupe by message id, the per-user limit, the queue).
//!
//! An alarm every 30 s keeps the object alive and restarts the connection loop if the object was
//! evicted (the session, persisted in the object's storage, is then resumed). A storage error in
//! the alarm keeps the alarm going (the state is read again next time).
//!
//! When Discord closes with a code after which reconnecting cannot help (4004, 4010–4014: a bad
//! token, sharding, intents — most often the Message Content intent not enabled), the connection
//! stops until an operator starts it again (`POST /v1/discord/gateway/start`), and
//! `GET /v1/discord/gateway` says why in words: every IDENTIFY spends one of the bot's 1,000 daily
//! session starts.
//!
//! A mention that could not be admitted (the ledger unreachable) is tried again, then answered, so
//! nobody waits on a request bugbot never took; a refusal is answered once per message, even when
//! Discord delivers the message again after a resume.

use crate::admission::{Admission, admit};
use crate::{config, log};
use bugbot_shared::discord::{GatewayMessage, MentionDecision, decide_mention};
use bugbot_shared::discord_api::DiscordApi;
use bugbot_shared::discord_gateway::{Action, Frame, Session, Stopped, connect_url, op};
use bugbot_shared::http::HttpRequest;
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use worker::{
    Date, Delay, DurableObject, Env, Fetch, Headers, Request, RequestInit, Response, Result, State,
    WebSocket, WebsocketEvent, durable_object,
};

/// Storage keys of the object.
const SESSION_KEY: &str = "session";
const WANTED_KEY: &str = "wanted";
const STOPPED_KEY: &str = "stopped";
/// The messages answered with a refusal lately: `[(message id, ms)]`.
const ANSWERED_KEY: &str = "answered";
/// How many answered messages are remembered (Discord replays a few on resume, not thousands).
const ANSWERED_KEPT: usize = 200;
/// The keep-alive alarm's period, unless `DISCORD_GATEWAY_KEEPALIVE_SECONDS` says otherwise.
const KEEPALIVE_SECS: u64 = 30;
/// Waits between the tries of a mention's admission.
const ADMIT_RETRIES_MS: [u64; 2] = [300, 1500];

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
    /// Why the connection stopped for good, until an operator starts it again.
    pub stopped: Option<Stopped>,
    /// IDENTIFYs sent (each spends one of the bot's daily session starts).
    pub identifies: u32,
    /// Mentions answered because they could not be admitted.
    pub mentions_not_taken: u32,
    /// Keep-alive alarms run, and those whose storage read failed.
    pub keepalive_alarms: u32,
    /// Keep-alive alarms whose storage read failed (the alarm went on).
    pub keepalive_storage_errors: u32,
}

/// The Durable Object holding the Gateway connection.
#[allow(missing_debug_implementations)] // State and Env hold JS handles with no useful Debug.
#[durable_object]
pub struct DiscordGateway {
    state: Rc<State>,
    env: Env,
    status: Rc<RefCell<Status>>,
    /// Local development only: the next storage reads of the keep-alive fail (a test's fault).
    dev_storage_faults: Cell<u32>,
}

impl DurableObject for DiscordGateway {
    fn new(state: State, env: Env) -> Self {
        Self {
            state: Rc::new(state),
            env,
            status: Rc::new(RefCell::new(Status::default())),
            dev_storage_faults: Cell::new(0),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/start" => {
                // An operator's start also clears a fatal stop: they fixed what it said.
                self.state.storage().delete(STOPPED_KEY).await?;
                self.status.borrow_mut().stopped = None;
                self.state.storage().put(WANTED_KEY, true).await?;
                self.state.storage().set_alarm(self.keepalive()).await?;
                self.ensure_running();
            }
            "/dev/storage-faults"
                if config::optional(&self.env, "BUGBOT_DEV_ENDPOINTS").as_deref()
                    == Some("true") =>
            {
                // The query by hand: `Request::url` would link the `url` crate's IDNA tables.
                let count = req
                    .inner()
                    .url()
                    .split_once("count=")
                    .and_then(|(_, v)| v.split('&').next()?.parse().ok())
                    .unwrap_or(1);
                self.dev_storage_faults.set(count);
            }
            _ => {}
        }
        // After an eviction the reason of a stop is in storage only.
        if self.status.borrow().stopped.is_none()
            && let Ok(Some(stopped)) = self.state.storage().get::<Stopped>(STOPPED_KEY).await
        {
            self.status.borrow_mut().stopped = Some(stopped);
        }
        Response::from_json(&*self.status.borrow())
    }

    async fn alarm(&self) -> Result<Response> {
        self.status.borrow_mut().keepalive_alarms += 1;
        match self.wanted().await {
            Ok(true) => {
                self.ensure_running();
                self.state.storage().set_alarm(self.keepalive()).await?;
            }
            // Not wanted (never started, or stopped for good): the keep-alive ends here.
            Ok(false) => {}
            Err(e) => {
                // Whether the connection is wanted is unknown: keep the keep-alive, ask next time.
                self.status.borrow_mut().keepalive_storage_errors += 1;
                log::error(
                    "discord gateway keep-alive could not read its state",
                    &[("error", &e.to_string())],
                );
                self.state.storage().set_alarm(self.keepalive()).await?;
            }
        }
        Response::ok("ok")
    }
}

impl DiscordGateway {
    fn keepalive(&self) -> Duration {
        let env = &self.env;
        Duration::from_secs(
            config::optional(env, "DISCORD_GATEWAY_KEEPALIVE_SECONDS")
                .and_then(|v| v.parse().ok())
                .filter(|s| *s > 0)
                .unwrap_or(KEEPALIVE_SECS),
        )
    }

    /// Whether an operator wants the connection (and no fatal close stopped it since).
    async fn wanted(&self) -> Result<bool> {
        let faults = self.dev_storage_faults.get();
        if faults > 0 {
            self.dev_storage_faults.set(faults - 1);
            return Err(worker::Error::RustError(
                "a storage fault asked for by a test".into(),
            ));
        }
        Ok(self
            .state
            .storage()
            .get::<bool>(WANTED_KEY)
            .await?
            .unwrap_or(false))
    }

    /// Starts the connection loop unless it runs already (one connection, ever).
    fn ensure_running(&self) {
        if self.status.borrow().running {
            return;
        }
        self.status.borrow_mut().running = true;
        let (state, env, status) = (self.state.clone(), self.env.clone(), self.status.clone());
        worker::wasm_bindgen_futures::spawn_local(async move {
            let stopped = run(&state, &env, &status).await;
            log::error(
                "discord gateway stopped until an operator starts it again",
                &[
                    (
                        "code",
                        &stopped.code.map(|c| c.to_string()).unwrap_or_default(),
                    ),
                    ("why", &stopped.reason),
                ],
            );
            // Not wanted any more: the keep-alive must not reconnect (and spend another IDENTIFY).
            let storage = state.storage();
            if let Err(e) = storage.put(STOPPED_KEY, &stopped).await {
                log::error("the stop was not stored", &[("error", &e.to_string())]);
            }
            if let Err(e) = storage.put(WANTED_KEY, false).await {
                log::error("the stop was not stored", &[("error", &e.to_string())]);
            }
            let mut s = status.borrow_mut();
            s.running = false;
            s.connected = false;
            s.last_error = Some(stopped.reason.clone());
            s.stopped = Some(stopped);
        });
    }
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// The connection loop; returns only when connecting can no longer help (a fatal close code, no
/// token), with why.
async fn run(state: &State, env: &Env, status: &RefCell<Status>) -> Stopped {
    let Some(token) = config::optional(env, "DISCORD_BOT_TOKEN") else {
        return Stopped {
            code: None,
            reason: "DISCORD_BOT_TOKEN is not configured".into(),
        };
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
            Ok((after_ms, url)) => {
                delay_ms = after_ms;
                next_url = url;
            }
            Err(stopped) => return stopped,
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

/// One connection, until it must be replaced: `Ok((delay, url))`, or `Err` when Discord closed it
/// for good.
async fn connection(
    state: &State,
    env: &Env,
    status: &RefCell<Status>,
    session: &mut Session,
    token: &str,
    base: &str,
) -> std::result::Result<(u64, Option<String>), Stopped> {
    let ws = match open_socket(&connect_url(base)).await {
        Ok(ws) => ws,
        Err(e) => {
            let actions = session.on_closed(None);
            status.borrow_mut().last_error = Some(format!("could not connect to the Gateway: {e}"));
            return Ok(reconnect_of(&actions).unwrap_or((session.backoff_ms(), None)));
        }
    };
    let Ok(mut events) = ws.events() else {
        return Ok((session.backoff_ms(), None));
    };
    if ws.accept().is_err() {
        return Ok((session.backoff_ms(), None));
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
                session.on_closed(Some(c.code()))
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
                    if frame["op"] == op::IDENTIFY {
                        status.borrow_mut().identifies += 1;
                    }
                    let _ = ws.send_with_str(frame.to_string());
                }
                Action::Stop(stopped) => return Err(stopped.clone()),
                Action::HeartbeatEvery(ms) => {
                    every = Some(*ms);
                    next_beat = now_ms() + ms / 2;
                }
                Action::Reconnect { .. } => {
                    // A non-1000 close keeps the session resumable.
                    let _ = ws.close(Some(4000), Some("reconnecting"));
                    return Ok(reconnect_of(&actions).unwrap_or((session.backoff_ms(), None)));
                }
                Action::Event { data, .. } => {
                    on_message(state, env, status, session, token, data.clone()).await;
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

/// A `MESSAGE_CREATE`: a mention with a command becomes a job; a refusal is answered in a reply
/// (once per message), and so is a mention that could not be admitted after a few tries.
async fn on_message(
    state: &State,
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
    let answer = match decide_mention(&message, bot_id, &policy, now_ms()) {
        MentionDecision::Ignore => return,
        MentionDecision::Refuse(text) => text,
        MentionDecision::Enqueue(job) => match admit_with_retries(env, &job, &policy).await {
            Ok(Admission::Admitted) => {
                status.borrow_mut().mentions_enqueued += 1;
                return;
            }
            Ok(Admission::Duplicate) => return,
            Ok(Admission::Refused(r)) => r.to_string(),
            Err(e) => {
                log::error(
                    "mention not admitted; the requester is told",
                    &[("job", job.id.as_str()), ("error", &format!("{e:?}"))],
                );
                status.borrow_mut().mentions_not_taken += 1;
                bugbot_shared::replies::mention_not_taken()
            }
        },
    };
    // Discord delivers a message again after a resume: one answer per message.
    let mut answered: Vec<(String, u64)> = state
        .storage()
        .get(ANSWERED_KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    if answered.iter().any(|(id, _)| id == message.id.as_str()) {
        return;
    }
    let base = config::optional(env, "DISCORD_API_URL")
        .unwrap_or_else(|| "https://discord.com/api/v10".into());
    let reply = DiscordApi::new(&base, token).create_reply(
        &message.channel_id,
        &message.id,
        &answer,
        None,
        &bugbot_shared::discord_api::nonce(message.id.as_str(), "refusal"),
    );
    match bugbot_edge::send(&reply).await {
        Ok(sent) if sent.is_success() => {
            answered.push((message.id.as_str().to_owned(), now_ms()));
            let excess = answered.len().saturating_sub(ANSWERED_KEPT);
            answered.drain(..excess);
            if let Err(e) = state.storage().put(ANSWERED_KEY, &answered).await {
                log::error(
                    "answered message not remembered",
                    &[("error", &e.to_string())],
                );
            }
        }
        Ok(sent) => log::error(
            "mention answer not sent",
            &[("status", &sent.status.to_string())],
        ),
        Err(e) => log::error("mention answer not sent", &[("error", &e.to_string())]),
    }
}

/// Admits a mention's job, trying again after short waits when the ledger cannot be reached.
async fn admit_with_retries(
    env: &Env,
    job: &bugbot_shared::job::JobMessage,
    policy: &bugbot_shared::authz::AccessPolicy,
) -> std::result::Result<Admission, crate::error::GatewayError> {
    let mut result = admit(env, job, policy, "discord").await;
    for wait_ms in ADMIT_RETRIES_MS {
        if result.is_ok() {
            break;
        }
        Delay::from(Duration::from_millis(wait_ms)).await;
        result = admit(env, job, policy, "discord").await;
    }
    result
}
