//! Discord interactions: the incoming model, the commands bugbot registers, and the decision of
//! what to do with an interaction (pure; the gateway performs it).

use crate::authz::AccessPolicy;
use crate::ids::{JobId, Snowflake};
use crate::job::{Command, JOB_MESSAGE_VERSION, JobMessage, Report, Requester, Source};
use crate::references;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The slash command's name.
pub const SLASH_COMMAND: &str = "bugbot";
/// Message context-menu command that contextualizes the target message.
pub const MESSAGE_CONTEXTUALIZE: &str = "Contextualize with bugbot";
/// Message context-menu command that fixes the target message.
pub const MESSAGE_FIX: &str = "Fix with bugbot";
/// The optional string option of the slash subcommands.
pub const DETAILS_OPTION: &str = "details";

/// Interaction types (Discord API: Interaction Object, Interaction Type).
mod kind {
    pub const PING: u8 = 1;
    pub const APPLICATION_COMMAND: u8 = 2;
    pub const MESSAGE_COMPONENT: u8 = 3;
    pub const AUTOCOMPLETE: u8 = 4;
}
/// Application command types.
mod command_kind {
    pub const CHAT_INPUT: u8 = 1;
    pub const MESSAGE: u8 = 3;
}
/// Ephemeral message flag.
const EPHEMERAL: u64 = 1 << 6;

/// The commands bugbot registers (`PUT /applications/{id}/commands` body).
pub fn command_definitions() -> Value {
    let details = json!({
        "type": 3, "name": DETAILS_OPTION, "required": false, "max_length": 1500,
        "description": "What is wrong, in a sentence or two (optional: bugbot reads the thread too)"
    });
    json!([
        {
            "type": command_kind::CHAT_INPUT,
            "name": SLASH_COMMAND,
            "description": "Turn this conversation into a Linear issue with context, or into a fix",
            "contexts": [0],
            "options": [
                {"type": 1, "name": "contextualize", "description": "Gather context into the Linear issue", "options": [details]},
                {"type": 1, "name": "fix", "description": "Contextualize, then open a pull request that fixes it", "options": [details]}
            ]
        },
        {"type": command_kind::MESSAGE, "name": MESSAGE_CONTEXTUALIZE, "contexts": [0]},
        {"type": command_kind::MESSAGE, "name": MESSAGE_FIX, "contexts": [0]}
    ])
}

/// A user as Discord sends it (only what bugbot reads).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// User id.
    pub id: Snowflake,
    /// Unique username.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub global_name: Option<String>,
    /// True for bot accounts.
    #[serde(default)]
    pub bot: bool,
}

impl User {
    /// The name to show.
    pub fn display_name(&self) -> &str {
        self.global_name.as_deref().unwrap_or(&self.username)
    }
}

/// A guild member.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// The user.
    pub user: User,
    /// Role ids.
    #[serde(default)]
    pub roles: Vec<Snowflake>,
}

/// A partial channel.
#[derive(Debug, Clone, Deserialize)]
pub struct PartialChannel {
    /// Channel id.
    pub id: Snowflake,
    /// Parent channel (for threads).
    #[serde(default)]
    pub parent_id: Option<Snowflake>,
}

/// A message (from `resolved.messages`).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Message id.
    pub id: Snowflake,
    /// Text.
    #[serde(default)]
    pub content: String,
    /// Author.
    pub author: User,
}

/// An option of a command.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandOption {
    /// Name.
    pub name: String,
    /// Option type.
    #[serde(rename = "type")]
    pub kind: u8,
    /// Value (for value options).
    #[serde(default)]
    pub value: Option<Value>,
    /// Nested options (for subcommands).
    #[serde(default)]
    pub options: Vec<CommandOption>,
}

/// Resolved data.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resolved {
    /// Messages by id.
    #[serde(default)]
    pub messages: HashMap<String, Message>,
}

