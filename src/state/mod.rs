//! State: what skyform manages for a job, and where it is kept.
//!
//! [`State`] holds the schema version, the lineage (a UUID made at creation), the serial
//! (bumped on every committed change) and, per task, its spec hash, planned placement,
//! allocation (provider id, owner tags, idempotency token, price at launch), runs, data
//! objects and status; plus the job's outputs. Its JSON form ([`State::to_json`]) is the
//! stable export/import format.
//!
//! [`StateStore`] hides the storage: [`SledStore`] keeps it in sled (`.skyform/state` by
//! default), each commit one transaction across its trees, files 0600. Locking (one
//! writer at a time) is [`lock`]. [`remote`] keeps the state in an object store for
//! teams (`backend "s3"`: JSON with serial/lineage checks, a conditional-put lock with a
//! lease); commands then work on a local sled copy that is pulled and pushed. I/O: the
//! store's files, and the object store of a remote backend.

pub mod lock;
pub mod remote;

use crate::config::TaskAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A raw key and value of a sled tree.
type KeyValue = (Vec<u8>, Vec<u8>);

/// The current state schema version.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open the state at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("state database error: {0}")]
    Db(#[from] sled::Error),
    #[error("state record is corrupt: {0}")]
    Corrupt(String),
    #[error("state schema version {found} is newer than this skyform understands ({SCHEMA_VERSION}); upgrade skyform")]
    TooNew { found: u32 },
    #[error("the state's lineage is {found}, not {expected}: this is another job's state")]
    Lineage { expected: String, found: String },
    #[error("the state's serial moved from {expected} to {found} while this command ran; run it again")]
    Conflict { expected: u64, found: u64 },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("remote state {0}")]
    Remote(String),
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Preempted,
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Preempted => "preempted",
        })
    }
}

/// A placement as recorded (plan or launch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementRecord {
    pub cloud: String,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    /// The offering's accelerators, `NAME:COUNT` (absent in states written before 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    pub spot: bool,
    /// USD per hour per node.
    pub hourly: f64,
    pub hours: f64,
    /// The planned cost of the task (compute + storage + egress out).
    pub cost: f64,
}

/// A resource skyform created at a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub provider: String,
    pub placement: PlacementRecord,
    pub provider_id: Option<String>,
    pub owner_tags: BTreeMap<String, String>,
    pub idempotency_token: String,
    pub created: u64,
    pub released: Option<u64>,
    pub status: String,
}

/// One attempt at running a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub attempt: u32,
    pub status: TaskStatus,
    pub exit_code: Option<i32>,
    pub log: Option<String>,
    pub start: u64,
    pub end: Option<u64>,
    pub cost: f64,
}

/// A data object skyform produced or moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataObject {
    pub name: String,
    pub uri: String,
    pub size_gb: f64,
    pub checksum: Option<String>,
    pub location: String,
}

/// Everything the state knows of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskState {
    pub spec_hash: String,
    /// The task as last applied (for attribute diffs in plans).
    #[serde(default)]
    pub spec: Option<crate::config::Task>,
    pub status: TaskStatus,
    /// Set after a failure: the next plan replaces the task.
    pub tainted: bool,
    pub placement: Option<PlacementRecord>,
    pub allocations: Vec<Allocation>,
    pub runs: Vec<Run>,
    pub data: Vec<DataObject>,
}

impl TaskState {
    /// Cost so far: the sum of the runs' costs.
    pub fn cost_so_far(&self) -> f64 {
        self.runs.iter().map(|r| r.cost).sum()
    }
}

/// The state of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub lineage: String,
    pub serial: u64,
    pub tasks: BTreeMap<TaskAddr, TaskState>,
    pub outputs: BTreeMap<String, serde_json::Value>,
}

impl State {
    /// A new, empty state with a fresh lineage.
    pub fn new() -> State {
        State {
            version: SCHEMA_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            tasks: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.outputs.is_empty()
    }

    /// The stable JSON export.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable")
    }

