//! [`SledStore`]: the state in a sled database, and the files that make damage visible.
//!
//! The database has trees `meta` (version, lineage, serial), `tasks` (address → JSON) and
//! `outputs` (name → JSON); each commit is one transaction, made durable before it
//! returns. Beside it:
//!
//! - `<state>.commit.json` — the commit record, replaced (atomically) after every commit:
//!   lineage, serial, task count and a digest of every stored record. Reading the
//!   database checks it against the record: a database that is missing, empty, unreadable,
//!   from another lineage, behind the record's serial (commits lost to a torn or truncated
//!   file) or whose contents do not match the digest is reported as damaged
//!   ([`StateError::Damaged`]) — never read as an empty state.
//! - `<state>.snapshot.json` — the whole state as JSON, written after every commit (at
//!   most every 250 ms while a writer holds the database, and when it lets go). Readers use
//!   it while another process holds the database; [`SledStore::recover`] rebuilds the
//!   database from it (or from a remote copy), moving the damaged one aside.
//!
//! Files are 0600 and directories 0700. I/O: the database and those files.

use super::{State, StateError, StateStore, SCHEMA_VERSION};
use crate::config::TaskAddr;
use crate::db::{restrict_dir, restrict_permissions, write_private};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A raw key and value of a sled tree.
type KeyValue = (Vec<u8>, Vec<u8>);

/// How stale the snapshot may get while a writer holds the database.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);

/// The commit record: what the last commit left in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    lineage: String,
    serial: u64,
    tasks: usize,
    /// Sum of the FNV-1a hashes of every stored task and output record.
    digest: String,
}

/// Per-record hashes of what is stored, kept up to date by commits.
#[derive(Debug, Clone, Default)]
struct Digests {
    tasks: BTreeMap<Vec<u8>, u64>,
    outputs: BTreeMap<Vec<u8>, u64>,
}

impl Digests {
    fn total(&self) -> String {
        let t = self.tasks.values().chain(self.outputs.values()).fold(0u64, |a, b| a.wrapping_add(*b));
        format!("{t:016x}")
    }
}

