//! Where a command's state is: the local sled store (default, `-state`, `skyform {
//! state_path }`) or a remote backend (`skyform { backend "s3" | "gcs" | "azurerm" { } }`,
//! its object store built by the provider registry), whose state is pulled into a local copy
//! under `.skyform/remote/` and pushed back ([`crate::state::remote`]).

use super::{Ctx, StateArgs};
use crate::state::lock::{self, LockGuard, LockInfo};
use crate::state::remote::{Remote, RemoteLock};
use crate::state::{SledStore, StateStore};
use std::sync::Arc;

enum Guard {
    None,
    Local(#[allow(dead_code)] LockGuard),
    Remote(Option<RemoteLock>),
}

/// A command's state store, locked when the command writes.
pub struct Opened {
    pub store: Arc<SledStore>,
    guard: Guard,
}

impl Opened {
    /// While this process holds the store, push each commit to the remote (no-op locally).
    pub fn go_live(&self) {
        if let Guard::Remote(Some(l)) = &self.guard {
            l.go_live();
        }
    }

    /// Ends the command: pushes what is left to a remote and releases the lock.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Guard::Remote(l) = &mut self.guard {
            if let Some(l) = l.take() {
                l.finish()?;
            }
        }
        Ok(())
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Guard::Remote(l) = &mut self.guard {
            if let Some(l) = l.take() {
                if let Err(e) = l.finish() {
                    errln!("Error: {e}");
                }
            }
        }
    }
}

/// Parses `-lock-timeout` (`30s`, `2m`, `0s`).
pub fn lock_timeout(s: &str) -> anyhow::Result<std::time::Duration> {
    let h = crate::config::parse_hours(s).map_err(|e| anyhow::anyhow!("-lock-timeout: {e}"))?;
    Ok(std::time::Duration::from_secs_f64(h * 3600.0))
}

/// The remote backend of a job, if it has one (and `-state` does not override it), with
/// the name of its local working copy.
pub fn remote(ctx: &Ctx, args: &StateArgs) -> anyhow::Result<Option<(Remote, String)>> {
    if args.state.is_some() {
        return Ok(None);
    }
    let Some(be) = ctx.job_opt().and_then(|l| l.spec.settings.backend.as_ref()) else { return Ok(None) };
    let Some(store) = ctx.registry.backend(&be.kind, &be.config)? else { return Ok(None) };
    let cache: String = store
        .id
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' { ch } else { '_' })
        .collect();
    let warn: crate::state::remote::Warn = Arc::new(|m| errln!("Warning: {m}"));
    Ok(Some((Remote::new(store.objects, &store.key, ctx.clock.clone(), warn), cache)))
}

/// Opens the job's state; with `lock`, takes the lock for that operation first.
pub fn open(ctx: &Ctx, args: &StateArgs, lock: Option<&str>) -> anyhow::Result<Opened> {
    let wait = || errln!("Acquiring state lock. This may take a few moments...");
    let remote = remote(ctx, args)?;
    // -lock=false: a local state is written without its lock file; a remote state is only
    // written through its lock (the lock carries the pushes), so a write is refused.
    let lock = match (lock, args.lock, &remote) {
        (Some(op), false, Some(_)) => {
            anyhow::bail!("-lock=false: {op} writes a remote state, which skyform writes only under its lock; run it without -lock=false")
        }
        (Some(_), false, None) => None,
        (l, _, _) => l,
    };
    let Some((remote, cache)) = remote else {
        let store = Arc::new(SledStore::new(ctx.state_path(args)));
        let guard = match lock {
            Some(op) => Guard::Local(lock::acquire(store.path(), op, lock_timeout(&args.lock_timeout)?, wait)?),
            None => Guard::None,
        };
        return Ok(Opened { store, guard });
    };
    let held = match lock {
        Some(op) => Some(remote.lock(op, lock_timeout(&args.lock_timeout)?, wait)?),
        None => None,
    };
    let store = Arc::new(SledStore::new(ctx.dir.join(".skyform/remote").join(cache).join("state")));
    // The local copy of a remote state is pulled again below: a damaged one is set aside.
    let local = match store.read() {
        Ok(s) => s,
        Err(crate::state::StateError::Damaged { detail, .. }) => {
            errln!("Warning: the local copy of the remote state is damaged ({detail}); pulling it again.");
            let _ = std::fs::remove_dir_all(store.path());
            let _ = std::fs::remove_file(store.record_path());
            let _ = std::fs::remove_file(store.snapshot_path());
            crate::state::State::new()
        }
        Err(e) => return Err(e.into()),
    };
    let pulled = remote.pull()?;
    let (etag, serial) = match pulled {
        // Our own unpushed commits (a run that died before its last push) are newer.
        Some((rs, etag)) if held.is_some() && rs.lineage == local.lineage && local.serial > rs.serial => {
            (Some(etag), Some(rs.serial))
        }
        Some((rs, etag)) => {
            store.replace(&rs)?;
            (Some(etag), Some(rs.serial))
        }
        None => {
            if !local.is_empty() && held.is_none() {
                store.replace(&crate::state::State::new())?;
            }
            (None, None)
        }
    };
    if let Some(l) = &held {
        l.track(store.clone(), etag, serial);
    }
    Ok(Opened { store, guard: Guard::Remote(held) })
}

/// `force-unlock [ID] [-force]` for the job's backend.
pub fn force_unlock(ctx: &Ctx, args: &StateArgs, id: Option<&str>, force: bool) -> anyhow::Result<lock::Removed> {
    match remote(ctx, args)? {
        Some((r, _)) => Ok(r.force_unlock(id, force)?),
        None => Ok(lock::force_unlock(&ctx.state_path(args), id, force)?),
    }
}

/// The current lock holder of the job's backend (an error when the lock is unreadable).
pub fn holder(ctx: &Ctx, args: &StateArgs) -> Result<Option<LockInfo>, lock::LockError> {
    let r = remote(ctx, args).map_err(|e| lock::LockError::Remote(e.to_string()))?;
    match r {
        Some((r, _)) => Ok(r.lock_info()?.map(|(h, _)| h.info)),
        None => lock::read(&lock::lock_path(&ctx.state_path(args))),
    }
}
