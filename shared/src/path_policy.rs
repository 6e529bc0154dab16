//! Which changed paths a fix may contain. The executor compares the files Claude Code left behind
//! with the base commit's tree (additions, modifications, deletions, type and mode changes, symlinks,
//! submodules) and this module decides; it also reads git's `--raw` diff format, for tools that
//! start from git.

use serde::{Deserialize, Serialize};

/// Paths a fix may touch when the request names none.
pub const DEFAULT_ALLOWED: &[&str] = &["src/", "app/", "components/", "pages/"];

/// File names that are never changed by a fix: package manifests and lock files.
const MANIFESTS: &[&str] = &[
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    "bun.lockb",
    "bun.lock",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    "cargo.toml",
    "cargo.lock",
    "go.mod",
    "go.sum",
    "pyproject.toml",
    "poetry.lock",
    "pipfile",
    "pipfile.lock",
    "uv.lock",
    "setup.py",
    "setup.cfg",
    "gemfile",
    "gemfile.lock",
    "composer.json",
    "composer.lock",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "mix.exs",
    "mix.lock",
];

/// Git file modes that matter here.
mod mode {
    pub const SYMLINK: &str = "120000";
    pub const SUBMODULE: &str = "160000";
    pub const ABSENT: &str = "000000";
}

/// One staged change, as git reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Git's status letter: A, M, D, R, C, T.
    pub status: char,
    /// Path before (renames and copies), else `None`.
    pub old_path: Option<String>,
    /// Path after (for deletions: the deleted path).
    pub path: String,
    /// Mode before (`000000` when added).
    pub old_mode: String,
    /// Mode after (`000000` when deleted).
    pub new_mode: String,
}

/// A path a fix may not contain, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The path.
    pub path: String,
    /// Why, for humans.
    pub reason: String,
}

/// Git's raw diff output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable git diff --raw output: {0}")]
pub struct ParseError(String);

/// Parses `git diff --cached --raw -z -M --no-abbrev` output.
pub fn parse_raw_diff(output: &[u8]) -> Result<Vec<Change>, ParseError> {
    let text = String::from_utf8_lossy(output);
    let mut fields = text.split('\0').filter(|f| !f.is_empty());
    let mut changes = Vec::new();
    while let Some(meta) = fields.next() {
        let meta = meta.trim_start_matches(['\n', ':']);
        let parts: Vec<&str> = meta.split(' ').collect();
        let [old_mode, new_mode, _old_sha, _new_sha, status] = parts.as_slice() else {
            return Err(ParseError(format!("bad header {meta:?}")));
        };
        let letter = status
            .chars()
            .next()
            .ok_or_else(|| ParseError("empty status".into()))?;
        let first = fields
            .next()
            .ok_or_else(|| ParseError("missing path".into()))?
            .to_owned();
        let (old_path, path) = if matches!(letter, 'R' | 'C') {
            let second = fields
                .next()
                .ok_or_else(|| ParseError("missing rename target".into()))?;
            (Some(first), second.to_owned())
        } else {
            (None, first)
        };
        changes.push(Change {
            status: letter,
            old_path,
            path,
            old_mode: (*old_mode).to_owned(),
            new_mode: (*new_mode).to_owned(),
        });
    }
    Ok(changes)
}

/// Normalizes allowed prefixes: relative, forward slashes, ending in `/` (a bare file name stays).
pub fn normalize_allowed(allowed: &[String]) -> Result<Vec<String>, String> {
    allowed
        .iter()
        .map(|a| {
            let a = a.trim().trim_start_matches("./");
            if a.is_empty() || a.starts_with('/') || a.split('/').any(|c| c == "..") {
                return Err(format!(
                    "allowed path {a:?} must be a relative path inside the repository"
                ));
            }
            if forbidden_reason(a.trim_end_matches('/')).is_some() {
                return Err(format!(
                    "allowed path {a:?} names a path that is always forbidden"
                ));
            }
            Ok(a.to_owned())
        })
        .collect()
}

