//! One task, from intent to settlement: [`run_task`] walks the task's placements (the
//! plan's choice, then its ranked alternatives within `policy.failover`) through three
//! steps —
//!
//! - **place**: write the intent (allocation with idempotency token and owner tags) to the
//!   state, then allocate. A capacity, quota or unauthorized error (or a location that keeps
//!   timing out) blocks its scope in the tracker and moves on to the next placement outside
//!   that scope; any other error fails the task.
//! - **execute**: stage the inputs, start the run, poll it until it ends (an interrupt
//!   gives running tasks the grace period, then cancels them).
//! - **settle**: a success collects the outputs and commits "succeeded" with them *before*
//!   the allocation is released (so a crash in between never runs the task again); a
//!   preemption follows the task's `recovery`; a failure retries in place up to `retries`.
//!
//! A run that outlived an interrupted apply (recovery found it still running) is followed
//! to its end and settled, never started again — unless the change is a `migrate`: then
//! [`migrate`] moves it in committed steps (allocate the new placement while the old run
//! goes on; checkpoint and stop the old run; move the checkpoint to the new placement's
//! store; start there from it), giving up and following the old run when no better
//! placement can be allocated. Every run restores the task's checkpoint from where the
//! state says it was last synced, copied to its own store first when that is elsewhere.
//!
//! `crash_point`s mark the steps where the kill tests stop the engine (inert outside test
//! builds).

use super::call::Shared;
use super::data::loc;
use super::events::Event;
use super::replan::{replan, Failure};
use super::ApplyError;
use crate::config::{Recovery, Task, TaskAddr};
use crate::plan::{Action, Change};
use crate::state::{Allocation, Migration, MigrationStep, PlacementRecord, Run, TaskStatus};
use skyform_provider::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The placements a task may use, in order, and how far it got.
struct Walk {
    candidates: Vec<PlacementRecord>,
    idx: usize,
    /// Allocation attempts so far (bounded by `policy.failover.max_attempts`).
    attempts: u32,
    /// Runs started so far.
    runs: u32,
    max_attempts: u32,
    /// The cost bound of one placement (`policy.failover.max_cost_increase` over the
    /// planned cost).
    budget: f64,
}

impl Walk {
    fn new(change: &Change, sh: &Shared) -> Option<Walk> {
        let planned = change.after.as_ref()?;
        let failover = &sh.spec.policy.failover;
        let budget = planned.placement.cost * (1.0 + failover.max_cost_increase) + 1e-9;
        let mut candidates = vec![planned.placement.clone()];
        candidates.extend(planned.alternatives.iter().filter(|a| a.cost <= budget).cloned());
        Some(Walk { candidates, idx: 0, attempts: 0, runs: 0, max_attempts: failover.max_attempts, budget })
    }

    /// The next placement to try: not blocked (in the tracker, or in this apply), within the
    /// attempts allowed.
    fn next(&mut self, sh: &Shared) -> Option<PlacementRecord> {
        while let Some(c) = self.candidates.get(self.idx) {
            let here = loc(c);
            let blocked =
                sh.tracker.as_ref().and_then(|t| t.view(sh.now()).ok()).is_some_and(|v| v.blocked(&here).is_some())
                    || sh.blocks.lock().expect("lock").iter().any(|(s, at)| here.within(*s, at));
            if !blocked {
                break;
            }
            self.idx += 1;
        }
        let c = self.candidates.get(self.idx)?.clone();
        if self.attempts >= self.max_attempts {
            return None;
        }
        self.attempts += 1;
        Some(c)
    }

    /// Moves past the current placement and every later one inside `scope` around it.
    fn skip(&mut self, scope: Scope, here: &Location) {
        self.idx += 1;
        while self.candidates.get(self.idx).is_some_and(|c| loc(c).within(scope, here)) {
            self.idx += 1;
        }
    }

