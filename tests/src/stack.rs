//! Starts and stops the whole local stack: the sandbox, the executor, and `wrangler dev` running the
//! gateway and consumer Workers together (local Queue, dead-letter queue and KV).
//!
//! `scripts/dev` runs it in the foreground through the `stack` binary; the end-to-end tests start one
//! on free ports with a fresh state directory. Every child runs in its own process group, and dropping
//! the [`Stack`] terminates the groups, so nothing is left behind (wrangler's `workerd` included).

use crate::localenv::{LocalEnv, repo_root};
use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Ports of the three listening parts.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Gateway Worker (wrangler dev).
    pub gateway: u16,
    /// Executor.
    pub executor: u16,
    /// Sandbox.
    pub sandbox: u16,
    /// wrangler's inspector (must not collide between stacks).
    pub inspector: u16,
}

impl Ports {
    /// The documented defaults: 8787, 8790, 8791 (inspector 9229).
    pub fn defaults() -> Self {
        Self {
            gateway: 8787,
            executor: 8790,
            sandbox: 8791,
            inspector: 9229,
        }
    }

    /// Four ports the OS reports free right now.
    pub fn free() -> Result<Self> {
        let mut listeners = Vec::new();
        for _ in 0..4 {
            listeners.push(std::net::TcpListener::bind("127.0.0.1:0")?);
        }
        let port = |i: usize| -> Result<u16> { Ok(listeners[i].local_addr()?.port()) };
        Ok(Self {
            gateway: port(0)?,
            executor: port(1)?,
            sandbox: port(2)?,
            inspector: port(3)?,
        })
    }
}

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where each part listens.
    pub ports: Ports,
    /// wrangler's local state (KV, queues). A fresh directory gives a clean stack.
    pub state_dir: PathBuf,
    /// Each part's output goes to `<log_dir>/<part>.log`.
    pub log_dir: PathBuf,
    /// Also print each part's output, prefixed with its name.
    pub echo: bool,
    /// How long to wait for every part to answer (the first wrangler start compiles the Workers).
    pub ready_timeout: Duration,
    /// Run the consumer Worker too (everything but the gateway benchmark wants it).
    pub with_consumer: bool,
    /// Attach wrangler's DevTools inspector, as `wrangler dev` always does. Only the gateway
    /// benchmark turns it off (without the consumer), through `dev/gateway-without-inspector.mjs`.
    pub inspector: bool,
    /// Run the executor as production does: a Cloudflare Container built from
    /// `executor-container/Dockerfile`, reached through the consumer's `EXECUTOR` binding in
    /// `wrangler dev` (needs `scripts/container-engine`). The executor process still runs for the
    /// tests that call it directly.
    pub containers: bool,
}

/// The egress sidecar image `scripts/container-engine` builds (wrangler and miniflare read
/// `MINIFLARE_CONTAINER_EGRESS_IMAGE`).
pub const EGRESS_IMAGE: &str = "bugbot-local/egress:dev";

/// Whether the stacks of this run use Containers (`BUGBOT_CONTAINERS=1`, set by `scripts/test`
/// once `scripts/container-engine` readied the engine).
pub fn containers_wanted() -> bool {
    std::env::var("BUGBOT_CONTAINERS").as_deref() == Ok("1")
}

/// Where a stack's sandbox listens: on the Docker bridge when the executor runs in Containers
/// (they reach it there), else on loopback.
pub fn sandbox_host(containers: bool) -> Result<String> {
    if containers {
        docker_bridge_gateway()
    } else {
        Ok("127.0.0.1".to_owned())
    }
}

