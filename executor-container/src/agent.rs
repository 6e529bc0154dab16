//! The agent's own user: Claude Code runs as an unprivileged uid of its own per running job, so
//! even an agent that runs code cannot read the executor's secrets (its environment in `/proc` is
//! readable only by its own uid), another job's workspace (each is `0700` to its job's uid), or
//! the executor's git directory (`0700` root). Every process of that uid is killed before git runs
//! again, and whatever it left in the shared temporary folders is removed before the uid serves
//! another job.
//!
//! This needs the executor to run as root (it does in its container; the tests and CI run as
//! root). Local development as another user may run without it ([`Isolation::SameUser`]), which
//! keeps none of these guarantees and says so in the log.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the agent is separated from the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Each running job's agent has its own uid (and gid), counting up from `base`.
    OwnUser {
        /// The first agent uid.
        base: u32,
    },
    /// The agent runs as the executor's own user (local development only).
    SameUser,
}

/// World-writable folders an agent could leave files in for the next job of its uid.
const SHARED_TEMP_DIRS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];

/// The uids that may run an agent, one per running job.
#[derive(Debug, Clone)]
pub struct AgentPool {
    isolation: Isolation,
    slots: usize,
    busy: Arc<Mutex<BTreeSet<usize>>>,
}

/// One running job's agent identity. Dropping it kills every process of the uid, removes what the
/// uid left in the shared temporary folders, and frees the slot.
#[derive(Debug)]
pub struct Agent {
    /// The uid and gid the agent runs as (`None`: the executor's own).
    pub ids: Option<(u32, u32)>,
    slot: usize,
    busy: Arc<Mutex<BTreeSet<usize>>>,
}

impl AgentPool {
    /// A pool of `slots` agent identities.
    pub fn new(isolation: Isolation, slots: usize) -> Self {
        Self {
            isolation,
            slots: slots.max(1),
            busy: Arc::default(),
        }
    }

    /// How the agent is separated.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// A free agent identity, cleaned of anything a previous job (or a crashed executor) left;
    /// `None` when every slot is running a job.
    pub fn acquire(&self) -> Option<Agent> {
        let slot = {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            let slot = (0..self.slots).find(|s| !busy.contains(s))?;
            busy.insert(slot);
            slot
        };
        let ids = match self.isolation {
            Isolation::OwnUser { base } => {
                let uid = base + u32::try_from(slot).unwrap_or(u32::MAX - base);
                Some((uid, uid))
            }
            Isolation::SameUser => None,
        };
        let agent = Agent {
            ids,
            slot,
            busy: self.busy.clone(),
        };
        agent.clean();
        Some(agent)
    }
}

impl Agent {
    /// Kills every process of the agent's uid; returns once none is left. With no uid of its own
    /// there is nothing to kill by user (the caller's process-group guard still applies).
    pub fn kill_all(&self) {
        let Some((uid, gid)) = self.ids else { return };
        for _ in 0..100 {
            if processes_of(uid).is_empty() {
                return;
            }
            // `kill -KILL -1` as that uid: the kernel signals every process of the uid in one
            // step, so one that forks meanwhile cannot slip through.
            let _ = std::process::Command::new("/bin/sh")
                .args(["-c", "kill -KILL -1"])
                .env_clear()
                .current_dir("/")
                .uid(uid)
                .gid(gid)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::error!(uid, "processes of the agent's uid survived repeated kills");
    }

    /// Kills the uid's processes and removes what it owns in the shared temporary folders.
    fn clean(&self) {
        self.kill_all();
        if let Some((uid, _)) = self.ids {
            for dir in SHARED_TEMP_DIRS {
                remove_owned_entries(Path::new(dir), uid);
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.clean();
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.slot);
    }
}

/// Pids of the live (not zombie) processes whose real or effective uid is `uid`.
pub fn processes_of(uid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            let of_uid = status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| {
                    l.split_whitespace()
                        .skip(1)
                        .take(2)
                        .any(|id| id.parse() == Ok(uid))
                });
            of_uid && !zombie
        })
        .collect()
}

/// Removes the entries directly in `dir` that `uid` owns (a symlink is removed, never followed).
fn remove_owned_entries(dir: &Path, uid: u32) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.uid() != uid {
            continue;
        }
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "could not remove what an agent left");
        }
    }
}

/// Whether this process may run agents as other users (it runs as root).
pub fn can_switch_users() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_handed_out_once_and_come_back() {
        let pool = AgentPool::new(Isolation::SameUser, 2);
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        assert!(pool.acquire().is_none(), "two slots, both busy");
        assert_ne!(a.slot, b.slot);
        drop(a);
        assert!(pool.acquire().is_some());
        drop(b);
    }

    #[test]
    fn own_user_ids_count_up_from_the_base() {
        if !can_switch_users() {
            return; // cleaning another uid's processes needs root
        }
        let pool = AgentPool::new(Isolation::OwnUser { base: 64_000 }, 2);
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        let mut ids = [a.ids.unwrap().0, b.ids.unwrap().0];
        ids.sort_unstable();
        assert_eq!(ids, [64_000, 64_001]);
    }

    /// A process of the agent's uid that detached itself (its own session, its parent gone) is
    /// still killed.
    #[test]
    fn kill_all_reaches_detached_processes() {
        if !can_switch_users() {
            return;
        }
        let pool = AgentPool::new(Isolation::OwnUser { base: 64_100 }, 1);
        let agent = pool.acquire().unwrap();
        let (uid, gid) = agent.ids.unwrap();
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null &"])
            .uid(uid)
            .gid(gid)
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while processes_of(uid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !processes_of(uid).is_empty(),
            "the detached process started"
        );
        agent.kill_all();
        assert!(processes_of(uid).is_empty());
    }
}