    /// After `failed` failed at `here` (its `scope` blocked): skips the scope, then asks
    /// for a re-plan; a re-solved placement replaces the placements ahead.
    async fn fail_over(
        &mut self,
        sh: &Shared,
        task: &TaskAddr,
        failed: &PlacementRecord,
        kind: ErrorKind,
        scope: Scope,
        here: &Location,
    ) -> Result<(), ApplyError> {
        self.skip(scope, here);
        let ahead = self.candidates.get(self.idx..).unwrap_or_default().to_vec();
        let f = Failure { task, placement: failed, kind, scope, at: here, ahead: &ahead, budget: self.budget };
        if let Some(new) = replan(sh, f).await? {
            self.candidates = new;
            self.idx = 0;
        }
        Ok(())
    }
}

/// What a preemption blocks under the task's `recovery` (None: it runs again in place).
pub(crate) fn blocked_by(recovery: Recovery) -> Option<Scope> {
    match recovery {
        Recovery::SameZone => None,
        Recovery::NextZone => Some(Scope::Zone),
        Recovery::NextRegion => Some(Scope::Region),
    }
}

/// An allocation that exists, for one placement.
#[derive(Clone)]
struct Placed {
    cand: PlacementRecord,
    /// The index of its allocation record in the task's state.
    slot: usize,
    provider_id: String,
}

enum Step<T> {
    Go(T),
    /// Try the next placement.
    Next,
    /// The task ends with this status.
    End(TaskStatus),
}

/// Runs one task to its end. Returns its final status.
pub(crate) async fn run_task(sh: &Arc<Shared>, change: &Change) -> Result<TaskStatus, ApplyError> {
    let addr = &change.address;
    let Some(task) = sh.spec.tasks.get(addr).cloned() else { return Ok(TaskStatus::Failed) };
    let Some(mut walk) = Walk::new(change, sh) else { return Ok(TaskStatus::Failed) };
    let lineage = sh.state.lock().await.lineage.clone();
    // A run that outlived an interrupted apply is followed to its end, not started again
    // — unless the change moves it: then it is migrated, step by step.
    let mut live = resumed(sh, addr).await;
    if change.action == Action::Migrate {
        if let Some(old) = live.take() {
            match migrate(sh, &task, &mut walk, old, &lineage).await? {
                Step::Go(run) => live = Some(run),
                Step::Next => {}
                Step::End(s) => return Ok(s),
            }
        }
    }
    if let Some(Follow { placed, run, started, log }) = live {
        walk.runs = walk.runs.max(run);
        let ran = follow(sh, &task, &placed, run, started, log).await;
        if let Step::End(s) = settle(sh, &task, &placed, &mut walk, ran).await? {
            return Ok(s);
        }
    }
    loop {
        if sh.cancelled() {
            return Ok(TaskStatus::Pending);
        }
        let Some(cand) = walk.next(sh) else { break };
        let placed = match place(sh, &task, &mut walk, cand, &lineage).await? {
            Step::Go(p) => p,
            Step::Next => continue,
            Step::End(_) => return fail(sh, addr, 0.0).await,
        };
        let ran = match start(sh, &task, &placed, &mut walk).await? {
            Step::Go(r) => follow(sh, &task, &placed, r.run, r.started, r.log).await,
            Step::Next => continue,
            Step::End(s) => return Ok(s),
        };
        match settle(sh, &task, &placed, &mut walk, ran).await? {
            Step::Go(()) | Step::Next => continue,
            Step::End(s) => return Ok(s),
        }
    }
    let failover = &sh.spec.policy.failover;
    sh.commit(addr, |s| {
        if let Some(t) = s.tasks.get_mut(addr) {
            t.status = TaskStatus::Failed;
            t.tainted = true;
        }
    })
    .await?;
    sh.event(Event::AllocationFailed {
        task: addr.clone(),
        location: "-".into(),
        kind: ErrorKind::CapacityUnavailable,
        scope: Scope::Cloud,
        message: format!(
            "no placement left within policy.failover (max {} attempts, +{:.0}% cost)",
            failover.max_attempts,
            failover.max_cost_increase * 100.0
        ),
    });
    sh.event(Event::TaskDone { task: addr.clone(), status: TaskStatus::Failed, cost: 0.0 });
    Ok(TaskStatus::Failed)
}

