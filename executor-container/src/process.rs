//! Child processes that cannot outlive their request: each runs in its own process group, and the
//! guard kills the whole group when dropped (on timeout the request's future is dropped).

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// Kills a child's process group on drop.
#[derive(Debug)]
pub struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
}

/// Spawns `cmd` in a new process group with piped output; the guard kills the group when dropped.
pub fn spawn(cmd: Command) -> std::io::Result<(Child, GroupGuard)> {
    spawn_with_stdin(cmd, false)
}

/// As [`spawn`], with a piped stdin when `stdin` is set.
fn spawn_with_stdin(mut cmd: Command, stdin: bool) -> std::io::Result<(Child, GroupGuard)> {
    cmd.process_group(0)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    Ok((child, guard))
}

/// Stderr kept in memory; the rest is dropped.
pub const MAX_CAPTURE: usize = 64 * 1024;

/// Runs `cmd` with `args` to completion, writing `input` to its stdin; returns its status, all of
/// its stdout (git's answers: trees, blobs, ids) and at most [`MAX_CAPTURE`] bytes of stderr.
pub async fn output_with_input(
    mut cmd: Command,
    args: &[&str],
    input: Option<Vec<u8>>,
) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    cmd.args(args);
    let (mut child, _guard) = spawn_with_stdin(cmd, input.is_some())?;
    let stdin = child.stdin.take();
    let writer = async move {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // A child that stops reading early answers with its status; that is not our error.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_all = async {
        let mut out = Vec::new();
        if let Some(s) = stdout.as_mut() {
            s.read_to_end(&mut out).await?;
        }
        Ok::<_, std::io::Error>(out)
    };
    let read_err = async {
        let mut kept = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = MAX_CAPTURE.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    };
    let ((), out, err) = tokio::join!(writer, read_all, read_err);
    let status = child.wait().await?;
    Ok((status, out?, err))
}
