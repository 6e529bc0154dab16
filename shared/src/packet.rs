//! The context packet: the Markdown comment bugbot posts on the Linear issue.
//!
//! It says what was reported, by whom and when, quotes the conversation, lists the references and
//! the PostHog recordings, and says plainly what bugbot could not find.

use crate::job::Report;
use crate::references::References;
use std::fmt::Write;

/// Longest excerpt of one conversation message.
pub const MAX_MESSAGE_CHARS: usize = 600;

/// A message of the conversation, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationMessage {
    /// Display name.
    pub author: String,
    /// When (ISO 8601, as the platform gave it).
    pub at: String,
    /// Text.
    pub text: String,
}

/// A recording, summarised for the packet.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingSummary {
    /// Session id.
    pub session_id: String,
    /// Replay page.
    pub replay_url: String,
    /// Start (ISO 8601).
    pub started_at: Option<String>,
    /// Length in seconds.
    pub duration_secs: Option<f64>,
    /// Console errors.
    pub console_errors: Option<u64>,
    /// Clicks.
    pub clicks: Option<u64>,
    /// First URL.
    pub start_url: Option<String>,
    /// How bugbot found it ("named in the report", "recent session of jane@acme.io").
    pub found_by: String,
}

/// Everything the packet shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextPacket {
    /// The job that gathered it.
    pub job_id: String,
    /// Who asked.
    pub requester: String,
    /// When the job was accepted (ms since the Unix epoch).
    pub requested_at_ms: u64,
    /// Where ("Discord thread", "GitHub issue acme/web-app#7").
    pub source_label: String,
    /// Link to the source.
    pub source_url: String,
    /// The report.
    pub report: Report,
    /// The conversation, oldest first.
    pub conversation: Vec<ConversationMessage>,
    /// References found in the report and the conversation.
    pub references: References,
    /// Recordings.
    pub recordings: Vec<RecordingSummary>,
    /// What bugbot could not find or do, in plain words.
    pub unknowns: Vec<String>,
}

impl ContextPacket {
    /// One line saying what the report is about.
    pub fn summary(&self) -> String {
        crate::linear::issue_title(self.report.title.as_deref(), &self.report.text)
    }

    /// Renders the Markdown comment.
    pub fn render(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "## 🐛 Context from bugbot\n");
        let _ = writeln!(md, "**Summary:** {}  ", one_line(&self.summary()));
        let _ = writeln!(
            md,
            "**Reported by:** {} in [{}]({})  ",
            one_line(&self.requester),
            self.source_label,
            self.source_url
        );
        let _ = writeln!(
            md,
            "**When:** {} · job `{}`\n",
            format_ms(self.requested_at_ms),
            self.job_id
        );

        let _ = writeln!(md, "### Report\n");
        if self.report.text.trim().is_empty() {
            let _ = writeln!(md, "_No text was given with the request._\n");
        } else {
            let _ = writeln!(md, "{}", quote(&self.report.text));
            if self.report.truncated {
                let _ = writeln!(md, "\n_The report was longer; it was cut to fit._");
            }
            md.push('\n');
        }

        if !self.conversation.is_empty() {
            let _ = writeln!(
                md,
                "### Conversation (last {} messages)\n",
                self.conversation.len()
            );
            for m in &self.conversation {
                let (text, cut) = cut_chars(&one_line(&m.text), MAX_MESSAGE_CHARS);
                let _ = writeln!(
                    md,
                    "- **{}** · {}: {}{}",
                    one_line(&m.author),
                    format_iso(&m.at),
                    text,
                    if cut { "…" } else { "" }
                );
            }
            md.push('\n');
        }

        let refs = render_references(&self.references);
        if !refs.is_empty() {
            let _ = writeln!(md, "### References\n\n{refs}");
        }

        if !self.recordings.is_empty() {
            let _ = writeln!(md, "### Session recordings\n");
            let _ = writeln!(
                md,
                "| Recording | Started | Duration | Console errors | Clicks | Found by |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for r in &self.recordings {
                let _ = writeln!(
                    md,
                    "| [{}]({}) | {} | {} | {} | {} | {} |",
                    r.session_id,
                    r.replay_url,
                    r.started_at.as_deref().map_or("?".into(), format_iso),
                    r.duration_secs.map_or("?".into(), format_duration),
                    r.console_errors.map_or("?".into(), |n| n.to_string()),
                    r.clicks.map_or("?".into(), |n| n.to_string()),
                    r.found_by
                );
            }
            if let Some(url) = self.recordings.iter().find_map(|r| r.start_url.as_deref()) {
                let _ = writeln!(md, "\nFirst page of the first recording: {url}");
            }
            md.push('\n');
        }

