//! One job's workspace, laid out so the agent can change files and nothing else:
//!
//! ```text
//! bugbot-fix-XXXX/   root, 0711 — traversable, not listable
//!   git/             root, 0700 — the executor's bare clone; the agent never sees it
//!   askpass          root, 0700 — hands git the token from git's own environment
//!   tree/            agent, 0700 — the base commit's files, written by the executor; no .git
//!   home/            agent, 0700 — the agent's HOME and temporary folder
//! ```
//!
//! The base commit is recorded when cloning. After the agent's processes are gone, the change set
//! is the base tree against the files in `tree/`, read by the executor itself (never following a
//! link, refusing hard links and special files); the commit is built from that in the executor's
//! own git directory with a fresh index, on the base, and only that commit is pushed. Nothing the
//! agent could write — a `.git` folder, git config, attributes, hooks — takes part.

use bugbot_shared::executor::ChangedFile;
use bugbot_shared::path_policy::{self, Change, Violation};
use sha1::Digest as _;
use std::collections::BTreeMap;
use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// A file larger than this that the agent changed is refused (the model edits source files).
pub const MAX_CHANGED_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Git's mode of a regular file, an executable, a symlink and a submodule.
const REGULAR: &str = "100644";
const EXECUTABLE: &str = "100755";
const SYMLINK: &str = "120000";
const SUBMODULE: &str = "160000";

/// What went wrong with the workspace (its text is free of secrets: the token never reaches a
/// command line or an error).
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A git command failed.
    #[error("{what} failed: {detail}")]
    Git {
        /// Which step.
        what: &'static str,
        /// git's own words (its stderr, trimmed).
        detail: String,
    },
    /// The repository holds something git itself would refuse to check out.
    #[error("the repository cannot be checked out safely: {0}")]
    UnsafeRepository(String),
    /// A file-system operation failed.
    #[error("workspace: {0}")]
    Io(#[from] std::io::Error),
}

/// One entry of a tree: git's mode and object id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    mode: String,
    oid: String,
    size: Option<u64>,
}

/// One job's workspace (removed with everything in it when dropped).
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
    /// Whether `file://` and `http://` remotes may be used (local development).
    dev: bool,
    base: Option<String>,
}

/// The agent's changes, checked.
#[derive(Debug)]
pub enum Checked {
    /// The tree is the base tree.
    NoChanges,
    /// Some change may not be pushed (every reason, per path).
    Rejected(Vec<Violation>),
    /// Every change is allowed; the files and their line counts, and the new contents to commit.
    Allowed(ChangeSet),
}

/// A file's new git mode and content.
type NewContent = (String, Vec<u8>);

/// Allowed changes, ready to commit.
#[derive(Debug)]
pub struct ChangeSet {
    /// Per file: path and line counts (for the result and the pull request).
    pub files: Vec<ChangedFile>,
    /// Per file: the new content and git mode (`None`: deleted).
    contents: Vec<(String, Option<NewContent>)>,
    /// The text added by the change (added lines of text files, all of a binary one), to scan.
    pub added_text: Vec<(String, String)>,
}

