//! `docs/configuration.md`, `deploy/production.env.example` and the code's configuration readers
//! name the same settings: a setting added, renamed or dropped in one place fails here until the
//! others follow.

use crate::localenv::repo_root;
use regex_lite::Regex;
use std::collections::BTreeSet;
use std::path::Path;

/// One row of the table in `docs/configuration.md`.
#[derive(Debug)]
struct Row {
    name: String,
    kind: String,
    prod: bool,
}

fn read(path: &str) -> String {
    let path = repo_root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn documented() -> Vec<Row> {
    let text = read("docs/configuration.md");
    let row = Regex::new(r"^\| `([A-Z][A-Z0-9_]+)` \| (\w+) \| [^|]+ \| (yes|no) \|").unwrap();
    let rows: Vec<Row> = text
        .lines()
        .filter_map(|line| row.captures(line))
        .map(|c| Row {
            name: c[1].to_owned(),
            kind: c[2].to_owned(),
            prod: &c[3] == "yes",
        })
        .collect();
    assert!(
        rows.len() > 30,
        "the table was not read: {} rows",
        rows.len()
    );
    rows
}

/// Every `.rs` file under `dir`.
fn rust_sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The names the Workers, the executor and the operator tools read, found where they read them:
/// the Workers' `env` helpers, clap's `env = "..."`, and the container's secret list.
fn read_by_code() -> BTreeSet<String> {
    let mut sources = Vec::new();
    for dir in [
        "gateway/src",
        "consumer/src",
        "edge/src",
        "executor-container/src",
        "ops/src",
    ] {
        rust_sources(&repo_root().join(dir), &mut sources);
    }
    let reader = Regex::new(
        // Not `std::env::var("PATH")` and the like: those are the process's own environment.
        r#"(?:^|[^:\w]|config::)(?:string|optional|required|var|secret|get|num)\(\s*(?:env,\s*)?(?:Service::\w+,\s*)?"([A-Z][A-Z0-9_]+)""#,
    )
    .unwrap();
    let clap = Regex::new(r#"\benv = "([A-Z][A-Z0-9_]+)""#).unwrap();
    let secret_list = Regex::new(r#"const CONTAINER_SECRETS: &\[&str\] = &\[([^\]]*)\]"#).unwrap();
    let quoted = Regex::new(r#""([A-Z][A-Z0-9_]+)""#).unwrap();
    let mut names = BTreeSet::new();
    for text in &sources {
        for re in [&reader, &clap] {
            names.extend(re.captures_iter(text).map(|c| c[1].to_owned()));
        }
        for list in secret_list.captures_iter(text) {
            names.extend(quoted.captures_iter(&list[1]).map(|c| c[1].to_owned()));
        }
    }
    assert!(names.len() > 30, "the readers were not found: {names:?}");
    names
}

/// The bindings both `wrangler.toml` files declare (KV, queue producers, Durable Objects).
fn bindings() -> BTreeSet<String> {
    let binding = Regex::new(r#"(?m)^binding = "([A-Z_]+)""#).unwrap();
    let object = Regex::new(
        r#"(?m)^\[\[(?:env\.production\.)?durable_objects\.bindings\]\]\nname = "([A-Z_]+)""#,
    )
    .unwrap();
    let mut names = BTreeSet::new();
    for file in ["gateway/wrangler.toml", "consumer/wrangler.toml"] {
        let text = read(file);
        for re in [&binding, &object] {
            names.extend(re.captures_iter(&text).map(|c| c[1].to_owned()));
        }
    }
    names
}

#[test]
fn the_table_names_what_the_code_reads() {
    let rows = documented();
    let table: BTreeSet<String> = rows
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "var" | "secret" | "env"))
        .map(|r| r.name.clone())
        .collect();
    let code = read_by_code();
    let undocumented: Vec<_> = code.difference(&table).collect();
    let unread: Vec<_> = table.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "read by the code, missing from docs/configuration.md: {undocumented:?}"
    );
    assert!(
        unread.is_empty(),
        "in docs/configuration.md, read by no code: {unread:?}"
    );
}

#[test]
fn the_table_names_every_binding() {
    let table: BTreeSet<String> = documented()
        .into_iter()
        .filter(|r| r.kind == "binding")
        .map(|r| r.name)
        .collect();
    assert_eq!(
        table,
        bindings(),
        "bindings in docs/configuration.md vs the wrangler.toml files"
    );
}

#[test]
fn the_production_example_has_exactly_the_prod_rows() {
    let example: BTreeSet<String> = read("deploy/production.env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k.trim().to_owned())
        .collect();
    let prod: BTreeSet<String> = documented()
        .into_iter()
        .filter(|r| r.prod)
        .map(|r| r.name)
        .collect();
    assert_eq!(
        example, prod,
        "deploy/production.env.example vs the rows marked prod"
    );
}

/// The test would pass on an empty table if the row pattern stopped matching; it must not.
#[test]
fn every_table_line_is_a_row() {
    let text = read("docs/configuration.md");
    let table_lines = text.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(
        table_lines,
        documented().len(),
        "a row of the table does not have the expected form"
    );
}

#[test]
fn the_executor_image_pins_the_claude_code_package_json_pins() {
    let package: serde_json::Value = serde_json::from_str(&read("package.json")).unwrap();
    let pinned = package["devDependencies"]["@anthropic-ai/claude-code"]
        .as_str()
        .unwrap();
    let dockerfile = read("executor-container/Dockerfile");
    let arg = Regex::new(r"(?m)^ARG CLAUDE_CODE_VERSION=(\S+)$").unwrap();
    let in_image = arg
        .captures(&dockerfile)
        .map(|c| c[1].to_owned())
        .unwrap_or_default();
    assert_eq!(
        in_image, pinned,
        "executor-container/Dockerfile's CLAUDE_CODE_VERSION must be package.json's Claude Code (the version the tests run)"
    );
}
