//! bugbot's operator tools (`scripts/jobs`, `scripts/dlq`, `scripts/register-commands`): small
//! command-line programs around the gateway's admin API and Discord's API. They read the local
//! stack's `dev/local.env` for defaults, so they work against `scripts/dev` without flags.

use std::path::{Path, PathBuf};

/// `KEY=VALUE` from `dev/local.env` (no `${}` substitution beyond the addresses it defines).
pub fn local_value(key: &str) -> Option<String> {
    let path = repo_root().join("dev/local.env");
    let text = std::fs::read_to_string(path).ok()?;
    let mut values: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let mut v = v.to_owned();
            for (name, value) in &values {
                v = v.replace(&format!("${{{name}}}"), value);
            }
            values.push((k.to_owned(), v));
        }
    }
    values
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
