//! The state lock: one writer at a time.
//!
//! A lock is a file beside the state (`<state>.lock`) holding [`LockInfo`] as JSON {id,
//! operation, who (user@host), pid, version, created}. It is created atomically: written
//! whole to a temporary file, then hard-linked to the lock path, which fails when a lock
//! exists — so a lock file is never seen half written. Waiting retries with backoff up to
//! `-lock-timeout` and calls back after 400 ms (so the CLI can print "Acquiring state
//! lock..."). A lock whose holder is a dead process on this host is reported as stale —
//! never silently broken; `skyform force-unlock ID` removes it. An unreadable lock file
//! (left by an older version or another tool) is reported with `skyform force-unlock
//! -force` as the way out. I/O: the lock file.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub operation: String,
    pub who: String,
    pub pid: u32,
    pub host: String,
    pub version: String,
    pub created: String,
}

impl LockInfo {
    /// The holder was a process on this host that is no longer running (a stale lock).
    pub fn holder_gone(&self) -> bool {
        self.host == hostname() && !pid_alive(self.pid)
    }

    /// A new lock record for `operation` by this process.
    pub fn new(operation: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_string(),
            who: format!("{}@{}", user(), hostname()),
            pid: std::process::id(),
            host: hostname(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            created: crate::clock::format_time(crate::clock::now_secs()),
        }
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  ID:        {}\n  Operation: {}\n  Who:       {} (pid {})\n  Version:   {}\n  Created:   {}",
            self.id, self.operation, self.who, self.pid, self.version, self.created
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("Error acquiring the state lock: the state is locked by another process.\nLock Info:\n{0}\n{hint}", hint = if *.1 { "skyform waited for the lock and gave up; retry later, or raise -lock-timeout." } else { "Retry later, or wait for it with -lock-timeout=30s." })]
    Held(Box<LockInfo>, bool),
    #[error("Error acquiring the state lock: the lock is stale — its holder (pid {pid} on {host}) is no longer running.\nLock Info:\n{info}\nIf no skyform command is running for this job, remove it with: skyform force-unlock {id}", pid = .0.pid, host = .0.host, info = .0, id = .0.id)]
    Stale(Box<LockInfo>),
    #[error("Error acquiring the state lock: the lock's lease expired — its holder stopped renewing it {1} s ago (it crashed or lost its connection).\nLock Info:\n{0}\nIf no skyform command is running for this job, remove it with: skyform force-unlock {id}", id = .0.id)]
    Expired(Box<LockInfo>, u64),
    #[error("state lock: {0}")]
    Remote(String),
    #[error("no lock with id {given} (the state is {})", .held.as_ref().map(|h| format!("locked with id {}", h.id)).unwrap_or_else(|| "not locked".into()))]
    NotFound { given: String, held: Option<Box<LockInfo>> },
    #[error("Error acquiring the state lock: the lock file {path} is unreadable ({detail}).\nIf no skyform command is running for this job, remove it with: skyform force-unlock -force")]
    Corrupt { path: String, detail: String },
    #[error("lock file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Holds the lock; releases it when dropped.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    pub info: LockInfo,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Only remove our own lock.
        if read(&self.path).ok().flatten().is_some_and(|i| i.id == self.info.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The lock file of a state path.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The user running skyform: `$USER`, else `$LOGNAME`, else the numeric uid.
fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/self/status")
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .map(|uid| format!("uid {uid}"))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The current lock, if any.
pub fn read(path: &Path) -> Result<Option<LockInfo>, LockError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| LockError::Corrupt { path: path.display().to_string(), detail: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LockError::Io { path: path.display().to_string(), source: e }),
    }
}

