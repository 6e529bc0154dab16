//! Discord's HTTP API stand-in (`/discord/api/v10/...`): channel messages, interaction answers.
//!
//! Every request is checked against `discord-openapi.json` (path, method, query, body). Bot calls
//! need `Authorization: Bot <DISCORD_BOT_TOKEN>`. Interaction tokens are accepted unless a test
//! marked them expired (`POST /_sandbox/discord/expire`), which answers as Discord does after 15
//! minutes.

use super::Sandbox;
use super::openapi::{self, OpenApi, Refusal, query_value};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// What the Discord stand-in holds.
#[derive(Debug, Default, Serialize)]
pub struct DiscordState {
    /// Messages per channel, oldest first.
    pub channels: BTreeMap<String, Vec<Value>>,
    /// The deferred answers' contents per interaction token, every edit in order.
    #[serde(skip)]
    pub answers: BTreeMap<String, Vec<String>>,
    /// Every edit of an interaction answer, in order (tokens left out).
    pub answer_edits: Vec<AnswerEdit>,
    /// Interaction tokens that are expired.
    #[serde(skip)]
    pub expired: BTreeSet<String>,
    /// Messages bugbot posted with its bot token.
    pub posted: Vec<Value>,
    /// Thread → parent channel, for the threads tests created with a parent.
    pub thread_parents: BTreeMap<String, String>,
    /// Registered application commands, by scope (`global` or the guild id).
    pub commands: BTreeMap<String, Vec<Value>>,
    /// How many times commands were (re)registered.
    pub command_registrations: u32,
    /// How the application is set up in the Developer Portal.
    pub app: DiscordApp,
    next_id: u64,
}

/// `POST /_sandbox/discord/app`: the application's settings in the Developer Portal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordApp {
    /// The Message Content privileged intent. Without it Discord leaves `content` (and embeds,
    /// attachments, components) empty in messages the bot reads, except its own, DMs and
    /// messages that mention it; and an IDENTIFY asking for it is closed with 4014.
    pub message_content_intent: bool,
}

impl Default for DiscordApp {
    /// As `docs/deploy.md` sets the application up: the intent enabled.
    fn default() -> Self {
        Self {
            message_content_intent: true,
        }
    }
}

/// Sets the application's settings.
pub async fn configure_app(State(sb): State<Sandbox>, Json(app): Json<DiscordApp>) -> StatusCode {
    sb.lock().discord.app = app;
    StatusCode::NO_CONTENT
}

/// A message as a bot without the Message Content intent reads it (Discord's "Message Content
/// Intent" rules): its text and attachments withheld unless the bot wrote it or is mentioned.
pub fn as_read_by(bot_id: &str, app: &DiscordApp, message: &Value) -> Value {
    let mentioned = message["mentions"]
        .as_array()
        .is_some_and(|m| m.iter().any(|u| u["id"] == bot_id))
        || message["content"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("<@{bot_id}>")));
    if app.message_content_intent || message["author"]["id"] == bot_id || mentioned {
        return message.clone();
    }
    let mut m = message.clone();
    m["content"] = "".into();
    for field in ["embeds", "attachments", "components"] {
        m[field] = json!([]);
    }
    m
}

/// One edit of a deferred answer.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerEdit {
    /// The application.
    pub application_id: String,
    /// The interaction id the token belongs to, when a test registered it; else the token's hash.
    pub interaction: String,
    /// The new content.
    pub content: String,
    /// The buttons the edit set (`null` when it left them as they were).
    pub components: Value,
}

impl DiscordState {
    /// A new snowflake-like id.
    pub fn id(&mut self) -> String {
        self.next_id += 1;
        (1_300_000_000_000_000_000u64 + self.next_id).to_string()
    }
}

fn spec() -> Result<&'static OpenApi, String> {
    static SPEC: OnceLock<Result<OpenApi, String>> = OnceLock::new();
    SPEC.get_or_init(|| {
        OpenApi::load("Discord", crate::localenv::Spec::DiscordOpenApi).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn discord_error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(json!({ "message": message, "code": code }))).into_response()
}