fn fnv(tag: u8, k: &[u8], v: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(tag).chain(k.iter().copied()).chain([0u8]).chain(v.iter().copied()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What [`SledStore::recover`] restored, and from where.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub source: String,
    pub serial: u64,
    pub lineage: String,
    pub tasks: usize,
    /// Where the damaged database was moved (None when there was none).
    pub moved_to: Option<PathBuf>,
}

/// State in a sled database (see the module doc). Opened per operation, so other
/// processes can read between commits; a writer holds it open ([`SledStore::hold`]).
pub struct SledStore {
    path: PathBuf,
    /// Kept open while a writer (apply) runs, so commits are fast.
    held: Mutex<Option<sled::Db>>,
    /// While held: the thread that refreshes the snapshot after commits.
    snapshotter: Mutex<Option<Snapshotter>>,
    /// The last state this handle committed (commits then write only what changed).
    last: Mutex<Option<State>>,
    /// Hashes of the stored records, once known.
    digests: Mutex<Option<Digests>>,
    /// The record of the last write not yet made durable ([`SledStore::sync`] writes it).
    pending: Mutex<Option<Record>>,
}

/// Refreshes the snapshot of a held database within [`SNAPSHOT_EVERY`] of a commit.
struct Snapshotter {
    dirty: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Snapshotter {
    fn start(db: sled::Db, path: PathBuf) -> Snapshotter {
        let dirty = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, st) = (dirty.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                std::thread::sleep(SNAPSHOT_EVERY);
                if d.swap(false, Ordering::SeqCst) {
                    if let Ok(Some((s, _))) = SledStore::load(&db) {
                        let _ = write_private(&path, s.to_json().as_bytes());
                    }
                }
            }
        });
        Snapshotter { dirty, stop, thread }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

fn path_with(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl SledStore {
    pub fn new(path: impl Into<PathBuf>) -> SledStore {
        SledStore {
            path: path.into(),
            held: Mutex::new(None),
            snapshotter: Mutex::new(None),
            last: Mutex::new(None),
            digests: Mutex::new(None),
            pending: Mutex::new(None),
        }
    }

    /// Keeps the database open until [`SledStore::release_handle`] (for a writer that
    /// commits often; it holds the state lock meanwhile).
    pub fn hold(&self) -> Result<(), StateError> {
        let db = self.open()?;
        // Readers need a snapshot from the moment the writer holds the database.
        if let Ok(Some((s, _))) = SledStore::load(&db) {
            self.write_snapshot(&s);
        }
        *self.snapshotter.lock().expect("lock") = Some(Snapshotter::start(db.clone(), self.snapshot_path()));
        *self.held.lock().expect("lock") = Some(db);
        Ok(())
    }

    /// True while [`SledStore::hold`] keeps the database open.
    pub fn is_held(&self) -> bool {
        self.held.lock().expect("lock").is_some()
    }

    pub fn release_handle(&self) {
        if let Some(t) = self.snapshotter.lock().expect("lock").take() {
            t.finish();
        }
        if let Some(db) = self.held.lock().expect("lock").take() {
            let _ = db.flush();
            if let Ok(Some((s, _))) = SledStore::load(&db) {
                self.write_snapshot(&s);
            }
        }
        // sled made files of its own meanwhile.
        restrict_permissions(&self.path);
    }

    /// The JSON copy readers use while a writer holds the database.
    pub fn snapshot_path(&self) -> PathBuf {
        path_with(&self.path, ".snapshot.json")
    }

    /// The commit record.
    pub fn record_path(&self) -> PathBuf {
        path_with(&self.path, ".commit.json")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_snapshot(&self, s: &State) {
        let _ = write_private(&self.snapshot_path(), s.to_json().as_bytes());
    }

    /// After a commit while held: the snapshotter refreshes the snapshot soon.
    fn snapshot_soon(&self) {
        if let Some(t) = self.snapshotter.lock().expect("lock").as_ref() {
            t.dirty.store(true, Ordering::SeqCst);
        }
    }

    fn open(&self) -> Result<sled::Db, StateError> {
        if let Some(db) = self.held.lock().expect("lock").as_ref() {
            return Ok(db.clone());
        }
        if let Some(p) = self.path.parent() {
            std::fs::create_dir_all(p)?;
            restrict_dir(p);
        }
        let db = crate::db::open_sled(&self.path, 100).map_err(|e| self.open_error(e))?;
        restrict_permissions(&self.path);
        Ok(db)
    }

    /// An error opening the database: another process holding it, or damage.
    fn open_error(&self, e: sled::Error) -> StateError {
        if crate::db::is_busy(&e) {
            StateError::Open { path: self.path.display().to_string(), source: e }
        } else {
            self.damaged(format!("the database cannot be opened ({e})"))
        }
    }

    fn damaged(&self, detail: String) -> StateError {
        StateError::Damaged {
            path: self.path.display().to_string(),
            detail,
            snapshot: self.snapshot_path().display().to_string(),
        }
    }

    fn exists(&self) -> bool {
        self.path.join("conf").exists() || self.path.join("db").exists()
    }

    fn record(&self) -> Result<Option<Record>, StateError> {
        match std::fs::read(self.record_path()) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                self.damaged(format!("its commit record {} is unreadable ({e})", self.record_path().display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn write_record(&self, r: &Record) -> Result<(), StateError> {
        write_private(&self.record_path(), &serde_json::to_vec_pretty(r).expect("json"))?;
        Ok(())
    }

    /// Checks what the database holds against the commit record.
    fn verify(&self, loaded: Option<&(State, Digests)>) -> Result<(), StateError> {
        let Some(rec) = self.record()? else { return Ok(()) };
        let Some((s, d)) = loaded else {
            return if rec.serial > 0 {
                Err(self.damaged(format!(
                    "the database holds no state, but the last commit was serial {} with {} task(s)",
                    rec.serial, rec.tasks
                )))
            } else {
                Ok(())
            };
        };
        if s.lineage != rec.lineage {
            return Err(self.damaged(format!(
                "the database holds lineage {}, but the last commit was of lineage {}",
                s.lineage, rec.lineage
            )));
        }
        if s.serial < rec.serial {
            return Err(self.damaged(format!(
                "the database holds serial {} with {} task(s), but the last commit was serial {} with {} task(s): commits were lost",
                s.serial,
                s.tasks.len(),
                rec.serial,
                rec.tasks
            )));
        }
        if s.serial == rec.serial && (d.total() != rec.digest || s.tasks.len() != rec.tasks) {
            return Err(self.damaged(format!(
                "its contents at serial {} do not match what was committed (digest {} ≠ {})",
                s.serial,
                d.total(),
                rec.digest
            )));
        }
        Ok(())
    }

    /// (version, lineage, serial) without reading the tasks.
    fn meta(db: &sled::Db) -> Result<Option<(u32, String, u64)>, StateError> {
        let Some(v) = db.open_tree("meta")?.get("meta")? else { return Ok(None) };
        let m: serde_json::Value = serde_json::from_slice(&v).map_err(|e| StateError::Corrupt(e.to_string()))?;
        Ok(Some((
            m["version"].as_u64().unwrap_or(0) as u32,
            m["lineage"].as_str().unwrap_or_default().to_string(),
            m["serial"].as_u64().unwrap_or(0),
        )))
    }

    /// Refuses a state of another lineage or a serial that moved since it was read.
    fn check_meta(db: &sled::Db, state: &State) -> Result<(), StateError> {
        if let Some((_, lineage, serial)) = SledStore::meta(db)? {
            if lineage != state.lineage {
                return Err(StateError::Lineage { expected: lineage, found: state.lineage.clone() });
            }
            if serial != state.serial {
                return Err(StateError::Conflict { expected: state.serial, found: serial });
            }
        }
        Ok(())
    }

    /// The state and the hashes of its records (None: the database holds no state).
    fn load(db: &sled::Db) -> Result<Option<(State, Digests)>, StateError> {
        let meta = db.open_tree("meta")?;
        let Some(v) = meta.get("meta")? else { return Ok(None) };
        let m: serde_json::Value = serde_json::from_slice(&v).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let version = m["version"].as_u64().unwrap_or(0) as u32;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew { found: version });
        }
        let mut s = State {
            version,
            lineage: m["lineage"].as_str().unwrap_or_default().to_string(),
            serial: m["serial"].as_u64().unwrap_or(0),
            tasks: BTreeMap::new(),
            outputs: BTreeMap::new(),
        };
        let mut d = Digests::default();
        for kv in db.open_tree("tasks")?.iter() {
            let (k, v) = kv?;
            let addr = TaskAddr(String::from_utf8_lossy(&k).into_owned());
            s.tasks.insert(addr, serde_json::from_slice(&v).map_err(|e| StateError::Corrupt(e.to_string()))?);
            d.tasks.insert(k.to_vec(), fnv(b't', &k, &v));
        }
        for kv in db.open_tree("outputs")?.iter() {
            let (k, v) = kv?;
            s.outputs.insert(
                String::from_utf8_lossy(&k).into_owned(),
                serde_json::from_slice(&v).map_err(|e| StateError::Corrupt(e.to_string()))?,
            );
            d.outputs.insert(k.to_vec(), fnv(b'o', &k, &v));
        }
        Ok(Some((s, d)))
    }

    /// Loads and verifies against the commit record; remembers the digests.
    fn load_checked(&self, db: &sled::Db) -> Result<State, StateError> {
        let loaded = match SledStore::load(db) {
            Ok(l) => l,
            Err(e @ StateError::TooNew { .. }) => return Err(e),
            Err(e) => return Err(self.damaged(format!("it cannot be read ({e})"))),
        };
        self.verify(loaded.as_ref())?;
        Ok(match loaded {
            Some((s, d)) => {
                *self.digests.lock().expect("lock") = Some(d);
                s
            }
            None => {
                *self.digests.lock().expect("lock") = Some(Digests::default());
                State::new()
            }
        })
    }

    /// The digests of what is stored (scanning the database the first time).
    fn digests(&self, db: &sled::Db) -> Result<Digests, StateError> {
        if let Some(d) = self.digests.lock().expect("lock").clone() {
            return Ok(d);
        }
        Ok(SledStore::load(db)?.map(|x| x.1).unwrap_or_default())
    }

    /// Writes `s` in one transaction: everything, or only what differs from `prev`.
    fn store(&self, db: &sled::Db, s: &State, prev: Option<&State>) -> Result<(), StateError> {
        let tasks = db.open_tree("tasks")?;
        let meta_v =
            serde_json::to_vec(&serde_json::json!({"version": s.version, "lineage": s.lineage, "serial": s.serial}))
                .expect("json");
        let (task_put, task_del): (Vec<KeyValue>, Vec<Vec<u8>>) = match prev {
            Some(p) => (
                s.tasks
                    .iter()
                    .filter(|(k, v)| p.tasks.get(*k) != Some(*v))
                    .map(|(k, v)| (k.0.as_bytes().to_vec(), serde_json::to_vec(v).expect("json")))
                    .collect(),
                p.tasks.keys().filter(|k| !s.tasks.contains_key(*k)).map(|k| k.0.as_bytes().to_vec()).collect(),
            ),
            None => (
                s.tasks.iter().map(|(k, v)| (k.0.as_bytes().to_vec(), serde_json::to_vec(v).expect("json"))).collect(),
                tasks
                    .iter()
                    .keys()
                    .map(|k| k.map(|k| k.to_vec()))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|k| !s.tasks.contains_key(&TaskAddr(String::from_utf8_lossy(k).into_owned())))
                    .collect(),
            ),
        };
        let mut digests = if prev.is_some() { self.digests(db)? } else { Digests::default() };
        let puts: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            task_put.into_iter().map(|(k, v)| (k, Some(v))).chain(task_del.into_iter().map(|k| (k, None))).collect();
        let outs = (!prev.is_some_and(|p| p.outputs == s.outputs)).then_some(&s.outputs);
        write_tx(db, &puts, outs, &meta_v, &mut digests)?;
        db.flush()?;
        if prev.is_none() {
            // Everything was written: the digests are those of the whole state.
            digests = SledStore::load(db)?.map(|x| x.1).unwrap_or_default();
        }
        let r = Record { lineage: s.lineage.clone(), serial: s.serial, tasks: s.tasks.len(), digest: digests.total() };
        self.write_record(&r)?;
        *self.digests.lock().expect("lock") = Some(digests);
        Ok(())
    }

    /// Rebuilds a damaged or missing database from the newest good copy: the snapshot
    /// beside it or `remote` (a remote backend's state). The damaged database is moved to
    /// `<state>.damaged-<time>` first. The caller holds the state lock.
    pub fn recover(&self, remote: Option<(State, String)>) -> Result<Recovered, StateError> {
        let record = self.record().ok().flatten();
        let mut candidates: Vec<(State, String)> = Vec::new();
        if let Ok(Ok(s)) = std::fs::read_to_string(self.snapshot_path()).map(|t| State::from_json(&t)) {
            candidates.push((s, self.snapshot_path().display().to_string()));
        }
        if let Some(r) = remote {
            candidates.push(r);
        }
        if self.exists() {
            if let Ok(db) = sled::Config::new().path(&self.path).open() {
                if let Ok(Some((s, _))) = SledStore::load(&db) {
                    candidates.push((s, format!("{} (what is still readable)", self.path.display())));
                }
            }
        }
        if let Some(rec) = &record {
            candidates.retain(|(s, _)| s.lineage == rec.lineage);
        }
        let Some((best, source)) = candidates.into_iter().max_by_key(|(s, _)| s.serial) else {
            return Err(StateError::Refused(format!(
                "nothing to recover from: no readable snapshot ({}) {}",
                self.snapshot_path().display(),
                if record.is_some() { "of the committed lineage" } else { "exists" }
            )));
        };
        let moved_to = if self.path.exists() {
            let to = path_with(&self.path, &format!(".damaged-{}", crate::clock::now_secs()));
            std::fs::rename(&self.path, &to)?;
            Some(to)
        } else {
            None
        };
        *self.last.lock().expect("lock") = None;
        *self.digests.lock().expect("lock") = None;
        let _ = std::fs::remove_file(self.record_path());
        self.replace(&best)?;
        Ok(Recovered { source, serial: best.serial, lineage: best.lineage.clone(), tasks: best.tasks.len(), moved_to })
    }
}

/// One transaction: task puts (None deletes), the outputs replaced when given, the meta.
/// Updates `digests` with what was written.
fn write_tx(
    db: &sled::Db,
    puts: &[(Vec<u8>, Option<Vec<u8>>)],
    outputs: Option<&BTreeMap<String, serde_json::Value>>,
    meta_v: &[u8],
    digests: &mut Digests,
) -> Result<(), StateError> {
    use sled::Transactional;
    let (meta, tasks, outs) = (db.open_tree("meta")?, db.open_tree("tasks")?, db.open_tree("outputs")?);
    let out_vals: Vec<KeyValue> = outputs
        .map(|o| o.iter().map(|(k, v)| (k.as_bytes().to_vec(), serde_json::to_vec(v).expect("json"))).collect())
        .unwrap_or_default();
    let old_outs: Vec<sled::IVec> =
        if outputs.is_some() { outs.iter().keys().collect::<Result<_, _>>()? } else { vec![] };
    (&meta, &tasks, &outs)
        .transaction(|(m, t, o)| {
            for (k, v) in puts {
                match v {
                    Some(v) => {
                        t.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        t.remove(k.as_slice())?;
                    }
                }
            }
            for k in &old_outs {
                o.remove(k)?;
            }
            for (k, v) in &out_vals {
                o.insert(k.as_slice(), v.as_slice())?;
            }
            m.insert("meta", meta_v)?;
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| StateError::Corrupt(format!("transaction failed: {e:?}")))?;
    for (k, v) in puts {
        match v {
            Some(v) => digests.tasks.insert(k.clone(), fnv(b't', k, v)),
            None => digests.tasks.remove(k),
        };
    }
    if outputs.is_some() {
        digests.outputs = out_vals.iter().map(|(k, v)| (k.clone(), fnv(b'o', k, v))).collect();
    }
    Ok(())
}

impl StateStore for SledStore {
    fn read(&self) -> Result<State, StateError> {
        if !self.exists() {
            if let Some(rec) = self.record()? {
                if rec.serial > 0 {
                    return Err(self.damaged(format!(
                        "the database is missing, but the last commit was serial {} with {} task(s)",
                        rec.serial, rec.tasks
                    )));
                }
            }
            let snap = std::fs::read_to_string(self.snapshot_path()).ok().and_then(|t| State::from_json(&t).ok());
            if let Some(s) = snap.filter(|s| !s.tasks.is_empty()) {
                return Err(self.damaged(format!(
                    "the database is missing, but its snapshot holds serial {} with {} task(s)",
                    s.serial,
                    s.tasks.len()
                )));
            }
            return Ok(State::new());
        }
        if !self.is_held() {
            // Another process holds the state lock (a writer): read its snapshot rather
            // than take the database's exclusive lock from under it. A stale lock's holder
            // is gone (the snapshot may lag its last commits): read the database itself.
            let writer = super::lock::read(&super::lock::lock_path(&self.path)).ok().flatten();
            if writer.is_some_and(|w| w.pid != std::process::id() && !w.holder_gone()) {
                if let Ok(s) = std::fs::read_to_string(self.snapshot_path()).map(|t| State::from_json(&t)) {
                    return s;
                }
                if self.record()?.is_none_or(|r| r.serial == 0) {
                    // Nothing committed yet: the writer is starting a new state.
                    return Ok(State::new());
                }
            }
            match sled::Config::new().path(&self.path).open() {
                Ok(db) => {
                    let r = self.load_checked(&db);
                    // Closing writes sled's own snapshot files: keep them private too.
                    drop(db);
                    restrict_permissions(&self.path);
                    return r;
                }
                // Another process (an apply) holds the database: read its snapshot.
                Err(e) if crate::db::is_busy(&e) => {
                    if let Ok(text) = std::fs::read_to_string(self.snapshot_path()) {
                        return State::from_json(&text);
                    }
                }
                Err(e) => return Err(self.open_error(e)),
            }
        }
        let db = self.open()?;
        let s = self.load_checked(&db)?;
        *self.last.lock().expect("lock") = Some(s.clone());
        if !self.is_held() {
            drop(db);
            restrict_permissions(&self.path);
        }
        Ok(s)
    }

    fn commit(&self, state: &State) -> Result<State, StateError> {
        let db = self.open()?;
        SledStore::check_meta(&db, state)?;
        let mut next = state.clone();
        next.version = SCHEMA_VERSION;
        next.serial = state.serial + 1;
        let mut last = self.last.lock().expect("lock");
        let prev = last.as_ref().filter(|l| l.serial == state.serial && l.lineage == state.lineage).cloned();
        self.store(&db, &next, prev.as_ref())?;
        *last = Some(next.clone());
        drop(last);
        drop(db);
        if !self.is_held() {
            restrict_permissions(&self.path);
            self.write_snapshot(&next);
        } else {
            self.snapshot_soon();
        }
        Ok(next)
    }

    fn commit_changes(&self, state: &State, changed: &[TaskAddr], outputs: bool) -> Result<u64, StateError> {
        let serial = self.write_changes(state, changed, outputs)?;
        self.sync()?;
        Ok(serial)
    }

    fn replace(&self, state: &State) -> Result<(), StateError> {
        let db = self.open()?;
        self.store(&db, state, None)?;
        *self.last.lock().expect("lock") = Some(state.clone());
        drop(db);
        self.write_snapshot(state);
        restrict_permissions(&self.path);
        Ok(())
    }
}

impl SledStore {
    /// [`StateStore::commit_changes`] without waiting for the disk; call [`SledStore::sync`]
    /// before relying on it. Lets concurrent writers share one flush (group commit).
    pub fn write_changes(&self, state: &State, changed: &[TaskAddr], outputs: bool) -> Result<u64, StateError> {
        let db = self.open()?;
        SledStore::check_meta(&db, state)?;
        let serial = state.serial + 1;
        let meta_v = serde_json::to_vec(
            &serde_json::json!({"version": SCHEMA_VERSION, "lineage": state.lineage, "serial": serial}),
        )
        .expect("json");
        let puts: Vec<(Vec<u8>, Option<Vec<u8>>)> = changed
            .iter()
            .map(|k| (k.0.as_bytes().to_vec(), state.tasks.get(k).map(|t| serde_json::to_vec(t).expect("json"))))
            .collect();
        let mut digests = self.digests(&db)?;
        write_tx(&db, &puts, outputs.then_some(&state.outputs), &meta_v, &mut digests)?;
        let r = Record { lineage: state.lineage.clone(), serial, tasks: state.tasks.len(), digest: digests.total() };
        *self.digests.lock().expect("lock") = Some(digests);
        *self.last.lock().expect("lock") = None;
        *self.pending.lock().expect("lock") = Some(r);
        if self.is_held() && self.snapshot_path().exists() {
            self.snapshot_soon();
        } else {
            let mut snap = state.clone();
            snap.serial = serial;
            self.write_snapshot(&snap);
        }
        Ok(serial)
    }

    /// Makes every write so far durable, then records the last commit (a write that
    /// lands after the flush records itself at its own sync).
    pub fn sync(&self) -> Result<(), StateError> {
        let pending = self.pending.lock().expect("lock").take();
        let db = self.open()?;
        db.flush()?;
        if let Some(r) = pending {
            self.write_record(&r)?;
        }
        Ok(())
    }
}
