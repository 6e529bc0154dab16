//! `scripts/bench`: loads the local gateway with `wrk` and prints throughput and latency.
//!
//! Starts its own stack (fresh state, free ports), so figures are not skewed by a dev session.
//! Each signed scenario sends distinct, pre-signed requests (distinct interaction ids, delivery ids
//! and users), so every request really verifies, passes dedupe and the rate limit, and enqueues.

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use bugbot_tests::fixtures::{BUGGY_CART_JS, CART_FIX, git};
use bugbot_tests::localenv::repo_root;
use bugbot_tests::signing;
use bugbot_tests::stack::{Ports, Stack, StackOptions};
use clap::Parser;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Benchmark the local gateway with wrk")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Rounds of the gateway's measurements; each figure printed is the median round's (this VM's
    /// speed varies from minute to minute, and one round can be off by 20 % or more).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Which benchmark: `gateway`, `executor`, `container` or `all` (`container` only when Docker
    /// is ready: `scripts/container-engine`).
    #[arg(long, default_value = "all")]
    only: String,
    /// Size of the generated repository for the executor benchmark, in MB.
    #[arg(long, default_value_t = 50)]
    repo_mb: usize,
    /// Attach wrangler's DevTools inspector, as `wrangler dev` does (by default the gateway runs
    /// under wrangler's dev server without it: see docs/benchmarks.md). Implies --via-proxy.
    #[arg(long)]
    inspector: bool,
    /// Send the load through wrangler's dev proxy, as a client of `wrangler dev` does, instead of
    /// to the socket of the workerd that runs the Workers (see docs/benchmarks.md: the proxy, a
    /// dev-only part, takes more CPU than the Worker it fronts).
    #[arg(long)]
    via_proxy: bool,
    /// Pre-signed requests per run of a signed scenario (each run sends new ones; more than a run
    /// sends). Default: 1,500 per second of the run, plus 1,000.
    #[arg(long)]
    requests: Option<usize>,
    /// Fixes run through the executor's Container (each its own, started cold).
    #[arg(long, default_value_t = 3)]
    container_fixes: u32,
    /// Which of the gateway's scenarios to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "health,ping,fix"
    )]
    scenarios: Vec<Scenario>,
    /// Leave the processes where the scheduler puts them, instead of giving the Workers' runtimes
    /// a core of their own (see docs/benchmarks.md, "Cores").
    #[arg(long)]
    no_pin: bool,
    /// Keep the stack's local state and logs (their folder is printed at the end).
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum Scenario {
    Health,
    #[value(name = "ping")]
    DiscordPing,
    #[value(name = "fix")]
    DiscordFix,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Self::Health => "GET /health (no work: each runtime's floor, for reference)",
            Self::DiscordPing => "signed Discord PING",
            Self::DiscordFix => {
                "signed `/bugbot fix` with admission (a new interaction and user each)"
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    /// Requests that got no answer: wrk's connect, read and write errors and its timeouts.
    socket_errors: u64,
    requests: u64,
    /// CPU time per request by process group (ms), from /proc, over the run.
    cpu_ms: Vec<(&'static str, f64)>,
    /// The machine's cores busy on average over the run (all processes, from /proc/stat).
    busy_cores: f64,
    /// Of those, the cores the hypervisor gave to other machines ("steal"): a run with much of it
    /// measured the neighbours as well.
    steal_cores: f64,
}

impl Figures {
    /// Requests that failed: answered non-2xx, or not answered at all.
    fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// The process groups whose CPU time the benchmark reports (where the time goes).
const CPU_GROUPS: [&str; 4] = [
    "workerd: Workers",
    "workerd: wrangler proxy",
    "node: wrangler",
    "wrk",
];

/// Which group a process belongs to, from its command line. wrangler dev runs two workerd
/// processes: its proxy, listening on the dev server's port, and the one running the Workers,
/// whose entry socket gets a port of the system's choosing (`:0`).
fn cpu_group(cmdline: &str) -> Option<&'static str> {
    if cmdline.contains("workerd serve") {
        Some(if cmdline.contains("entry=127.0.0.1:0 ") {
            CPU_GROUPS[0]
        } else {
            CPU_GROUPS[1]
        })
    } else if cmdline.contains("wrangler-dist/cli.js")
        || cmdline.contains("gateway-without-inspector.mjs")
    {
        Some(CPU_GROUPS[2])
    } else {
        None
    }
}

/// CPU seconds used so far by each running process, by group (Linux /proc; empty elsewhere), and
/// the machine's busy and stolen CPU seconds.
type CpuSnapshot = (
    std::collections::HashMap<u32, (&'static str, f64)>,
    (f64, f64),
);

fn cpu_snapshot() -> CpuSnapshot {
    let mut out = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let Some(group) = cpu_group(&cmd) else {
            continue;
        };
        // utime and stime.
        let Some(cpu) = stat_seconds(&entry.path().join("stat"), [11, 12]) else {
            continue;
        };
        out.insert(pid, (group, cpu));
    }
    let busy = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_owned();
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
            let busy = v.iter().sum::<f64>() - v.get(3)? - v.get(4)?;
            Some((busy / CLOCK_TICKS, v.get(7)? / CLOCK_TICKS))
        })
        .unwrap_or((0.0, 0.0));
    (out, busy)
}