impl Workspace {
    /// A fresh workspace under `root`. `dev` allows `file://` and `http://` remotes.
    pub fn create(root: &Path, dev: bool) -> Result<Self, WorkspaceError> {
        std::fs::create_dir_all(root)?;
        let dir = tempfile::Builder::new()
            .prefix("bugbot-fix-")
            .tempdir_in(root)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        let askpass = dir.path().join("askpass");
        std::fs::write(
            &askpass,
            "#!/bin/sh\ncase \"$1\" in Username*) echo x-access-token ;; *) echo \"$BUGBOT_GIT_TOKEN\" ;; esac\n",
        )?;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            dir,
            dev,
            base: None,
        })
    }

    /// The folder the agent works in.
    pub fn tree(&self) -> PathBuf {
        self.dir.path().join("tree")
    }

    /// The agent's home.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn git_dir(&self) -> PathBuf {
        self.dir.path().join("git")
    }

    /// Git with no configuration but the executor's: no system or global config, no hooks, no
    /// credential helpers, no attributes file; the token (if any) only in git's environment, for
    /// the askpass script.
    fn git(&self, token: Option<&str>) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", self.dir.path().join("askpass"))
            .env("GIT_DIR", self.git_dir())
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.attributesFile=/dev/null",
                "-c",
                "credential.helper=",
                "-c",
                "core.fsmonitor=false",
                "-c",
                if self.dev {
                    "protocol.file.allow=always"
                } else {
                    "protocol.file.allow=never"
                },
            ]);
        if let Some(t) = token {
            cmd.env("BUGBOT_GIT_TOKEN", t);
        }
        cmd
    }

    async fn run_git(
        &self,
        cmd: Command,
        what: &'static str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, WorkspaceError> {
        let (status, out, err) = crate::process::output_with_input(cmd, args, stdin).await?;
        if status.success() {
            Ok(out)
        } else {
            Err(WorkspaceError::Git {
                what,
                detail: String::from_utf8_lossy(&err).trim().to_owned(),
            })
        }
    }

    /// Clones `branch` of `url` (shallow) into the executor's git directory and records its commit.
    pub async fn clone(
        &mut self,
        url: &str,
        branch: &str,
        token: Option<&str>,
    ) -> Result<String, WorkspaceError> {
        let mut cmd = self.git(token);
        // The clone makes the git directory: GIT_DIR would point git clone at it too early.
        cmd.env_remove("GIT_DIR");
        let target = self.git_dir();
        let target = target.to_string_lossy();
        self.run_git(
            cmd,
            "clone",
            &[
                "clone",
                "--bare",
                "--depth",
                "1",
                "--single-branch",
                "--no-tags",
                "--branch",
                branch,
                "--",
                url,
                &target,
            ],
            None,
        )
        .await?;
        std::fs::set_permissions(self.git_dir(), std::fs::Permissions::from_mode(0o700))?;
        let format = self
            .run_git(
                self.git(None),
                "reading the object format",
                &["rev-parse", "--show-object-format"],
                None,
            )
            .await?;
        if String::from_utf8_lossy(&format).trim() != "sha1" {
            return Err(WorkspaceError::UnsafeRepository(
                "only SHA-1 repositories are supported".into(),
            ));
        }
        let reference = format!("refs/heads/{branch}^{{commit}}");
        let base = self
            .run_git(
                self.git(None),
                "reading the base commit",
                &["rev-parse", "--verify", &reference],
                None,
            )
            .await?;
        let base = String::from_utf8_lossy(&base).trim().to_owned();
        self.base = Some(base.clone());
        Ok(base)
    }

    /// The base commit's tree: path → entry.
    async fn base_tree(&self) -> Result<BTreeMap<String, Entry>, WorkspaceError> {
        let base = self.base.clone().unwrap_or_default();
        let out = self
            .run_git(
                self.git(None),
                "listing the base tree",
                &["ls-tree", "-r", "-z", "-l", "--full-tree", &base],
                None,
            )
            .await?;
        let mut entries = BTreeMap::new();
        for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let record = String::from_utf8(record.to_vec())
                .map_err(|_| WorkspaceError::UnsafeRepository("a file name is not UTF-8".into()))?;
            let (meta, path) = record
                .split_once('\t')
                .ok_or_else(|| WorkspaceError::UnsafeRepository("unreadable tree".into()))?;
            let mut parts = meta.split_whitespace();
            let (Some(mode), Some(_kind), Some(oid), Some(size)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(WorkspaceError::UnsafeRepository("unreadable tree".into()));
            };
            check_repo_path(path)?;
            entries.insert(
                path.to_owned(),
                Entry {
                    mode: mode.to_owned(),
                    oid: oid.to_owned(),
                    size: size.parse().ok(),
                },
            );
        }
        Ok(entries)
    }

    /// Reads blobs by id (in order) with one `git cat-file --batch`.
    async fn blobs(&self, oids: &[&str]) -> Result<Vec<Vec<u8>>, WorkspaceError> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let input: Vec<u8> = oids
            .iter()
            .flat_map(|o| format!("{o}\n").into_bytes())
            .collect();
        let out = self
            .run_git(
                self.git(None),
                "reading the base files",
                &["cat-file", "--batch"],
                Some(input),
            )
            .await?;
        let mut reader = std::io::Cursor::new(out);
        let mut blobs = Vec::with_capacity(oids.len());
        for oid in oids {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let mut fields = header.split_whitespace();
            let (Some(got), Some("blob"), Some(size)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(WorkspaceError::UnsafeRepository(format!(
                    "object {oid} is not a readable file"
                )));
            };
            if got != *oid {
                return Err(WorkspaceError::UnsafeRepository("unexpected object".into()));
            }
            let size: usize = size
                .parse()
                .map_err(|_| WorkspaceError::UnsafeRepository("bad object size".into()))?;
            let mut blob = vec![0; size];
            reader.read_exact(&mut blob)?;
            let mut newline = [0u8; 1];
            reader.read_exact(&mut newline)?;
            blobs.push(blob);
        }
        Ok(blobs)
    }

    /// Writes the base commit's files into `tree/` and a `home/`, both owned by `owner` (uid,
    /// gid) when the agent has a user of its own. Regular files and folders first, symlinks
    /// last, so no file is ever written through a link.
    pub async fn write_tree(&self, owner: Option<(u32, u32)>) -> Result<(), WorkspaceError> {
        let entries = self.base_tree().await?;
        let tree = self.tree();
        let home = self.home();
        for dir in [&tree, &home] {
            std::fs::create_dir(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        std::fs::create_dir(home.join("tmp"))?;
        let files: Vec<(&String, &Entry)> = entries
            .iter()
            .filter(|(_, e)| e.mode == REGULAR || e.mode == EXECUTABLE || e.mode == SYMLINK)
            .collect();
        let oids: Vec<&str> = files.iter().map(|(_, e)| e.oid.as_str()).collect();
        let contents = self.blobs(&oids).await?;
        let mut links = Vec::new();
        for ((path, entry), content) in files.iter().zip(contents) {
            let target = tree.join(path);
            if let Some(parent) = target.parent() {
                create_dirs(&tree, parent)?;
            }
            if entry.mode == SYMLINK {
                links.push((target, content));
                continue;
            }
            let mode = if entry.mode == EXECUTABLE {
                0o755
            } else {
                0o644
            };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&target)?;
            file.write_all(&content)?;
        }
        for (path, _) in entries.iter().filter(|(_, e)| e.mode == SUBMODULE) {
            // As git checks out a submodule it does not clone: an empty folder.
            create_dirs(&tree, &tree.join(path))?;
        }
        for (target, content) in links {
            use std::os::unix::ffi::OsStrExt as _;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&content), &target)?;
        }
        if let Some((uid, gid)) = owner {
            for dir in [&tree, &home] {
                chown_tree(dir, uid, gid)?;
            }
        }
        Ok(())
    }

    /// Compares the files in `tree/` with the base commit and judges the changes by the path
    /// policy. Call only once no process of the agent is left.
    pub async fn check(&self, allowed: &[String]) -> Result<Checked, WorkspaceError> {
        let base = self.base_tree().await?;
        let mut found = BTreeMap::new();
        let mut violations: Vec<Violation> = Vec::new();
        walk(
            &self.tree(),
            &self.tree(),
            &base,
            &mut found,
            &mut violations,
        )?;

        let mut changes: Vec<Change> = Vec::new();
        let tree = self.tree();
        for (path, old) in &base {
            // A submodule is an empty folder in the tree: present when its folder is.
            let present =
                found.contains_key(path) || (old.mode == SUBMODULE && tree.join(path).is_dir());
            if !present {
                changes.push(Change {
                    status: 'D',
                    old_path: None,
                    path: path.clone(),
                    old_mode: old.mode.clone(),
                    new_mode: "000000".into(),
                });
            }
        }
        // The new contents are moved, not copied: a changed file is held once.
        let mut new_contents: BTreeMap<String, NewContent> = BTreeMap::new();
        for (path, (mode, oid, content)) in found {
            let old = base.get(&path);
            if old.is_some_and(|o| o.mode == mode && o.oid == oid) {
                continue;
            }
            changes.push(Change {
                status: match old {
                    None => 'A',
                    Some(o) if o.mode != mode => 'T',
                    Some(_) => 'M',
                },
                old_path: None,
                path: path.clone(),
                old_mode: old.map_or_else(|| "000000".into(), |o| o.mode.clone()),
                new_mode: mode.clone(),
            });
            if let Some(content) = content {
                new_contents.insert(path, (mode, content));
            }
        }
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        if changes.is_empty() && violations.is_empty() {
            return Ok(Checked::NoChanges);
        }
        for v in path_policy::check(&changes, allowed) {
            if !violations.iter().any(|w| w.path == v.path) {
                violations.push(v);
            }
        }
        if !violations.is_empty() {
            return Ok(Checked::Rejected(violations));
        }

        // Line counts and the added text, against the base's version of each file.
        let modified: Vec<(&Change, &str)> = changes
            .iter()
            .filter_map(|c| Some((c, base.get(&c.path)?.oid.as_str())))
            .collect();
        let old_blobs = self
            .blobs(&modified.iter().map(|(_, oid)| *oid).collect::<Vec<_>>())
            .await?;
        let old: BTreeMap<&str, Vec<u8>> = modified
            .iter()
            .map(|(c, _)| c.path.as_str())
            .zip(old_blobs)
            .collect();
        let mut files = Vec::new();
        let mut contents = Vec::new();
        let mut added_text = Vec::new();
        for c in &changes {
            let before = old
                .get(c.path.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let after = new_contents.remove(&c.path);
            let after_bytes = after
                .as_ref()
                .map(|(_, b)| b.as_slice())
                .unwrap_or_default();
            let (added, removed, text) = line_counts(before, after_bytes);
            files.push(ChangedFile {
                path: c.path.clone(),
                added,
                removed,
            });
            if !text.is_empty() {
                added_text.push((c.path.clone(), text));
            }
            contents.push((c.path.clone(), after));
        }
        Ok(Checked::Allowed(ChangeSet {
            files,
            contents,
            added_text,
        }))
    }

    /// Commits the change set on the base commit in the executor's git directory (a fresh index,
    /// nothing from the agent's folder but the checked contents) and returns the commit id.
    pub async fn commit(&self, set: &ChangeSet, message: &str) -> Result<String, WorkspaceError> {
        let base = self.base.clone().unwrap_or_default();
        let index = self.dir.path().join("index");
        let with_index = || {
            let mut cmd = self.git(None);
            cmd.env("GIT_INDEX_FILE", &index);
            cmd
        };
        self.run_git(
            with_index(),
            "reading the base tree",
            &["read-tree", &base],
            None,
        )
        .await?;
        let mut info = Vec::new();
        for (path, content) in &set.contents {
            match content {
                Some((mode, bytes)) => {
                    let oid = self
                        .run_git(
                            self.git(None),
                            "storing a file",
                            &["hash-object", "-w", "--no-filters", "-t", "blob", "--stdin"],
                            Some(bytes.clone()),
                        )
                        .await?;
                    let oid = String::from_utf8_lossy(&oid).trim().to_owned();
                    info.extend_from_slice(format!("{mode} {oid}\t{path}\0").as_bytes());
                }
                None => info.extend_from_slice(
                    format!("0 0000000000000000000000000000000000000000\t{path}\0").as_bytes(),
                ),
            }
        }
        self.run_git(
            with_index(),
            "staging the changes",
            &["update-index", "-z", "--index-info"],
            Some(info),
        )
        .await?;
        let tree = self
            .run_git(with_index(), "writing the tree", &["write-tree"], None)
            .await?;
        let tree = String::from_utf8_lossy(&tree).trim().to_owned();
        let mut commit = self.git(None);
        for (k, v) in [
            ("GIT_AUTHOR_NAME", "bugbot"),
            ("GIT_AUTHOR_EMAIL", "bugbot@users.noreply.github.com"),
            ("GIT_COMMITTER_NAME", "bugbot"),
            ("GIT_COMMITTER_EMAIL", "bugbot@users.noreply.github.com"),
        ] {
            commit.env(k, v);
        }
        let sha = self
            .run_git(
                commit,
                "committing",
                &["commit-tree", &tree, "-p", &base, "-F", "-"],
                Some(message.as_bytes().to_vec()),
            )
            .await?;
        Ok(String::from_utf8_lossy(&sha).trim().to_owned())
    }

    /// Pushes `commit` to `branch` of `url` — only that commit, from the executor's git directory.
    pub async fn push(
        &self,
        url: &str,
        commit: &str,
        branch: &str,
        token: Option<&str>,
    ) -> Result<(), WorkspaceError> {
        let refspec = format!("{commit}:refs/heads/{branch}");
        self.run_git(
            self.git(token),
            "push",
            &["push", "--no-verify", "--quiet", "--", url, &refspec],
            None,
        )
        .await?;
        Ok(())
    }
}

