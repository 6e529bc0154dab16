//! End-to-end tests: the real Workers runtime (`wrangler dev`), the real executor binary and the
//! sandbox, started once on free ports with fresh state, then every case, then everything stopped.
//!
//! Run with `cargo test -p bugbot-tests --test e2e` after `cargo build --workspace --bins`
//! (`scripts/test` does both). Filter cases as with any test binary: `... --test e2e -- discord`.

mod container;
mod context;
mod contextualize;
mod delivery;
mod executor;
mod fix;
mod foundation;
mod gateway;
mod hostile;
mod mentions;
mod operations;
mod steer;

use bugbot_tests::stack::{Ports, Stack, StackOptions};
use context::E2e;
use libtest_mimic::{Arguments, Trial};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    let cases = context::all_cases();
    if args.list {
        let trials = cases
            .iter()
            .map(|(name, _)| Trial::test(*name, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }

    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => Arc::new(rt),
        Err(e) => {
            eprintln!("e2e: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("e2e: cannot make a state directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = match Ports::free() {
        Ok(ports) => StackOptions {
            ports,
            state_dir: state.path().join("state"),
            log_dir: state.path().join("logs"),
            echo: std::env::var_os("E2E_ECHO").is_some(),
            ready_timeout: Duration::from_secs(600),
            with_consumer: true,
            inspector: true,
            containers: bugbot_tests::stack::containers_wanted(),
        },
        Err(e) => {
            eprintln!("e2e: no free ports: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("e2e: starting the local stack on {:?}", opts.ports);
    let stack = match rt.block_on(Stack::start(opts)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("e2e: the local stack did not start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Arc::new(E2e::new(
        stack.env.clone(),
        stack.log_dir.clone(),
        state.path().join("state"),
        rt.clone(),
    ));

    // Cases share one stack and its sandbox, so they run one at a time.
    args.test_threads = Some(1);
    // Failures are said again after the logs' tails, so that the end of the output names them.
    let failures: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    // Each case's wall time: the slowest are listed at the end (where the suite's time goes).
    let durations: Arc<std::sync::Mutex<Vec<(Duration, &'static str)>>> = Arc::default();
    let trials = cases
        .into_iter()
        .map(|(name, case)| {
            let ctx = ctx.clone();
            let rt = rt.clone();
            let failures = failures.clone();
            let durations = durations.clone();
            // The Container cases need the stack's Containers (off with BUGBOT_CONTAINERS=0).
            let ignored =
                name.starts_with("container::") && !bugbot_tests::stack::containers_wanted();
            Trial::test(name, move || {
                let started = std::time::Instant::now();
                let outcome = rt.block_on(case(ctx));
                if let Ok(mut d) = durations.lock() {
                    d.push((started.elapsed(), name));
                }
                outcome.map_err(|e| {
                    let said = format!("{e:#}");
                    if let Ok(mut f) = failures.lock() {
                        f.push(format!("{name}: {}", clip(&said, 3000)));
                    }
                    said.into()
                })
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(mut d) = durations.lock() {
        d.sort_unstable_by(|a, b| b.cmp(a));
        let slowest: Vec<String> = d
            .iter()
            .take(10)
            .map(|(took, name)| format!("{:6.1}s  {name}", took.as_secs_f64()))
            .collect();
        eprintln!("---- slowest cases ----\n{}", slowest.join("\n"));
    }
    if conclusion.has_failed() {
        for part in ["workers", "executor", "sandbox"] {
            eprintln!(
                "---- last lines of {part}'s log ----\n{}",
                stack.log_tail(part, 60)
            );
        }
        if let Ok(f) = failures.lock() {
            eprintln!("---- failed ----\n{}", f.join("\n\n"));
        }
    }
    drop(stack);
    conclusion.exit_code()
}

/// The first `max` bytes of a text (cut at a character boundary), marked when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} […]", &text[..end])
}