/// One pre-built request.
#[derive(Debug, Clone)]
struct Spec {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn lua_request(
    method: &'static str,
    path: &'static str,
    headers: &[(&'static str, String)],
    body: &str,
) -> Spec {
    Spec {
        method,
        path,
        headers: headers.to_vec(),
        body: body.to_owned(),
    }
}

impl Spec {
    /// Sends it once, so a request the gateway refuses fails the benchmark with the reason.
    async fn check(&self, base: &str) -> Result<()> {
        let client = reqwest::Client::new();
        let mut req = client.request(self.method.parse()?, format!("{base}{}", self.path));
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        if !self.body.is_empty() {
            req = req.body(self.body.clone());
        }
        let r = req.send().await?;
        let status = r.status();
        if !status.is_success() {
            bail!(
                "{} {} answered {status}: {}",
                self.method,
                self.path,
                r.text().await?
            );
        }
        Ok(())
    }
}

/// Writes the requests as raw HTTP (NUL-separated) and a wrk script that sends them in turn, each
/// thread taking its own share (every n-th of them, n the script's argument), and prints the first
/// three non-2xx answers to stderr.
/// (Data in a file, not Lua constants: LuaJIT limits the constants of one chunk.) With `think_ms`,
/// each connection waits that long on average (uniformly 0 to twice it) after an answer before it
/// sends again: a steady load below saturation, its arrivals spread out (a fixed wait would keep
/// the connections in step, sending bursts of 64). wrk times each request from when it is sent.
fn write_script(path: &Path, requests: &[Spec], host: &str, think_ms: Option<u32>) -> Result<()> {
    let mut data = Vec::new();
    for r in requests {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", r.method, r.path);
        for (k, v) in &r.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n\r\n", r.body.len());
        data.extend_from_slice(head.as_bytes());
        data.extend_from_slice(r.body.as_bytes());
        data.push(0);
    }
    let data_path = path.with_extension("requests");
    std::fs::write(&data_path, data)?;
    let lua = format!(
        r#"
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  nthreads = tonumber(args[1]) or 1
  i = tid
  math.randomseed(os.time() + 7919 * tid)
  reqs = {{}}
  local f = assert(io.open("{}", "rb"))
  local data = f:read("*a")
  f:close()
  for r in string.gmatch(data, "([^%z]+)") do reqs[#reqs + 1] = r end
end
function request()
  local r = reqs[(i % #reqs) + 1]
  i = i + nthreads
  return r
end
shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write("  non-2xx answer: " .. status .. " " .. string.sub(body, 1, 200) .. "\n")
  end
end
{}
"#,
        data_path.display(),
        think_ms.map_or(String::new(), |ms| format!(
            "function delay()\n  return math.random(0, {})\nend",
            2 * ms
        ))
    );
    std::fs::write(path, lua)?;
    Ok(())
}

/// The requests numbered `ks` of a scenario (each signed command distinct by its number).
fn signed_requests(
    scenario: Scenario,
    ks: std::ops::Range<usize>,
    env: &bugbot_tests::localenv::LocalEnv,
) -> Vec<Spec> {
    let seed = env.get("DISCORD_TEST_SIGNING_SEED");
    let ts = signing::unix_timestamp();
    ks
        .map(|k| {
            if scenario == Scenario::Health {
                return lua_request("GET", "/health", &[], "");
            }
            let body = if scenario == Scenario::DiscordPing {
                    serde_json::json!({"id": format!("{}", 1_500_000_000_000_000_000u64 + k as u64),
                        "application_id": env.get("DISCORD_APPLICATION_ID"), "type": 1, "token": "bench", "version": 1})
                } else {
                    serde_json::json!({
                        "id": format!("{}", 1_600_000_000_000_000_000u64 + k as u64),
                        "application_id": env.get("DISCORD_APPLICATION_ID"), "type": 2, "token": "bench-token", "version": 1,
                        "guild_id": env.get("DISCORD_TEST_GUILD_ID"), "channel_id": env.get("DISCORD_TEST_CHANNEL_ID"),
                        "member": {"user": {"id": format!("{}", 1_700_000_000_000_000_000u64 + k as u64), "username": "bench"},
                                   "roles": [env.get("DISCORD_TEST_FIX_ROLE_ID")]},
                        "data": {"id": "1", "name": "bugbot", "type": 1, "options": [{"name": "fix", "type": 1,
                            "options": [{"name": "details", "type": 3, "value": "Checkout total is wrong, see ENG-12"}]}]}
                    })
                }
                .to_string();
                let (sig, ts) = signing::discord_headers(&seed, &ts, body.as_bytes());
                lua_request(
                    "POST",
                    "/discord/interactions",
                    &[
                        ("Content-Type", "application/json".into()),
                        ("X-Signature-Ed25519", sig),
                        ("X-Signature-Timestamp", ts),
                    ],
                    &body,
                )
        })
        .collect()
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(out: &str) -> Result<Figures> {
    let mut f = Figures::default();
    for line in out.lines().map(str::trim) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["50%", v] => f.p50_ms = parse_duration_ms(v).context("p50")?,
            ["99%", v] => f.p99_ms = parse_duration_ms(v).context("p99")?,
            ["Requests/sec:", v] => f.rps = v.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", v] => f.non_2xx = v.parse()?,
            // `Socket errors: connect 0, read 0, write 0, timeout 12`
            ["Socket", "errors:", rest @ ..] => {
                eprintln!("  wrk: {line}");
                f.socket_errors = rest
                    .iter()
                    .filter_map(|v| v.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            [n, "requests", "in", ..] => f.requests = n.parse()?,
            _ => {}
        }
    }
    if f.rps == 0.0 {
        bail!("could not read wrk's output:\n{out}");
    }
    Ok(f)
}

/// Waits (up to a minute) until the Workers' runtimes are idle: what a previous run left to do in
/// the background (a ledger's outbox draining to the queue after thousands of admissions) would
/// otherwise be charged to the next run, whichever target that is.
fn wait_until_idle() {
    const WINDOW: Duration = Duration::from_millis(500);
    let workers_cpu = || -> std::collections::HashMap<u32, f64> {
        cpu_snapshot()
            .0
            .into_iter()
            .filter(|(_, (group, _))| *group == CPU_GROUPS[0])
            .map(|(pid, (_, cpu))| (pid, cpu))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let before = workers_cpu();
        std::thread::sleep(WINDOW);
        let used: f64 = workers_cpu()
            .iter()
            .map(|(pid, cpu)| cpu - before.get(pid).copied().unwrap_or(*cpu))
            .sum();
        // Under 5 % of a core: idle (the tick counters' resolution is 10 ms).
        if used <= 0.05 * WINDOW.as_secs_f64() {
            return;
        }
    }
    eprintln!(
        "bench: the Workers' runtimes were still busy after a minute; this run shares the CPU with that work"
    );
}

/// Gives the Workers' runtimes (every thread of both targets' workerd; one runs at a time) the last
/// core, and every other process of the benchmark (this one, so wrk too; wrangler's Node and its
/// proxy) the rest. Left to the scheduler, wrk and Node sometimes shared the Worker's core and
/// sometimes not, from one run to the next, and `/health`, the same work on both sides, measured
/// 0.83–1.38× by round. On the edge a Worker's isolate does not share its core with its load
/// generator either. No effect on a single core.
fn pin_cores() -> Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Ok(());
    }
    let set_of = |range: std::ops::Range<usize>| -> Result<CpuSet> {
        let mut set = CpuSet::new();
        for core in range {
            set.set(core)?;
        }
        Ok(set)
    };
    let (workers, rest) = (set_of(cores - 1..cores)?, set_of(0..cores - 1)?);
    let pin = |pid: u32, set: &CpuSet| -> Result<()> {
        // Every thread: V8's compiler and GC helpers run beside the isolate's own.
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                // A thread may have ended since the listing.
                let _ = sched_setaffinity(Pid::from_raw(tid), set);
            }
        }
        Ok(())
    };
    let mut pinned = 0;
    for (pid, (group, _)) in cpu_snapshot().0 {
        pin(
            pid,
            if group == CPU_GROUPS[0] {
                &workers
            } else {
                &rest
            },
        )?;
        pinned += 1;
    }
    pin(std::process::id(), &rest)?;
    let rest_cores = if cores == 2 {
        "core 0".to_owned()
    } else {
        format!("cores 0-{}", cores - 2)
    };
    println!(
        "pinned: the Workers' runtimes to core {}, the other {pinned} processes and wrk to {rest_cores} (--no-pin to leave them)",
        cores - 1
    );
    Ok(())
}

fn run_wrk(url: &str, script: &Path, connections: u32, seconds: u32) -> Result<Figures> {
    wait_until_idle();
    // One wrk thread: it drives far more than this gateway's thousand requests/s, and with two,
    // the first one sends while wrk still loads the second one's requests, before its clock starts
    // (the loading competes for the CPU and the early answers inflate requests/s; the real
    // `issue_comment` payloads make that file large).
    let threads = 1;
    let (before, busy_before) = cpu_snapshot();
    let wrk_before = children_cpu_seconds();
    let started = std::time::Instant::now();
    let out = std::process::Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        // wrk's own default (2 s) drops slower answers from the latencies and counts them only as
        // socket errors; at saturation some answers take longer. Kept in, they weigh on the p99.
        .arg(format!("--timeout={WRK_TIMEOUT_SECONDS}s"))
        .arg("-s")
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(threads.to_string())
        .output()
        .context("running wrk (scripts/bench installs it)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (_, busy_after) = cpu_snapshot();
    let elapsed = started.elapsed().as_secs_f64();
    // The CPU a run caused includes what it left its runtime to do (an outbox still draining to the
    // queue): charged to it, read once the runtimes are idle again.
    wait_until_idle();
    let (after, _) = cpu_snapshot();
    // The script prints the first few non-2xx answers, so that an error count comes with its cause.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let mut f = parse_wrk(&String::from_utf8_lossy(&out.stdout))?;
    let mut by_group: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for (pid, (group, cpu)) in &after {
        let was = before.get(pid).map_or(0.0, |(_, c)| *c);
        *by_group.entry(group).or_default() += cpu - was;
    }
    // wrk has exited by now: its share comes from this process's accounting of waited children.
    *by_group.entry(CPU_GROUPS[3]).or_default() += children_cpu_seconds() - wrk_before;
    let requests = f.requests.max(1) as f64;
    f.cpu_ms = CPU_GROUPS
        .iter()
        .map(|g| {
            (
                *g,
                1000.0 * by_group.get(g).copied().unwrap_or(0.0) / requests,
            )
        })
        .collect();
    f.busy_cores = (busy_after.0 - busy_before.0) / elapsed;
    f.steal_cores = (busy_after.1 - busy_before.1) / elapsed;
    Ok(f)
}

/// Clock ticks per second in /proc (USER_HZ: 100 on every Linux the benchmark targets).
const CLOCK_TICKS: f64 = 100.0;

/// The sum of two tick counters of a `/proc/<pid>/stat` file, in seconds; `None` if it cannot be
/// read (the process is gone). Fields are counted after the command's closing parenthesis (the
/// command may hold spaces).
fn stat_seconds(path: &Path, fields: [usize; 2]) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let values: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    Some(
        fields
            .iter()
            .filter_map(|i| values.get(*i)?.parse::<f64>().ok())
            .sum::<f64>()
            / CLOCK_TICKS,
    )
}

/// CPU seconds of this process's waited-for children (wrk): cutime and cstime.
fn children_cpu_seconds() -> f64 {
    stat_seconds(Path::new("/proc/self/stat"), [13, 14]).unwrap_or(0.0)
}

/// A Worker's wasm size, raw and gzip; `None` if it is not built (the gateway's benchmark starts
/// the gateway alone, so the consumer is built only if something else built it).
fn wasm_size(crate_dir: &str) -> Result<Option<(u64, u64)>> {
    let path = repo_root().join(crate_dir).join("build/index_bg.wasm");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &bytes)?;
    Ok(Some((bytes.len() as u64, gz.finish()?.len() as u64)))
}

/// The address of the workerd that runs a Worker started by `dev/gateway-without-inspector.mjs`,
/// which prints it to its log (`log`) once ready.
async fn runtime_socket(log: &Path) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(url) = text
            .lines()
            .find_map(|l| l.strip_prefix("runtime socket: "))
        {
            if !url.starts_with("http://") {
                bail!("no runtime socket in {}: {url}", log.display());
            }
            return Ok(url.trim().to_owned());
        }
        if std::time::Instant::now() > deadline {
            bail!("no runtime socket in {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The JavaScript twin (`bench/js-twin/`), under the same runtime as the gateway: wrangler's dev
/// server without the inspector, its own port and state.
struct Twin {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Twin {
    /// wrangler's dev server starts two workerd processes of its own: the whole process group
    /// goes, or they would outlive the benchmark (and load the next one).
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let group = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
            std::thread::sleep(Duration::from_millis(500));
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

async fn start_twin(stack: &Stack, tmp: &Path) -> Result<Twin> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let env_file = tmp.join("twin.env");
    let mut vars = String::new();
    for k in [
        "DISCORD_PUBLIC_KEY",
        "DISCORD_GUILDS",
        "DISCORD_FIX_ROLES",
        "JOBS_PER_USER_PER_HOUR",
    ] {
        let _ = writeln!(vars, "{k}={}", stack.env.get(k));
    }
    std::fs::write(&env_file, vars)?;
    let root = repo_root();
    let log = std::fs::File::create(tmp.join("twin.log"))?;
    let child = tokio::process::Command::new("node")
        .arg("dev/gateway-without-inspector.mjs")
        .arg(&env_file)
        .arg(port.to_string())
        .arg(tmp.join("twin-state"))
        .arg("bench/js-twin/wrangler.toml")
        .current_dir(&root)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the JavaScript twin")?;
    // Owned at once: a start that fails stops the twin's processes too.
    let twin = Twin {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let up = reqwest::get(format!("{}/health", twin.url))
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the JavaScript twin did not start; its log: {}",
                tmp.join("twin.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(twin)
}

/// The median of `values`; of an even number, the worse of the middle two (`higher_is_worse`
/// says which that is).
fn median(mut values: Vec<f64>, higher_is_worse: bool) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = if higher_is_worse {
        values.len() / 2
    } else {
        values.len().saturating_sub(1) / 2
    };
    values.get(middle).copied().unwrap_or_default()
}

async fn gateway_bench(stack: &Stack, args: &Args, tmp: &Path) -> Result<()> {
    let twin = start_twin(stack, tmp).await?;
    let via_proxy = args.via_proxy || args.inspector;
    let (gateway, twin_url) = if via_proxy {
        (stack.env.get("GATEWAY_URL"), twin.url.clone())
    } else {
        (
            runtime_socket(&stack.log_dir.join("workers.log")).await?,
            runtime_socket(&tmp.join("twin.log")).await?,
        )
    };
    println!(
        "bugbot gateway against a plain JavaScript Worker doing the same work (bench/js-twin), both under wrangler's dev server without the inspector ({}), wrk at {} connections {}, {}s runs, {} rounds alternating which goes first",
        if args.inspector {
            "the gateway with the inspector: --inspector"
        } else {
            "dev/gateway-without-inspector.mjs"
        },
        CONNECTIONS,
        if via_proxy {
            "through wrangler's dev proxy (--via-proxy)"
        } else {
            "to the socket of the workerd running the Workers (wrangler's dev proxy bypassed; --via-proxy to include it)"
        },
        args.seconds,
        args.rounds.max(1)
    );
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if !args.no_pin {
        pin_cores()?;
    }
    let env = &stack.env;
    let per_run = args
        .requests
        .unwrap_or(1_500 * args.seconds as usize + 1_000);
    // Every request is new (its own interaction id and user), across runs and targets.
    let sent = std::cell::Cell::new(0usize);
    let take = |n: usize| {
        let from = sent.get();
        sent.set(from + n);
        from..from + n
    };
    let next_script =
        |scenario: Scenario, path: &Path, url: &str, think_ms: Option<u32>| -> Result<()> {
            let specs = signed_requests(scenario, take(per_run), env);
            write_script(path, &specs, url.trim_start_matches("http://"), think_ms)
        };
    let targets = [
        ("bugbot (Rust/WASM)", gateway.as_str()),
        ("JavaScript twin", twin_url.as_str()),
    ];
    let rounds = args.rounds.max(1) as usize;
    let mut all_met = true;
    for scenario in [
        Scenario::Health,
        Scenario::DiscordPing,
        Scenario::DiscordFix,
    ] {
        if !args.scenarios.contains(&scenario) {
            continue;
        }
        let script = tmp.join(format!("{scenario:?}.lua"));
        // Each target answers one request first, by itself (a refusal fails the benchmark), then a
        // warm-up that is not reported.
        for (_, url) in targets {
            signed_requests(scenario, take(1), env)
                .first()
                .context("no requests")?
                .check(url)
                .await?;
            next_script(scenario, &script, url, None)?;
            run_wrk(url, &script, 16, 2)?;
        }
        // Each round runs each target once, which goes first alternating.
        let alternating = |think_ms: Option<u32>| -> Result<[Vec<Figures>; 2]> {
            let mut runs: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
            for round in 0..rounds {
                let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for t in order {
                    let url = targets[t].1;
                    next_script(scenario, &script, url, think_ms)?;
                    runs[t].push(run_wrk(url, &script, CONNECTIONS, args.seconds)?);
                }
            }
            Ok(runs)
        };
        let runs = alternating(None)?;
        // Latency at the same steady load on both, half what the twin sustains: at saturation a
        // request's wait is mostly its place in the runtime's queue, and which connections the
        // runtime serves first makes p99 swing tenfold from run to run on the same Worker.
        let twin_rps = median(runs[1].iter().map(|f| f.rps).collect(), false);
        let think_ms = (f64::from(CONNECTIONS) * 1000.0 / (twin_rps / 2.0).max(1.0)).round() as u32;
        let steady = if scenario == Scenario::Health {
            [Vec::new(), Vec::new()]
        } else {
            alternating(Some(think_ms))?
        };
        println!("\n{}", scenario.label());
        println!(
            "  {:<20} {:>6} {:>10} {:>9} {:>9} {:>8} {:>16} {:>14}   CPU ms/req by process: {}",
            "target",
            "round",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "Worker CPU ms/req",
            "all CPU ms/req",
            CPU_GROUPS.join(" / ")
        );
        let rows = |runs: &[Vec<Figures>; 2]| {
            for (t, (name, _)) in targets.iter().enumerate() {
                for (i, f) in runs[t].iter().enumerate() {
                    print_row(name, i + 1, f);
                }
            }
        };
        rows(&runs);
        if !steady[0].is_empty() {
            println!(
                "  at a steady load below saturation, the same on both ({think_ms} ms between a connection's answer and its next request: about {:.0} req/s):",
                f64::from(CONNECTIONS) * 1000.0 / f64::from(think_ms.max(1))
            );
            rows(&steady);
        }
        let ratios: Vec<f64> = runs[0]
            .iter()
            .zip(&runs[1])
            .map(|(b, j)| b.rps / j.rps.max(1.0))
            .collect();
        let errors: u64 = runs
            .iter()
            .chain(&steady)
            .flatten()
            .map(Figures::errors)
            .sum();
        let p99_of = |runs: &[Vec<Figures>; 2], t: usize| {
            median(runs[t].iter().map(|f| f.p99_ms).collect(), true)
        };
        let (p99, steady_p99) = (|t| p99_of(&runs, t), |t| p99_of(&steady, t));
        let cpu = |t: usize| median(runs[t].iter().map(|f| f.cpu_ms[0].1).collect(), true);
        let median_ratio = median(ratios.clone(), false);
        // p99 is compared at the steady load (see above); without one (`/health`), at saturation.
        let p99_no_worse = if steady[0].is_empty() {
            p99(0) <= p99(1)
        } else {
            steady_p99(0) <= steady_p99(1)
        };
        let met = ratios.iter().all(|r| *r >= 1.0) && p99_no_worse && errors == 0;
        if scenario != Scenario::Health {
            all_met &= met;
        }
        println!(
            "  throughput ratio bugbot / twin by round: {} (median {median_ratio:.2}); p99 at saturation {:.1} vs {:.1} ms{}; Worker CPU {:.3} vs {:.3} ms/request; errors {errors}: {}",
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            p99(0),
            p99(1),
            if steady[0].is_empty() {
                String::new()
            } else {
                format!(
                    ", at the steady load {:.1} vs {:.1} ms",
                    steady_p99(0),
                    steady_p99(1)
                )
            },
            cpu(0),
            cpu(1),
            if met {
                "met (>= 1.0 every round, p99 no worse, 0 errors)"
            } else {
                "NOT met"
            }
        );
    }

    let (raw, gz) = wasm_size("gateway")?.context("the gateway's wasm is not built")?;
    let consumer = wasm_size("consumer")?.map_or("not built".to_owned(), |(raw, gz)| {
        format!("{raw} raw, {gz} gzip")
    });
    println!(
        "\nwasm size: gateway {raw} bytes raw, {gz} gzip ({:.0} KB, target < 400 KB gzip: {}); consumer {consumer}",
        gz as f64 / 1024.0,
        if gz < 400 * 1024 { "met" } else { "NOT met" }
    );
    println!(
        "\n{}",
        if all_met {
            "the gateway is at least as fast as the JavaScript twin in every scenario run and every round"
        } else {
            "some gateway targets were not met (see above)"
        }
    );
    Ok(())
}

/// One run's line in the gateway's table.
fn print_row(target: &str, round: usize, f: &Figures) {
    let total: f64 = f.cpu_ms.iter().map(|(_, ms)| ms).sum();
    println!(
        "  {:<20} {:>6} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>16.3} {:>14.3}   {} (busy {:.2} cores, steal {:.2})",
        target,
        round,
        f.rps,
        f.p50_ms,
        f.p99_ms,
        f.errors(),
        f.cpu_ms[0].1,
        total,
        f.cpu_ms
            .iter()
            .map(|(_, ms)| format!("{ms:.3}"))
            .collect::<Vec<_>>()
            .join(" / "),
        f.busy_cores,
        f.steal_cores
    );
}

/// wrk's connections in the comparison: enough to saturate the machine.
const CONNECTIONS: u32 = 64;

/// How long wrk waits for an answer before it counts the request as an error (a timeout). Well
/// above the slowest answers seen at saturation (p99 up to about 4 s), so that they count in the
/// latencies; a request still unanswered after it is an error.
const WRK_TIMEOUT_SECONDS: u32 = 10;

/// A bare repository of about `mb` MB with a long history (many commits of incompressible data),
/// made with `git fast-import`.
fn generate_repo(dir: &Path, mb: usize) -> Result<PathBuf> {
    use std::io::Write;
    let bare = dir.join("big.git");
    git(dir, &["init", "-q", "--bare", "big.git"])?;
    let commits = 1000usize;
    let blob_size = mb * 1024 * 1024 / commits;
    let mut child = std::process::Command::new("git")
        .current_dir(&bare)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("fast-import stdin")?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for n in 0..commits {
        let mut data = Vec::with_capacity(blob_size);
        while data.len() < blob_size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        let msg = format!("change {n}");
        write!(
            stdin,
            "commit refs/heads/main\ncommitter dev <dev@example.com> {} +0000\ndata {}\n{msg}\n",
            1_700_000_000 + n,
            msg.len()
        )?;
        write!(
            stdin,
            "M 644 inline assets/blob{}.bin\ndata {}\n",
            n % 50,
            data.len()
        )?;
        stdin.write_all(&data)?;
        writeln!(stdin)?;
        if n == 0 {
            let src = BUGGY_CART_JS;
            write!(
                stdin,
                "M 644 inline src/cart.js\ndata {}\n{src}\n",
                src.len()
            )?;
        }
    }
    drop(stdin);
    if !child.wait()?.success() {
        bail!("git fast-import failed");
    }
    git(&bare, &["gc", "--quiet"])?;
    Ok(bare)
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn executor_bench(stack: &Stack, args: &Args, tmp: &Path) -> Result<()> {
    println!(
        "\nbugbot executor benchmark: overhead of clone, checks, commit and push (model time excluded)"
    );
    let started = std::time::Instant::now();
    let bare = generate_repo(tmp, args.repo_mb)?;
    let commits = git(&bare, &["rev-list", "--count", "main"])?;
    println!(
        "repository: {:.1} MB packed, {} commits (generated in {:.1}s)",
        dir_size(&bare) as f64 / 1_048_576.0,
        commits.trim(),
        started.elapsed().as_secs_f64()
    );
    let url = format!("file://{}", bare.display());

    let t = std::time::Instant::now();
    git(tmp, &["clone", "-q", "--no-local", &url, "full-clone"])?;
    let full = t.elapsed().as_secs_f64();
    println!("full clone (git clone --no-local):        {full:>6.2} s");

    let http = reqwest::Client::new();
    http.post(format!("{}/_sandbox/anthropic/scenario", stack.env.get("SANDBOX_URL")))
        .json(&serde_json::json!({"steps": [
            {"tool_use": {"name": "Read", "input": {"file_path": "src/cart.js"}}},
            {"tool_use": {"name": "Edit", "input": {"file_path": "src/cart.js", "old_string": CART_FIX.0, "new_string": CART_FIX.1}}},
            {"text": "Fixed."}
        ]}))
        .send()
        .await?
        .error_for_status()?;
    let body = serde_json::json!({
        "repo_url": url, "base_branch": "main", "branch": "bugbot/bench",
        "task": {"issue_id": "ENG-1", "title": "Cart total"},
        "limits": {"wall_time_secs": 300, "max_turns": 6, "max_budget_usd": 1.0}
    });
    let t0 = std::time::Instant::now();
    let mut response = http
        .post(format!("{}/v1/fix", stack.env.get("EXECUTOR_URL")))
        .bearer_auth(stack.env.get("EXECUTOR_TOKEN"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    // Timestamp each event as it arrives.
    let mut marks: Vec<(String, f64)> = Vec::new();
    let mut buf = String::new();
    let mut outcome = serde_json::Value::Null;
    while let Some(chunk) = response.chunk().await? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let v: serde_json::Value = serde_json::from_str(&line)?;
            marks.push((
                v["event"].as_str().unwrap_or("").to_owned(),
                t0.elapsed().as_secs_f64(),
            ));
            if v["event"] == "done" {
                outcome = v["result"]["outcome"].clone();
            }
        }
    }
    let at = |e: &str| marks.iter().find(|(n, _)| n == e).map(|(_, t)| *t);
    let (Some(running), Some(checking), Some(done)) =
        (at("running"), at("checking_paths"), at("done"))
    else {
        bail!("missing events: {marks:?}");
    };
    let clone = running;
    let after = done - checking;
    let overhead = clone + after;
    println!("executor clone (shallow, single branch):   {clone:>6.2} s");
    println!("checks + commit + push:                    {after:>6.2} s");
    println!(
        "Claude Code (scripted model, excluded):    {:>6.2} s",
        checking - running
    );
    println!(
        "executor overhead: {overhead:.2} s (target < 3 s: {}), outcome {outcome}",
        if overhead < 3.0 && outcome == "pushed" {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

/// Fixes through the executor's Container in `wrangler dev`, each job its own container started
/// cold: the consumer logs each start's `cold_start_ms` (the container started → the executor
/// answering on its port), and the request → pull request time is taken from outside.
async fn container_bench(args: &Args, tmp: &Path) -> Result<()> {
    println!("\nbugbot executor Container benchmark: cold start and request -> pull request");
    let stack = Stack::start(StackOptions {
        ports: Ports::free()?,
        state_dir: tmp.join("container-state"),
        log_dir: tmp.join("container-logs"),
        echo: false,
        ready_timeout: Duration::from_secs(900),
        with_consumer: true,
        // The whole stack runs under `wrangler dev`, which attaches its inspector.
        inspector: true,
        containers: true,
    })
    .await?;
    let env = &stack.env;
    let http = reqwest::Client::new();
    let sandbox = env.get("SANDBOX_URL");
    let gateway = env.get("GATEWAY_URL");
    let post = |path: &str, body: serde_json::Value| {
        let request = http.post(format!("{sandbox}{path}")).json(&body);
        async move { request.send().await?.error_for_status().map(drop) }
    };
    let mut totals = Vec::new();
    for i in 0..args.container_fixes {
        let repo = env.get("GITHUB_TEST_REPO");
        post(
            "/_sandbox/git/repos",
            serde_json::json!({"repo": repo, "files": bugbot_tests::fixtures::web_app_files()}),
        )
        .await?;
        post(
            "/_sandbox/anthropic/scenario",
            bugbot_tests::fixtures::read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1),
        )
        .await?;
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            % 10_000_000_000_000
            + u128::from(i);
        let (thread, interaction) = (format!("15{n:017}"), format!("16{n:017}"));
        let token = format!("bench-interaction-token-{n}");
        post(
            &format!("/_sandbox/discord/channels/{thread}/messages"),
            serde_json::json!([
            {"author_id": "1200000000000000001", "username": "jane",
             "content": "Checkout charges $31 for three $10 items."}]),
        )
        .await?;
        post(
            "/_sandbox/discord/interactions",
            serde_json::json!({"token": token, "interaction_id": interaction}),
        )
        .await?;
        let body = serde_json::to_vec(&serde_json::json!({
            "id": interaction, "application_id": env.get("DISCORD_APPLICATION_ID"),
            "type": 2, "token": token, "version": 1,
            "guild_id": env.get("DISCORD_TEST_GUILD_ID"), "channel_id": thread,
            "channel": {"id": thread, "type": 11, "parent_id": env.get("DISCORD_TEST_CHANNEL_ID")},
            "member": {"user": {"id": "1200000000000000002", "username": "sam"},
                       "roles": [env.get("DISCORD_TEST_FIX_ROLE_ID")]},
            "data": {"id": "1100000000000000050", "name": "bugbot", "type": 1,
                     "options": [{"name": "fix", "type": 1, "options": [
                         {"name": "details", "type": 3, "value": "Cart total is one dollar too high"}]}]}
        }))?;
        let (sig, ts) = signing::discord_headers(
            &env.get("DISCORD_TEST_SIGNING_SEED"),
            &signing::unix_timestamp(),
            &body,
        );
        let started = std::time::Instant::now();
        http.post(format!("{gateway}/discord/interactions"))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        let job = format!("dc-{interaction}");
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let record: serde_json::Value = http
                .get(format!("{gateway}/v1/jobs/{job}"))
                .bearer_auth(env.get("ADMIN_TOKEN"))
                .send()
                .await?
                .json()
                .await?;
            match record["status"].as_str() {
                Some("succeeded") => break,
                Some("failed" | "dead") => {
                    bail!("job {job} did not succeed: {}", record["last_error"])
                }
                _ if std::time::Instant::now() > deadline => {
                    bail!("job {job} did not finish in 180 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        totals.push(started.elapsed().as_secs_f64());
    }
    let log = std::fs::read_to_string(stack.log_dir.join("workers.log")).unwrap_or_default();
    let mut cold: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("executor container ready"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l.get(l.find('{')?..)?).ok()?;
            v["cold_start_ms"].as_str()?.parse::<f64>().ok()
        })
        .collect();
    cold.sort_by(f64::total_cmp);
    totals.sort_by(f64::total_cmp);
    let list = |v: &[f64], unit: f64| {
        v.iter()
            .map(|x| format!("{:.2}", x / unit))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "container cold start (started -> executor answering): median {:.2} s  [{}] over {} starts",
        cold.get(cold.len() / 2).copied().unwrap_or(f64::NAN) / 1000.0,
        list(&cold, 1000.0),
        cold.len()
    );
    println!(
        "signed /bugbot fix -> job succeeded (pull request open): median {:.2} s  [{}] over {} fixes",
        totals.get(totals.len() / 2).copied().unwrap_or(f64::NAN),
        list(&totals, 1.0),
        totals.len()
    );
    drop(stack);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let wants = |name: &str| args.only == "all" || args.only == name;
    if wants("gateway") || wants("executor") {
        let stack = Stack::start(StackOptions {
            ports: Ports::free()?,
            state_dir: tmp.path().join("state"),
            log_dir: tmp.path().join("logs"),
            echo: false,
            ready_timeout: Duration::from_secs(900),
            // The gateway alone: in production the consumer runs on other machines; here it would
            // share the two cores with the gateway under load (jobs simply wait on the local queue).
            with_consumer: false,
            inspector: args.inspector,
            containers: false,
        })
        .await?;
        if wants("gateway") {
            gateway_bench(&stack, &args, tmp.path()).await?;
        }
        if wants("executor") {
            executor_bench(&stack, &args, tmp.path()).await?;
        }
    }
    let docker_ready = std::process::Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if args.only == "container" || args.only == "all" && docker_ready {
        container_bench(&args, tmp.path()).await?;
    } else if args.only == "all" {
        println!(
            "\n(container benchmark skipped: no Docker engine; scripts/container-engine starts one)"
        );
    }
    if args.keep {
        println!(
            "kept the stack's state and logs in {}",
            tmp.keep().display()
        );
    }
    Ok(())
}