/// Refuses tree paths git itself would not check out: empty, `.`, `..` or `.git` components.
fn check_repo_path(path: &str) -> Result<(), WorkspaceError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.eq_ignore_ascii_case(".git"));
    if bad {
        return Err(WorkspaceError::UnsafeRepository(format!(
            "the path {path:?} is not a plain path inside the repository"
        )));
    }
    Ok(())
}

/// Creates `dir` and its missing parents below `root`, refusing to pass through anything that is
/// not a real folder.
fn create_dirs(root: &Path, dir: &Path) -> Result<(), WorkspaceError> {
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    let mut at = root.to_path_buf();
    for part in relative.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(WorkspaceError::UnsafeRepository(format!(
                    "{} is both a file and a folder",
                    at.strip_prefix(root).unwrap_or(&at).display()
                )));
            }
            Err(_) => std::fs::create_dir(&at)?,
        }
    }
    Ok(())
}

/// Gives a folder and everything in it to `uid`, never following a link.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// Git's blob id of some content.
fn blob_id(content: &[u8]) -> String {
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex::encode(hasher.finalize())
}

/// What the walk found at a path: git mode, blob id, and the content when it differs from the base.
type Found = (String, String, Option<Vec<u8>>);

/// Reads the agent's tree without following links: regular files (hashed; the content kept only
/// where it differs from the base), symlinks (their target), folders (recursed). Anything else
/// is a violation.
fn walk(
    root: &Path,
    dir: &Path,
    base: &BTreeMap<String, Entry>,
    found: &mut BTreeMap<String, Found>,
    violations: &mut Vec<Violation>,
) -> Result<(), WorkspaceError> {
    fn refuse(violations: &mut Vec<Violation>, path: String, reason: &str) {
        violations.push(Violation {
            path,
            reason: reason.to_owned(),
        });
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let full = entry.path();
        let Some(path) = full
            .strip_prefix(root)
            .ok()
            .and_then(Path::to_str)
            .map(str::to_owned)
        else {
            refuse(
                violations,
                full.to_string_lossy().into_owned(),
                "file names must be UTF-8",
            );
            continue;
        };
        let meta = std::fs::symlink_metadata(&full)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(root, &full, base, found, violations)?;
        } else if kind.is_symlink() {
            use std::os::unix::ffi::OsStrExt as _;
            let target = std::fs::read_link(&full)?;
            let bytes = target.as_os_str().as_bytes().to_vec();
            let oid = blob_id(&bytes);
            let same = base
                .get(&path)
                .is_some_and(|e| e.mode == SYMLINK && e.oid == oid);
            found.insert(path, (SYMLINK.into(), oid, (!same).then_some(bytes)));
        } else if kind.is_file() {
            if meta.nlink() > 1 {
                refuse(violations, path, "hard links may not be added or changed");
                continue;
            }
            let mode = if meta.mode() & 0o100 != 0 {
                EXECUTABLE
            } else {
                REGULAR
            };
            let old = base.get(&path);
            if meta.len() > MAX_CHANGED_FILE_BYTES && old.and_then(|e| e.size) != Some(meta.len()) {
                refuse(
                    violations,
                    path,
                    &format!(
                        "files over {} MB may not be added or changed",
                        MAX_CHANGED_FILE_BYTES / 1024 / 1024
                    ),
                );
                continue;
            }
            let mut content = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&full)?
                .take(MAX_CHANGED_FILE_BYTES.max(meta.len()) + 1)
                .read_to_end(&mut content)?;
            let oid = blob_id(&content);
            let same = old.is_some_and(|e| e.mode == mode && e.oid == oid);
            found.insert(path, (mode.into(), oid, (!same).then_some(content)));
        } else {
            refuse(
                violations,
                path,
                "special files (pipes, sockets, devices) may not be added",
            );
        }
    }
    Ok(())
}

