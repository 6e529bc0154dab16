//! Discord's HTTP API (v10), the calls the consumer makes: read a thread's recent messages, edit the
//! deferred interaction answer, and post to a channel when the interaction token has expired.

use crate::http::{ApiError, HttpRequest, HttpResponse, Method, Service, encode};
use crate::ids::Snowflake;
use serde::Deserialize;
use serde_json::json;

/// How many recent messages of a thread the context packet looks at.
pub const CONVERSATION_LIMIT: u32 = 50;

/// Discord refuses message content longer than this.
pub const MAX_CONTENT_CHARS: usize = 2000;

/// Where and how to reach Discord.
#[derive(Debug, Clone)]
pub struct DiscordApi {
    base_url: String,
    bot_token: String,
}

impl DiscordApi {
    /// A client for `base_url` (`https://discord.com/api/v10`, or the sandbox's).
    pub fn new(base_url: &str, bot_token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            bot_token: bot_token.to_owned(),
        }
    }

    fn bot(&self, method: Method, path: &str) -> HttpRequest {
        HttpRequest::new(Service::Discord, method, format!("{}{path}", self.base_url))
            .header("authorization", format!("Bot {}", self.bot_token))
    }

    /// The channel's (thread's) most recent messages, newest first.
    pub fn channel_messages(&self, channel: &Snowflake) -> HttpRequest {
        self.bot(
            Method::Get,
            &format!("/channels/{channel}/messages?limit={CONVERSATION_LIMIT}"),
        )
    }

    /// A channel or thread (for a thread: its parent channel).
    pub fn channel(&self, channel: &Snowflake) -> HttpRequest {
        self.bot(Method::Get, &format!("/channels/{channel}"))
    }

    /// Edits the deferred answer of an interaction (the token authenticates; no bot token).
    pub fn edit_original(
        &self,
        application: &Snowflake,
        token: &str,
        content: &str,
        components: Option<&serde_json::Value>,
    ) -> HttpRequest {
        HttpRequest::new(
            Service::Discord,
            Method::Patch,
            format!(
                "{}/webhooks/{application}/{}/messages/@original",
                self.base_url,
                encode(token)
            ),
        )
        .json(&message_body(content, components))
    }

    /// Posts a message to a channel with the bot token. `nonce` (see [`nonce`]) with
    /// `enforce_nonce` makes a repeated post within a few minutes return the first message instead
    /// of a second one, so a post whose answer was lost can be sent again.
    pub fn create_message(
        &self,
        channel: &Snowflake,
        content: &str,
        components: Option<&serde_json::Value>,
        nonce: &str,
    ) -> HttpRequest {
        let mut body = message_body(content, components);
        body["nonce"] = nonce.into();
        body["enforce_nonce"] = true.into();
        self.bot(Method::Post, &format!("/channels/{channel}/messages"))
            .json(&body)
    }
}

/// A message nonce for one purpose of one job: the same on every retry, at most 25 characters
/// (Discord's limit).
pub fn nonce(job_id: &str, purpose: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{job_id}|{purpose}").as_bytes());
    format!("bb{}", &hex::encode(digest)[..22])
}

impl DiscordApi {
    /// Replies to a message in its channel (the reply references it; nobody is pinged).
    pub fn create_reply(
        &self,
        channel: &Snowflake,
        reply_to: &Snowflake,
        content: &str,
        components: Option<&serde_json::Value>,
        nonce: &str,
    ) -> HttpRequest {
        let mut body = message_body(content, components);
        body["message_reference"] = json!({ "message_id": reply_to, "fail_if_not_exists": false });
        body["nonce"] = nonce.into();
        body["enforce_nonce"] = true.into();
        self.bot(Method::Post, &format!("/channels/{channel}/messages"))
            .json(&body)
    }

    /// Edits one of bugbot's messages.
    pub fn edit_message(
        &self,
        channel: &Snowflake,
        message: &str,
        content: &str,
        components: Option<&serde_json::Value>,
    ) -> HttpRequest {
        self.bot(
            Method::Patch,
            &format!("/channels/{channel}/messages/{}", encode(message)),
        )
        .json(&message_body(content, components))
    }

    fn commands_path(application: &Snowflake, guild: Option<&Snowflake>) -> String {
        match guild {
            Some(g) => format!("/applications/{application}/guilds/{g}/commands"),
            None => format!("/applications/{application}/commands"),
        }
    }

