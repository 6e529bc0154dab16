//! One fix request: clone, run Claude Code, check the changed paths, commit and push.
//!
//! Every event goes through `emit`, which masks secrets. The workspace is a fresh temporary
//! directory removed when the run ends, whatever happens (it is dropped with the run's future).

use crate::process;
use bugbot_shared::executor::{ChangedFile, Event, FixRequest, FixResult, Outcome};
use bugbot_shared::mask::Masker;
use bugbot_shared::path_policy;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::process::Command;
use tokio::sync::mpsc;

/// The executor's configuration (see `main.rs` for the variables).
#[derive(Clone)]
pub struct Config {
    /// Bearer token callers must present.
    pub token: String,
    /// The Claude Code CLI.
    pub claude_bin: PathBuf,
    /// Anthropic API base URL (the sandbox locally).
    pub anthropic_base_url: Option<String>,
    /// Anthropic API key (given to Claude Code).
    pub anthropic_api_key: String,
    /// Model override.
    pub model: Option<String>,
    /// Where workspaces are created.
    pub work_root: PathBuf,
    /// Masks configured secrets in everything that leaves.
    pub masker: Masker,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("claude_bin", &self.claude_bin)
            .field("anthropic_base_url", &self.anthropic_base_url)
            .field("work_root", &self.work_root)
            .finish_non_exhaustive()
    }
}

/// Sends masked events to the response stream.
pub struct Emitter {
    tx: mpsc::Sender<String>,
    masker: Masker,
}

impl Emitter {
    /// An emitter masking with `masker`.
    pub fn new(tx: mpsc::Sender<String>, masker: Masker) -> Self {
        Self { tx, masker }
    }

    /// Sends one event as a JSON line. A caller that went away is not an error of the run.
    pub async fn emit(&self, event: &Event) {
        let mut value = serde_json::to_value(event).unwrap_or_default();
        self.masker.mask_json(&mut value);
        tracing::info!(event = %value, "progress");
        let _ = self.tx.send(format!("{value}\n")).await;
    }
}

/// A failure that ends the run with `failed` (already free of secrets after masking).
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// Runs the request within its wall time; always ends with a `done` event.
pub async fn run(config: Config, request: FixRequest, out: Emitter) {
    let started = Instant::now();
    let mut masker = config.masker.clone();
    if let Some(t) = &request.github_token {
        masker.add(t);
    }
    let out = Emitter::new(out.tx, masker);
    let wall = std::time::Duration::from_secs(request.limits.wall_time_secs);
    let result = match tokio::time::timeout(wall, attempt(&config, &request, &out)).await {
        Ok(Ok(result)) => result,
        Ok(Err(Failure(error))) => FixResult {
            error: Some(error),
            ..empty(Outcome::Failed)
        },
        // The attempt's future was dropped: its process groups are killed and its workspace removed.
        Err(_) => FixResult {
            error: Some(format!("the wall time of {}s ran out", wall.as_secs())),
            ..empty(Outcome::TimedOut)
        },
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    out.emit(&Event::Done {
        result: FixResult {
            duration_ms,
            ..result
        },
    })
    .await;
}

fn empty(outcome: Outcome) -> FixResult {
    FixResult {
        outcome,
        branch: None,
        commit_sha: None,
        changed_files: Vec::new(),
        rejected_paths: Vec::new(),
        summary: String::new(),
        turns: 0,
        cost_usd: 0.0,
        duration_ms: 0,
        error: None,
    }
}

/// Git, configured so nothing in the clone (hooks, config written by Claude Code) can run or redirect.
fn git(dir: &Path, askpass: &Path, token: Option<&str>) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", askpass)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "credential.helper=",
            "-c",
            "protocol.file.allow=always",
        ]);
    if let Some(t) = token {
        // Read by the askpass script; never in a URL or an argument.
        cmd.env("BUGBOT_GIT_TOKEN", t);
    }
    cmd
}

async fn git_ok(mut cmd: Command, what: &str, args: &[&str]) -> Result<String, Failure> {
    cmd.args(args);
    let (status, out, err) = process::output(cmd).await?;
    if status.success() {
        Ok(out)
    } else {
        Err(Failure(format!("{what} failed: {}", err.trim())))
    }
}

