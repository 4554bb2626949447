//! Where a command's state is: the local sled store (default, `-state`, `skyform {
//! state_path }`) or a remote backend (`skyform { backend "s3" { } }`), whose state is
//! pulled into a local copy under `.skyform/remote/` and pushed back ([`crate::state::remote`]).

use super::plan::{lock_timeout, state_path, StateArgs};
use super::Env;
use crate::config::Loaded;
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
                    eprintln!("Error: {e}");
                }
            }
        }
    }
}

/// The remote backend of a job, if it has one (and `-state` does not override it).
pub fn remote(args: &StateArgs, loaded: Option<&Loaded>) -> anyhow::Result<Option<(Remote, String)>> {
    if args.state.is_some() {
        return Ok(None);
    }
    let Some(be) = loaded.and_then(|l| l.spec.settings.backend.as_ref()) else { return Ok(None) };
    match be.kind.as_str() {
        "local" => Ok(None),
        #[cfg(feature = "aws")]
        "s3" => {
            use crate::state::remote::s3::{S3BackendConfig, S3Objects};
            let c = S3BackendConfig::from_json(&be.config).map_err(|e| anyhow::anyhow!(e))?;
            let objects = S3Objects::new(&c).map_err(|e| anyhow::anyhow!(e))?;
            let cache: String = format!("{}-{}", c.bucket, c.key)
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' { ch } else { '_' })
                .collect();
            Ok(Some((Remote::new(Arc::new(objects), &c.key), cache)))
        }
        other => anyhow::bail!("backend \"{other}\" is not available in this build"),
    }
}

/// Opens the job's state; with `lock`, takes the lock for that operation first.
pub fn open(env: &Env, args: &StateArgs, loaded: Option<&Loaded>, lock: Option<&str>) -> anyhow::Result<Opened> {
    let wait = || eprintln!("Acquiring state lock. This may take a few moments...");
    let Some((remote, cache)) = remote(args, loaded)? else {
        let store = Arc::new(SledStore::new(state_path(env, args, loaded)));
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
    let store = Arc::new(SledStore::new(env.dir.join(".skyform/remote").join(cache).join("state")));
    let local = store.read()?;
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

/// `force-unlock ID` for the job's backend.
pub fn force_unlock(env: &Env, args: &StateArgs, loaded: Option<&Loaded>, id: &str) -> anyhow::Result<LockInfo> {
    match remote(args, loaded)? {
        Some((r, _)) => Ok(r.force_unlock(id)?),
        None => Ok(lock::force_unlock(&state_path(env, args, loaded), id)?),
    }
}

/// The current lock holder of the job's backend.
pub fn holder(env: &Env, args: &StateArgs, loaded: Option<&Loaded>) -> anyhow::Result<Option<LockInfo>> {
    match remote(args, loaded)? {
        Some((r, _)) => Ok(r.lock_info()?.map(|(h, _)| h.info)),
        None => Ok(lock::read(&lock::lock_path(&state_path(env, args, loaded)))?),
    }
}