    /// Reads a JSON export (any schema version up to this one).
    pub fn from_json(s: &str) -> Result<State, StateError> {
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| StateError::Corrupt(format!("not a state file: {e}")))?;
        let version =
            v.get("version").and_then(|x| x.as_u64()).ok_or_else(|| StateError::Corrupt("no `version`".into()))? as u32;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew { found: version });
        }
        serde_json::from_value(v).map_err(|e| StateError::Corrupt(e.to_string()))
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// Where state lives. Implementations commit each change atomically.
pub trait StateStore {
    /// The current state (a new empty one when none exists yet).
    fn read(&self) -> Result<State, StateError>;
    /// Commits `state` as the next version: refuses another lineage, or a serial that moved
    /// since `state` was read; bumps the serial. Returns the committed state.
    fn commit(&self, state: &State) -> Result<State, StateError>;
    /// Commits only the named tasks (and the outputs when `outputs`) of `state`, which the
    /// caller changed in place since its last commit; returns the new serial, which the
    /// caller stores in `state.serial`. The same checks as [`StateStore::commit`].
    fn commit_changes(&self, state: &State, changed: &[TaskAddr], outputs: bool) -> Result<u64, StateError>;
    /// Replaces the stored state wholesale (`state push`), keeping its serial.
    fn replace(&self, state: &State) -> Result<(), StateError>;
}

/// State in a sled database: trees `meta` (version, lineage, serial), `tasks` (address →
/// JSON) and `outputs` (name → JSON). Opened per operation, so other processes can read
/// between commits.
pub struct SledStore {
    path: PathBuf,
    /// Kept open while a writer (apply) runs, so commits are fast.
    held: std::sync::Mutex<Option<sled::Db>>,
    /// When the reader snapshot was last written (while held).
    snapshot_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// The last state this handle committed (commits then write only what changed).
    last: std::sync::Mutex<Option<State>>,
}

impl SledStore {
    pub fn new(path: impl Into<PathBuf>) -> SledStore {
        SledStore {
            path: path.into(),
            held: std::sync::Mutex::new(None),
            snapshot_at: std::sync::Mutex::new(None),
            last: std::sync::Mutex::new(None),
        }
    }

    /// Keeps the database open until [`SledStore::release_handle`] (for a writer that
    /// commits often; it holds the state lock meanwhile).
    pub fn hold(&self) -> Result<(), StateError> {
        let db = self.open()?;
        *self.held.lock().expect("lock") = Some(db);
        Ok(())
    }

    /// True while [`SledStore::hold`] keeps the database open.
    pub fn is_held(&self) -> bool {
        self.held.lock().expect("lock").is_some()
    }

    pub fn release_handle(&self) {
        if let Some(db) = self.held.lock().expect("lock").take() {
            let _ = db.flush();
            if let Ok(Some(s)) = SledStore::load(&db) {
                self.write_snapshot(&s);
            }
        }
        *self.snapshot_at.lock().expect("lock") = None;
    }

    /// The JSON copy readers use while a writer holds the database.
    pub fn snapshot_path(&self) -> PathBuf {
        let mut s = self.path.as_os_str().to_owned();
        s.push(".snapshot.json");
        PathBuf::from(s)
    }