/// Every Discord API call: checked against the spec, then answered.
pub async fn api(
    State(sb): State<Sandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/discord/api/v10")
        .unwrap_or_default()
        .to_owned();
    let (matched, body) =
        match openapi::admit(&sb, spec(), method.as_str(), &path, uri.query(), &body) {
            Ok(ok) => ok,
            Err(Refusal::NotJson) => {
                return discord_error(
                    StatusCode::BAD_REQUEST,
                    50109,
                    "The request body contains invalid JSON.",
                );
            }
            Err(Refusal::Violation(why)) => {
                return discord_error(
                    StatusCode::BAD_REQUEST,
                    50035,
                    &format!("Invalid Form Body: {why}"),
                );
            }
            Err(Refusal::NoSpec(e)) => return super::error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        };
    // Discord requires bots to say `DiscordBot ($url, $versionNumber)`; others may be blocked.
    let agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_discord_bot_agent(agent) {
        let why =
            format!("User-Agent {agent:?} is not of the form DiscordBot ($url, $versionNumber)");
        sb.lock().violations.push(format!("discord: {why}"));
        return discord_error(StatusCode::FORBIDDEN, 0, &why);
    }
    let p = |k: &str| matched.params.get(k).cloned().unwrap_or_default();
    let bot_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bot {}", sb.credentials.discord_bot_token));
    match (method.as_str(), matched.template.as_str()) {
        ("GET", "/channels/{channel_id}/messages") => {
            if !bot_ok {
                return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
            let limit: usize = query_value(uri.query(), "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50);
            let s = sb.lock();
            let bot = sb.credentials.discord_application_id.as_str();
            match s.discord.channels.get(&p("channel_id")) {
                Some(messages) => Json(
                    messages
                        .iter()
                        .rev()
                        .take(limit)
                        .map(|m| as_read_by(bot, &s.discord.app, m))
                        .collect::<Vec<_>>(),
                )
                .into_response(),
                None => discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"),
            }
        }
        ("POST", "/channels/{channel_id}/messages") => {
            if !bot_ok {
                return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
            let mut s = sb.lock();
            let channel = p("channel_id");
            if !s.discord.channels.contains_key(&channel) {
                return discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
            }
            // `enforce_nonce`: a second message with the same nonce from the same author returns
            // the first instead of creating another (Discord checks "the past few minutes").
            let nonce = body.as_ref().and_then(|b| b.get("nonce")).cloned();
            let enforce = body
                .as_ref()
                .and_then(|b| b["enforce_nonce"].as_bool())
                .unwrap_or(false);
            if let (Some(nonce), true) = (&nonce, enforce)
                && let Some(earlier) =
                    s.discord.posted.iter().find(|m| {
                        m["channel_id"] == channel.as_str() && m.get("nonce") == Some(nonce)
                    })
            {
                return Json(earlier.clone()).into_response();
            }
            let id = s.discord.id();
            let content = body
                .as_ref()
                .and_then(|b| b["content"].as_str())
                .unwrap_or_default();
            let mut message = message_json(&id, &channel, &bot_author(&sb), content, &now_iso());
            if let Some(nonce) = nonce {
                message["nonce"] = nonce;
            }
            if let Some(reference) = body.as_ref().and_then(|b| b.get("message_reference")) {
                message["message_reference"] = reference.clone();
                message["type"] = 19.into(); // a reply
            }
            s.discord.posted.push(message.clone());
            if let Some(list) = s.discord.channels.get_mut(&channel) {
                list.push(message.clone());
            }
            Json(message).into_response()
        }
        ("GET", "/channels/{channel_id}") => {
            if !bot_ok {
                return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
            let s = sb.lock();
            let id = p("channel_id");
            if !s.discord.channels.contains_key(&id) {
                return discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
            }
            let parent = s.discord.thread_parents.get(&id).cloned();
            Json(json!({
                "id": id,
                "type": if parent.is_some() { 11 } else { 0 },
                "guild_id": null,
                "name": format!("channel-{id}"),
                "parent_id": parent,
                "flags": 0
            }))
            .into_response()
        }
        ("GET", "/gateway/bot") => {
            if !bot_ok {
                return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("127.0.0.1");
            let attempts = sb.lock().discord_gateway.identify_attempts;
            Json(super::discord_gateway::gateway_bot(host, attempts)).into_response()
        }
        ("PATCH", "/channels/{channel_id}/messages/{message_id}") => {
            if !bot_ok {
                return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
            let content = body
                .as_ref()
                .and_then(|b| b["content"].as_str())
                .unwrap_or_default()
                .to_owned();
            let mut s = sb.lock();
            let (channel, id) = (p("channel_id"), p("message_id"));
            let Some(m) = s
                .discord
                .posted
                .iter_mut()
                .find(|m| m["id"] == id.as_str() && m["channel_id"] == channel.as_str())
            else {
                return discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            };
            m["content"] = content.clone().into();
            m["edited_timestamp"] = now_iso().into();
            let edits = m["edits"].as_u64().unwrap_or(0) + 1;
            m["edits"] = edits.into();
            let mut updated = m.clone();
            if let Some(o) = updated.as_object_mut() {
                o.remove("edits"); // the sandbox's own count, not part of Discord's message
            }
            if let Some(list) = s.discord.channels.get_mut(&channel)
                && let Some(x) = list.iter_mut().find(|x| x["id"] == id.as_str())
            {
                x["content"] = content.into();
            }
            Json(updated).into_response()
        }
        ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original") => {
            let token = p("webhook_token");
            let mut s = sb.lock();
            if s.discord.expired.contains(&token) {
                return discord_error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
            }
            let content = body
                .as_ref()
                .and_then(|b| b["content"].as_str())
                .unwrap_or_default()
                .to_owned();
            s.discord
                .answers
                .entry(token.clone())
                .or_default()
                .push(content.clone());
            let interaction = s
                .discord_tokens
                .get(&token)
                .cloned()
                .unwrap_or_else(|| "unregistered".into());
            let components = body
                .as_ref()
                .map_or(Value::Null, |b| b["components"].clone());
            s.discord.answer_edits.push(AnswerEdit {
                application_id: p("webhook_id"),
                interaction,
                content: content.clone(),
                components,
            });
            let id = s.discord.id();
            Json(message_json(
                &id,
                "0",
                &bot_author(&sb),
                &content,
                &now_iso(),
            ))
            .into_response()
        }
        (
            "GET" | "PUT",
            "/applications/{application_id}/commands"
            | "/applications/{application_id}/guilds/{guild_id}/commands",
        ) => {
            if !bot_ok {
                return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
            if p("application_id") != sb.credentials.discord_application_id {
                return discord_error(StatusCode::FORBIDDEN, 50001, "Missing Access");
            }
            let scope = matched
                .params
                .get("guild_id")
                .cloned()
                .unwrap_or_else(|| "global".into());
            let mut s = sb.lock();
            if method == Method::PUT {
                let mut registered = Vec::new();
                for c in body
                    .as_ref()
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let id = s.discord.id();
                    let mut c = c.clone();
                    c["id"] = id.into();
                    c["application_id"] = p("application_id").into();
                    c["version"] = "1".into();
                    c["default_member_permissions"] = Value::Null;
                    c["nsfw"] = false.into();
                    if c.get("description").is_none() {
                        c["description"] = "".into();
                    }
                    registered.push(c);
                }
                s.discord.commands.insert(scope, registered.clone());
                s.discord.command_registrations += 1;
                Json(registered).into_response()
            } else {
                Json(s.discord.commands.get(&scope).cloned().unwrap_or_default()).into_response()
            }
        }
        (m, t) => {
            let why = format!("the Discord stand-in does not implement {m} {t}");
            sb.lock().violations.push(why.clone());
            discord_error(StatusCode::NOT_FOUND, 0, &why)
        }
    }
}

fn bot_author(sb: &Sandbox) -> Value {
    json!({
        "id": sb.credentials.discord_application_id,
        "username": "bugbot",
        "global_name": null,
        "avatar": null,
        "discriminator": "0",
        "public_flags": 0,
        "flags": 0,
        "bot": true
    })
}

/// A message object in the shape Discord returns.
pub fn message_json(id: &str, channel: &str, author: &Value, content: &str, at: &str) -> Value {
    json!({
        "type": 0,
        "id": id,
        "channel_id": channel,
        "author": author,
        "content": content,
        "timestamp": at,
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "flags": 0,
        "components": []
    })
}

/// `DiscordBot ($url, $versionNumber)`.
fn is_discord_bot_agent(agent: &str) -> bool {
    agent
        .strip_prefix("DiscordBot (")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|inner| inner.split_once(", "))
        .is_some_and(|(url, version)| url.starts_with("http") && !version.trim().is_empty())
}

fn now_iso() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000+00:00",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// A message a test puts in a channel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMessage {
    /// Author's user id.
    pub author_id: String,
    /// Author's user name.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub global_name: Option<String>,
    /// Text.
    pub content: String,
    /// When (ISO 8601); now when absent.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// `POST /_sandbox/discord/channels/{id}/messages[?parent_id=P]`: adds messages (oldest first) to a
/// channel, creating it (as a thread of `P` when given). Answers the created messages.
pub async fn seed_messages(
    State(sb): State<Sandbox>,
    Path(channel): Path<String>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
    Json(messages): Json<Vec<SeedMessage>>,
) -> Json<Vec<Value>> {
    let mut s = sb.lock();
    if let Some(parent) = query.get("parent_id") {
        s.discord
            .thread_parents
            .insert(channel.clone(), parent.clone());
    }
    let mut created = Vec::new();
    for m in messages {
        let id = s.discord.id();
        let author = json!({
            "id": m.author_id, "username": m.username, "global_name": m.global_name,
            "avatar": null, "discriminator": "0", "public_flags": 0, "flags": 0
        });
        let at = m.timestamp.unwrap_or_else(now_iso);
        created.push(message_json(&id, &channel, &author, &m.content, &at));
    }
    s.discord
        .channels
        .entry(channel)
        .or_default()
        .extend(created.iter().cloned());
    Json(created)
}

/// `POST /_sandbox/discord/interactions`: `{ "token": .., "interaction_id": .., "expired": bool }` —
/// names a token (so the state shows edits by interaction, never by token) and can expire it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionSeed {
    /// The interaction token the test signed into the interaction.
    pub token: String,
    /// The interaction's id.
    pub interaction_id: String,
    /// Answer edits with 401 "Invalid Webhook Token", as after 15 minutes.
    #[serde(default)]
    pub expired: bool,
}

/// Registers (and maybe expires) an interaction token.
pub async fn seed_interaction(
    State(sb): State<Sandbox>,
    Json(seed): Json<InteractionSeed>,
) -> StatusCode {
    let mut s = sb.lock();
    s.discord_tokens
        .insert(seed.token.clone(), seed.interaction_id);
    if seed.expired {
        s.discord.expired.insert(seed.token);
    }
    StatusCode::NO_CONTENT
}
