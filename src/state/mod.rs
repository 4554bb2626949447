//! State: what skyform manages for a job, and where it is kept.
//!
//! [`State`] holds the schema version, the lineage (a UUID made at creation), the serial
//! (bumped on every committed change) and, per task, its spec hash, planned placement,
//! allocation (provider id, owner tags, idempotency token, price at launch), runs, data
//! objects and status; plus the job's outputs. Its JSON form ([`State::to_json`]) is the
//! stable export/import format.
//!
//! [`StateStore`] hides the storage: [`SledStore`] keeps it in sled (`.skyform/state` by
//! default), each commit one transaction across its trees, files 0600, with a commit
//! record and a snapshot beside it so that damage is reported (never read as an empty
//! state) and `state recover` can rebuild it. Locking (one
//! writer at a time) is [`lock`]. [`remote`] keeps the state in an object store for
//! teams (`backend "s3"`: JSON with serial/lineage checks, a conditional-put lock with a
//! lease); commands then work on a local sled copy that is pulled and pushed. I/O: the
//! store's files, and the object store of a remote backend.

pub mod lock;
pub mod remote;
mod store;

pub use store::{Recovered, SledStore};

use crate::config::TaskAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    #[error("the state at {path} is damaged: {detail}.\nNothing was changed. `skyform state recover` rebuilds it from the newest good copy (the snapshot {snapshot}, or the remote backend's state) and keeps the damaged database aside.")]
    Damaged { path: String, detail: String, snapshot: String },
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
    /// A run stopped by a migration: its checkpoint was synced and the task goes on from
    /// it at the new placement (a run's status only, never a task's).
    Migrated,
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Preempted => "preempted",
            TaskStatus::Migrated => "migrated",
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
    /// Re-plans made when this task's allocation failed (failover re-solves), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replans: Vec<Replan>,
    /// Where the task's checkpoint is kept: the URI its latest run synced to. A run at a
    /// placement whose store is elsewhere gets a copy there first (and this moves with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// A migration under way (`apply` of a `migrate` change): each step is committed
    /// before it is taken, so an interrupted apply knows what it left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
}

/// A migration of a running task, as its steps are taken in order: allocate the new
/// placement (the old run goes on), stop the old run (its provider syncs the checkpoint,
/// then releases the allocation), move the checkpoint to the new placement's store, start
/// there from it. Cleared when the new run is recorded as started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// Where the old run is.
    pub from: PlacementRecord,
    /// The new placement (None until one was allocated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<PlacementRecord>,
    pub step: MigrationStep,
    /// When the migration began (seconds since the epoch).
    pub since: u64,
}

/// The step of a migration about to be taken (or under way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStep {
    Allocate,
    Stop,
    Move,
    Start,
}

impl std::fmt::Display for MigrationStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MigrationStep::Allocate => "allocate the new placement",
            MigrationStep::Stop => "checkpoint and stop the old run",
            MigrationStep::Move => "move the checkpoint",
            MigrationStep::Start => "start from the checkpoint",
        })
    }
}

/// A failover re-plan: after a location failed, the optimizer placed the job's unfinished
/// part again (finished tasks held where their outputs are, running tasks where they run,
/// the failed location removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replan {
    /// When (seconds since the epoch).
    pub at: u64,
    /// The task whose allocation failed.
    pub task: TaskAddr,
    pub kind: skyform_provider::ErrorKind,
    /// Where it failed.
    pub location: String,
    /// Tasks placed elsewhere than planned, the failed one first.
    pub moved: Vec<Moved>,
    /// The unfinished part's cost as re-solved minus as planned (USD).
    pub cost_delta: f64,
    /// The same figure had failover walked the failed task's ranked alternatives with its
    /// neighbours fixed (None: no alternative was left).
    pub alternatives_delta: Option<f64>,
    /// Wall time of the re-solve.
    pub solve_ms: f64,
    /// Set when the re-solve was not used and failover walks the ranked alternatives: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// One task placed elsewhere by a re-plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moved {
    pub task: TaskAddr,
    pub from: String,
    pub to: String,
}

impl TaskState {
    /// Holds an allocation that is not released (running, or left by an interrupted apply
    /// for the next one to recover).
    pub fn is_live(&self) -> bool {
        self.allocations.iter().any(|a| a.released.is_none())
    }

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
