//! `apply`: Plan × providers × state store → State, committed after every step.
//!
//! The engine walks the plan's tasks as a DAG on tokio with a parallelism bound. The room
//! for each part:
//!
//! - [`events`]: what the engine reports ([`Event`]) to its [`Hooks`]; it never prints.
//! - `call`: the state shared by one apply, commits, and the one provider-call helper
//!   (blocking pool, per-call timeout, backoff on `Throttled`/`Transient`; a late
//!   allocation after a timeout is released).
//! - `task`: one task from intent to settlement — place (intent, allocate, fail over
//!   through the plan's ranked alternatives within `policy.failover`, blocking failed
//!   locations in the tracker), execute (stage inputs, run, poll), settle (outputs
//!   committed before release; preemption per `recovery`; retries).
//! - `data`: transfers between object stores and sandboxes, inputs, outputs.
//! - `replan`: failover by re-solving the unfinished part of the job around a failed
//!   location (finished and started tasks held), bounded in time and cost; the ranked
//!   alternatives remain the fallback.
//! - `recover`: settling intents left by an interrupted apply (adopt finished runs,
//!   release the rest and orphans) and releasing allocations.
//! - [`refresh`]: [`drift`] (live allocations vs. what providers report) and [`sweep`].
//!
//! The first interrupt stops new work and lets running tasks finish for a grace period
//! before cancelling them; the state stays consistent at every step. Time comes from the
//! injected [`Clock`].

mod call;
mod data;
pub mod events;
pub(crate) mod recover;
pub mod refresh;
mod replan;
mod task;

pub use crate::providers::Providers;
pub use events::{Event, Hooks, Recorder, Recovery};
pub use refresh::{drift, record, refresh, sweep, Refreshed};

use crate::catalog::egress::EgressModel;
use crate::clock::Clock;
use crate::config::{Task, TaskAddr};
use crate::plan::{Action, Change, Plan};
use crate::resolve::ResolvedJob;
use crate::state::{PlacementRecord, SledStore, StateStore, TaskStatus};
use crate::tracker::Tracker;
use call::Shared;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a failover re-solve may take by default.
pub const DEFAULT_RESOLVE_LIMIT: Duration = Duration::from_secs(10);

/// Knobs of one apply.
#[derive(Debug, Clone)]
pub struct Options {
    pub parallelism: usize,
    /// Per provider call.
    pub call_timeout: Duration,
    /// After an interrupt, how long running tasks may go on before they are cancelled.
    pub grace: Duration,
    pub job_dir: PathBuf,
    /// Where the logs of runs on this host are kept after their allocation is released
    /// (until the task is destroyed); None: not kept.
    pub log_dir: Option<PathBuf>,
    /// How long a failover re-solve may take before failover walks the ranked
    /// alternatives instead.
    pub resolve_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parallelism: 4,
            call_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            job_dir: PathBuf::from("."),
            log_dir: None,
            resolve_limit: DEFAULT_RESOLVE_LIMIT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub added: usize,
    pub changed: usize,
    pub destroyed: usize,
    pub failed: Vec<TaskAddr>,
    pub not_started: Vec<TaskAddr>,
    pub cost: f64,
    pub planned: f64,
    pub interrupted: bool,
}

/// What an apply runs with.
pub struct Context {
    pub store: Arc<SledStore>,
    pub tracker: Option<Arc<Tracker>>,
    pub providers: Providers,
    pub hooks: Arc<dyn Hooks>,
    pub options: Options,
    pub clock: Arc<dyn Clock>,
    /// Set by the first interrupt: no new work.
    pub cancel: Arc<AtomicBool>,
    /// Set by the second interrupt: stop now.
    pub hard_cancel: Arc<AtomicBool>,
    /// The plan's job as resolved (every candidate of every task): failover re-solves it
    /// around a failed location. None: failover walks the plan's ranked alternatives.
    pub resolved: Option<Arc<ResolvedJob>>,
}

impl Context {
    /// A context with the system clock and no interrupts wired.
    pub fn new(store: Arc<SledStore>, providers: Providers, hooks: Arc<dyn Hooks>, options: Options) -> Context {
        Context {
            store,
            tracker: None,
            providers,
            hooks,
            options,
            clock: crate::clock::system(),
            cancel: Arc::default(),
            hard_cancel: Arc::default(),
            resolved: None,
        }
    }
}