/// Marks the task failed (tainted: the next plan replaces it) and reports it.
async fn fail(sh: &Shared, addr: &TaskAddr, cost: f64) -> Result<TaskStatus, ApplyError> {
    sh.commit(addr, |s| {
        if let Some(t) = s.tasks.get_mut(addr) {
            t.status = TaskStatus::Failed;
            t.tainted = true;
        }
    })
    .await?;
    sh.event(Event::TaskDone { task: addr.clone(), status: TaskStatus::Failed, cost });
    Ok(TaskStatus::Failed)
}

/// Intent, then allocation, at `cand`.
async fn place(
    sh: &Shared,
    task: &Task,
    walk: &mut Walk,
    cand: PlacementRecord,
    lineage: &str,
) -> Result<Step<Placed>, ApplyError> {
    let addr = &task.address;
    let here = loc(&cand);
    let token = uuid::Uuid::new_v4().to_string();
    let tags: BTreeMap<String, String> = [
        ("skyform:lineage", lineage.to_string()),
        ("skyform:job", sh.spec.name.clone()),
        ("skyform:task", addr.to_string()),
        ("skyform:attempt", walk.attempts.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The intent, before the call.
    let intent = Allocation {
        provider: cand.cloud.clone(),
        placement: cand.clone(),
        provider_id: None,
        owner_tags: tags.clone(),
        idempotency_token: token.clone(),
        created: sh.now(),
        released: None,
        status: "requested".into(),
    };
    let slot = sh.state.lock().await.tasks.get(addr).map(|t| t.allocations.len()).unwrap_or(0);
    sh.commit(addr, |s| {
        let t = s.tasks.entry(addr.clone()).or_default();
        t.allocations.push(intent);
        // A migrating task stays where its run is until the new run starts.
        if t.migration.is_none() {
            t.placement = Some(cand.clone());
        }
    })
    .await?;
    sh.event(Event::Allocating {
        task: addr.clone(),
        attempt: walk.attempts,
        location: here.to_string(),
        instance_type: cand.instance_type.clone(),
        spot: cand.spot,
    });
    let mut req = AllocateRequest::new(addr.to_string(), here.clone(), cand.instance_type.clone(), token);
    req.spot = cand.spot;
    req.num_nodes = task.resources.num_nodes.max(1);
    req.owner_tags = tags;
    req.accelerator = cand.accelerator.clone();
    req.disk_gb = task.resources.disk_gb.map(|d| d.ceil() as u32);
    match sh.allocate(&cand.cloud, req).await {
        Ok(a) => Ok(Step::Go(Placed { cand, slot, provider_id: a.provider_id })),
        Err(e) => {
            let now = sh.now();
            sh.commit(addr, |s| {
                if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(slot)) {
                    x.status = format!("failed: {}", e.kind);
                    x.released = Some(now);
                }
            })
            .await?;
            sh.event(Event::AllocationFailed {
                task: addr.clone(),
                location: here.to_string(),
                kind: e.kind,
                scope: e.scope,
                message: e.message.clone(),
            });
            // A location that keeps timing out or failing transiently is blocked like one
            // without capacity, so a hanging region cannot stall the run.
            if e.kind.blocks_location() || matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) {
                if let Some(t) = &sh.tracker {
                    let at = e.location.as_deref().cloned().unwrap_or_else(|| here.clone());
                    let _ = t.record_failure(&at, e.scope, e.kind, &e.message, now);
                }
                // Skip the rest of the blocked scope in this run, too, and re-plan.
                let at = e.location.as_deref().cloned().unwrap_or_else(|| here.clone());
                walk.fail_over(sh, addr, &cand, e.kind, e.scope, &at).await?;
                return Ok(Step::Next);
            }
            Ok(Step::End(TaskStatus::Failed))
        }
    }
}

/// How a run ended.
struct Ran {
    result: RunState,
    cost: f64,
    log: String,
    cancelled: bool,
}