    fn write_snapshot(&self, s: &State) {
        let p = self.snapshot_path();
        let tmp = p.with_extension("tmp");
        if std::fs::write(&tmp, s.to_json()).is_ok() {
            let _ = std::fs::rename(&tmp, &p);
            restrict_permissions_file(&p);
        }
        *self.snapshot_at.lock().expect("lock") = Some(std::time::Instant::now());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<sled::Db, StateError> {
        if let Some(db) = self.held.lock().expect("lock").as_ref() {
            return Ok(db.clone());
        }
        if let Some(p) = self.path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let db = crate::db::open_sled(&self.path, 100)
            .map_err(|e| StateError::Open { path: self.path.display().to_string(), source: e })?;
        restrict_permissions(&self.path);
        Ok(db)
    }

    fn exists(&self) -> bool {
        self.path.join("conf").exists() || self.path.join("db").exists()
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

    fn load(db: &sled::Db) -> Result<Option<State>, StateError> {
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
        for kv in db.open_tree("tasks")?.iter() {
            let (k, v) = kv?;
            let addr = TaskAddr(String::from_utf8_lossy(&k).into_owned());
            s.tasks.insert(addr, serde_json::from_slice(&v).map_err(|e| StateError::Corrupt(e.to_string()))?);
        }
        for kv in db.open_tree("outputs")?.iter() {
            let (k, v) = kv?;
            s.outputs.insert(
                String::from_utf8_lossy(&k).into_owned(),
                serde_json::from_slice(&v).map_err(|e| StateError::Corrupt(e.to_string()))?,
            );
        }
        Ok(Some(s))
    }

    /// Writes `s` in one transaction: everything, or only what differs from `prev`.
    fn store(db: &sled::Db, s: &State, prev: Option<&State>) -> Result<(), StateError> {
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
        let puts: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            task_put.into_iter().map(|(k, v)| (k, Some(v))).chain(task_del.into_iter().map(|k| (k, None))).collect();
        let outs = (!prev.is_some_and(|p| p.outputs == s.outputs)).then_some(&s.outputs);
        write_tx(db, &puts, outs, &meta_v)?;
        db.flush()?;
        Ok(())
    }
}

/// One transaction: task puts (None deletes), the outputs replaced when given, the meta.
fn write_tx(
    db: &sled::Db,
    puts: &[(Vec<u8>, Option<Vec<u8>>)],
    outputs: Option<&BTreeMap<String, serde_json::Value>>,
    meta_v: &[u8],
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
    Ok(())
}

fn restrict_permissions_file(p: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600));
    }
}

/// Makes the state files readable by the owner only (0600 files, 0700 directories).
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                let p = e.path();
                let mode = if p.is_dir() { 0o700 } else { 0o600 };
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
                if p.is_dir() {
                    restrict_permissions(&p);
                }
            }
        }
    }
}

impl StateStore for SledStore {
    fn read(&self) -> Result<State, StateError> {
        if !self.exists() {
            return Ok(State::new());
        }
        if self.held.lock().expect("lock").is_none() {
            // Another process (an apply) holds the database: read its snapshot.
            if let Ok(db) = sled::Config::new().path(&self.path).open() {
                return Ok(SledStore::load(&db)?.unwrap_or_default());
            }
            if let Ok(text) = std::fs::read_to_string(self.snapshot_path()) {
                return State::from_json(&text);
            }
        }
        let db = self.open()?;
        let s = SledStore::load(&db)?.unwrap_or_default();
        *self.last.lock().expect("lock") = Some(s.clone());
        Ok(s)
    }

    fn commit(&self, state: &State) -> Result<State, StateError> {
        let db = self.open()?;
        SledStore::check_meta(&db, state)?;
        let mut next = state.clone();
        next.version = SCHEMA_VERSION;
        next.serial = state.serial + 1;
        let mut last = self.last.lock().expect("lock");
        let prev = last.as_ref().filter(|l| l.serial == state.serial && l.lineage == state.lineage);
        SledStore::store(&db, &next, prev)?;
        *last = Some(next.clone());
        drop(last);
        drop(db);
        if self.held.lock().expect("lock").is_some() {
            let due = self
                .snapshot_at
                .lock()
                .expect("lock")
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(250));
            if due {
                self.write_snapshot(&next);
            }
        } else {
            restrict_permissions(&self.path);
            self.write_snapshot(&next);
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
        SledStore::store(&db, state, None)?;
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
        write_tx(&db, &puts, outputs.then_some(&state.outputs), &meta_v)?;
        *self.last.lock().expect("lock") = None;
        let due =
            self.snapshot_at.lock().expect("lock").is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(250));
        if due {
            let mut snap = state.clone();
            snap.serial = serial;
            self.write_snapshot(&snap);
        }
        Ok(serial)
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<(), StateError> {
        let db = self.open()?;
        db.flush()?;
        Ok(())
    }
}

