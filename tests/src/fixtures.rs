//! Shared test fixtures: the small web app with a real bug, a git runner for test repositories, and
//! GitHub's published webhook payloads.

use anyhow::{Result, ensure};
use std::path::Path;

/// `src/cart.js` of the demo web app: the sum starts at 1 instead of 0.
pub const BUGGY_CART_JS: &str = "export function total(items) {\n  return items.reduce((sum, item) => sum + item.price, 1);\n}\n";
/// The scripted fix: the `Edit` tool's `old_string` and `new_string` for [`BUGGY_CART_JS`].
pub const CART_FIX: (&str, &str) = ("item.price, 1)", "item.price, 0)");

/// Runs git in `dir` for a test repository: no user configuration, a fixed identity, `main` as the
/// default branch. Returns stdout; fails with git's stderr.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A scripted model (for the sandbox's Anthropic stand-in) that reads `path`, replaces `old` with
/// `new` in it, and says what it did.
pub fn read_then_edit(path: &str, old: &str, new: &str) -> serde_json::Value {
    serde_json::json!({"steps": [
        {"tool_use": {"name": "Read", "input": {"file_path": path}}},
        {"tool_use": {"name": "Edit", "input": {"file_path": path, "old_string": old, "new_string": new}}},
        {"text": "Started the sum at 0 instead of 1."}
    ]})
}

/// The demo web app's files: the buggy cart, a manifest, a README.
pub fn web_app_files() -> std::collections::BTreeMap<String, String> {
    [
        ("src/cart.js", BUGGY_CART_JS),
        ("src/checkout.js", "import { total } from './cart.js';\n\nexport function checkoutTotal(cart) {\n  return total(cart.items);\n}\n"),
        ("package.json", "{\n  \"name\": \"web-app\",\n  \"version\": \"1.0.0\"\n}\n"),
        ("README.md", "# web-app\n\nA tiny shop. `src/cart.js` sums the cart.\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Every example delivery GitHub publishes (`@octokit/webhooks-examples`), with its event name.
pub fn github_webhook_examples() -> Result<Vec<(String, serde_json::Value)>> {
    let text = crate::localenv::Spec::GitHubWebhookExamples.read()?;
    let all: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    Ok(all
        .iter()
        .flat_map(|event| {
            let name = event["name"].as_str().unwrap_or_default().to_owned();
            event["examples"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| (name.clone(), e))
        })
        .collect())
}
