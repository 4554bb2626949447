//! Remote state for teams: `skyform { backend "s3" | "gcs" | "azurerm" { ... } }`.
//!
//! The object store comes from the provider that serves the backend (the registry's
//! `backend`, an [`Objects`] of the provider seam). The state lives as JSON at `key` in it; commands work on a local sled copy
//! under `.skyform/remote/` that is pulled when they start and pushed after every commit
//! (within [`MIRROR_EVERY`]) and when they end. A push is refused when the remote lineage
//! differs or its serial moved past ours, and is written with `If-Match` on the ETag read,
//! so two writers can never interleave.
//!
//! The lock is the object `key.lock`, created with a conditional put (`If-None-Match: *`):
//! exactly one writer wins. It holds [`RemoteLockInfo`] (who, pid, host, operation) and is
//! renewed every `lease / 3` while the holder runs (`If-Match` on its own ETag). A lock
//! whose renewals stopped for more than three leases is reported as expired (never broken
//! silently): `skyform force-unlock ID` removes it. Problems met in the background (a
//! renewal or a push that failed) go to the `warn` callback the caller gives; nothing here
//! prints. I/O: the object store.

use super::lock::{LockError, LockInfo, Removed};
use super::{SledStore, State, StateError, StateStore};
use crate::clock::Clock;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a running command pushes its committed changes.
pub const MIRROR_EVERY: Duration = Duration::from_millis(300);
/// The lock's lease; the holder renews it three times per lease.
pub const LEASE: Duration = Duration::from_secs(30);

pub use skyform_provider::objects::{Objects, Put};

/// Where background problems (renewals, pushes) are reported.
pub type Warn = Arc<dyn Fn(String) + Send + Sync>;

/// What the lock object holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteLockInfo {
    #[serde(flatten)]
    pub info: LockInfo,
    /// Seconds since the epoch of the last renewal.
    pub renewed: u64,
    pub lease_secs: u64,
}

/// A remote state at one key.
#[derive(Clone)]
pub struct Remote {
    pub objects: Arc<dyn Objects>,
    pub key: String,
    pub lease: Duration,
    pub clock: Arc<dyn Clock>,
    pub warn: Warn,
}

impl Remote {
    pub fn new(objects: Arc<dyn Objects>, key: &str, clock: Arc<dyn Clock>, warn: Warn) -> Remote {
        Remote { objects, key: key.to_string(), lease: LEASE, clock, warn }
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Remote(format!("{}: {e}", self.objects.describe(&self.key)))
    }