/// Why a path is forbidden whatever the allow-list says.
fn forbidden_reason(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let components: Vec<&str> = lower.split('/').collect();
    if components.contains(&".git") {
        Some("git metadata is never changed")
    } else if components.first() == Some(&".github") {
        Some("GitHub workflows and settings are never changed")
    } else if name == ".gitattributes" || name == ".gitmodules" {
        Some("git attributes and submodule settings are never changed")
    } else if components.contains(&".claude") || name == ".mcp.json" {
        Some("agent settings are never changed")
    } else if name.starts_with(".env") {
        Some("environment files are never changed")
    } else if name.ends_with(".key") || name.ends_with(".pem") || name.ends_with(".secret") {
        Some("key and secret files are never changed")
    } else if name.starts_with("credentials.") || name == "credentials" {
        Some("credential files are never changed")
    } else if MANIFESTS.contains(&name)
        || name.starts_with("requirements") && name.ends_with(".txt")
    {
        Some("package manifests and lock files are never changed")
    } else {
        None
    }
}

fn path_reason(path: &str, allowed: &[String]) -> Option<String> {
    if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Some("path is not a plain relative path".into());
    }
    if let Some(r) = forbidden_reason(path) {
        return Some(r.into());
    }
    let inside = allowed.iter().any(|a| {
        if a.ends_with('/') {
            path.starts_with(a.as_str())
        } else {
            path == a || path.starts_with(&format!("{a}/"))
        }
    });
    if inside {
        None
    } else {
        Some(format!(
            "outside the allowed paths ({})",
            allowed.join(", ")
        ))
    }
}

/// True when a change to `path` would be allowed (used to keep file hints inside the allowed paths).
pub fn is_allowed(path: &str, allowed: &[String]) -> bool {
    path_reason(path, allowed).is_none()
}

/// Why a change to `path` is not allowed, if it is not.
pub fn refusal_reason(path: &str, allowed: &[String]) -> Option<String> {
    path_reason(path, allowed)
}