/// Stage the inputs (and the checkpoint), start the run and record it as running.
/// Returns the run to follow.
async fn start(sh: &Shared, task: &Task, placed: &Placed, walk: &mut Walk) -> Result<Step<Follow>, ApplyError> {
    let addr = &task.address;
    let Placed { cand, slot, provider_id } = placed;
    let slot = *slot;
    let staged = match sh.stage_inputs(task, provider_id, cand).await {
        Ok(()) => sh.move_checkpoint(task, cand).await,
        Err(e) => Err(e),
    };
    let checkpoint = match staged {
        Ok(c) => c,
        Err(e) => {
            let pid = provider_id.clone();
            sh.commit(addr, |s| {
                if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(slot)) {
                    x.provider_id = Some(pid);
                    x.status = "allocated".into();
                }
            })
            .await?;
            sh.event(Event::RunFailed {
                task: addr.clone(),
                run: walk.runs,
                exit_code: None,
                log: e.to_string(),
                retrying: false,
            });
            sh.release_all(addr).await?;
            return Ok(Step::End(fail(sh, addr, 0.0).await?));
        }
    };
    walk.runs += 1;
    let mut rreq = RunTaskRequest::new(provider_id.clone(), addr.to_string(), task.run.clone());
    rreq.setup = task.setup.clone();
    rreq.env = task.env.clone();
    rreq.inputs = task.inputs.keys().cloned().collect();
    rreq.outputs = task.outputs.keys().cloned().collect();
    rreq.workdir = task.workdir.clone();
    if let Some(c) = &task.checkpoint {
        rreq.checkpoint = checkpoint.clone();
        rreq.checkpoint_every_secs = (c.every_hours * 3600.0).round().max(1.0) as u64;
    }
    let started = Instant::now();
    crash_point("run-start");
    let log = match sh.call(&cand.cloud, move |p| p.run_task(&rreq)).await {
        Ok(r) => r.log,
        Err(e) => e.to_string(),
    };
    crash_point("run-started");
    let (run_no, log2, pid, now) = (walk.runs, log.clone(), provider_id.clone(), sh.now());
    sh.commit(addr, |s| {
        if let Some(t) = s.tasks.get_mut(addr) {
            t.status = TaskStatus::Running;
            t.placement = Some(cand.clone());
            // A migration ends when its new run is recorded.
            t.migration = None;
            if checkpoint.is_some() {
                t.checkpoint = checkpoint;
            }
            t.runs.push(Run {
                attempt: run_no,
                status: TaskStatus::Running,
                exit_code: None,
                log: Some(log2),
                start: now,
                end: None,
                cost: 0.0,
            });
            if let Some(x) = t.allocations.get_mut(slot) {
                x.provider_id = Some(pid);
                x.status = "running".into();
            }
        }
    })
    .await?;
    sh.event(Event::Running { task: addr.clone(), run: walk.runs, log: log.clone() });
    Ok(Step::Go(Follow { placed: placed.clone(), run: walk.runs, started, log }))
}

/// A run to follow to its end: its allocation, its number, when it started and its log.
struct Follow {
    placed: Placed,
    run: u32,
    started: Instant,
    log: String,
}