    /// The remote state and its ETag.
    pub fn pull(&self) -> Result<Option<(State, String)>, StateError> {
        match self.objects.get(&self.key).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some((data, etag)) => {
                let text = String::from_utf8(data).map_err(|e| self.err(e))?;
                Ok(Some((State::from_json(&text)?, etag)))
            }
        }
    }

    /// Pushes `state` over the version with `etag` (None: the key must not exist yet).
    /// Refuses another lineage or an older serial.
    pub fn push(&self, state: &State, etag: Option<&str>) -> Result<String, StateError> {
        if let Some((current, _)) = self.pull()? {
            if !current.lineage.is_empty() && current.lineage != state.lineage {
                return Err(self.err(format!(
                    "the remote state has lineage {}, this one {}: not the same job's state",
                    current.lineage, state.lineage
                )));
            }
            if current.serial > state.serial {
                return Err(self.err(format!(
                    "the remote state moved to serial {} while this run is at {}",
                    current.serial, state.serial
                )));
            }
        }
        match self.objects.put_if(&self.key, state.to_json().into_bytes(), etag).map_err(|e| self.err(e))? {
            Put::Written(t) => Ok(t),
            Put::Refused => Err(self.err("the remote state changed while this run held the lock")),
        }
    }

    /// The current lock, if any.
    pub fn lock_info(&self) -> Result<Option<(RemoteLockInfo, String)>, LockError> {
        let describe = || self.objects.describe(&self.lock_key());
        match self.objects.get(&self.lock_key()).map_err(|e| LockError::Remote(format!("{}: {e}", describe())))? {
            None => Ok(None),
            Some((data, etag)) => {
                let info: RemoteLockInfo = serde_json::from_slice(&data)
                    .map_err(|e| LockError::Corrupt { path: describe(), detail: e.to_string() })?;
                Ok(Some((info, etag)))
            }
        }
    }

    /// Takes the lock for `operation`, waiting up to `timeout`; renews it until the guard
    /// is dropped.
    pub fn lock(&self, operation: &str, timeout: Duration, mut on_wait: impl FnMut()) -> Result<RemoteLock, LockError> {
        let info = LockInfo::new(operation);
        let start = Instant::now();
        let mut waited = false;
        let mut backoff = Duration::from_millis(100);
        let io = |e: skyform_provider::ProviderError| {
            LockError::Remote(format!("{}: {e}", self.objects.describe(&self.lock_key())))
        };
        loop {
            let record =
                RemoteLockInfo { info: info.clone(), renewed: self.now(), lease_secs: self.lease.as_secs().max(1) };
            let body = serde_json::to_vec_pretty(&record).expect("json");
            match self.objects.put_if(&self.lock_key(), body, None).map_err(io)? {
                Put::Written(etag) => return Ok(RemoteLock::start(self.clone(), record, etag)),
                Put::Refused => {
                    let Some((holder, _)) = self.lock_info()? else {
                        continue;
                    };
                    let silent = self.now().saturating_sub(holder.renewed);
                    if silent > 3 * holder.lease_secs {
                        return Err(LockError::Expired(Box::new(holder.info), silent));
                    }
                    if !waited && start.elapsed() >= Duration::from_millis(400) {
                        waited = true;
                        on_wait();
                    }
                    if start.elapsed() >= timeout {
                        return Err(LockError::Held(Box::new(holder.info), !timeout.is_zero()));
                    }
                    std::thread::sleep(backoff.min(timeout.saturating_sub(start.elapsed()) + Duration::from_millis(1)));
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Removes the lock with this id; an unreadable lock object only with `force`.
    pub fn force_unlock(&self, id: Option<&str>, force: bool) -> Result<Removed, LockError> {
        let delete = || self.objects.delete(&self.lock_key()).map_err(|e| LockError::Remote(e.to_string()));
        match self.lock_info() {
            Ok(Some((h, _))) if Some(h.info.id.as_str()) == id => {
                delete()?;
                Ok(Removed::Lock(h.info))
            }
            Ok(held) => Err(LockError::NotFound {
                given: id.unwrap_or_default().to_string(),
                held: held.map(|h| Box::new(h.0.info)),
            }),
            Err(LockError::Corrupt { .. }) if force => {
                delete()?;
                Ok(Removed::Unreadable)
            }
            Err(e) => Err(e),
        }
    }
}

/// A held remote lock: a thread renews the lease and mirrors the local copy's commits.
pub struct RemoteLock {
    pub info: RemoteLockInfo,
    stop: Arc<AtomicBool>,
    mirror: Arc<Mutex<Option<Arc<SledStore>>>>,
    /// The ETag of the last state we pushed (or pulled).
    state_etag: Arc<Mutex<Option<String>>>,
    pushed_serial: Arc<Mutex<Option<u64>>>,
    lost: Arc<AtomicBool>,
    /// Push commits while the command runs (set once the store is held by this process).
    live: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    remote: Remote,
}

impl RemoteLock {
    fn start(remote: Remote, info: RemoteLockInfo, etag: String) -> RemoteLock {
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let live = Arc::new(AtomicBool::new(false));
        let live2 = live.clone();
        let mirror: Arc<Mutex<Option<Arc<SledStore>>>> = Arc::default();
        let state_etag: Arc<Mutex<Option<String>>> = Arc::default();
        let pushed_serial: Arc<Mutex<Option<u64>>> = Arc::default();
        let (stop2, lost2, mirror2, se2, ps2, r2, mut rec) = (
            stop.clone(),
            lost.clone(),
            mirror.clone(),
            state_etag.clone(),
            pushed_serial.clone(),
            remote.clone(),
            info.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut lock_etag = etag;
            let mut last_renew = Instant::now();
            let every = r2.lease / 3;
            while !stop2.load(Ordering::SeqCst) {
                std::thread::sleep(MIRROR_EVERY);
                if last_renew.elapsed() >= every && !lost2.load(Ordering::SeqCst) {
                    rec.renewed = r2.now();
                    let body = serde_json::to_vec_pretty(&rec).expect("json");
                    match r2.objects.put_if(&r2.lock_key(), body, Some(&lock_etag)) {
                        Ok(Put::Written(t)) => {
                            lock_etag = t;
                            last_renew = Instant::now();
                        }
                        Ok(Put::Refused) => {
                            lost2.store(true, Ordering::SeqCst);
                            (r2.warn)(format!(
                                "the state lock {} was removed or taken over; this run stops pushing state",
                                rec.info.id
                            ));
                        }
                        Err(e) => (r2.warn)(format!("renewing the state lock: {e}")),
                    }
                }
                let store = mirror2.lock().expect("lock").clone();
                if let Some(store) = store {
                    if !lost2.load(Ordering::SeqCst) && live2.load(Ordering::SeqCst) {
                        if let Err(e) = mirror_once(&r2, &store, &se2, &ps2) {
                            (r2.warn)(format!("pushing the state: {e}"));
                        }
                    }
                }
            }
        });
        RemoteLock { info, stop, mirror, state_etag, pushed_serial, lost, live, thread: Some(thread), remote }
    }

    /// Pushes `store`'s commits when the lock is released; `etag`/`serial`: the remote
    /// version the store was loaded from.
    pub fn track(&self, store: Arc<SledStore>, etag: Option<String>, serial: Option<u64>) {
        *self.state_etag.lock().expect("lock") = etag;
        *self.pushed_serial.lock().expect("lock") = serial;
        *self.mirror.lock().expect("lock") = Some(store);
    }

    /// Also pushes every commit within [`MIRROR_EVERY`] from now on (call once this process
    /// holds the store, so the mirror reads through the same handle).
    pub fn go_live(&self) {
        self.live.store(true, Ordering::SeqCst);
    }

    /// Stops renewing, pushes what is left and removes the lock.
    pub fn finish(mut self) -> Result<(), StateError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let store = self.mirror.lock().expect("lock").take();
        let r = match store {
            Some(s) if !self.lost.load(Ordering::SeqCst) => {
                mirror_once(&self.remote, &s, &self.state_etag, &self.pushed_serial)
            }
            _ => Ok(()),
        };
        if !self.lost.load(Ordering::SeqCst) {
            if let Ok(Some((h, _))) = self.remote.lock_info() {
                if h.info.id == self.info.info.id {
                    let _ = self.remote.objects.delete(&self.remote.lock_key());
                }
            }
        }
        r
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn mirror_once(
    remote: &Remote,
    store: &SledStore,
    etag: &Mutex<Option<String>>,
    pushed: &Mutex<Option<u64>>,
) -> Result<(), StateError> {
    let st = store.read()?;
    // Serial 0: nothing committed yet. Each read of an empty store makes a fresh lineage,
    // so pushing one would claim the remote for a lineage the first commit does not have.
    if st.serial == 0 || *pushed.lock().expect("lock") == Some(st.serial) {
        return Ok(());
    }
    let prev = etag.lock().expect("lock").clone();
    let t = remote.push(&st, prev.as_deref())?;
    *etag.lock().expect("lock") = Some(t);
    *pushed.lock().expect("lock") = Some(st.serial);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::ManualClock;
    use skyform_provider::objects::MemoryObjects;

    fn remote(mem: Arc<MemoryObjects>, clock: Arc<ManualClock>) -> Remote {
        Remote::new(mem, "job.json", clock, Arc::new(|_| {}))
    }

    #[test]
    fn one_writer_holds_the_lock_and_an_expired_lease_is_reported() {
        let mem = Arc::new(MemoryObjects::default());
        let clock = ManualClock::at(1_000_000);
        let r = remote(mem.clone(), clock.clone());
        let held = r.lock("apply", Duration::ZERO, || {}).unwrap();
        match r.lock("apply", Duration::ZERO, || {}) {
            Err(LockError::Held(h, _)) => assert_eq!(h.id, held.info.info.id),
            other => panic!("expected Held, got {:?}", other.err()),
        }
        held.finish().unwrap();
        assert!(r.lock_info().unwrap().is_none(), "finish removes the lock");
        // A holder that stopped renewing: within three leases it holds; past them it is
        // expired, named, not broken.
        let stale = RemoteLockInfo { info: LockInfo::new("apply"), renewed: clock.now(), lease_secs: 30 };
        mem.put_if("job.json.lock", serde_json::to_vec(&stale).unwrap(), None).unwrap();
        clock.advance(90);
        assert!(matches!(r.lock("apply", Duration::ZERO, || {}), Err(LockError::Held(..))));
        clock.advance(910);
        match r.lock("apply", Duration::ZERO, || {}) {
            Err(LockError::Expired(h, silent)) => {
                assert_eq!(h.id, stale.info.id);
                assert!(silent >= 1000);
            }
            other => panic!("expected Expired, got {:?}", other.err()),
        }
        assert!(r.lock_info().unwrap().is_some(), "still there until force-unlock");
        r.force_unlock(Some(&stale.info.id), false).unwrap();
        assert!(r.lock_info().unwrap().is_none());
    }

    #[test]
    fn a_store_with_nothing_committed_is_not_pushed() {
        // An apply goes live before its first commit: the mirror must not push the empty
        // state it reads then (its lineage is not the one the first commit will have).
        let r = remote(Arc::new(MemoryObjects::default()), ManualClock::at(0));
        let d = tempfile::tempdir().unwrap();
        let store = SledStore::new(d.path().join("state"));
        let (etag, pushed) = (Mutex::new(None), Mutex::new(None));
        mirror_once(&r, &store, &etag, &pushed).unwrap();
        assert!(r.pull().unwrap().is_none(), "nothing committed, nothing pushed");
        let committed = store.commit(&store.read().unwrap()).unwrap();
        mirror_once(&r, &store, &etag, &pushed).unwrap();
        let (remote, _) = r.pull().unwrap().unwrap();
        assert_eq!((remote.lineage, remote.serial), (committed.lineage, 1));
    }

    #[test]
    fn pushes_refuse_other_lineages_older_serials_and_lost_races() {
        let r = remote(Arc::new(MemoryObjects::default()), ManualClock::at(0));
        let mut a = State::new();
        a.serial = 3;
        let t1 = r.push(&a, None).unwrap();
        let mut older = a.clone();
        older.serial = 2;
        assert!(r.push(&older, Some(&t1)).unwrap_err().to_string().contains("moved to serial 3"));
        let mut other = State::new();
        other.serial = 9;
        other.tasks.insert(crate::config::TaskAddr("task.x".into()), Default::default());
        assert!(r.push(&other, Some(&t1)).unwrap_err().to_string().contains("lineage"));
        let mut b = a.clone();
        b.serial = 4;
        let _t2 = r.push(&b, Some(&t1)).unwrap();
        let mut c = a.clone();
        c.serial = 5;
        // Written over a version it did not read: refused.
        assert!(r.push(&c, Some(&t1)).unwrap_err().to_string().contains("changed"));
        assert_eq!(r.pull().unwrap().unwrap().0.serial, 4);
    }
}