/// Added and removed lines, and the added text (all of it for a binary file).
fn line_counts(before: &[u8], after: &[u8]) -> (u64, u64, String) {
    let binary = before.contains(&0) || after.contains(&0);
    if binary {
        return (0, 0, String::from_utf8_lossy(after).into_owned());
    }
    let before = String::from_utf8_lossy(before);
    let after = String::from_utf8_lossy(after);
    let diff = similar::TextDiff::from_lines(before.as_ref(), after.as_ref());
    let (mut added, mut removed, mut text) = (0u64, 0u64, String::new());
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => {
                added += 1;
                text.push_str(change.value());
            }
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    (added, removed, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "user.name=t", "-c", "user.email=t@e"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A bare remote whose `main` holds `src/a.js`, `src/b.js`, `README.md`, an executable
    /// `src/run.sh` and a symlink `src/link -> a.js`; and a workspace cloned from it with the base
    /// tree written.
    async fn cloned() -> (tempfile::TempDir, Workspace, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("src")).unwrap();
        std::fs::write(work.join("src/a.js"), "a\n").unwrap();
        std::fs::write(work.join("src/b.js"), "b\n").unwrap();
        std::fs::write(work.join("src/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            work.join("src/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("a.js", work.join("src/link")).unwrap();
        std::fs::write(work.join("README.md"), "r\n").unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "init"]);
        let bare = dir.path().join("remote.git");
        git(dir.path(), &["clone", "-q", "--bare", "work", "remote.git"]);
        let mut ws = Workspace::create(&dir.path().join("ws"), true).unwrap();
        let url = format!("file://{}", bare.display());
        let base = ws.clone(&url, "main", None).await.unwrap();
        assert_eq!(base, git(&bare, &["rev-parse", "main"]).trim());
        ws.write_tree(None).await.unwrap();
        (dir, ws, bare)
    }

    fn allowed() -> Vec<String> {
        vec!["src/".to_owned()]
    }

    fn rejected(c: Checked) -> Vec<String> {
        match c {
            Checked::Rejected(v) => v.into_iter().map(|v| v.path).collect(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_base_tree_is_written_exactly() {
        let (_d, ws, _) = cloned().await;
        let tree = ws.tree();
        assert_eq!(
            std::fs::read_to_string(tree.join("src/a.js")).unwrap(),
            "a\n"
        );
        assert_eq!(
            std::fs::read_link(tree.join("src/link")).unwrap(),
            Path::new("a.js")
        );
        let mode = std::fs::metadata(tree.join("src/run.sh")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(
            !tree.join(".git").exists(),
            "the agent gets no git directory"
        );
        assert!(matches!(
            ws.check(&allowed()).await.unwrap(),
            Checked::NoChanges
        ));
    }

    #[tokio::test]
    async fn every_kind_of_change_is_seen_and_judged() {
        let (_d, ws, _) = cloned().await;
        let tree = ws.tree();
        let allowed = allowed();
        let check = || ws.check(&allowed);

        std::os::unix::fs::symlink("/etc/passwd", tree.join("src/new-link")).unwrap();
        assert_eq!(rejected(check().await.unwrap()), vec!["src/new-link"]);
        std::fs::remove_file(tree.join("src/new-link")).unwrap();

        std::fs::rename(tree.join("src/a.js"), tree.join("a.js")).unwrap();
        assert_eq!(rejected(check().await.unwrap()), vec!["a.js"]);
        std::fs::rename(tree.join("a.js"), tree.join("src/a.js")).unwrap();

        // A .git folder the agent makes is a change like any other, and never allowed.
        std::fs::create_dir_all(tree.join("src/.git")).unwrap();
        std::fs::write(tree.join("src/.git/config"), "[core]\n\tfsmonitor = evil\n").unwrap();
        assert_eq!(rejected(check().await.unwrap()), vec!["src/.git/config"]);
        std::fs::remove_dir_all(tree.join("src/.git")).unwrap();

        std::fs::write(tree.join("src/.gitattributes"), "*.js -diff\n").unwrap();
        assert_eq!(rejected(check().await.unwrap()), vec!["src/.gitattributes"]);
        std::fs::remove_file(tree.join("src/.gitattributes")).unwrap();

        std::fs::set_permissions(
            tree.join("src/b.js"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(rejected(check().await.unwrap()), vec!["src/b.js"]);
        std::fs::set_permissions(
            tree.join("src/b.js"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        std::fs::hard_link(tree.join("README.md"), tree.join("src/hard.js")).unwrap();
        let found = rejected(check().await.unwrap());
        assert!(found.contains(&"src/hard.js".to_owned()), "{found:?}");
        std::fs::remove_file(tree.join("src/hard.js")).unwrap();

        nix::unistd::mkfifo(&tree.join("src/pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(rejected(check().await.unwrap()), vec!["src/pipe"]);
        std::fs::remove_file(tree.join("src/pipe")).unwrap();

        std::fs::remove_file(tree.join("README.md")).unwrap();
        assert_eq!(rejected(check().await.unwrap()), vec!["README.md"]);
        std::fs::write(tree.join("README.md"), "r\n").unwrap();

        assert!(matches!(check().await.unwrap(), Checked::NoChanges));
    }

    #[tokio::test]
    async fn only_the_checked_change_is_committed_on_the_base_and_pushed() {
        let (_d, ws, bare) = cloned().await;
        let tree = ws.tree();
        std::fs::write(tree.join("src/a.js"), "a fixed\n").unwrap();
        std::fs::remove_file(tree.join("src/b.js")).unwrap();
        std::fs::write(tree.join("src/c.js"), "c\nd\n").unwrap();
        let Checked::Allowed(set) = ws.check(&allowed()).await.unwrap() else {
            panic!("expected allowed")
        };
        let counts: Vec<(&str, u64, u64)> = set
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.added, f.removed))
            .collect();
        assert_eq!(
            counts,
            vec![("src/a.js", 1, 1), ("src/b.js", 0, 1), ("src/c.js", 2, 0)]
        );
        assert_eq!(
            set.added_text,
            vec![
                ("src/a.js".to_owned(), "a fixed\n".to_owned()),
                ("src/c.js".to_owned(), "c\nd\n".to_owned())
            ]
        );
        let sha = ws.commit(&set, "fix: the sum\n").await.unwrap();
        let url = format!("file://{}", bare.display());
        ws.push(&url, &sha, "bugbot/fix", None).await.unwrap();
        assert_eq!(git(&bare, &["rev-parse", "bugbot/fix"]).trim(), sha);
        assert_eq!(
            git(&bare, &["rev-parse", "bugbot/fix^"]).trim(),
            git(&bare, &["rev-parse", "main"]).trim(),
            "the commit sits on the base"
        );
        let files = git(&bare, &["diff", "--name-status", "main", "bugbot/fix"]);
        assert_eq!(files, "M\tsrc/a.js\nD\tsrc/b.js\nA\tsrc/c.js\n");
        assert_eq!(git(&bare, &["show", "bugbot/fix:src/a.js"]), "a fixed\n");
        assert_eq!(
            git(
                &bare,
                &["log", "-1", "--format=%an <%ae>%n%B", "bugbot/fix"]
            )
            .trim(),
            "bugbot <bugbot@users.noreply.github.com>\nfix: the sum"
        );
    }

    #[tokio::test]
    async fn a_hostile_tree_cannot_be_checked_out() {
        // A tree with both a file and a folder named `src` would make the writer pass through a
        // file; git itself refuses it and so does the executor.
        let (_d, ws, _) = cloned().await;
        assert!(create_dirs(&ws.tree(), &ws.tree().join("README.md/x")).is_err());
    }

    #[test]
    fn blob_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn repository_paths_must_be_plain() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "./a",
            ".git/config",
            "src/.GIT/x",
            "a//b",
        ] {
            assert!(check_repo_path(bad).is_err(), "{bad:?}");
        }
        for good in ["src/a.js", ".github/x.yml", "a.b/c", ".gitignore"] {
            assert!(check_repo_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn line_counts_and_added_text() {
        let (a, r, t) = line_counts(b"one\ntwo\nthree\n", b"one\n2\nthree\nfour\n");
        assert_eq!((a, r), (2, 1));
        assert_eq!(t, "2\nfour\n");
        let (a, r, t) = line_counts(b"x", b"bin\0ary");
        assert_eq!((a, r), (0, 0));
        assert!(t.contains("ary"));
    }
}
