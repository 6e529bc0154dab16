//! The executor in its production image (`executor-container/Dockerfile`), as a Cloudflare
//! Container under `wrangler dev`: a fix goes consumer → the container's Durable Object → the
//! executor in its container → a push to the sandbox's git remote, and inside the container the
//! executor's guarantees hold. These cases run when the stack runs Containers (`scripts/test` does;
//! `BUGBOT_CONTAINERS=0` marks them ignored).

use crate::context::{E2e, no_violations};
use crate::ensure_eq;
use crate::fix::{github_cart_fix, pulls_of};
use anyhow::{Context, Result, ensure};
use std::process::Command;
use std::sync::Arc;

/// Runs `docker exec` in `container` as `user` with the container's secrets blanked from the
/// exec's own environment (docker hands an exec the container's variables; the agent never gets
/// them). Returns (success, stdout + stderr).
fn exec_as(container: &str, user: &str, script: &str) -> Result<(bool, String)> {
    let out = Command::new("docker")
        .args(["exec", "--user", user])
        .args(["--env", "EXECUTOR_TOKEN=", "--env", "ANTHROPIC_API_KEY="])
        .arg(container)
        .args(["sh", "-c", script])
        .output()
        .context("docker exec")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

pub async fn a_fix_runs_in_the_executor_container_with_its_agent_unprivileged_and_no_secret_in_reach(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let (_, job) = github_cart_fix(&ctx, "@bugbot fix").await?;
    crate::contextualize::wait_status(&ctx, &job, "succeeded", 180).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(pulls_of(&state, &job).len(), 1, "one pull request");

    // The run happened in a container of the production image (not the executor process).
    let found = bugbot_tests::stack::executor_container_logs()
        .into_iter()
        .find_map(|(name, log)| {
            log.lines()
                .find(|l| l.contains("fix requested") && l.contains(&job))
                .map(|line| (name, line.to_owned()))
        });
    let (container, line) = found.context("no executor container ran this job's fix")?;
    ensure!(
        !std::fs::read_to_string(ctx.log_dir.join("executor.log"))
            .unwrap_or_default()
            .contains(&job),
        "the executor process did not run it"
    );

    // The agent ran as an unprivileged uid of its own; the executor runs as root.
    let uid: u32 = line
        .split("Some((")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no agent uid in {line}"))?;
    ensure!(uid >= 61000, "the agent's uid is {uid}");
    let (_, root) = exec_as(&container, "0", "id -u")?;
    ensure_eq!(root.trim(), "0", "the executor's user");
    let agent = format!("{uid}:{uid}");
    let (_, who) = exec_as(&container, &agent, "id -u")?;
    ensure_eq!(who.trim(), uid.to_string());

    // git and Claude Code at the pinned version are in the image.
    let (git_ok, git) = exec_as(&container, &agent, "git --version")?;
    ensure!(git_ok && git.starts_with("git version"), "{git}");
    let pinned = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(
        bugbot_tests::localenv::repo_root().join("package.json"),
    )?)?["devDependencies"]["@anthropic-ai/claude-code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, claude) = exec_as(&container, &agent, "claude --version")?;
    ensure!(
        !pinned.is_empty() && claude.contains(&pinned),
        "Claude Code {pinned} is in the image: {claude}"
    );

    // From the agent's uid, no process environment, file or folder holds a secret: the
    // executor's environment (which has them) is not readable, nor is anything under /proc of
    // root's processes; the rest of the file system is searched for the values themselves.
    let (environ_ok, environ) = exec_as(&container, &agent, "cat /proc/1/environ")?;
    ensure!(
        !environ_ok && environ.contains("Permission denied"),
        "the init process's environment is out of reach: {environ}"
    );
    // Every process environment and command line the agent's uid can read, searched here.
    let (_, processes) = exec_as(
        &container,
        &agent,
        "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat \"$f\" 2>/dev/null; done | tr '\\0' '\\n'",
    )?;
    ensure!(
        processes.contains("PATH="),
        "the agent's own processes were read"
    );
    for name in ["EXECUTOR_TOKEN", "ANTHROPIC_API_KEY"] {
        let secret = ctx.env.get(name);
        ensure!(secret.len() >= 16, "{name} is set locally");
        ensure!(
            !processes.contains(&secret),
            "a process the agent can read holds {name}"
        );
        // Files: the value goes in through stdin into a file of the agent's own (no command line
        // holds it), which the search leaves out.
        let mut search = Command::new("docker")
            .args(["exec", "-i", "--user", &agent])
            .args(["--env", "EXECUTOR_TOKEN=", "--env", "ANTHROPIC_API_KEY="])
            .arg(&container)
            .args([
                "sh",
                "-c",
                "n=$(mktemp); cat > \"$n\"; \
                 grep -rIl -F -f \"$n\" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null \
                   | grep -v -x -F \"$n\" | head -5; rm -f \"$n\"",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = search.stdin.take() {
            use std::io::Write as _;
            writeln!(stdin, "{secret}")?;
        }
        let out = search.wait_with_output()?;
        let files = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        ensure!(
            files.is_empty(),
            "files the agent can read hold {name}: {files}"
        );
    }
    Ok(())
}