/// Migrates a running task to the walk's placements (see [`MigrationStep`]): each step is
/// committed to the state before it is taken. Until the old run is stopped, any
/// trouble (no placement left, the old run ended meanwhile or cannot be stopped) gives the
/// migration up and the old run goes on: the run to follow is returned either way.
async fn migrate(
    sh: &Shared,
    task: &Task,
    walk: &mut Walk,
    old: Follow,
    lineage: &str,
) -> Result<Step<Follow>, ApplyError> {
    let addr = &task.address;
    walk.runs = old.run;
    let from = old.placed.cand.clone();
    let here = loc(&from).to_string();
    let step = |step: MigrationStep, to: Option<&PlacementRecord>| {
        let to = to.cloned();
        let from = from.clone();
        let since = sh.now();
        move |s: &mut crate::state::State| {
            if let Some(t) = s.tasks.get_mut(addr) {
                let since = t.migration.as_ref().map(|m| m.since).unwrap_or(since);
                t.migration = Some(Migration { from, to, step, since });
            }
        }
    };
    let say = |step: MigrationStep, to: &PlacementRecord| {
        sh.event(Event::Migrating { task: addr.clone(), step, from: here.clone(), to: loc(to).to_string() })
    };
    // 1. Allocate the new placement; the old run goes on meanwhile.
    let placed = loop {
        let Some(cand) = walk.next(sh) else { break None };
        // The best placement left is where the run already is: it stays.
        if loc(&cand) == loc(&from) && cand.instance_type == from.instance_type && cand.spot == from.spot {
            break None;
        }
        sh.commit(addr, step(MigrationStep::Allocate, Some(&cand))).await?;
        say(MigrationStep::Allocate, &cand);
        crash_point("migrate-allocate");
        match place(sh, task, walk, cand, lineage).await? {
            Step::Go(p) => break Some(p),
            Step::Next => continue,
            Step::End(_) => break None,
        }
    };
    crash_point("migrate-allocated");
    let Some(placed) = placed else {
        return give_up(sh, addr, old, "no better placement could be allocated").await;
    };
    // The old run may have ended meanwhile: then it is settled where it is.
    let id = old.placed.provider_id.clone();
    let status = sh.call(&from.cloud, move |p| p.task_status(&TaskStatusRequest::new(id.clone()))).await;
    if !matches!(status, Ok(ref s) if s.state == RunState::Running) {
        release_one(sh, addr, &placed, "released").await?;
        return give_up(sh, addr, old, "the old run ended meanwhile").await;
    }
    // 2. Checkpoint and stop the old run: its provider syncs the checkpoint, then
    // releases the allocation.
    sh.commit(addr, step(MigrationStep::Stop, Some(&placed.cand))).await?;
    say(MigrationStep::Stop, &placed.cand);
    crash_point("migrate-stop");
    let id = old.placed.provider_id.clone();
    if let Err(e) = sh.call(&from.cloud, move |p| p.release(&ReleaseRequest::new(id.clone()))).await {
        release_one(sh, addr, &placed, "released").await?;
        return give_up(sh, addr, old, &format!("the old run could not be stopped: {e}")).await;
    }
    crash_point("migrate-stopped");
    let (now, cost) = (sh.now(), from.hourly * old.started.elapsed().as_secs_f64() / 3600.0);
    let slot = old.placed.slot;
    sh.commit(addr, |s| {
        if let Some(t) = s.tasks.get_mut(addr) {
            if let Some(x) = t.allocations.get_mut(slot) {
                x.released = Some(now);
                x.status = "migrated".into();
            }
            if let Some(r) = t.runs.last_mut().filter(|r| r.end.is_none()) {
                r.status = TaskStatus::Migrated;
                r.end = Some(now);
                r.cost = cost * task.resources.num_nodes.max(1) as f64;
            }
        }
    })
    .await?;
    sh.commit(addr, step(MigrationStep::Move, Some(&placed.cand))).await?;
    // 3. Move the checkpoint to the new placement's store (recorded there once copied).
    say(MigrationStep::Move, &placed.cand);
    crash_point("migrate-move");
    match sh.move_checkpoint(task, &placed.cand).await {
        Ok(Some(uri)) => sh.commit(addr, |s| s.tasks.entry(addr.clone()).or_default().checkpoint = Some(uri)).await?,
        Ok(None) => {}
        Err(e) => {
            // The checkpoint stays where it was synced; the task fails and its next run
            // copies it again.
            sh.event(Event::RunFailed {
                task: addr.clone(),
                run: walk.runs,
                exit_code: None,
                log: format!("the checkpoint could not be moved: {e}"),
                retrying: false,
            });
            sh.release_all(addr).await?;
            return Ok(Step::End(fail(sh, addr, 0.0).await?));
        }
    }
    crash_point("migrate-moved");
    // 4. Start from the checkpoint; recording the new run ends the migration.
    sh.commit(addr, step(MigrationStep::Start, Some(&placed.cand))).await?;
    say(MigrationStep::Start, &placed.cand);
    start(sh, task, &placed, walk).await
}

/// Gives a migration up before its old run was stopped: the old run is followed.
async fn give_up(sh: &Shared, addr: &TaskAddr, old: Follow, reason: &str) -> Result<Step<Follow>, ApplyError> {
    let from = old.placed.cand.clone();
    sh.commit(addr, |s| {
        if let Some(t) = s.tasks.get_mut(addr) {
            t.migration = None;
            t.placement = Some(from);
        }
    })
    .await?;
    sh.event(Event::MigrationAbandoned {
        task: addr.clone(),
        reason: format!("{reason}; the run goes on in {}", loc(&old.placed.cand)),
    });
    Ok(Step::Go(old))
}