/// Acquires the lock of `state` for `operation`, waiting up to `timeout`.
pub fn acquire(
    state: &Path,
    operation: &str,
    timeout: Duration,
    mut on_wait: impl FnMut(),
) -> Result<LockGuard, LockError> {
    let path = lock_path(state);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| LockError::Io { path: path.display().to_string(), source: e })?;
    }
    let info = LockInfo::new(operation);
    let start = Instant::now();
    let mut waited = false;
    let mut backoff = Duration::from_millis(50);
    loop {
        match create_atomically(&path, &info) {
            Ok(()) => return Ok(LockGuard { path, info }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let Some(holder) = read(&path)? else { continue };
                if holder.holder_gone() {
                    return Err(LockError::Stale(Box::new(holder)));
                }
                if !waited && start.elapsed() >= Duration::from_millis(400) {
                    waited = true;
                    on_wait();
                }
                if start.elapsed() >= timeout {
                    return Err(LockError::Held(Box::new(holder), !timeout.is_zero()));
                }
                std::thread::sleep(backoff.min(timeout.saturating_sub(start.elapsed()) + Duration::from_millis(1)));
                backoff = (backoff * 2).min(Duration::from_millis(1000));
            }
            Err(e) => return Err(LockError::Io { path: path.display().to_string(), source: e }),
        }
    }
}

/// Writes the lock file whole, or fails with `AlreadyExists` when a lock is there.
fn create_atomically(path: &Path, info: &LockInfo) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{}.tmp", std::process::id(), info.id));
    let tmp = PathBuf::from(tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let written = o.open(&tmp).and_then(|mut f| {
        f.write_all(serde_json::to_string_pretty(info).expect("json").as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// What `force-unlock` removed.
#[derive(Debug, Clone, PartialEq)]
pub enum Removed {
    Lock(LockInfo),
    /// An unreadable lock file, removed with `-force`.
    Unreadable,
}

/// Removes the lock with this id; an unreadable lock file only with `force` (it has no id).
pub fn force_unlock(state: &Path, id: Option<&str>, force: bool) -> Result<Removed, LockError> {
    let path = lock_path(state);
    let remove =
        || std::fs::remove_file(&path).map_err(|e| LockError::Io { path: path.display().to_string(), source: e });
    match read(&path) {
        Ok(Some(h)) if Some(h.id.as_str()) == id => {
            remove()?;
            Ok(Removed::Lock(h))
        }
        Ok(held) => Err(LockError::NotFound { given: id.unwrap_or_default().to_string(), held: held.map(Box::new) }),
        Err(LockError::Corrupt { .. }) if force => {
            remove()?;
            Ok(Removed::Unreadable)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_waits_then_fails_with_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let g = acquire(&state, "apply", Duration::ZERO, || {}).unwrap();
        let mut waited = false;
        let t0 = Instant::now();
        let err = acquire(&state, "plan", Duration::from_millis(600), || waited = true).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(600));
        assert!(waited, "told the user it is waiting after 400 ms");
        match err {
            LockError::Held(h, waited) => {
                assert_eq!(h.id, g.info.id);
                assert!(waited);
            }
            other => panic!("{other}"),
        }
        drop(g);
        assert!(acquire(&state, "plan", Duration::ZERO, || {}).is_ok(), "released on drop");
    }

    #[test]
    fn dead_holder_is_reported_stale_and_force_unlock_needs_the_id() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let mut info = acquire(&state, "apply", Duration::ZERO, || {}).unwrap().info.clone();
        // A lock left by a process that no longer exists.
        info.pid = 4_000_000;
        std::fs::write(lock_path(&state), serde_json::to_string(&info).unwrap()).unwrap();
        let err = acquire(&state, "apply", Duration::from_secs(5), || {}).unwrap_err();
        assert!(matches!(err, LockError::Stale(_)), "{err}");
        assert!(err.to_string().contains(&format!("skyform force-unlock {}", info.id)));
        assert!(lock_path(&state).exists(), "a stale lock is never broken silently");
        assert!(force_unlock(&state, Some("wrong"), true).is_err());
        assert_eq!(force_unlock(&state, Some(&info.id), false).unwrap(), Removed::Lock(info.clone()));
        assert!(!lock_path(&state).exists());
    }

    #[test]
    fn an_unreadable_lock_blocks_until_force_unlock_force() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        std::fs::write(lock_path(&state), b"{\"id\": \"half").unwrap();
        let err = acquire(&state, "apply", Duration::ZERO, || {}).unwrap_err();
        assert!(err.to_string().contains("skyform force-unlock -force"), "{err}");
        assert!(force_unlock(&state, None, false).is_err(), "not without -force");
        assert_eq!(force_unlock(&state, None, true).unwrap(), Removed::Unreadable);
        assert!(acquire(&state, "apply", Duration::ZERO, || {}).is_ok());
    }
}