/// Application command data.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandData {
    /// Command name (absent for a button press).
    #[serde(default)]
    pub name: String,
    /// A pressed button's id (message components).
    #[serde(default)]
    pub custom_id: Option<String>,
    /// Command type.
    #[serde(rename = "type", default = "chat_input")]
    pub kind: u8,
    /// Options.
    #[serde(default)]
    pub options: Vec<CommandOption>,
    /// Target of a message command.
    #[serde(default)]
    pub target_id: Option<Snowflake>,
    /// Resolved objects.
    #[serde(default)]
    pub resolved: Resolved,
}

fn chat_input() -> u8 {
    command_kind::CHAT_INPUT
}

/// An interaction (only what bugbot reads; unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    /// Interaction id.
    pub id: Snowflake,
    /// Application id.
    pub application_id: Snowflake,
    /// Interaction type.
    #[serde(rename = "type")]
    pub kind: u8,
    /// Command data.
    #[serde(default)]
    pub data: Option<CommandData>,
    /// Guild (absent in DMs).
    #[serde(default)]
    pub guild_id: Option<Snowflake>,
    /// Channel id.
    #[serde(default)]
    pub channel_id: Option<Snowflake>,
    /// Channel object.
    #[serde(default)]
    pub channel: Option<PartialChannel>,
    /// Member (in guilds).
    #[serde(default)]
    pub member: Option<Member>,
    /// User (in DMs).
    #[serde(default)]
    pub user: Option<User>,
    /// Continuation token (15 minutes).
    pub token: String,
}

/// What to do with an interaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer a PING.
    Pong,
    /// Enqueue the job (after dedupe and rate limit), then answer with a deferred message.
    Enqueue(Box<JobMessage>),
    /// Answer with an ephemeral message; enqueue nothing.
    Reply(String),
    /// Answer an autocomplete with no choices.
    NoChoices,
    /// A button on a job's message was pressed: steer that job.
    Steer {
        /// The job.
        job: JobId,
        /// The ask.
        ask: crate::steer::Ask,
    },
}

/// The body is not an interaction bugbot can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid interaction: {0}")]
pub struct InvalidInteraction(pub String);

/// Parses a verified body.
pub fn parse(body: &[u8]) -> Result<Interaction, InvalidInteraction> {
    serde_json::from_slice(body).map_err(|e| InvalidInteraction(e.to_string()))
}

/// Decides what to do with a verified interaction.
pub fn decide(i: &Interaction, policy: &AccessPolicy, now_ms: u64) -> Decision {
    match i.kind {
        kind::PING => return Decision::Pong,
        kind::APPLICATION_COMMAND => {}
        kind::AUTOCOMPLETE => return Decision::NoChoices,
        kind::MESSAGE_COMPONENT => return steer(i, policy),
        _ => {
            return Decision::Reply(
                "bugbot has no forms; use `/bugbot fix` or `/bugbot contextualize`.".into(),
            );
        }
    }
    let Some(data) = &i.data else {
        return Decision::Reply("This command came without its data; please try again.".into());
    };
    let Some((command, details, target)) = command_of(data) else {
        return Decision::Reply(format!(
            "bugbot doesn't know the command `{}`. Try `/bugbot contextualize` or `/bugbot fix`.",
            data.name
        ));
    };
    let (Some(guild_id), Some(member)) = (&i.guild_id, &i.member) else {
        return Decision::Reply(
            "bugbot works in server channels and threads, not in direct messages.".into(),
        );
    };
    let Some(channel_id) = i
        .channel_id
        .clone()
        .or_else(|| i.channel.as_ref().map(|c| c.id.clone()))
    else {
        return Decision::Reply("This command came without its channel; please try again.".into());
    };
    if member.user.bot {
        return Decision::Reply("bugbot does not take commands from bots.".into());
    }
    if let Err(refusal) = policy.discord_allows(guild_id, &member.roles, command) {
        return Decision::Reply(refusal.to_string());
    }

    let mut text = String::new();
    if let Some(m) = target {
        text.push_str(&format!(
            "{} wrote:\n{}",
            m.author.display_name(),
            m.content
        ));
    }
    if let Some(d) = details.filter(|d| !d.trim().is_empty()) {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(d);
    }
    let report = Report::new(None, &text);
    let references = references::extract(&report.text);
    Decision::Enqueue(Box::new(JobMessage {
        v: JOB_MESSAGE_VERSION,
        id: JobId::for_discord_interaction(&i.id),
        command,
        requester: Requester {
            id: member.user.id.to_string(),
            name: member.user.display_name().to_owned(),
        },
        source: Source::Discord {
            guild_id: guild_id.clone(),
            channel_id,
            parent_channel_id: i.channel.as_ref().and_then(|c| c.parent_id.clone()),
            message_id: target.map(|m| m.id.clone()),
            interaction_id: i.id.clone(),
            interaction_token: i.token.clone(),
            application_id: i.application_id.clone(),
        },
        report,
        references,
        enqueued_at_ms: now_ms,
        replay: 0,
        resume: None,
    }))
}

