//! Discord's Gateway (WebSocket) protocol, as bugbot's connection speaks it: a pure state machine.
//!
//! The Durable Object that holds the connection feeds it what arrives (frames, a heartbeat timer,
//! a closed socket) and performs the [`Action`]s it returns. Keeping the protocol here makes every
//! rule — identify or resume, heartbeat at HELLO's interval, reconnect when an ACK is missed, back off
//! on repeated failures — testable without a socket.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Gateway opcodes bugbot uses.
pub mod op {
    /// An event (`t` names it, `s` is its sequence).
    pub const DISPATCH: u8 = 0;
    /// Heartbeat (both directions).
    pub const HEARTBEAT: u8 = 1;
    /// Identify (new session).
    pub const IDENTIFY: u8 = 2;
    /// Resume (after a drop).
    pub const RESUME: u8 = 6;
    /// Discord asks for a reconnect (then a resume).
    pub const RECONNECT: u8 = 7;
    /// The session is invalid (`d`: whether it can be resumed).
    pub const INVALID_SESSION: u8 = 9;
    /// First frame: the heartbeat interval.
    pub const HELLO: u8 = 10;
    /// Heartbeat acknowledged.
    pub const HEARTBEAT_ACK: u8 = 11;
}

/// Intents: guilds (1 << 0), guild messages (1 << 9), message content (1 << 15).
pub const INTENTS: u64 = (1 << 0) | (1 << 9) | (1 << 15);

/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// One frame as Discord sends it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Frame {
    /// Opcode.
    pub op: u8,
    /// Payload.
    #[serde(default)]
    pub d: Value,
    /// Sequence (dispatches only).
    #[serde(default)]
    pub s: Option<u64>,
    /// Event name (dispatches only).
    #[serde(default)]
    pub t: Option<String>,
}

/// What the connection holder must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this frame (JSON text).
    Send(Value),
    /// Send the next heartbeat after this many ms (and keep doing so).
    HeartbeatEvery(u64),
    /// Close the socket and connect again after this many ms (to `url`, the resume URL when there
    /// is a session to resume).
    Reconnect {
        /// Delay before connecting.
        after_ms: u64,
        /// Where to connect (without query).
        url: Option<String>,
    },
    /// Stop: Discord closed with a code after which reconnecting cannot help, and every IDENTIFY
    /// spends one of the bot's 1,000 daily session starts. An operator must act, then start again.
    Stop(Stopped),
    /// An event for bugbot (a `MESSAGE_CREATE`).
    Event {
        /// Event name.
        name: String,
        /// Its data.
        data: Value,
    },
}

/// Why the connection stopped for good (until an operator starts it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// Discord's close code, when Discord closed the connection.
    pub code: Option<u16>,
    /// What it means, in words, with what to do.
    pub reason: String,
}

/// The close codes after which Discord must not be reconnected to, in words (Discord's Gateway
/// reference, "Gateway Close Event Codes": 4004, 4010–4014 are not to be reconnected).
pub fn fatal_close(code: u16) -> Option<&'static str> {
    Some(match code {
        4004 => "Discord refused the bot token (authentication failed): check DISCORD_BOT_TOKEN",
        4010 => "Discord refused the shard bugbot sent (invalid shard)",
        4011 => {
            "Discord requires this bot to shard its Gateway connection (it is in too many servers for one)"
        }
        4012 => "Discord refused the Gateway API version bugbot speaks (invalid API version)",
        4013 => "Discord refused the intents bugbot asked for (invalid intents)",
        4014 => {
            "the Message Content intent is not enabled for this bot: enable it in the Discord \
             Developer Portal (your application → Bot → Privileged Gateway Intents), then start \
             the connection again"
        }
        _ => return None,
    })
}

/// What the connection knows between frames (persisted by the Durable Object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The session to resume, once READY named one.
    pub session_id: Option<String>,
    /// Where to resume.
    pub resume_url: Option<String>,
    /// The last sequence received.
    pub seq: Option<u64>,
    /// bugbot's own user id (from READY), to recognise mentions.
    pub bot_user_id: Option<String>,
    /// A heartbeat was sent and its ACK has not come yet.
    pub awaiting_ack: bool,
    /// Connection attempts that failed in a row (for backoff).
    pub failures: u32,
    /// Resumes done (for the status endpoint).
    pub resumes: u32,
    /// True between READY/RESUMED and the next drop.
    pub connected: bool,
}

