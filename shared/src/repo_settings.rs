//! A repository's own settings for bugbot: `.github/bugbot.toml` on the base branch, and its
//! `CLAUDE.md` / `AGENTS.md` as instructions text.
//!
//! ```toml
//! # .github/bugbot.toml — every key optional
//! allowed_paths = ["src/cart/", "src/checkout.js"]   # narrows the deployment's, never widens
//! instructions = "Prices are integers of cents."      # added to the agent's prompt as text
//!
//! [limits]                                            # each capped by the deployment's
//! max_turns = 20
//! max_budget_usd = 1.0
//! wall_time_secs = 300
//! ```
//!
//! A file that does not parse, has an unknown key, widens the paths or sets a limit to zero fails
//! the job with a message naming the line. The instruction files are only ever text in the prompt:
//! Claude Code runs with no settings from the repository.

use crate::executor::Limits;
use serde::Deserialize;

/// Where the settings file is, on the base branch.
pub const SETTINGS_PATH: &str = ".github/bugbot.toml";
/// Instruction files read from the repository's root, in this order.
pub const INSTRUCTION_FILES: &[&str] = &["CLAUDE.md", "AGENTS.md"];
/// The most of each instruction text passed on (the prompt stays small).
pub const MAX_INSTRUCTIONS_BYTES: usize = 16 * 1024;
/// The largest settings file read.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    allowed_paths: Option<Vec<String>>,
    instructions: Option<String>,
    limits: Option<LimitsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_turns: Option<u32>,
    max_budget_usd: Option<f64>,
    wall_time_secs: Option<u64>,
}

/// What a run gets once the repository's settings are applied to the deployment's.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// The paths Claude Code may change.
    pub allowed_paths: Vec<String>,
    /// The run's limits.
    pub limits: Limits,
    /// The repository's own instructions, as text for the prompt (empty: none).
    pub instructions: String,
    /// What the settings changed, for the job's record (`allowed paths narrowed to …`).
    pub applied: Vec<String>,
}

/// A settings file that cannot be used; its text names the file and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{SETTINGS_PATH}, line {line}: {message}")]
pub struct SettingsError {
    /// 1-based line of the problem.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .unwrap_or(text)
        .matches('\n')
        .count()
        + 1
}

/// The line where `needle` first appears after `key` (the line of `key` itself when it does not).
fn line_of_value(text: &str, key: &str, needle: &str) -> usize {
    let start = text.find(key).unwrap_or(0);
    let at = text[start..].find(needle).map_or(start, |i| start + i);
    line_of(text, at)
}