async fn attempt(config: &Config, req: &FixRequest, out: &Emitter) -> Result<FixResult, Failure> {
    std::fs::create_dir_all(&config.work_root)?;
    let workspace = tempfile::Builder::new()
        .prefix("bugbot-fix-")
        .tempdir_in(&config.work_root)?;
    let askpass = workspace.path().join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\ncase \"$1\" in Username*) echo x-access-token ;; *) echo \"$BUGBOT_GIT_TOKEN\" ;; esac\n",
    )?;
    set_executable(&askpass)?;
    let repo = workspace.path().join("repo");
    let token = req.github_token.as_deref();

    out.emit(&Event::Cloning {
        base_branch: req.base_branch.clone(),
    })
    .await;
    let mut clone = git(workspace.path(), &askpass, token);
    clone.args([
        "clone",
        "--depth",
        "1",
        "--single-branch",
        "--no-tags",
        "--branch",
    ]);
    git_ok(clone, "clone", &[&req.base_branch, &req.repo_url, "repo"]).await?;
    // Claude Code could write into .git; keep its config to restore before any git command runs.
    let git_config = std::fs::read(repo.join(".git/config"))?;

    out.emit(&Event::Running).await;
    let claude = crate::claude::run(config, req, &repo, out).await?;
    std::fs::write(repo.join(".git/config"), &git_config)?;

    let mut result = FixResult {
        summary: claude.summary.clone(),
        turns: claude.turns,
        cost_usd: claude.cost_usd,
        ..empty(claude.outcome)
    };
    if claude.outcome != Outcome::Pushed {
        // Claude Code did not finish: whatever it left is not pushed.
        result.error = claude.error;
        return Ok(result);
    }

    out.emit(&Event::CheckingPaths).await;
    if !claude.denied.is_empty() {
        // It tried to change a path it may not: the whole fix is rejected, whatever else it did.
        result.outcome = Outcome::Rejected;
        result.rejected_paths = claude.denied;
        return Ok(result);
    }
    match check_changes(&repo, &askpass, &req.allowed_paths).await? {
        Checked::NoChanges => {
            result.outcome = Outcome::NoChanges;
            return Ok(result);
        }
        Checked::Rejected(violations) => {
            result.outcome = Outcome::Rejected;
            result.rejected_paths = violations;
            return Ok(result);
        }
        Checked::Allowed(files) => result.changed_files = files,
    }

    out.emit(&Event::Pushing {
        branch: req.branch.clone(),
    })
    .await;
    let message = format!(
        "fix({}): {}\n\n{}\n\nMade by bugbot with Claude Code.",
        req.task.issue_id,
        req.task.title,
        bugbot_shared::job::truncate(&claude.summary, 2000).0
    );
    let mut commit = git(&repo, &askpass, None);
    commit.args([
        "-c",
        "user.name=bugbot",
        "-c",
        "user.email=bugbot@users.noreply.github.com",
        "commit",
        "--no-verify",
        "--quiet",
        "-m",
    ]);
    git_ok(commit, "commit", &[&message]).await?;
    let sha = git_ok(
        git(&repo, &askpass, None),
        "reading the commit",
        &["rev-parse", "HEAD"],
    )
    .await?;
    let refspec = format!("HEAD:refs/heads/{}", req.branch);
    // Push to the URL we were given, not to `origin`, whatever the clone's config says.
    git_ok(
        git(&repo, &askpass, token),
        "push",
        &["push", "--no-verify", "--quiet", &req.repo_url, &refspec],
    )
    .await?;
    result.outcome = Outcome::Pushed;
    result.branch = Some(req.branch.clone());
    result.commit_sha = Some(sha.trim().to_owned());
    Ok(result)
}

/// What git says Claude Code changed, judged by the path policy.
#[derive(Debug)]
enum Checked {
    NoChanges,
    Rejected(Vec<path_policy::Violation>),
    Allowed(Vec<ChangedFile>),
}

/// Stages everything in the work tree and reads the staged changes from git itself, so renames,
/// deletions, new files, symlinks, submodules and mode changes are all seen.
async fn check_changes(
    repo: &Path,
    askpass: &Path,
    allowed: &[String],
) -> Result<Checked, Failure> {
    git_ok(git(repo, askpass, None), "staging", &["add", "-A"]).await?;
    let raw = git_ok(
        git(repo, askpass, None),
        "reading the changes",
        &["diff", "--cached", "--raw", "-z", "-M", "--no-abbrev"],
    )
    .await?;
    let changes = path_policy::parse_raw_diff(raw.as_bytes())?;
    if changes.is_empty() {
        return Ok(Checked::NoChanges);
    }
    let violations = path_policy::check(&changes, allowed);
    if !violations.is_empty() {
        return Ok(Checked::Rejected(violations));
    }
    let numstat = git_ok(
        git(repo, askpass, None),
        "counting lines",
        &["diff", "--cached", "--numstat", "-M"],
    )
    .await?;
    Ok(Checked::Allowed(parse_numstat(&numstat)))
}