    /// The application's registered commands (global, or one guild's).
    pub fn list_commands(&self, application: &Snowflake, guild: Option<&Snowflake>) -> HttpRequest {
        self.bot(Method::Get, &Self::commands_path(application, guild))
    }

    /// Replaces the application's commands with `commands` (Discord's bulk overwrite).
    pub fn put_commands(
        &self,
        application: &Snowflake,
        guild: Option<&Snowflake>,
        commands: &serde_json::Value,
    ) -> HttpRequest {
        self.bot(Method::Put, &Self::commands_path(application, guild))
            .json(commands)
    }
}

#[derive(Deserialize)]
struct Channel {
    #[serde(default)]
    parent_id: Option<String>,
}

/// Parses a channel: its parent (a thread's channel), if any.
pub fn parse_parent(response: &HttpResponse) -> Result<Option<String>, ApiError> {
    response
        .json::<Channel>(Service::Discord)
        .map(|c| c.parent_id)
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

/// Parses a created message: its id.
pub fn parse_created_id(response: &HttpResponse) -> Result<String, ApiError> {
    response.json::<Created>(Service::Discord).map(|c| c.id)
}

/// Parses a command list.
pub fn parse_commands(response: &HttpResponse) -> Result<serde_json::Value, ApiError> {
    response.json(Service::Discord)
}

/// The parts of a command definition registration decides on (Discord adds ids, versions and
/// defaults to what it returns), as a comparable value.
fn normalize_command(c: &serde_json::Value) -> serde_json::Value {
    fn option(o: &serde_json::Value) -> serde_json::Value {
        json!({
            "type": o["type"],
            "name": o["name"],
            "description": o["description"].as_str().unwrap_or_default(),
            "required": o["required"].as_bool().unwrap_or(false),
            "max_length": o["max_length"],
            "options": o["options"].as_array().map(|a| a.iter().map(option).collect::<Vec<_>>()).unwrap_or_default(),
        })
    }
    let mut n = option(c);
    n["contexts"] = c["contexts"].clone();
    n
}

/// True when the registered commands are exactly the wanted ones (in any order).
pub fn commands_match(registered: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    let set = |v: &serde_json::Value| {
        let mut all: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| normalize_command(c).to_string())
            .collect();
        all.sort();
        all
    };
    set(registered) == set(wanted)
}

/// A message body that pings nobody (a report may quote `@everyone`).
/// A message's body; `components` (buttons) replace the message's own when given (an empty list
/// removes them).
fn message_body(content: &str, components: Option<&serde_json::Value>) -> serde_json::Value {
    let mut body = json!({ "content": fit(content), "allowed_mentions": { "parse": [] } });
    if let Some(c) = components {
        body["components"] = c.clone();
    }
    body
}

/// Cuts content to Discord's limit.
pub fn fit(content: &str) -> String {
    if content.chars().count() <= MAX_CONTENT_CHARS {
        return content.to_owned();
    }
    let mut out: String = content.chars().take(MAX_CONTENT_CHARS - 1).collect();
    out.push('…');
    out
}

/// True when editing the deferred answer failed because the interaction token expired (after 15
/// minutes Discord answers 401 "Invalid Webhook Token" or 404 "Unknown Webhook").
pub fn is_expired_interaction(error: &ApiError) -> bool {
    matches!(error.status(), Some(401 | 404))
}

/// A message author.
#[derive(Debug, Clone, Deserialize)]
pub struct Author {
    /// User id.
    pub id: String,
    /// User name.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub global_name: Option<String>,
    /// True for bots.
    #[serde(default)]
    pub bot: bool,
}

/// A message in a channel (the fields the packet uses).
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelMessage {
    /// Message id.
    pub id: String,
    /// Text.
    #[serde(default)]
    pub content: String,
    /// Author.
    pub author: Author,
    /// When it was sent (ISO 8601).
    pub timestamp: String,
    /// Files (only counted: a message with a file is not empty).
    #[serde(default)]
    pub attachments: Vec<serde_json::Value>,
    /// Embeds (only counted, as attachments).
    #[serde(default)]
    pub embeds: Vec<serde_json::Value>,
}