        let _ = writeln!(md, "### Unknown\n");
        if self.unknowns.is_empty() {
            let _ = writeln!(md, "Nothing: every lookup found what it looked for.");
        } else {
            for u in &self.unknowns {
                let _ = writeln!(md, "- {u}");
            }
        }
        md
    }
}

fn render_references(r: &References) -> String {
    let mut out = String::new();
    let mut line = |label: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(out, "- {label}: {}", items.join(", "));
        }
    };
    line("Linear issues", r.linear_issues.clone());
    line("GitHub repositories", r.github_repos.clone());
    line(
        "GitHub issues",
        r.github_issues
            .iter()
            .map(|i| format!("{}#{}", i.repo, i.number))
            .collect(),
    );
    line(
        "PostHog sessions",
        r.posthog_sessions
            .iter()
            .map(|s| format!("`{}`", s.session_id))
            .collect(),
    );
    line("E-mail addresses", r.emails.clone());
    out
}

fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cut_chars(text: &str, max: usize) -> (String, bool) {
    if text.chars().count() <= max {
        (text.to_owned(), false)
    } else {
        (text.chars().take(max).collect(), true)
    }
}

/// `1m 05s`, `42s`, `1h 02m`.
pub fn format_duration(secs: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `2026-11-22 10:04 UTC` from an ISO 8601 UTC timestamp (other offsets are shown as given).
pub fn format_iso(iso: &str) -> String {
    let utc = iso.ends_with('Z') || iso.ends_with("+00:00");
    if utc && iso.len() >= 16 && iso.as_bytes().get(10) == Some(&b'T') {
        format!("{} {} UTC", &iso[..10], &iso[11..16])
    } else {
        iso.to_owned()
    }
}

/// `2026-11-22 10:04 UTC` from milliseconds since the Unix epoch.
pub fn format_ms(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::references::extract;

    fn sample() -> ContextPacket {
        let text = "Checkout total is wrong when the cart has 3+ items.\nSee https://us.posthog.com/project/12/replay/0193-abc and mail jane@acme.io";
        ContextPacket {
            job_id: "dc-1300000000000000001".into(),
            requester: "Jane Doe".into(),
            requested_at_ms: 1_795_000_000_000,
            source_label: "Discord thread".into(),
            source_url: "https://discord.com/channels/1/2".into(),
            report: Report::new(None, text),
            conversation: vec![
                ConversationMessage {
                    author: "jane".into(),
                    at: "2026-11-20T09:58:00.000000+00:00".into(),
                    text: "cart says $30 for three $10 items... \n but charges $40".into(),
                },
                ConversationMessage {
                    author: "sam".into(),
                    at: "2026-11-20T10:01:00.000000+00:00".into(),
                    text: "repro'd on staging".into(),
                },
            ],
            references: extract(text),
            recordings: vec![RecordingSummary {
                session_id: "0193-abc".into(),
                replay_url: "https://us.posthog.com/project/12/replay/0193-abc".into(),
                started_at: Some("2026-11-20T09:50:00Z".into()),
                duration_secs: Some(185.4),
                console_errors: Some(3),
                clicks: Some(17),
                start_url: Some("https://shop.acme.io/cart".into()),
                found_by: "named in the report".into(),
            }],
            unknowns: vec!["No Linear issue was named; bugbot created one.".into()],
        }
    }

    #[test]
    fn renders_the_packet() {
        insta::assert_snapshot!(sample().render());
    }

    #[test]
    fn says_what_is_missing() {
        let mut p = sample();
        p.recordings.clear();
        p.conversation.clear();
        p.unknowns = vec!["No PostHog person has the e-mail jane@acme.io.".into()];
        let md = p.render();
        assert!(!md.contains("### Session recordings"));
        assert!(md.contains("No PostHog person has the e-mail jane@acme.io."));
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(5.2), "5s");
        assert_eq!(format_duration(65.0), "1m 05s");
        assert_eq!(format_duration(3720.0), "1h 02m");
        assert_eq!(
            format_iso("2026-11-20T09:58:00.000000+00:00"),
            "2026-11-20 09:58 UTC"
        );
        assert_eq!(format_iso("2026-11-20T09:58:00Z"), "2026-11-20 09:58 UTC");
        assert_eq!(format_ms(0), "1970-01-01 00:00 UTC");
    }
}