/// Applies the repository's settings file (`None`: it has none) to the deployment's allowed paths
/// and limits, and gathers the instruction texts (`(file name, text)` of those present).
pub fn apply(
    settings: Option<&str>,
    instruction_files: &[(&str, &str)],
    deployment_allowed: &[String],
    deployment_limits: &Limits,
) -> Result<Effective, SettingsError> {
    let text = settings.unwrap_or_default();
    if text.len() > MAX_SETTINGS_BYTES {
        return Err(SettingsError {
            line: 1,
            message: format!("the file is larger than {MAX_SETTINGS_BYTES} bytes"),
        });
    }
    let file: SettingsFile = toml::from_str(text).map_err(|e| SettingsError {
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        message: e.message().trim().to_owned(),
    })?;
    let mut applied = Vec::new();

    let mut allowed_paths = deployment_allowed.to_vec();
    if let Some(paths) = file.allowed_paths {
        let line = |p: &str| line_of_value(text, "allowed_paths", p);
        if paths.is_empty() {
            return Err(SettingsError {
                line: line_of_value(text, "allowed_paths", "allowed_paths"),
                message: "allowed_paths must name at least one path".into(),
            });
        }
        let normalized =
            crate::path_policy::normalize_allowed(&paths).map_err(|message| SettingsError {
                line: line_of_value(text, "allowed_paths", "allowed_paths"),
                message,
            })?;
        for (given, path) in paths.iter().zip(&normalized) {
            let inside = deployment_allowed
                .iter()
                .any(|d| path.starts_with(d.as_str()) || path == d.trim_end_matches('/'));
            if !inside {
                return Err(SettingsError {
                    line: line(given),
                    message: format!(
                        "allowed path {given:?} is outside this deployment's allowed paths ({}): a repository may narrow them, never widen them",
                        deployment_allowed.join(", ")
                    ),
                });
            }
        }
        applied.push(format!(
            "allowed paths narrowed to {}",
            normalized.join(", ")
        ));
        allowed_paths = normalized;
    }

    let mut limits = deployment_limits.clone();
    if let Some(l) = file.limits {
        let zero = |key: &str| SettingsError {
            line: line_of_value(text, key, key),
            message: format!("limits.{key} must be greater than zero"),
        };
        if let Some(n) = l.max_turns {
            if n == 0 {
                return Err(zero("max_turns"));
            }
            limits.max_turns = n.min(deployment_limits.max_turns);
            applied.push(format!("max turns {}", limits.max_turns));
        }
        if let Some(usd) = l.max_budget_usd {
            if !(usd > 0.0 && usd.is_finite()) {
                return Err(zero("max_budget_usd"));
            }
            limits.max_budget_usd = usd.min(deployment_limits.max_budget_usd);
            applied.push(format!("budget ${:.2}", limits.max_budget_usd));
        }
        if let Some(secs) = l.wall_time_secs {
            if secs == 0 {
                return Err(zero("wall_time_secs"));
            }
            limits.wall_time_secs = secs.min(deployment_limits.wall_time_secs);
            applied.push(format!("wall time {} s", limits.wall_time_secs));
        }
    }

    let mut instructions = String::new();
    let mut sources: Vec<(&str, &str)> = Vec::new();
    if let Some(extra) = file.instructions.as_deref() {
        sources.push((SETTINGS_PATH, extra));
    }
    sources.extend(instruction_files.iter().copied());
    for (name, body) in sources {
        let body = body.trim();
        if body.is_empty() {
            continue;
        }
        let (body, cut) = crate::job::truncate(body, MAX_INSTRUCTIONS_BYTES);
        instructions.push_str(&format!("### From `{name}`\n\n{body}\n"));
        if cut {
            instructions.push_str("\n(cut here: the rest was too long)\n");
        }
        instructions.push('\n');
        applied.push(format!("instructions from {name}"));
    }
    Ok(Effective {
        allowed_paths,
        limits,
        instructions: instructions.trim_end().to_owned(),
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Vec<String> {
        vec!["src/".into(), "app/".into()]
    }

    #[test]
    fn no_file_keeps_the_deployments_settings() {
        let e = apply(None, &[], &deployment(), &Limits::default()).unwrap();
        assert_eq!(e.allowed_paths, deployment());
        assert_eq!(e.limits, Limits::default());
        assert!(e.instructions.is_empty() && e.applied.is_empty());
    }

    #[test]
    fn paths_narrow_and_limits_are_capped_by_the_deployments() {
        let text = "allowed_paths = [\"src/cart/\", \"./src/checkout.js\"]\n\n[limits]\nmax_turns = 500\nmax_budget_usd = 0.5\nwall_time_secs = 60\n";
        let e = apply(Some(text), &[], &deployment(), &Limits::default()).unwrap();
        assert_eq!(e.allowed_paths, vec!["src/cart/", "src/checkout.js"]);
        assert_eq!(e.limits.max_turns, Limits::default().max_turns);
        assert_eq!(e.limits.max_budget_usd, 0.5);
        assert_eq!(e.limits.wall_time_secs, 60);
        assert!(e.applied[0].contains("src/cart/"), "{:?}", e.applied);
    }

    #[test]
    fn widening_the_paths_fails_on_the_line_that_does() {
        let text = "# bugbot\nallowed_paths = [\n  \"src/\",\n  \"docs/\",\n]\n";
        let err = apply(Some(text), &[], &deployment(), &Limits::default()).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.to_string()
                .starts_with(".github/bugbot.toml, line 4: allowed path \"docs/\"")
        );
        for bad in [
            "allowed_paths = [\"../src/\"]",
            "allowed_paths = []",
            "allowed_paths = [\"src/.env\"]",
        ] {
            assert!(
                apply(Some(bad), &[], &deployment(), &Limits::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_file_that_does_not_parse_or_has_unknown_keys_names_the_line() {
        for (text, line) in [
            ("instructions = \"ok\"\n\nallowed_paths = [\"src/\"\n", 3),
            ("instructions = \"ok\"\nmodel = \"opus\"\n", 2),
            ("[limits]\nmax_turns = \"many\"\n", 2),
            ("[limits]\nmax_turns = 0\n", 2),
        ] {
            let err = apply(Some(text), &[], &deployment(), &Limits::default()).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn instructions_come_from_the_file_and_the_repositorys_instruction_files_as_text() {
        let long = "x".repeat(MAX_INSTRUCTIONS_BYTES + 10);
        let e = apply(
            Some("instructions = \"Prices are cents.\""),
            &[("CLAUDE.md", "Use tabs."), ("AGENTS.md", &long)],
            &deployment(),
            &Limits::default(),
        )
        .unwrap();
        assert!(
            e.instructions
                .starts_with("### From `.github/bugbot.toml`\n\nPrices are cents.")
        );
        assert!(e.instructions.contains("### From `CLAUDE.md`\n\nUse tabs."));
        assert!(e.instructions.contains("(cut here"));
        assert!(e.instructions.len() < 2 * MAX_INSTRUCTIONS_BYTES);
    }
}