/// Whether Discord withheld the messages' text: every message from a person came back with no
/// content, file or embed. That is how Discord answers a bot without the Message Content intent
/// (messages that mention the bot are the exception).
pub fn content_withheld(messages: &[ChannelMessage]) -> bool {
    let mut people = messages.iter().filter(|m| !m.author.bot).peekable();
    people.peek().is_some()
        && people.all(|m| m.content.is_empty() && m.attachments.is_empty() && m.embeds.is_empty())
}

/// What the packet says when Discord withheld a conversation's text.
pub const CONTENT_WITHHELD: &str = "Discord returned the conversation without its text: the Message \
    Content intent is not enabled for this bot (Discord Developer Portal → your application → Bot → \
    Privileged Gateway Intents)";

/// Parses a message list (Discord returns newest first).
pub fn parse_messages(response: &HttpResponse) -> Result<Vec<ChannelMessage>, ApiError> {
    response.json(Service::Discord)
}

/// Checks a write succeeded.
pub fn parse_ok(response: &HttpResponse) -> Result<(), ApiError> {
    if response.is_success() {
        Ok(())
    } else {
        Err(ApiError::from_status(Service::Discord, response))
    }
}

/// The web URL of a channel or thread.
pub fn channel_url(guild: &Snowflake, channel: &Snowflake) -> String {
    format!("https://discord.com/channels/{guild}/{channel}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn withheld_content_is_recognised() {
        let message = |content: &str, bot: bool| ChannelMessage {
            id: "1".into(),
            content: content.into(),
            author: Author {
                id: "2".into(),
                username: "jane".into(),
                global_name: None,
                bot,
            },
            timestamp: "2026-11-30T10:00:00Z".into(),
            attachments: Vec::new(),
            embeds: Vec::new(),
        };
        assert!(content_withheld(&[
            message("", false),
            message("progress", true)
        ]));
        assert!(!content_withheld(&[
            message("", false),
            message("it broke", false)
        ]));
        assert!(
            !content_withheld(&[message("progress", true)]),
            "no person spoke"
        );
        assert!(!content_withheld(&[]));
    }

    use super::*;

    #[test]
    fn requests() {
        let api = DiscordApi::new("http://sb/discord/api/v10/", "bot-tok");
        let ch = Snowflake::parse("10").unwrap();
        let r = api.channel_messages(&ch);
        assert_eq!(
            r.url,
            "http://sb/discord/api/v10/channels/10/messages?limit=50"
        );
        assert!(
            r.headers
                .contains(&("authorization".into(), "Bot bot-tok".into()))
        );
        let e = api.edit_original(&Snowflake::parse("3").unwrap(), "tok", "hi @everyone", None);
        assert_eq!(
            e.url,
            "http://sb/discord/api/v10/webhooks/3/tok/messages/@original"
        );
        assert!(!e.headers.iter().any(|(n, _)| n == "authorization"));
        assert!(e.body.unwrap().contains("\"parse\":[]"));
        assert_eq!(fit(&"x".repeat(3000)).chars().count(), MAX_CONTENT_CHARS);
    }

    #[test]
    fn registered_commands_compare_without_discords_additions() {
        let wanted = crate::discord::command_definitions();
        let mut registered = wanted.clone();
        for (i, c) in registered.as_array_mut().unwrap().iter_mut().enumerate() {
            c["id"] = format!("{i}").into();
            c["version"] = "1".into();
            c["default_member_permissions"] = serde_json::Value::Null;
            if c.get("description").is_none() {
                c["description"] = "".into();
            }
        }
        registered.as_array_mut().unwrap().reverse();
        assert!(commands_match(&registered, &wanted));
        registered[0]["name"] = "renamed".into();
        assert!(!commands_match(&registered, &wanted));
        assert!(!commands_match(&json!([]), &wanted));
    }

    #[test]
    fn expired_tokens() {
        let r = |s| HttpResponse {
            status: s,
            retry_after: None,
            body: String::new(),
            ..Default::default()
        };
        assert!(is_expired_interaction(&ApiError::from_status(
            Service::Discord,
            &r(401)
        )));
        assert!(is_expired_interaction(&ApiError::from_status(
            Service::Discord,
            &r(404)
        )));
        assert!(!is_expired_interaction(&ApiError::from_status(
            Service::Discord,
            &r(500)
        )));
    }
}