/// Applies a plan. The caller holds the state lock. The store is kept open while the
/// engine commits (opened here when the caller has not held it already).
pub async fn apply(plan: &Plan, ctx: Context) -> Result<Outcome, ApplyError> {
    let store = ctx.store.clone();
    let opened_here = !store.is_held();
    if opened_here {
        store.hold()?;
    }
    let out = run(plan, ctx).await;
    if opened_here {
        store.release_handle();
    }
    out
}

async fn run(plan: &Plan, ctx: Context) -> Result<Outcome, ApplyError> {
    let state = ctx.store.read()?;
    let sh = Arc::new(Shared {
        state: tokio::sync::Mutex::new(state),
        store: ctx.store,
        tracker: ctx.tracker,
        providers: ctx.providers,
        hooks: ctx.hooks,
        egress: EgressModel::default(),
        opts: ctx.options,
        spec: plan.config.clone(),
        clock: ctx.clock,
        cancel: ctx.cancel,
        hard_cancel: ctx.hard_cancel,
        stragglers: std::sync::Mutex::new(Vec::new()),
        resolved: ctx.resolved,
        planned: Default::default(),
        unstarted: Default::default(),
        blocks: Default::default(),
        replanning: Default::default(),
        started: std::time::Instant::now(),
    });
    sh.recover().await?;
    let mut out = Outcome { planned: plan.cost_after, ..Default::default() };
    // Destroys first (and the old allocations of replacements).
    for c in &plan.changes {
        if c.action == Action::Destroy {
            sh.release_all(&c.address).await?;
            sh.commit(&c.address, |s| {
                s.tasks.remove(&c.address);
            })
            .await?;
            sh.forget_logs(&c.address);
            sh.event(Event::Destroyed { task: c.address.clone() });
            out.destroyed += 1;
        }
    }
    let todo = to_run(&sh, plan).await;
    // Tasks whose run goes on (recovery follows it): a migration moves it step by step.
    let live: BTreeSet<TaskAddr> = {
        let st = sh.state.lock().await;
        st.tasks
            .iter()
            .filter(|(_, t)| t.allocations.iter().any(|a| a.released.is_none() && a.status == recover::RESUMED))
            .map(|(a, _)| a.clone())
            .collect()
    };
    let migrating = |c: &Change| c.action == Action::Migrate && live.contains(&c.address);
    for c in &todo {
        match c.action {
            Action::Create => out.added += 1,
            Action::Replace => {
                out.added += 1;
                out.destroyed += 1;
            }
            Action::Migrate => out.changed += 1,
            _ => {}
        }
        // A replaced task starts over; its earlier allocations are released.
        if c.action != Action::NoOp && !migrating(c) {
            sh.release_all(&c.address).await?;
        }
    }
    let restart: Vec<Change> = todo.iter().filter(|c| !migrating(c)).cloned().collect();
    reset(&sh, &restart).await?;
    let pending: BTreeSet<TaskAddr> = todo.iter().map(|c| c.address.clone()).collect();
    let (failed, not_started) = walk_dag(&sh, todo).await;
    out.failed = failed;
    out.not_started = not_started;
    sh.settle_stragglers().await;
    out.interrupted = sh.cancelled();
    out.cost = {
        let st = sh.state.lock().await;
        st.tasks.iter().filter(|(a, _)| pending.contains(a)).map(|(_, t)| t.cost_so_far()).sum()
    };
    let outputs = sh.resolve_outputs().await;
    sh.commit_keys(&[], true, |s| s.outputs = outputs).await?;
    Ok(out)
}

/// The changes that run: creates, replaces, and migrations and no-ops whose task has not
/// succeeded yet (an interrupted apply's run may have finished and been adopted).
async fn to_run(sh: &Shared, plan: &Plan) -> Vec<Change> {
    let st = sh.state.lock().await;
    plan.changes
        .iter()
        .filter(|c| match c.action {
            Action::Create | Action::Replace => true,
            // A move is moot once the run it would move has finished (recovery adopted it).
            Action::Migrate | Action::NoOp => {
                st.tasks.get(&c.address).is_none_or(|t| t.status != TaskStatus::Succeeded)
            }
            Action::Destroy => false,
        })
        .cloned()
        .collect()
}