/// Every violation among the changes (empty: the fix may be pushed).
pub fn check(changes: &[Change], allowed: &[String]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut push = |path: &str, reason: String| {
        if !violations.iter().any(|v: &Violation| v.path == path) {
            violations.push(Violation {
                path: path.to_owned(),
                reason,
            });
        }
    };
    for c in changes {
        for p in c.old_path.iter().chain(std::iter::once(&c.path)) {
            if let Some(reason) = path_reason(p, allowed) {
                push(p, reason);
            }
        }
        if c.new_mode == mode::SYMLINK
            || (c.old_mode == mode::SYMLINK && c.new_mode != mode::ABSENT)
        {
            push(&c.path, "symbolic links may not be added or changed".into());
        }
        if c.new_mode == mode::SUBMODULE || c.old_mode == mode::SUBMODULE {
            push(&c.path, "submodules may not be changed".into());
        }
        let mode_changed =
            c.old_mode != c.new_mode && c.old_mode != mode::ABSENT && c.new_mode != mode::ABSENT;
        if mode_changed && c.new_mode != mode::SYMLINK && c.old_mode != mode::SYMLINK {
            push(
                &c.path,
                format!("file mode may not change ({} → {})", c.old_mode, c.new_mode),
            );
        }
        if c.status == 'A' && c.new_mode == "100755" {
            push(&c.path, "new executable files are not allowed".into());
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: &str = "0000000000000000000000000000000000000000";

    fn raw(entries: &[(&str, &str, &str, &[&str])]) -> Vec<u8> {
        let mut out = String::new();
        for (old, new, status, paths) in entries {
            out.push_str(&format!(":{old} {new} {Z} {Z} {status}\0"));
            for p in *paths {
                out.push_str(p);
                out.push('\0');
            }
        }
        out.into_bytes()
    }

    fn allowed() -> Vec<String> {
        DEFAULT_ALLOWED.iter().map(|s| (*s).to_owned()).collect()
    }

    fn check_raw(entries: &[(&str, &str, &str, &[&str])]) -> Vec<Violation> {
        check(&parse_raw_diff(&raw(entries)).unwrap(), &allowed())
    }

    #[test]
    fn parses_every_kind_of_change() {
        let changes = parse_raw_diff(&raw(&[
            ("100644", "100644", "M", &["src/a.js"]),
            ("000000", "100644", "A", &["src/new file.js"]),
            ("100644", "000000", "D", &["src/old.js"]),
            ("100644", "100644", "R100", &["src/x.js", "x.js"]),
        ]))
        .unwrap();
        assert_eq!(changes.len(), 4);
        assert_eq!(changes[1].path, "src/new file.js");
        assert_eq!(changes[3].old_path.as_deref(), Some("src/x.js"));
        assert_eq!(changes[3].path, "x.js");
        assert!(parse_raw_diff(b":bad\0x\0").is_err());
        assert!(parse_raw_diff(b"").unwrap().is_empty());
    }

    #[test]
    fn allowed_edits_pass() {
        assert!(
            check_raw(&[
                ("100644", "100644", "M", &["src/cart.js"]),
                ("000000", "100644", "A", &["components/Total.tsx"]),
                ("100644", "000000", "D", &["pages/old.js"]),
                ("100644", "100644", "R090", &["src/a.js", "src/b.js"]),
            ])
            .is_empty()
        );
    }

    #[test]
    fn git_and_agent_settings_are_never_changed() {
        for path in [
            "src/.gitattributes",
            ".gitattributes",
            ".gitmodules",
            "src/.claude/settings.json",
            ".claude/settings.local.json",
            "src/.mcp.json",
        ] {
            assert!(refusal_reason(path, &allowed()).is_some(), "{path}");
        }
        assert!(refusal_reason("src/claude.js", &allowed()).is_none());
    }

    #[test]
    fn forbidden_and_outside_paths_are_rejected() {
        for path in [
            "package.json",
            "src/package.json",
            ".github/workflows/x.yml",
            "src/.env.local",
            "src/server.key",
            "app/cert.pem",
            "src/credentials.json",
            "src/yarn.lock",
            "README.md",
            "srcx/a.js",
            "src/../etc/passwd",
        ] {
            let v = check_raw(&[("100644", "100644", "M", &[path])]);
            assert_eq!(v.len(), 1, "{path} should be rejected");
            assert_eq!(v[0].path, path);
        }
    }

    #[test]
    fn renames_out_of_allowed_paths_symlinks_submodules_and_modes() {
        let v = check_raw(&[("100644", "100644", "R100", &["src/a.js", "a.js"])]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "a.js");
        let v = check_raw(&[("000000", "120000", "A", &["src/link"])]);
        assert!(v[0].reason.contains("symbolic"));
        let v = check_raw(&[("000000", "160000", "A", &["src/vendor"])]);
        assert!(v[0].reason.contains("submodule"));
        let v = check_raw(&[("100644", "100755", "M", &["src/run.sh"])]);
        assert!(v[0].reason.contains("mode"));
        let v = check_raw(&[("000000", "100755", "A", &["src/run.sh"])]);
        assert!(v[0].reason.contains("executable"));
        // Deleting a symlink inside the allowed paths is fine.
        assert!(check_raw(&[("120000", "000000", "D", &["src/link"])]).is_empty());
    }

    #[test]
    fn allow_list_is_validated() {
        assert!(normalize_allowed(&["src/".into(), "./lib".into()]).is_ok());
        assert!(normalize_allowed(&["/etc".into()]).is_err());
        assert!(normalize_allowed(&["../x".into()]).is_err());
        assert!(normalize_allowed(&[".github/".into()]).is_err());
        assert!(normalize_allowed(&["".into()]).is_err());
        // A bare name allows that directory.
        let allowed = normalize_allowed(&["lib".into()]).unwrap();
        let c = parse_raw_diff(&raw(&[("100644", "100644", "M", &["lib/a.rs"])])).unwrap();
        assert!(check(&c, &allowed).is_empty());
        let c = parse_raw_diff(&raw(&[("100644", "100644", "M", &["library/a.rs"])])).unwrap();
        assert_eq!(check(&c, &allowed).len(), 1);
    }
}
