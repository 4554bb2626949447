//! What the engine reports while it works ([`Event`]) and who listens ([`Hooks`]). The
//! engine never prints: the CLI renders events as text, progress bars or JSON lines, and
//! tests record them to assert the sequence.

use crate::config::TaskAddr;
use crate::state::{MigrationStep, Replan, TaskStatus};
use skyform_provider::{ErrorKind, Scope};

/// What the engine reports while it works.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An allocation left by an interrupted apply was found: adopted (its run had finished
    /// and its outputs are kept), resumed (its run goes on and is followed) or released.
    Recovered {
        task: TaskAddr,
        provider_id: String,
        action: Recovery,
    },
    Allocating {
        task: TaskAddr,
        attempt: u32,
        location: String,
        instance_type: String,
        spot: bool,
    },
    AllocationFailed {
        task: TaskAddr,
        location: String,
        kind: ErrorKind,
        scope: Scope,
        message: String,
    },
    Running {
        task: TaskAddr,
        run: u32,
        log: String,
    },
    RunFailed {
        task: TaskAddr,
        run: u32,
        exit_code: Option<i32>,
        log: String,
        retrying: bool,
    },
    Preempted {
        task: TaskAddr,
        location: String,
        recovery: String,
    },
    Transferred {
        task: TaskAddr,
        what: String,
        bytes: u64,
        cost: f64,
    },
    TaskDone {
        task: TaskAddr,
        status: TaskStatus,
        cost: f64,
    },
    Destroyed {
        task: TaskAddr,
    },
    /// A step of a migration, as it is taken (committed in the state first).
    Migrating {
        task: TaskAddr,
        step: MigrationStep,
        from: String,
        to: String,
    },
    /// A migration given up before its old run was stopped (no placement left, the old
    /// run ended meanwhile or could not be stopped, or an interrupted apply left it): the
    /// old run goes on where it is and is followed.
    MigrationAbandoned {
        task: TaskAddr,
        reason: String,
    },
    /// A failover re-plan (or, with `fallback` set, why the re-solve was not used and
    /// failover walks the ranked alternatives). Recorded in the failed task's state.
    Replanned(Replan),
    /// Something the user should know that is not a task's step (a release that failed, an
    /// interrupt).
    Interrupted {
        message: String,
    },
}

impl Replan {
    /// `re-planned 2 tasks after capacity_unavailable in local/zone-a: +$1.20 (walking
    /// task.b's ranked alternatives: +$3.40)`, or why the re-solve was not used.
    pub fn summary(&self) -> String {
        let usd = |x: f64| {
            let m = crate::plan::money(x.abs());
            if x < -0.005 {
                format!("-${m}")
            } else {
                format!("+${m}")
            }
        };
        let walk = match self.alternatives_delta {
            Some(d) => format!("walking {}'s ranked alternatives: {}", self.task, usd(d)),
            None => format!("{} has no ranked alternative left", self.task),
        };
        if let Some(why) = &self.fallback {
            return format!(
                "{}: re-solve after {} in {} not used ({why}); failover walks the ranked alternatives",
                self.task, self.kind, self.location
            );
        }
        let n = self.moved.len();
        let moves: Vec<String> = self.moved.iter().map(|m| format!("{} {} → {}", m.task, m.from, m.to)).collect();
        format!(
            "re-planned {n} task{} after {} in {}: {} ({walk}); {}",
            if n == 1 { "" } else { "s" },
            self.kind,
            self.location,
            usd(self.cost_delta),
            moves.join(", ")
        )
    }
}

impl Event {
    /// The task the event is about, when it is about one.
    pub fn task(&self) -> Option<&TaskAddr> {
        match self {
            Event::Recovered { task, .. }
            | Event::Allocating { task, .. }
            | Event::AllocationFailed { task, .. }
            | Event::Running { task, .. }
            | Event::RunFailed { task, .. }
            | Event::Preempted { task, .. }
            | Event::Transferred { task, .. }
            | Event::TaskDone { task, .. }
            | Event::Migrating { task, .. }
            | Event::MigrationAbandoned { task, .. }
            | Event::Destroyed { task } => Some(task),
            Event::Replanned(r) => Some(&r.task),
            Event::Interrupted { .. } => None,
        }
    }

    /// True for events that mean something went wrong (rendered as warnings).
    pub fn is_warning(&self) -> bool {
        matches!(self, Event::AllocationFailed { .. } | Event::RunFailed { .. } | Event::MigrationAbandoned { .. })
    }
}

/// What recovery did with an allocation an interrupted apply left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// Its run had finished: outputs collected, the task succeeded.
    Adopted,
    /// Its run is still going: followed to its end.
    Resumed,
    /// Nothing to keep: released.
    Released,
}

/// Receives events (the CLI renders them as text, progress bars or JSON lines).
pub trait Hooks: Send + Sync {
    fn event(&self, e: &Event);
}

/// Hooks that keep every event, in order (tests; `skyform` uses its views).
#[derive(Default)]
pub struct Recorder(std::sync::Mutex<Vec<Event>>);

impl Recorder {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("lock").clone()
    }
}

impl Hooks for Recorder {
    fn event(&self, e: &Event) {
        self.0.lock().expect("lock").push(e.clone());
    }
}