/// Records the new spec and placement of every task that starts over.
async fn reset(sh: &Shared, todo: &[Change]) -> Result<(), ApplyError> {
    let resets: Vec<(TaskAddr, Option<Task>, Option<PlacementRecord>)> = todo
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| {
            (c.address.clone(), sh.spec.tasks.get(&c.address).cloned(), c.after.as_ref().map(|a| a.placement.clone()))
        })
        .collect();
    if resets.is_empty() {
        return Ok(());
    }
    let keys: Vec<TaskAddr> = resets.iter().map(|r| r.0.clone()).collect();
    // The state keeps the task as applied for later diffs — never a sensitive value.
    let secrets = sh.spec.sensitive_values();
    sh.commit_keys(&keys, false, |s| {
        for (addr, task, placement) in resets {
            let e = s.tasks.entry(addr).or_default();
            if let Some(t) = &task {
                e.spec_hash = t.spec_hash.clone();
                e.spec = Some(t.redacted(&secrets));
            }
            e.status = TaskStatus::Pending;
            e.tainted = false;
            e.placement = placement;
            e.data.clear();
        }
    })
    .await
}

/// Runs the tasks as their inputs become ready, `parallelism` at a time. Returns the tasks
/// that failed and those that did not start (downstream of a failure, or interrupted).
async fn walk_dag(sh: &Arc<Shared>, todo: Vec<Change>) -> (Vec<TaskAddr>, Vec<TaskAddr>) {
    let changes: BTreeMap<TaskAddr, Change> = todo.into_iter().map(|c| (c.address.clone(), c)).collect();
    *sh.planned.lock().expect("lock") =
        changes.iter().filter_map(|(a, c)| Some((a.clone(), c.after.clone()?))).collect();
    *sh.unstarted.lock().expect("lock") = changes.keys().cloned().collect();
    let mut waiting: BTreeSet<TaskAddr> = changes.keys().cloned().collect();
    let mut running: tokio::task::JoinSet<(TaskAddr, TaskStatus)> = tokio::task::JoinSet::new();
    let mut blocked: BTreeSet<TaskAddr> = BTreeSet::new();
    let mut failed = Vec::new();
    loop {
        if !sh.cancelled() {
            let ready: Vec<TaskAddr> = {
                let st = sh.state.lock().await;
                waiting
                    .iter()
                    .filter(|a| {
                        sh.spec.tasks.get(*a).is_some_and(|t| {
                            t.upstream()
                                .iter()
                                .all(|u| st.tasks.get(u).is_some_and(|x| x.status == TaskStatus::Succeeded))
                        })
                    })
                    .cloned()
                    .collect()
            };
            for a in ready {
                if running.len() >= sh.opts.parallelism.max(1) {
                    break;
                }
                waiting.remove(&a);
                sh.unstarted.lock().expect("lock").remove(&a);
                let sh2 = sh.clone();
                let mut change = changes[&a].clone();
                // A failover re-plan may have moved it.
                if let Some(p) = sh.planned.lock().expect("lock").get(&a) {
                    change.after = Some(p.clone());
                }
                running.spawn(async move {
                    let status = match task::run_task(&sh2, &change).await {
                        Ok(s) => s,
                        Err(e) => {
                            sh2.event(Event::Interrupted { message: format!("{}: {e}", change.address) });
                            TaskStatus::Failed
                        }
                    };
                    (change.address.clone(), status)
                });
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            done = running.join_next() => {
                if let Some(Ok((addr, status))) = done {
                    if status != TaskStatus::Succeeded {
                        failed.push(addr.clone());
                        // Dependents do not start.
                        let mut stack = vec![addr];
                        while let Some(x) = stack.pop() {
                            for t in sh.spec.tasks.values() {
                                if t.upstream().contains(&x) && waiting.remove(&t.address) {
                                    blocked.insert(t.address.clone());
                                    stack.push(t.address.clone());
                                }
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if sh.hard_cancel.load(Ordering::SeqCst) {
            break;
        }
    }
    (failed, waiting.into_iter().chain(blocked).collect())
}