/// `state push` rules: refuses another lineage or a lower serial unless forced.
pub fn check_push(current: &State, incoming: &State, force: bool) -> Result<(), StateError> {
    if force || current.is_empty() && current.serial == 0 {
        return Ok(());
    }
    if current.lineage != incoming.lineage {
        return Err(StateError::Refused(format!(
            "cannot push: the state file's lineage ({}) differs from the current state's ({}); use -force to overwrite",
            incoming.lineage, current.lineage
        )));
    }
    if incoming.serial < current.serial {
        return Err(StateError::Refused(format!(
            "cannot push: the state file's serial ({}) is lower than the current state's ({}); use -force to overwrite",
            incoming.serial, current.serial
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut s = State::new();
        let mut t = TaskState { spec_hash: "abc".into(), status: TaskStatus::Succeeded, ..Default::default() };
        t.placement = Some(PlacementRecord {
            cloud: "local".into(),
            region: "local".into(),
            zone: "zone-a".into(),
            instance_type: "local.small".into(),
            accelerator: None,
            spot: false,
            hourly: 0.02,
            hours: 1.0,
            cost: 0.02,
        });
        t.runs.push(Run {
            attempt: 1,
            status: TaskStatus::Succeeded,
            exit_code: Some(0),
            log: Some("x.log".into()),
            start: 1,
            end: Some(2),
            cost: 0.02,
        });
        s.tasks.insert(TaskAddr("task.a".into()), t);
        s.outputs.insert("o".into(), serde_json::json!({"a": 1}));
        s
    }

    #[test]
    fn commit_bumps_serial_and_checks_lineage_and_serial() {
        let d = tempfile::tempdir().unwrap();
        let store = SledStore::new(d.path().join("state"));
        let s0 = store.read().unwrap();
        assert_eq!(s0.serial, 0);
        let s1 = store.commit(&sample()).unwrap();
        assert_eq!(s1.serial, 1);
        let back = store.read().unwrap();
        assert_eq!(back, s1);
        // A stale writer is refused.
        let stale = s1.clone();
        store.commit(&s1).unwrap();
        assert!(matches!(store.commit(&stale), Err(StateError::Conflict { .. })));
        let mut other = store.read().unwrap();
        other.lineage = "x".into();
        assert!(matches!(store.commit(&other), Err(StateError::Lineage { .. })));
    }

    #[test]
    fn json_export_round_trips_and_files_are_private() {
        let d = tempfile::tempdir().unwrap();
        let store = SledStore::new(d.path().join("state"));
        let s = store.commit(&sample()).unwrap();
        let json = s.to_json();
        let back = State::from_json(&json).unwrap();
        assert_eq!(back, s);
        let store2 = SledStore::new(d.path().join("state2"));
        store2.replace(&back).unwrap();
        assert_eq!(store2.read().unwrap(), s, "export → import reads back identically");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for e in std::fs::read_dir(d.path().join("state")).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
                }
            }
        }
    }

    #[test]
    fn push_rules() {
        let cur = sample();
        let mut inc = cur.clone();
        inc.serial = cur.serial + 1;
        assert!(check_push(&cur, &inc, false).is_ok());
        inc.lineage = "other".into();
        assert!(check_push(&cur, &inc, false).unwrap_err().to_string().contains("lineage"));
        assert!(check_push(&cur, &inc, true).is_ok());
        let mut cur2 = cur.clone();
        cur2.serial = 5;
        let mut low = cur.clone();
        low.serial = 3;
        assert!(check_push(&cur2, &low, false).unwrap_err().to_string().contains("lower"));
        assert!(State::from_json("{\"version\": 99}").unwrap_err().to_string().contains("newer"));
    }
}