impl Session {
    fn identify(token: &str) -> Value {
        json!({
            "op": op::IDENTIFY,
            "d": {
                "token": token,
                "intents": INTENTS,
                "properties": { "os": "cloudflare", "browser": "bugbot", "device": "bugbot" }
            }
        })
    }

    fn heartbeat(&self) -> Value {
        json!({ "op": op::HEARTBEAT, "d": self.seq })
    }

    /// Delay before the next connection attempt: doubling from 1 s, at most [`MAX_BACKOFF_MS`].
    pub fn backoff_ms(&self) -> u64 {
        (1000u64 << self.failures.min(6)).min(MAX_BACKOFF_MS)
    }

    /// A frame arrived. `token` is the bot token (for IDENTIFY / RESUME only).
    pub fn on_frame(&mut self, frame: Frame, token: &str) -> Vec<Action> {
        if let Some(s) = frame.s {
            self.seq = Some(self.seq.map_or(s, |old| old.max(s)));
        }
        match frame.op {
            op::HELLO => {
                let interval = frame.d["heartbeat_interval"].as_u64().unwrap_or(41_250);
                self.awaiting_ack = false;
                let first = match (&self.session_id, self.seq) {
                    (Some(session), Some(seq)) => json!({
                        "op": op::RESUME,
                        "d": { "token": token, "session_id": session, "seq": seq }
                    }),
                    _ => Self::identify(token),
                };
                vec![Action::Send(first), Action::HeartbeatEvery(interval)]
            }
            op::HEARTBEAT => vec![Action::Send(self.heartbeat())],
            op::HEARTBEAT_ACK => {
                self.awaiting_ack = false;
                Vec::new()
            }
            op::RECONNECT => {
                self.connected = false;
                vec![Action::Reconnect {
                    after_ms: 0,
                    url: self.resume_url.clone(),
                }]
            }
            op::INVALID_SESSION => {
                self.connected = false;
                if frame.d.as_bool() != Some(true) {
                    // Not resumable: start a new session.
                    self.session_id = None;
                    self.seq = None;
                    self.resume_url = None;
                }
                // Discord asks for a 1–5 s wait before identifying again.
                vec![Action::Reconnect {
                    after_ms: 2000,
                    url: self.resume_url.clone(),
                }]
            }
            op::DISPATCH => {
                let name = frame.t.unwrap_or_default();
                match name.as_str() {
                    "READY" => {
                        self.session_id = frame.d["session_id"].as_str().map(str::to_owned);
                        self.resume_url = frame.d["resume_gateway_url"].as_str().map(str::to_owned);
                        self.bot_user_id = frame.d["user"]["id"].as_str().map(str::to_owned);
                        self.connected = true;
                        self.failures = 0;
                        Vec::new()
                    }
                    "RESUMED" => {
                        self.connected = true;
                        self.failures = 0;
                        self.resumes += 1;
                        Vec::new()
                    }
                    "MESSAGE_CREATE" => vec![Action::Event {
                        name,
                        data: frame.d,
                    }],
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// The heartbeat timer fired. A heartbeat whose ACK never came means a zombie connection:
    /// reconnect (and resume) instead of sending another.
    pub fn on_heartbeat_due(&mut self) -> Vec<Action> {
        if self.awaiting_ack {
            self.connected = false;
            self.failures += 1;
            return vec![Action::Reconnect {
                after_ms: self.backoff_ms(),
                url: self.resume_url.clone(),
            }];
        }
        self.awaiting_ack = true;
        vec![Action::Send(self.heartbeat())]
    }

    /// The socket closed or could not be opened. Some close codes forbid resuming or reconnecting.
    pub fn on_closed(&mut self, code: Option<u16>) -> Vec<Action> {
        self.connected = false;
        self.awaiting_ack = false;
        self.failures += 1;
        if let Some(reason) = code.and_then(fatal_close) {
            // Whatever the operator changes, the next start identifies anew.
            self.session_id = None;
            self.seq = None;
            self.resume_url = None;
            return vec![Action::Stop(Stopped {
                code,
                reason: format!(
                    "{reason} (Discord closed the connection with {})",
                    code.unwrap_or_default()
                ),
            })];
        }
        match code {
            // Invalid sequence, session timed out: identify anew.
            Some(4007 | 4009) => {
                self.session_id = None;
                self.seq = None;
                vec![Action::Reconnect {
                    after_ms: self.backoff_ms(),
                    url: None,
                }]
            }
            _ => vec![Action::Reconnect {
                after_ms: self.backoff_ms(),
                url: self.resume_url.clone(),
            }],
        }
    }
}

/// The `wss://` URL to connect to, with the version and encoding Discord wants.
pub fn connect_url(base: &str) -> String {
    format!("{}/?v=10&encoding=json", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: Value) -> Frame {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn identifies_then_heartbeats_then_resumes_after_a_drop() {
        let mut s = Session::default();
        let a = s.on_frame(
            frame(json!({"op": 10, "d": {"heartbeat_interval": 45000}})),
            "tok",
        );
        assert!(matches!(&a[0], Action::Send(v) if v["op"] == 2 && v["d"]["intents"] == INTENTS));
        assert_eq!(a[1], Action::HeartbeatEvery(45000));
        s.on_frame(frame(json!({"op": 0, "t": "READY", "s": 1, "d": {"session_id": "abc", "resume_gateway_url": "wss://resume", "user": {"id": "99"}}})), "tok");
        assert!(s.connected);
        assert_eq!(s.bot_user_id.as_deref(), Some("99"));
        let ev = s.on_frame(
            frame(json!({"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": {"id": "m1"}})),
            "tok",
        );
        assert!(matches!(&ev[0], Action::Event { name, .. } if name == "MESSAGE_CREATE"));

        let hb = s.on_heartbeat_due();
        assert!(matches!(&hb[0], Action::Send(v) if v["op"] == 1 && v["d"] == 2));
        s.on_frame(frame(json!({"op": 11})), "tok");
        assert!(!s.awaiting_ack);

        let closed = s.on_closed(Some(1006));
        assert!(
            matches!(&closed[0], Action::Reconnect { url: Some(u), .. } if u == "wss://resume")
        );
        let again = s.on_frame(
            frame(json!({"op": 10, "d": {"heartbeat_interval": 45000}})),
            "tok",
        );
        assert!(
            matches!(&again[0], Action::Send(v) if v["op"] == 6 && v["d"]["session_id"] == "abc" && v["d"]["seq"] == 2)
        );
        s.on_frame(
            frame(json!({"op": 0, "t": "RESUMED", "s": 3, "d": null})),
            "tok",
        );
        assert_eq!(s.resumes, 1);
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn a_missed_ack_reconnects_with_backoff() {
        let mut s = Session {
            session_id: Some("x".into()),
            seq: Some(5),
            ..Session::default()
        };
        assert!(matches!(&s.on_heartbeat_due()[0], Action::Send(_)));
        let r = s.on_heartbeat_due();
        assert!(
            matches!(r[0], Action::Reconnect { after_ms: 2000, .. }),
            "{r:?}"
        );
        s.failures = 20;
        assert_eq!(s.backoff_ms(), MAX_BACKOFF_MS);
    }

    #[test]
    fn invalid_sessions_and_fatal_closes() {
        let mut s = Session {
            session_id: Some("x".into()),
            seq: Some(5),
            ..Session::default()
        };
        s.on_frame(frame(json!({"op": 9, "d": false})), "tok");
        assert_eq!(s.session_id, None);
        let hello = s.on_frame(
            frame(json!({"op": 10, "d": {"heartbeat_interval": 1000}})),
            "tok",
        );
        assert!(
            matches!(&hello[0], Action::Send(v) if v["op"] == 2),
            "identify anew"
        );
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            assert!(
                matches!(&s.on_closed(Some(code))[..], [Action::Stop(Stopped { code: Some(c), .. })] if *c == code),
                "{code} stops the connection"
            );
        }
        s.session_id = Some("x".into());
        let [Action::Stop(stopped)] = &s.on_closed(Some(4014))[..] else {
            panic!("4014 stops")
        };
        assert_eq!(s.session_id, None, "the next start identifies anew");
        assert!(
            stopped
                .reason
                .contains("Message Content intent is not enabled")
                && stopped.reason.contains("4014"),
            "{}",
            stopped.reason
        );
        for code in [1000, 1006, 4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009] {
            assert!(
                matches!(&s.on_closed(Some(code))[..], [Action::Reconnect { .. }]),
                "{code} reconnects"
            );
        }
        assert_eq!(
            connect_url("wss://gateway.discord.gg"),
            "wss://gateway.discord.gg/?v=10&encoding=json"
        );
    }
}
