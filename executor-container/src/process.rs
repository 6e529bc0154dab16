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
pub fn spawn(mut cmd: Command) -> std::io::Result<(Child, GroupGuard)> {
    cmd.process_group(0)
        .stdin(Stdio::null())
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

/// Output kept in memory per stream; the rest is dropped (counted).
pub const MAX_CAPTURE: usize = 64 * 1024;

/// Runs a command to completion, capturing at most [`MAX_CAPTURE`] bytes of each stream.
pub async fn output(cmd: Command) -> std::io::Result<(std::process::ExitStatus, String, String)> {
    use tokio::io::AsyncReadExt;
    let (mut child, _guard) = spawn(cmd)?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
        let Some(mut r) = r else { return String::new() };
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let room = MAX_CAPTURE.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    }
    let (out, err) = tokio::join!(read_bounded(stdout.as_mut()), read_bounded(stderr.as_mut()));
    let status = child.wait().await?;
    Ok((status, out, err))
}