/// A button press on a job's message: who pressed what, and whether they may run fixes.
fn steer(i: &Interaction, policy: &AccessPolicy) -> Decision {
    let Some((action, job)) = i
        .data
        .as_ref()
        .and_then(|d| d.custom_id.as_deref())
        .and_then(crate::steer::parse_custom_id)
    else {
        return Decision::Reply("bugbot does not know this button.".into());
    };
    let (Some(guild_id), Some(member)) = (&i.guild_id, &i.member) else {
        return Decision::Reply("bugbot's buttons work in server channels only.".into());
    };
    if member.user.bot {
        return Decision::Reply("bugbot does not take commands from bots.".into());
    }
    Decision::Steer {
        job,
        ask: crate::steer::Ask {
            action,
            by: Requester {
                id: member.user.id.to_string(),
                name: member.user.display_name().to_owned(),
            },
            may_fix: policy
                .discord_allows(guild_id, &member.roles, Command::Fix)
                .is_ok(),
            interaction: Some(crate::steer::Interaction {
                id: i.id.clone(),
                token: i.token.clone(),
            }),
        },
    }
}

/// The command, its `details` text and its target message, if the data names a bugbot command.
fn command_of(data: &CommandData) -> Option<(Command, Option<&str>, Option<&Message>)> {
    match data.kind {
        command_kind::CHAT_INPUT if data.name == SLASH_COMMAND => {
            let sub = data.options.iter().find(|o| o.kind == 1)?;
            let command = match sub.name.as_str() {
                "contextualize" => Command::Contextualize,
                "fix" => Command::Fix,
                _ => return None,
            };
            let details = sub
                .options
                .iter()
                .find(|o| o.name == DETAILS_OPTION)
                .and_then(|o| o.value.as_ref())
                .and_then(Value::as_str);
            Some((command, details, None))
        }
        command_kind::MESSAGE => {
            let command = match data.name.as_str() {
                MESSAGE_CONTEXTUALIZE => Command::Contextualize,
                MESSAGE_FIX => Command::Fix,
                _ => return None,
            };
            let target = data
                .target_id
                .as_ref()
                .and_then(|t| data.resolved.messages.get(t.as_str()));
            Some((command, None, target))
        }
        _ => None,
    }
}

/// A `MESSAGE_CREATE` from the Gateway (only what bugbot reads).
#[derive(Debug, Clone, Deserialize)]
pub struct GatewayMessage {
    /// Message id.
    pub id: Snowflake,
    /// Channel or thread.
    pub channel_id: Snowflake,
    /// Server (absent in direct messages).
    #[serde(default)]
    pub guild_id: Option<Snowflake>,
    /// Author.
    pub author: User,
    /// The author's membership (roles).
    #[serde(default)]
    pub member: Option<GatewayMember>,
    /// Text.
    #[serde(default)]
    pub content: String,
}

/// The author's membership in a `MESSAGE_CREATE` (no user object inside).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewayMember {
    /// Role ids.
    #[serde(default)]
    pub roles: Vec<Snowflake>,
}