fn parse_numstat(text: &str) -> Vec<ChangedFile> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let added = parts.next()?.parse().unwrap_or(0);
            let removed = parts.next()?.parse().unwrap_or(0);
            let path = parts.next()?;
            // Renames read `old => new` or `dir/{old => new}`; report the new path.
            let path = match path.split_once(" => ") {
                Some((before, after)) => match (before.split_once('{'), after.split_once('}')) {
                    (Some((prefix, _)), Some((new, suffix))) => format!("{prefix}{new}{suffix}"),
                    _ => after.to_owned(),
                },
                None => path.to_owned(),
            };
            Some(ChangedFile {
                path,
                added,
                removed,
            })
        })
        .collect()
}

fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real repository with a committed `src/a.js`, `src/b.js` and `README.md`.
    fn repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("src")).unwrap();
        std::fs::write(repo.join("src/a.js"), "a\n").unwrap();
        std::fs::write(repo.join("src/b.js"), "b\n").unwrap();
        std::fs::write(repo.join("README.md"), "r\n").unwrap();
        for args in [
            &["init", "-q"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "commit",
                "-q",
                "-m",
                "init",
            ],
        ] {
            let ok = std::process::Command::new("git")
                .current_dir(&repo)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        (dir, repo)
    }

    async fn check(repo: &Path) -> Checked {
        let allowed = vec!["src/".to_owned()];
        check_changes(repo, Path::new("/bin/false"), &allowed)
            .await
            .unwrap()
    }

    fn rejected(c: Checked) -> Vec<String> {
        match c {
            Checked::Rejected(v) => v.into_iter().map(|v| v.path).collect(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn git_sees_what_a_file_listing_would_miss() {
        let (_d, repo) = repo();
        assert!(matches!(check(&repo).await, Checked::NoChanges));

        std::os::unix::fs::symlink("/etc/passwd", repo.join("src/link")).unwrap();
        assert_eq!(rejected(check(&repo).await), vec!["src/link"]);
        std::fs::remove_file(repo.join("src/link")).unwrap();

        std::fs::rename(repo.join("src/a.js"), repo.join("a.js")).unwrap();
        assert_eq!(rejected(check(&repo).await), vec!["a.js"]);
        std::fs::rename(repo.join("a.js"), repo.join("src/a.js")).unwrap();

        std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
        std::fs::write(repo.join(".github/workflows/x.yml"), "on: push\n").unwrap();
        assert_eq!(
            rejected(check(&repo).await),
            vec![".github/workflows/x.yml"]
        );
        std::fs::remove_dir_all(repo.join(".github")).unwrap();

        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            repo.join("src/b.js"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(rejected(check(&repo).await), vec!["src/b.js"]);
        std::fs::set_permissions(
            repo.join("src/b.js"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        std::fs::write(repo.join("src/a.js"), "a fixed\n").unwrap();
        std::fs::remove_file(repo.join("src/b.js")).unwrap();
        match check(&repo).await {
            Checked::Allowed(files) => assert_eq!(
                files,
                vec![
                    ChangedFile {
                        path: "src/a.js".into(),
                        added: 1,
                        removed: 1
                    },
                    ChangedFile {
                        path: "src/b.js".into(),
                        added: 0,
                        removed: 1
                    },
                ]
            ),
            other => panic!("expected allowed, got {other:?}"),
        }
    }

    #[test]
    fn numstat_paths() {
        let files =
            parse_numstat("3\t1\tsrc/cart.js\n-\t-\tsrc/logo.png\n2\t0\tsrc/{a.js => b.js}\n");
        assert_eq!(
            files[0],
            ChangedFile {
                path: "src/cart.js".into(),
                added: 3,
                removed: 1
            }
        );
        assert_eq!(files[1].added, 0);
        assert_eq!(files[2].path, "src/b.js");
    }
}