/// Releases one allocation and records it with `status`.
async fn release_one(sh: &Shared, addr: &TaskAddr, placed: &Placed, status: &str) -> Result<(), ApplyError> {
    let id = placed.provider_id.clone();
    if let Err(e) = sh.call(&placed.cand.cloud, move |p| p.release(&ReleaseRequest::new(id.clone()))).await {
        sh.event(Event::Interrupted { message: format!("{addr}: release failed: {e}") });
        return Ok(());
    }
    let (now, slot, pid) = (sh.now(), placed.slot, placed.provider_id.clone());
    sh.commit(addr, |s| {
        if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(slot)) {
            x.provider_id = Some(pid);
            x.released = Some(now);
            x.status = status.into();
        }
    })
    .await
}

/// A place where a kill test can stop the engine as `kill -9` would: in a build whose
/// `fail` crate has its `failpoints` feature (the tests' build), `FAILPOINTS=NAME=return`
/// kills this process at point NAME. Nothing in other builds.
fn crash_point(name: &str) {
    let _ = name;
    fail::fail_point!(name, |_| {
        let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
        std::thread::sleep(Duration::from_secs(60));
    });
}

/// Polls a started run to its end; keeps its log; prices the time it ran.
async fn follow(sh: &Shared, task: &Task, placed: &Placed, run: u32, started: Instant, log: String) -> Ran {
    let addr = &task.address;
    let result = poll(sh, addr, &placed.cand.cloud, &placed.provider_id).await;
    // Kept before the allocation (and a sandbox with it) is released.
    let log = sh.keep_log(addr, run, &log).unwrap_or(log);
    let hours = started.elapsed().as_secs_f64() / 3600.0;
    let cost = placed.cand.hourly * hours * task.resources.num_nodes.max(1) as f64;
    let cancelled = sh.cancelled() && result != RunState::Succeeded;
    Ran { result, cost, log, cancelled }
}

/// A run left running by an interrupted apply and resumed by recovery.
async fn resumed(sh: &Shared, addr: &TaskAddr) -> Option<Follow> {
    let st = sh.state.lock().await;
    let t = st.tasks.get(addr)?;
    let (slot, a) =
        t.allocations.iter().enumerate().find(|(_, a)| a.released.is_none() && a.status == super::recover::RESUMED)?;
    let run = t.runs.last()?;
    let ago = Duration::from_secs(sh.now().saturating_sub(run.start));
    let started = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
    let placed = Placed { cand: a.placement.clone(), slot, provider_id: a.provider_id.clone()? };
    Some(Follow { placed, run: t.runs.len() as u32, started, log: run.log.clone().unwrap_or_default() })
}

/// Status errors in a row (each already retried by the call helper) after which a run
/// counts as lost.
const LOST_AFTER: u32 = 20;

/// Polls a run until it ends (or the grace period after an interrupt runs out). A run
/// whose status keeps failing with a non-transient error (its allocation vanished from
/// under the provider) is reported and counted as failed, never polled forever.
async fn poll(sh: &Shared, addr: &TaskAddr, cloud: &str, provider_id: &str) -> RunState {
    let mut delay = Duration::from_millis(2);
    let mut grace_started: Option<Instant> = None;
    let mut errors = 0u32;
    loop {
        let id = provider_id.to_string();
        match sh.call(cloud, move |p| p.task_status(&TaskStatusRequest::new(id.clone()))).await {
            Ok(s) if s.state != RunState::Running => return s.state,
            Ok(_) => errors = 0,
            Err(e) if e.kind == ErrorKind::Preempted => return RunState::Preempted,
            Err(e) => {
                errors += 1;
                if errors >= LOST_AFTER && !matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) {
                    sh.event(Event::Interrupted { message: format!("{addr}: the run cannot be followed ({e})") });
                    return RunState::Failed { exit_code: None };
                }
            }
        }
        if sh.cancelled() {
            let g = *grace_started.get_or_insert_with(Instant::now);
            if g.elapsed() >= sh.opts.grace || sh.hard_cancel.load(std::sync::atomic::Ordering::SeqCst) {
                return RunState::Failed { exit_code: None };
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_millis(200));
    }
}