/// What to do with a message from the Gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum MentionDecision {
    /// Not for bugbot (no mention, a bot, no command): do nothing.
    Ignore,
    /// Enqueue the job (after dedupe by message id and the rate limit).
    Enqueue(Box<JobMessage>),
    /// Refuse politely in a reply; enqueue nothing.
    Refuse(String),
}

/// The command in a message that mentions bugbot (`<@id> fix ...`), and the text after it.
pub fn command_in_mention<'a>(content: &'a str, bot_id: &str) -> Option<(Command, &'a str)> {
    for tag in [format!("<@{bot_id}>"), format!("<@!{bot_id}>")] {
        if let Some(at) = content.find(&tag) {
            let rest = content[at + tag.len()..].trim_start();
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphabetic())
                .collect::<String>()
                .to_lowercase();
            let command = match word.as_str() {
                "fix" => Command::Fix,
                "contextualize" | "contextualise" => Command::Contextualize,
                _ => return None,
            };
            return Some((command, rest[word.len()..].trim()));
        }
    }
    None
}

/// Decides what to do with a message: a mention of bugbot with a command becomes the same job as
/// the slash command (same authorization), identified by the message id so that a replayed event
/// enqueues nothing twice.
pub fn decide_mention(
    m: &GatewayMessage,
    bot_id: &str,
    policy: &AccessPolicy,
    now_ms: u64,
) -> MentionDecision {
    if m.author.bot || m.author.id.as_str() == bot_id {
        return MentionDecision::Ignore;
    }
    let Some((command, details)) = command_in_mention(&m.content, bot_id) else {
        return MentionDecision::Ignore;
    };
    let Some(guild_id) = &m.guild_id else {
        return MentionDecision::Ignore;
    };
    let roles = m
        .member
        .as_ref()
        .map(|mm| mm.roles.clone())
        .unwrap_or_default();
    if let Err(refusal) = policy.discord_allows(guild_id, &roles, command) {
        return MentionDecision::Refuse(refusal.to_string());
    }
    let report = Report::new(None, details);
    let references = references::extract(&report.text);
    MentionDecision::Enqueue(Box::new(JobMessage {
        v: JOB_MESSAGE_VERSION,
        id: JobId::for_discord_message(&m.id),
        command,
        requester: Requester {
            id: m.author.id.to_string(),
            name: m.author.display_name().to_owned(),
        },
        source: Source::DiscordMention {
            guild_id: guild_id.clone(),
            channel_id: m.channel_id.clone(),
            message_id: m.id.clone(),
        },
        report,
        references,
        enqueued_at_ms: now_ms,
        replay: 0,
        resume: None,
    }))
}

/// The answer to a PING.
pub fn pong() -> Value {
    json!({ "type": 1 })
}

/// The deferred answer (type 5): Discord shows "bugbot is thinking…" until the consumer edits it.
pub fn deferred() -> Value {
    json!({ "type": 5 })
}

/// The answer to a button press that replaces the pressed message's text and buttons (and makes it
/// the press's `@original`, which the job then edits with the press's token).
pub fn update_message(content: &str, components: &Value) -> Value {
    json!({ "type": 7, "data": { "content": content, "components": components, "allowed_mentions": { "parse": [] } } })
}

/// An ephemeral message only the requester sees.
pub fn ephemeral(content: &str) -> Value {
    json!({ "type": 4, "data": { "content": content, "flags": EPHEMERAL } })
}

/// The answer to an autocomplete.
pub fn no_choices() -> Value {
    json!({ "type": 8, "data": { "choices": [] } })
}

#[cfg(test)]
mod mention_tests {
    use super::*;
    use crate::authz::PolicySettings;

    fn policy() -> AccessPolicy {
        AccessPolicy::from_settings(&PolicySettings {
            discord_guilds: Some("1"),
            discord_fix_roles: Some("7"),
            ..PolicySettings::default()
        })
        .unwrap()
    }

    fn message(content: &str, roles: &[&str], bot: bool) -> GatewayMessage {
        serde_json::from_value(json!({
            "id": "500", "channel_id": "20", "guild_id": "1",
            "author": {"id": "42", "username": "jane", "bot": bot},
            "member": {"roles": roles},
            "content": content
        }))
        .unwrap()
    }