/// The Docker bridge's gateway address: where the host's listeners are reachable from containers
/// (the network's `Gateway`, or the first address of its subnet, which Docker gives the bridge).
fn docker_bridge_gateway() -> Result<String> {
    let out = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
        ])
        .output()
        .context("running docker (is the engine up? scripts/container-engine)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default();
    let ip = match first.parse::<std::net::Ipv4Addr>() {
        Ok(gateway) => Some(gateway),
        // No gateway given: `first` is the subnet.
        Err(_) => first
            .split('/')
            .next()
            .and_then(|net| net.parse::<std::net::Ipv4Addr>().ok())
            .map(|net| std::net::Ipv4Addr::from(u32::from(net) + 1)),
    };
    match ip {
        Some(ip) if out.status.success() => Ok(ip.to_string()),
        _ => bail!(
            "no Docker bridge gateway in {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A running local stack. Dropping it stops every part.
#[derive(Debug)]
pub struct Stack {
    children: Vec<(&'static str, Child)>,
    /// The executor runs in Containers (removed when the stack stops).
    containers: bool,
    /// The consumer's generated local config, removed when the stack stops.
    consumer_config: Option<PathBuf>,
    /// The local environment with this stack's real addresses.
    pub env: LocalEnv,
    /// Where the parts' logs are.
    pub log_dir: PathBuf,
}

/// A built binary of this workspace (`cargo build --bins` puts them in the target directory).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // The stack binary lives in target/<profile>/, test binaries in target/<profile>/deps/.
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "binary `{name}` not found next to {}; build it first (`cargo build --workspace --bins`)",
        exe.display()
    )
}

impl Stack {
    /// Starts every part and waits until each answers.
    pub async fn start(opts: StackOptions) -> Result<Self> {
        let root = repo_root();
        // Containers reach the sandbox (the git host and the model API's stand-ins) on the Docker
        // bridge; everything else reaches it there too, so each URL names one place.
        let sandbox_host = sandbox_host(opts.containers)?;
        let env = LocalEnv::load_with_urls(
            &format!("http://127.0.0.1:{}", opts.ports.gateway),
            &format!("http://127.0.0.1:{}", opts.ports.executor),
            &format!("http://{sandbox_host}:{}", opts.ports.sandbox),
        )?;
        // A part answering on a port we were given would pass the readiness check by mistake.
        for (part, port) in [
            ("gateway", opts.ports.gateway),
            ("executor", opts.ports.executor),
            ("sandbox", opts.ports.sandbox),
            ("inspector", opts.ports.inspector),
        ] {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!(
                    "port {port} for the {part} is in use (is another local stack running? stop it or pick other ports)"
                );
            }
        }
        std::fs::create_dir_all(&opts.log_dir)?;
        std::fs::create_dir_all(&opts.state_dir)?;
        let env_file = opts.state_dir.join("workers.env");
        std::fs::write(&env_file, env.render())?;

        // wrangler 4.86 gives `--env-file` to the first Worker of a multi-Worker session only; the
        // consumer's vars go into a generated copy of its config (next to it, so that its relative
        // paths hold; git-ignored, one per stack, removed on stop).
        let consumer_config = root.join(format!(
            "consumer/wrangler.local-{}.toml",
            opts.ports.gateway
        ));
        let base = std::fs::read_to_string(root.join("consumer/wrangler.toml"))?;
        std::fs::write(
            &consumer_config,
            consumer_config_with_vars(&base, &env, opts.containers),
        )?;

        let mut stack = Self {
            children: Vec::new(),
            containers: false,
            consumer_config: Some(consumer_config.clone()),
            env,
            log_dir: opts.log_dir.clone(),
        };

        let mut sandbox = Command::new(workspace_binary("sandbox")?);
        sandbox.env(
            "SANDBOX_ADDR",
            format!("{sandbox_host}:{}", opts.ports.sandbox),
        );
        stack.spawn("sandbox", sandbox, &opts).await?;

        let mut executor = Command::new(workspace_binary("bugbot-executor")?);
        executor
            .env(
                "EXECUTOR_ADDR",
                format!("127.0.0.1:{}", opts.ports.executor),
            )
            .env("EXECUTOR_TOKEN", stack.env.get("EXECUTOR_TOKEN"))
            .env("CLAUDE_BIN", claude_binary(&root)?)
            .env("ANTHROPIC_BASE_URL", stack.env.get("ANTHROPIC_BASE_URL"))
            .env("ANTHROPIC_API_KEY", stack.env.get("ANTHROPIC_API_KEY"))
            .env("EXECUTOR_WORK_DIR", opts.state_dir.join("executor"))
            // file:// remotes in tests; as root the agents still get users of their own.
            .env("EXECUTOR_DEV_MODE", "true");
        // Agents run as other users: they must be able to pass through the state folder.
        make_traversable(&opts.state_dir)?;
        stack.spawn("executor", executor, &opts).await?;

        let wrangler = root.join("node_modules/.bin/wrangler");
        if !wrangler.is_file() {
            bail!("{} is missing; run scripts/bootstrap", wrangler.display());
        }
        let mut workers = if opts.inspector {
            let mut wrangler_dev = Command::new(wrangler);
            wrangler_dev.args(["dev", "-c", "gateway/wrangler.toml"]);
            if opts.with_consumer {
                wrangler_dev.arg("-c").arg(&consumer_config);
            }
            wrangler_dev
                .arg("--env-file")
                .arg(&env_file)
                .args(["--ip", "127.0.0.1", "--port"])
                .arg(opts.ports.gateway.to_string())
                .arg("--inspector-port")
                .arg(opts.ports.inspector.to_string())
                .arg("--persist-to")
                .arg(&opts.state_dir)
                // `log` level: the Workers' console.log lines (structured logs) reach the log file.
                .args(["--show-interactive-dev-session=false", "--log-level", "log"]);
            wrangler_dev
        } else {
            if opts.with_consumer {
                bail!("the stack without the inspector runs the gateway alone");
            }
            let mut without_inspector = Command::new("node");
            without_inspector
                .arg("dev/gateway-without-inspector.mjs")
                .arg(&env_file)
                .arg(opts.ports.gateway.to_string())
                .arg(&opts.state_dir);
            without_inspector
        };
        if opts.containers {
            workers
                .env(
                    "WRANGLER_DOCKER_BIN",
                    root.join("dev/container/wrangler-docker"),
                )
                .env("MINIFLARE_CONTAINER_EGRESS_IMAGE", EGRESS_IMAGE)
                // wrangler asks `docker context ls --format json` otherwise, which Debian's
                // docker 20.10 does not answer in JSON.
                .env(
                    "WRANGLER_DOCKER_HOST",
                    std::env::var("DOCKER_HOST")
                        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
                );
        }
        stack.containers = opts.containers;
        workers
            .current_dir(&root)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .env("PATH", tool_path(&root));
        stack.spawn("workers", workers, &opts).await?;

        let deadline = Instant::now() + opts.ready_timeout;
        for (part, url) in [
            (
                "sandbox",
                format!("{}/health", stack.env.get("SANDBOX_URL")),
            ),
            (
                "executor",
                format!("{}/healthz", stack.env.get("EXECUTOR_URL")),
            ),
            (
                "workers",
                format!("{}/health", stack.env.get("GATEWAY_URL")),
            ),
        ] {
            stack.wait_ready(part, &url, deadline).await?;
        }
        Ok(stack)
    }

    async fn spawn(
        &mut self,
        name: &'static str,
        mut cmd: Command,
        opts: &StackOptions,
    ) -> Result<()> {
        let log_path = opts.log_dir.join(format!("{name}.log"));
        cmd.process_group(0).stdin(Stdio::null()).kill_on_drop(true);
        if !opts.echo {
            // Straight into the log file: the part writes it itself. (Piping it through this
            // process costs a read and an async file write per line — a line per request under
            // load, on the same cores as the part, which skewed the benchmark.)
            let log = std::fs::File::create(&log_path)?;
            cmd.stdout(log.try_clone()?).stderr(log);
            let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
            self.children.push((name, child));
            return Ok(());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let log = tokio::fs::File::create(&log_path).await?;
        let log = std::sync::Arc::new(tokio::sync::Mutex::new(log));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            let echo = opts.echo;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{name}] {line}");
                    }
                    let mut f = log.lock().await;
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
            });
        }
        self.children.push((name, child));
        Ok(())
    }

    async fn wait_ready(&mut self, part: &str, url: &str, deadline: Instant) -> Result<()> {
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| *n == part)
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{part} exited ({status}) before answering {url}; its log:\n{}",
                    self.log_tail(part, 40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{part} did not answer {url} in time; its log:\n{}",
                    self.log_tail(part, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `n` lines a part printed.
    pub fn log_tail(&self, part: &str, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.log_dir.join(format!("{part}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until any part exits (for the foreground `stack` binary); returns its name.
    pub async fn wait_any_exit(&mut self) -> &'static str {
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(_)) = child.try_wait() {
                    return name;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every part: SIGTERM to each process group, then SIGKILL to what is left.
    pub fn stop(&mut self) {
        let groups: Vec<Pid> = self
            .children
            .iter()
            .filter_map(|(_, c)| c.id())
            .map(|id| Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX)))
            .collect();
        for &pg in &groups {
            let _ = killpg(pg, Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && groups.iter().any(|&pg| killpg(pg, None).is_ok()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for &pg in &groups {
            let _ = killpg(pg, Signal::SIGKILL);
        }
        // Reap them, so no zombie outlives the stack.
        for (_, child) in &mut self.children {
            let _ = child.start_kill();
            let reap_deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < reap_deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.children.clear();
        if let Some(config) = self.consumer_config.take() {
            let _ = std::fs::remove_file(config);
        }
        if std::mem::take(&mut self.containers) {
            remove_containers();
        }
    }
}

/// The executor Container as production declares it (consumer/wrangler.toml's
/// `env.production.containers`), for `wrangler dev`.
const CONTAINER_CONFIG: &str = r#"
[[containers]]
class_name = "ExecutorContainer"
image = "../executor-container/Dockerfile"
image_build_context = ".."
instance_type = "standard-1"
max_instances = 10

[[durable_objects.bindings]]
name = "EXECUTOR"
class_name = "ExecutorContainer"

[[migrations]]
tag = "v3"
new_sqlite_classes = ["ExecutorContainer"]
"#;

/// The consumer's wrangler config with the local environment as `[vars]` (and, with `containers`,
/// the executor Container in place of the executor process's URL).
fn consumer_config_with_vars(base: &str, env: &LocalEnv, containers: bool) -> String {
    let mut out = String::from(
        "# GENERATED by the local stack from consumer/wrangler.toml and dev/local.env (test-only values).\n",
    );
    out.push_str(base);
    if containers {
        out.push_str(CONTAINER_CONFIG);
    }
    out.push_str("\n[vars]\n");
    for (k, v) in env.entries() {
        if containers && k == "EXECUTOR_URL" {
            continue;
        }
        out.push_str(&format!("{k} = {}\n", serde_json::Value::String(v.clone())));
    }
    out
}

/// Name prefix of the containers workerd starts for the consumer's executor Container class
/// (`…-proxy` are their network sidecars).
const EXECUTOR_CONTAINERS: &str = "workerd-bugbot-consumer-ExecutorContainer";

/// Each executor container of this machine's stacks, by name, with its output. A container is
/// removed a minute after the consumer has its run's result (`consumer/src/container.rs`), and
/// its output with it: read it before then.
pub fn executor_container_logs() -> Vec<(String, String)> {
    executor_container_names()
        .into_iter()
        .filter_map(|name| {
            let o = std::process::Command::new("docker")
                .args(["logs", &name])
                .output()
                .ok()?;
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            Some((name, log))
        })
        .collect()
}

/// The names of the executor containers of this machine's stacks (not their network sidecars).
pub fn executor_container_names() -> Vec<String> {
    let names = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("name={EXECUTOR_CONTAINERS}"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    names
        .lines()
        .filter(|n| !n.ends_with("-proxy"))
        .map(str::to_owned)
        .collect()
}

/// The output of every executor container of this machine's stacks, one after another.
pub fn container_logs() -> String {
    executor_container_logs()
        .into_iter()
        .map(|(_, log)| log)
        .collect()
}

/// Removes the containers (and their network sidecars) workerd started for this stack's executor
/// Container class: wrangler removes the app containers on exit, not the sidecars.
fn remove_containers() {
    let list = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("name={EXECUTOR_CONTAINERS}"),
        ])
        .output();
    if let Ok(out) = list {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Claude Code CLI's native binary, as `npm ci` installed it (install scripts do not run, so
/// the platform package's binary is used directly).
pub fn claude_binary(root: &Path) -> Result<PathBuf> {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x64"
    };
    let candidate = root.join(format!(
        "node_modules/@anthropic-ai/claude-code-linux-{arch}/claude"
    ));
    if candidate.is_file() {
        Ok(candidate)
    } else {
        bail!("{} is missing; run scripts/bootstrap", candidate.display())
    }
}

/// PATH with the project's pinned tools first (worker-build, wasm-bindgen).
pub fn tool_path(root: &Path) -> String {
    let tools = root.join(".tools/cargo/bin");
    match std::env::var("PATH") {
        Ok(p) => format!("{}:{p}", tools.display()),
        Err(_) => tools.display().to_string(),
    }
}

/// Lets other users pass through `dir` and its parent (when we own them: folders this launcher or
/// its caller made, such as a private temporary folder), so an agent's user reaches its workspace.
fn make_traversable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let me = nix::unistd::geteuid().as_raw();
    for d in [dir.parent(), Some(dir)].into_iter().flatten() {
        let meta = std::fs::metadata(d)?;
        if meta.uid() == me && meta.mode() & 0o001 == 0 {
            std::fs::set_permissions(
                d,
                std::fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o011),
            )?;
        }
    }
    Ok(())
}