/// What a run's end means for the task.
async fn settle(sh: &Shared, task: &Task, placed: &Placed, walk: &mut Walk, ran: Ran) -> Result<Step<()>, ApplyError> {
    let addr = &task.address;
    let Placed { cand, slot, provider_id } = placed;
    let slot = *slot;
    let here = loc(cand);
    let Ran { result, cost, log, cancelled } = ran;
    match result {
        RunState::Succeeded => {
            let collected = sh.gather_outputs(addr, provider_id, cand).await;
            let ok = collected.is_ok();
            let status = if ok { TaskStatus::Succeeded } else { TaskStatus::Failed };
            let objects = collected.unwrap_or_default();
            let now = sh.now();
            // Succeeded, with where its outputs are, before anything is released.
            sh.commit(addr, |s| {
                if let Some(t) = s.tasks.get_mut(addr) {
                    t.data = objects;
                    t.status = status;
                    t.tainted = !ok;
                    if let Some(r) = t.runs.last_mut() {
                        r.status = status;
                        r.exit_code = Some(0);
                        r.end = Some(now);
                        r.cost = cost;
                        r.log = Some(log.clone());
                    }
                }
            })
            .await?;
            let id = provider_id.clone();
            let released = sh.call(&cand.cloud, move |p| p.release(&ReleaseRequest::new(id.clone()))).await.is_ok();
            if released {
                let now = sh.now();
                sh.commit(addr, |s| {
                    if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(slot)) {
                        x.released = Some(now);
                        x.status = "released".into();
                    }
                })
                .await?;
            } else {
                sh.release_all(addr).await?;
            }
            sh.event(Event::TaskDone { task: addr.clone(), status, cost });
            Ok(Step::End(status))
        }
        RunState::Preempted => {
            sh.release_all(addr).await?;
            let now = sh.now();
            sh.commit(addr, |s| {
                if let Some(t) = s.tasks.get_mut(addr) {
                    t.status = TaskStatus::Preempted;
                    if let Some(r) = t.runs.last_mut() {
                        r.status = TaskStatus::Preempted;
                        r.end = Some(now);
                        r.cost = cost;
                        r.log = Some(log.clone());
                    }
                }
            })
            .await?;
            if let Some(t) = &sh.tracker {
                let _ = t.record_preemption(&here, &cand.instance_type, now);
            }
            let recovery = task.recovery;
            sh.event(Event::Preempted {
                task: addr.clone(),
                location: here.to_string(),
                recovery: format!("{recovery:?}"),
            });
            if let Some(scope) = blocked_by(recovery) {
                if let Some(t) = &sh.tracker {
                    let _ = t.record_failure(&here, scope, ErrorKind::Preempted, "preempted", now);
                }
                walk.fail_over(sh, addr, cand, ErrorKind::Preempted, scope, &here).await?;
            }
            Ok(Step::Next)
        }
        RunState::Failed { exit_code } => {
            sh.release_all(addr).await?;
            let retrying = !cancelled && walk.runs <= task.retries;
            let status = if cancelled || retrying { TaskStatus::Pending } else { TaskStatus::Failed };
            let now = sh.now();
            sh.commit(addr, |s| {
                if let Some(t) = s.tasks.get_mut(addr) {
                    t.status = status;
                    t.tainted = status == TaskStatus::Failed;
                    if let Some(r) = t.runs.last_mut() {
                        r.status = TaskStatus::Failed;
                        r.exit_code = exit_code;
                        r.end = Some(now);
                        r.cost = cost;
                        r.log = Some(log.clone());
                    }
                }
            })
            .await?;
            sh.event(Event::RunFailed { task: addr.clone(), run: walk.runs, exit_code, log, retrying });
            if cancelled {
                return Ok(Step::End(TaskStatus::Pending));
            }
            if retrying {
                // Same placement again: a run failure says nothing about the location.
                walk.attempts = walk.attempts.saturating_sub(1);
                return Ok(Step::Next);
            }
            sh.event(Event::TaskDone { task: addr.clone(), status: TaskStatus::Failed, cost });
            Ok(Step::End(TaskStatus::Failed))
        }
        other => {
            sh.release_all(addr).await?;
            sh.event(Event::Interrupted { message: format!("{addr}: the provider reported {other:?}") });
            Ok(Step::End(fail(sh, addr, cost).await?))
        }
    }
}