    #[test]
    fn mentions_become_jobs_with_the_same_rules() {
        let d = decide_mention(
            &message("<@99> fix the cart total", &["7"], false),
            "99",
            &policy(),
            5,
        );
        let MentionDecision::Enqueue(job) = d else {
            panic!("{d:?}")
        };
        assert_eq!(job.id.as_str(), "dm-500");
        assert_eq!(job.command, Command::Fix);
        assert_eq!(job.report.text, "the cart total");
        assert!(matches!(job.source, Source::DiscordMention { .. }));

        let ok = decide_mention(
            &message("hey <@!99> contextualize", &[], false),
            "99",
            &policy(),
            5,
        );
        assert!(matches!(ok, MentionDecision::Enqueue(j) if j.command == Command::Contextualize));
        assert!(matches!(
            decide_mention(&message("<@99> fix", &[], false), "99", &policy(), 5),
            MentionDecision::Refuse(r) if r.contains("role")
        ));
        for ignored in [
            message("<@99> fix it", &["7"], true),
            message("fix it", &["7"], false),
            message("<@99> hello", &["7"], false),
            message("<@98> fix", &["7"], false),
        ] {
            assert_eq!(
                decide_mention(&ignored, "99", &policy(), 5),
                MentionDecision::Ignore
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::PolicySettings;

    fn policy() -> AccessPolicy {
        AccessPolicy::from_settings(&PolicySettings {
            discord_guilds: Some("100"),
            discord_fix_roles: Some("7"),
            ..Default::default()
        })
        .unwrap()
    }

    fn slash(sub: &str, details: Option<&str>, roles: &[&str]) -> Value {
        let mut options = vec![];
        if let Some(d) = details {
            options.push(json!({"name": "details", "type": 3, "value": d}));
        }
        json!({
            "id": "900", "application_id": "1", "type": 2, "token": "tok", "version": 1,
            "guild_id": "100", "channel_id": "300",
            "channel": {"id": "300", "type": 11, "parent_id": "299"},
            "member": {"user": {"id": "42", "username": "jane", "global_name": "Jane"}, "roles": roles},
            "data": {"id": "5", "name": "bugbot", "type": 1,
                     "options": [{"name": sub, "type": 1, "options": options}]}
        })
    }

    fn decide_json(v: &Value) -> Decision {
        decide(&parse(v.to_string().as_bytes()).unwrap(), &policy(), 1000)
    }

    #[test]
    fn ping() {
        let v = json!({"id": "1", "application_id": "2", "type": 1, "token": "t", "version": 1});
        assert_eq!(decide_json(&v), Decision::Pong);
    }

    #[test]
    fn a_button_press_steers_its_job() {
        let press = |custom_id: &str, roles: &[&str]| {
            json!({
                "id": "901", "application_id": "1", "type": 3, "token": "press-tok", "version": 1,
                "guild_id": "100", "channel_id": "300",
                "member": {"user": {"id": "43", "username": "bob"}, "roles": roles},
                "message": {"id": "77", "content": "working"},
                "data": {"custom_id": custom_id, "component_type": 2}
            })
        };
        let Decision::Steer { job, ask } = decide_json(&press("bugbot:stop:dc-900", &["7"])) else {
            panic!("a steer")
        };
        assert_eq!(job.as_str(), "dc-900");
        assert_eq!(ask.action, crate::steer::Action::Stop);
        assert_eq!((ask.by.id.as_str(), ask.may_fix), ("43", true));
        assert_eq!(ask.interaction.unwrap().token, "press-tok");
        let Decision::Steer { ask, .. } = decide_json(&press("bugbot:retry:dc-900", &[])) else {
            panic!("a steer")
        };
        assert!(!ask.may_fix, "no fix role");
        assert!(matches!(
            decide_json(&press("someone-else:x", &["7"])),
            Decision::Reply(_)
        ));
    }

    #[test]
    fn slash_fix_becomes_a_job() {
        let d = decide_json(&slash(
            "fix",
            Some("Cart total is wrong, see ENG-12"),
            &["7"],
        ));
        let Decision::Enqueue(job) = d else {
            panic!("expected a job, got {d:?}")
        };
        assert_eq!(job.id.as_str(), "dc-900");
        assert_eq!(job.command, Command::Fix);
        assert_eq!(job.requester.name, "Jane");
        assert_eq!(job.report.text, "Cart total is wrong, see ENG-12");
        assert_eq!(job.references.linear_issues, vec!["ENG-12"]);
        match &job.source {
            Source::Discord {
                channel_id,
                parent_channel_id,
                interaction_token,
                ..
            } => {
                assert_eq!(channel_id.as_str(), "300");
                assert_eq!(parent_channel_id.as_ref().unwrap().as_str(), "299");
                assert_eq!(interaction_token, "tok");
            }
            other => panic!("unexpected source {other:?}"),
        }
    }

    #[test]
    fn fix_needs_the_role_contextualize_does_not() {
        assert!(matches!(
            decide_json(&slash("fix", None, &["8"])),
            Decision::Reply(r) if r.contains("role")
        ));
        assert!(matches!(
            decide_json(&slash("contextualize", None, &[])),
            Decision::Enqueue(_)
        ));
    }

    #[test]
    fn other_guilds_and_dms_are_refused() {
        let mut v = slash("contextualize", None, &[]);
        v["guild_id"] = "101".into();
        assert!(matches!(decide_json(&v), Decision::Reply(r) if r.contains("not set up")));
        let mut v = slash("contextualize", None, &[]);
        v.as_object_mut().unwrap().remove("guild_id");
        v.as_object_mut().unwrap().remove("member");
        v["user"] = json!({"id": "42", "username": "jane"});
        assert!(matches!(decide_json(&v), Decision::Reply(r) if r.contains("direct messages")));
    }

    #[test]
    fn message_command_reports_the_target_message() {
        let v = json!({
            "id": "901", "application_id": "1", "type": 2, "token": "tok",
            "guild_id": "100", "channel_id": "300",
            "member": {"user": {"id": "42", "username": "jane"}, "roles": ["7"]},
            "data": {"id": "6", "name": "Fix with bugbot", "type": 3, "target_id": "555",
                "resolved": {"messages": {"555": {"id": "555", "content": "Checkout crashes for bob@example.com",
                    "author": {"id": "43", "username": "bob"}}}}}
        });
        let Decision::Enqueue(job) = decide_json(&v) else {
            panic!("expected a job")
        };
        assert_eq!(job.command, Command::Fix);
        assert_eq!(
            job.report.text,
            "bob wrote:\nCheckout crashes for bob@example.com"
        );
        assert_eq!(job.references.emails, vec!["bob@example.com"]);
        assert!(
            matches!(&job.source, Source::Discord { message_id: Some(m), .. } if m.as_str() == "555")
        );
    }

    #[test]
    fn unknown_commands_and_types_get_a_clear_reply() {
        let mut v = slash("fix", None, &["7"]);
        v["data"]["name"] = "other".into();
        assert!(matches!(decide_json(&v), Decision::Reply(r) if r.contains("`other`")));
        let mut v = slash("fix", None, &["7"]);
        v["data"]["options"][0]["name"] = "explode".into();
        assert!(matches!(decide_json(&v), Decision::Reply(_)));
        let mut v = slash("fix", None, &["7"]);
        v["type"] = 3.into();
        assert!(matches!(decide_json(&v), Decision::Reply(_)));
        v["type"] = 4.into();
        assert_eq!(decide_json(&v), Decision::NoChoices);
    }

    #[test]
    fn malformed_interactions_are_errors() {
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"{"id":"x","application_id":"1","type":1,"token":"t"}"#).is_err());
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn command_definitions_name_every_command() {
        let defs = command_definitions();
        let names: Vec<&str> = defs
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![SLASH_COMMAND, MESSAGE_CONTEXTUALIZE, MESSAGE_FIX]
        );
    }
}
