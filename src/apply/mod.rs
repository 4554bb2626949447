//! `apply`: ChangeSet × providers × state store → State, committed after every step.
//!
//! The engine walks the plan's tasks as a DAG on tokio with a parallelism bound. Per task:
//! write the intent (allocation with idempotency token and owner tags) to state before the
//! provider call; allocate; on `CapacityUnavailable`/`QuotaExceeded` record the failure in
//! the tracker (blocking its scope) and fail over to the plan's next-ranked alternative —
//! the optimizer's best placements for this task with its neighbours fixed — within
//! `policy.failover` (max cost increase, max attempts); stage the inputs (recording bytes
//! and egress cost); run; poll; retry a failed run up to `retries`; recover a preemption
//! per `recovery`; collect the outputs into the object store of the task's location
//! ([`Provider::object_store`], e.g. S3 of its AWS region; the local store otherwise) and
//! to a pinned `uri`; release the allocation as soon as the task ends. A transfer goes to
//! the provider that speaks both URI schemes, or in two hops through a staging directory
//! on this host (S3 → a local sandbox, a local sandbox → S3).
//!
//! [`drift`] is the refresh: live allocations that their provider no longer reports (or
//! reports interrupted). Before work starts, in-flight intents left by a crash are settled: a run that finished
//! is adopted, anything else is released, so nothing is left that skyform cannot find.
//! The engine never prints: it reports [`Event`]s to [`Hooks`]. Provider calls run on
//! tokio's blocking pool with a per-call timeout; `Throttled`/`Transient` back off.
//! The first interrupt stops new work and lets running tasks finish for a grace period
//! before cancelling them; state stays consistent at every step.

use crate::catalog::egress::{EgressModel, Place};
use crate::config::{InputSource, JobSpec, Recovery, Task, TaskAddr};
use crate::plan::{Action, Plan};
use crate::state::{Allocation, DataObject, PlacementRecord, Run, SledStore, State, StateStore, TaskStatus};
use crate::tracker::Tracker;
use skyform_provider::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the engine reports while it works.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Recovered { task: TaskAddr, provider_id: String, adopted: bool },
    Allocating { task: TaskAddr, attempt: u32, location: String, instance_type: String, spot: bool },
    AllocationFailed { task: TaskAddr, location: String, kind: ErrorKind, scope: Scope, message: String },
    Running { task: TaskAddr, run: u32, log: String },
    RunFailed { task: TaskAddr, run: u32, exit_code: Option<i32>, log: String, retrying: bool },
    Preempted { task: TaskAddr, location: String, recovery: String },
    Transferred { task: TaskAddr, what: String, bytes: u64, cost: f64 },
    TaskDone { task: TaskAddr, status: TaskStatus, cost: f64 },
    Destroyed { task: TaskAddr },
    Interrupted { message: String },
}

/// Receives events (the CLI renders them as text, progress bars or JSON lines).
pub trait Hooks: Send + Sync {
    fn event(&self, e: &Event);
}

/// Knobs of one apply.
#[derive(Debug, Clone)]
pub struct Options {
    pub parallelism: usize,
    /// Per provider call.
    pub call_timeout: Duration,
    /// After an interrupt, how long running tasks may go on before they are cancelled.
    pub grace: Duration,
    pub job_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parallelism: 4,
            call_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            job_dir: PathBuf::from("."),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("no provider for cloud `{0}` in this build")]
    NoProvider(String),
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

/// The providers by cloud name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

struct Shared {
    state: tokio::sync::Mutex<State>,
    store: Arc<SledStore>,
    tracker: Option<Arc<Tracker>>,
    providers: Providers,
    hooks: Arc<dyn Hooks>,
    egress: EgressModel,
    opts: Options,
    spec: JobSpec,
    cancel: Arc<AtomicBool>,
    hard_cancel: Arc<AtomicBool>,
    /// Allocations whose call timed out: released when the call finally returns.
    stragglers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn now() -> u64 {
    crate::tracker::now_secs()
}

fn loc(p: &PlacementRecord) -> Location {
    Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str())
}

/// Where outputs produced at `location` are kept: the provider's object store for that
/// location (e.g. `s3://BUCKET` of an AWS region), else the engine's local store.
fn store_prefix(provider: Option<&Arc<dyn Provider>>, location: &Location, lineage: &str) -> String {
    let short = &lineage[..lineage.len().min(8)];
    match provider.and_then(|p| p.object_store(location)) {
        Some(store) => format!("{}/skyform-{short}", store.trim_end_matches('/')),
        None => format!("local://skyform-{short}"),
    }
}

/// The scheme of a URI (`file` for a plain path).
fn scheme(u: &str) -> &str {
    u.split_once("://").map(|x| x.0).unwrap_or("file")
}

impl Shared {
    /// Changes the tasks `keys` (and the outputs when `outputs`) in place and commits just
    /// those, durably, before returning.
    async fn commit_keys(
        &self,
        keys: &[TaskAddr],
        outputs: bool,
        f: impl FnOnce(&mut State),
    ) -> Result<(), ApplyError> {
        {
            let mut st = self.state.lock().await;
            f(&mut st);
            let serial = tokio::task::block_in_place(|| self.store.write_changes(&st, keys, outputs))?;
            st.serial = serial;
        }
        // Durable before returning; concurrent commits share the flush.
        tokio::task::block_in_place(|| self.store.sync())?;
        Ok(())
    }

    async fn commit(&self, addr: &TaskAddr, f: impl FnOnce(&mut State)) -> Result<(), ApplyError> {
        self.commit_keys(std::slice::from_ref(addr), false, f).await
    }

    fn provider(&self, cloud: &str) -> Result<Arc<dyn Provider>, ProviderError> {
        self.providers.get(cloud).cloned().ok_or_else(|| {
            ProviderError::new(ErrorKind::Unsupported, None, format!("no provider for cloud `{cloud}` in this build"))
        })
    }

    /// Copies the tree at `from` to `to`. A `sandbox://` URI belongs to `cloud`'s provider;
    /// other schemes to any provider that speaks them (its `capabilities.schemes`). When no
    /// one provider reaches both ends (S3 into a local sandbox, say), the data goes through
    /// a staging directory on this host in two hops.
    async fn transfer(&self, cloud: &str, from: &str, to: &str) -> Result<TransferResponse, ProviderError> {
        let speaks = |c: &str, u: &str| -> bool {
            let s = scheme(u);
            if s == "sandbox" {
                return c == cloud;
            }
            self.providers.get(c).is_some_and(|p| p.info().capabilities.schemes.iter().any(|x| x == s))
        };
        let order: Vec<String> = std::iter::once(cloud.to_string())
            .chain(self.providers.keys().filter(|k| k.as_str() != cloud).cloned())
            .collect();
        let one = |f: String, t: String, c: String| async move {
            self.call(&c, move |p| p.transfer(&TransferRequest { from: f.clone(), to: t.clone() })).await
        };
        if let Some(c) = order.iter().find(|c| speaks(c, from) && speaks(c, to)) {
            return one(from.to_string(), to.to_string(), c.clone()).await;
        }
        let a = order.iter().find(|c| speaks(c, from) && speaks(c, "file://"));
        let b = order.iter().find(|c| speaks(c, "file://") && speaks(c, to));
        let (Some(a), Some(b)) = (a, b) else {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                None,
                format!("no provider of this job reaches both `{from}` and `{to}`"),
            ));
        };
        let dir = std::env::temp_dir().join(format!("skyform-staging-{}", uuid::Uuid::new_v4()));
        let stage = format!("file://{}", dir.display());
        let first = one(from.to_string(), stage.clone(), a.clone()).await;
        let second = match first {
            Ok(_) => one(stage, to.to_string(), b.clone()).await,
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&dir);
        second
    }

    /// Runs a blocking provider call with the per-call timeout; transient and throttled
    /// errors are retried with backoff.
    async fn call<T: Send + 'static>(
        &self,
        cloud: &str,
        f: impl Fn(&dyn Provider) -> Result<T, ProviderError> + Send + Sync + 'static,
    ) -> Result<T, ProviderError> {
        let p = self.provider(cloud)?;
        let f = Arc::new(f);
        let mut delay = Duration::from_millis(100);
        for attempt in 0..4 {
            let (p2, f2) = (p.clone(), f.clone());
            let r = tokio::time::timeout(self.opts.call_timeout, tokio::task::spawn_blocking(move || f2(p2.as_ref())))
                .await;
            let r = match r {
                Err(_) => Err(ProviderError::new(
                    ErrorKind::Transient,
                    None,
                    format!("the call timed out after {:?}", self.opts.call_timeout),
                )),
                Ok(j) => j.expect("join"),
            };
            match r {
                Err(e) if matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) && attempt < 3 => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }
}

/// The URI of a plain path or URI, relative paths against the job directory.
fn resolve_uri(job_dir: &Path, u: &str) -> String {
    if u.contains("://") {
        u.to_string()
    } else {
        let p = job_dir.join(u);
        let abs = std::path::absolute(&p).unwrap_or(p);
        format!("file://{}", abs.display())
    }
}

/// What an apply runs with.
pub struct Context {
    pub store: Arc<SledStore>,
    pub tracker: Option<Arc<Tracker>>,
    pub providers: Providers,
    pub hooks: Arc<dyn Hooks>,
    pub options: Options,
    /// Set by the first interrupt: no new work.
    pub cancel: Arc<AtomicBool>,
    /// Set by the second interrupt: stop now.
    pub hard_cancel: Arc<AtomicBool>,
}

/// Applies a plan. The caller holds the state lock.
pub async fn apply(plan: &Plan, ctx: Context) -> Result<Outcome, ApplyError> {
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
        cancel: ctx.cancel,
        hard_cancel: ctx.hard_cancel,
        stragglers: std::sync::Mutex::new(Vec::new()),
    });
    recover(&sh).await?;
    let mut out = Outcome { planned: plan.cost_after, ..Default::default() };
    // Destroys first (and the old allocations of replacements).
    for c in &plan.changes {
        if c.action == Action::Destroy {
            release_all(&sh, &c.address).await?;
            sh.commit(&c.address, |s| {
                s.tasks.remove(&c.address);
            })
            .await?;
            sh.hooks.event(&Event::Destroyed { task: c.address.clone() });
            out.destroyed += 1;
        }
    }
    let todo: Vec<&crate::plan::Change> = plan
        .changes
        .iter()
        .filter(|c| match c.action {
            Action::Create | Action::Replace | Action::Migrate => true,
            Action::NoOp => sh
                .state
                .try_lock()
                .map(|s| s.tasks.get(&c.address).is_none_or(|t| t.status != TaskStatus::Succeeded))
                .unwrap_or(true),
            Action::Destroy => false,
        })
        .collect();
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
        if c.action != Action::NoOp {
            release_all(&sh, &c.address).await?;
        }
    }
    let resets: Vec<(TaskAddr, Option<Task>, Option<PlacementRecord>)> = todo
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| {
            (c.address.clone(), sh.spec.tasks.get(&c.address).cloned(), c.after.as_ref().map(|a| a.placement.clone()))
        })
        .collect();
    if !resets.is_empty() {
        let keys: Vec<TaskAddr> = resets.iter().map(|r| r.0.clone()).collect();
        sh.commit_keys(&keys, false, |s| {
            for (addr, task, placement) in resets {
                let e = s.tasks.entry(addr).or_default();
                if let Some(t) = &task {
                    e.spec_hash = t.spec_hash.clone();
                    e.spec = Some(t.clone());
                }
                e.status = TaskStatus::Pending;
                e.tainted = false;
                e.placement = placement;
                e.data.clear();
            }
        })
        .await?;
    }
    // Walk the DAG.
    let pending: BTreeSet<TaskAddr> = todo.iter().map(|c| c.address.clone()).collect();
    let changes: BTreeMap<TaskAddr, crate::plan::Change> =
        todo.iter().map(|c| (c.address.clone(), (*c).clone())).collect();
    let mut waiting = pending.clone();
    let mut running: tokio::task::JoinSet<(TaskAddr, TaskStatus)> = tokio::task::JoinSet::new();
    let mut blocked: BTreeSet<TaskAddr> = BTreeSet::new();
    loop {
        if !sh.cancel.load(Ordering::SeqCst) {
            let st = sh.state.lock().await.clone();
            let ready: Vec<TaskAddr> = waiting
                .iter()
                .filter(|a| {
                    sh.spec.tasks.get(*a).is_some_and(|t| {
                        t.upstream().iter().all(|u| st.tasks.get(u).is_some_and(|x| x.status == TaskStatus::Succeeded))
                    })
                })
                .cloned()
                .collect();
            for a in ready {
                if running.len() >= sh.opts.parallelism.max(1) {
                    break;
                }
                waiting.remove(&a);
                let sh2 = sh.clone();
                let change = changes[&a].clone();
                running.spawn(async move {
                    let status = run_task(&sh2, &change).await.unwrap_or(TaskStatus::Failed);
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
                        out.failed.push(addr.clone());
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
    let late: Vec<tokio::task::JoinHandle<()>> = std::mem::take(&mut *sh.stragglers.lock().expect("lock"));
    for h in late {
        let _ = h.await;
    }
    out.interrupted = sh.cancel.load(Ordering::SeqCst);
    out.not_started = waiting.into_iter().chain(blocked).collect();
    let st = sh.state.lock().await;
    out.cost = st.tasks.iter().filter(|(a, _)| pending.contains(a)).map(|(_, t)| t.cost_so_far()).sum();
    // Outputs: the root outputs with task-output references resolved to where data is.
    drop(st);
    let outputs = resolve_outputs(&sh).await;
    sh.commit_keys(&[], true, |s| s.outputs = outputs).await?;
    Ok(out)
}

async fn resolve_outputs(sh: &Shared) -> BTreeMap<String, serde_json::Value> {
    let st = sh.state.lock().await;
    sh.spec
        .outputs
        .iter()
        .map(|(k, o)| {
            let mut v = o.value.clone();
            if let Some(r) = v.get("task_output").and_then(|x| x.as_str()).map(str::to_string) {
                if let Some((task, name)) = r.split_once(".outputs.") {
                    if let Some(d) =
                        st.tasks.get(&TaskAddr(task.to_string())).and_then(|t| t.data.iter().find(|d| d.name == name))
                    {
                        v["uri"] = serde_json::json!(d.uri);
                    }
                }
            }
            (k.clone(), v)
        })
        .collect()
}

/// Releases every unreleased allocation of a task (and records it).
async fn release_all(sh: &Shared, addr: &TaskAddr) -> Result<(), ApplyError> {
    let allocs: Vec<(usize, Allocation)> = {
        let st = sh.state.lock().await;
        st.tasks
            .get(addr)
            .map(|t| t.allocations.iter().cloned().enumerate().filter(|(_, a)| a.released.is_none()).collect())
            .unwrap_or_default()
    };
    for (i, a) in allocs {
        if let Some(id) = a.provider_id.clone() {
            let r = sh.call(&a.placement.cloud, move |p| p.release(&ReleaseRequest { provider_id: id.clone() })).await;
            if let Err(e) = r {
                if e.kind != ErrorKind::Unsupported {
                    sh.hooks.event(&Event::Interrupted { message: format!("{addr}: release failed: {e}") });
                    continue;
                }
            }
        }
        sh.commit(addr, |s| {
            if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(i)) {
                x.released = Some(now());
                x.status = "released".into();
            }
        })
        .await?;
    }
    Ok(())
}

/// Settles intents left by an earlier apply that did not finish: a finished run is
/// adopted (its outputs collected), anything else released. Resources carrying this
/// state's lineage that the state does not know are released too.
async fn recover(sh: &Arc<Shared>) -> Result<(), ApplyError> {
    let st = sh.state.lock().await.clone();
    let lineage = st.lineage.clone();
    for (addr, t) in &st.tasks {
        for (i, a) in t.allocations.iter().enumerate() {
            if a.released.is_some() {
                continue;
            }
            // Find it by token (the intent was written before the call).
            let token = a.idempotency_token.clone();
            let tags: BTreeMap<String, String> = [("skyform:lineage".to_string(), lineage.clone())].into();
            let found = sh
                .call(&a.placement.cloud, move |p| p.read(&ReadRequest { owner_tags: tags.clone() }))
                .await
                .ok()
                .and_then(|r| r.resources.into_iter().find(|x| x.idempotency_token == token));
            let adopted = match &found {
                Some(res) if res.state == RunState::Succeeded && t.status != TaskStatus::Succeeded => {
                    collect_outputs(sh, addr, &res.provider_id, &a.placement).await.is_ok()
                }
                _ => false,
            };
            if let Some(res) = &found {
                let id = res.provider_id.clone();
                let _ =
                    sh.call(&a.placement.cloud, move |p| p.release(&ReleaseRequest { provider_id: id.clone() })).await;
            }
            let cost = adopted.then_some(a.placement.hourly * a.placement.hours);
            sh.commit(addr, |s| {
                if let Some(tt) = s.tasks.get_mut(addr) {
                    if let Some(x) = tt.allocations.get_mut(i) {
                        x.released = Some(now());
                        x.status = if adopted { "adopted".into() } else { "released".into() };
                    }
                    if adopted {
                        tt.status = TaskStatus::Succeeded;
                        if let Some(r) = tt.runs.last_mut() {
                            r.status = TaskStatus::Succeeded;
                            r.exit_code = Some(0);
                            r.end = Some(now());
                            r.cost = cost.unwrap_or(0.0);
                        }
                    } else if tt.status == TaskStatus::Running {
                        tt.status = TaskStatus::Pending;
                    }
                }
            })
            .await?;
            if let Some(res) = found {
                sh.hooks.event(&Event::Recovered { task: addr.clone(), provider_id: res.provider_id, adopted });
            }
        }
    }
    // Orphans: tagged with our lineage, unknown to the state.
    let known: BTreeSet<String> =
        st.tasks.values().flat_map(|t| t.allocations.iter().map(|a| a.idempotency_token.clone())).collect();
    for (cloud, p) in &sh.providers {
        let tags: BTreeMap<String, String> = [("skyform:lineage".to_string(), lineage.clone())].into();
        let p = p.clone();
        let found = tokio::task::spawn_blocking(move || p.read(&ReadRequest { owner_tags: tags })).await.expect("join");
        for r in found.map(|r| r.resources).unwrap_or_default() {
            if !known.contains(&r.idempotency_token) {
                let id = r.provider_id.clone();
                let _ = sh.call(cloud, move |p| p.release(&ReleaseRequest { provider_id: id.clone() })).await;
                sh.hooks.event(&Event::Recovered {
                    task: TaskAddr(r.owner_tags.get("skyform:task").cloned().unwrap_or_default()),
                    provider_id: r.provider_id,
                    adopted: false,
                });
            }
        }
    }
    Ok(())
}

async fn collect_outputs(
    sh: &Shared,
    addr: &TaskAddr,
    provider_id: &str,
    placement: &PlacementRecord,
) -> Result<(), ProviderError> {
    let objects = gather_outputs(sh, addr, provider_id, placement).await?;
    sh.commit(addr, |s| {
        if let Some(t) = s.tasks.get_mut(addr) {
            t.data = objects;
        }
    })
    .await
    .map_err(|e| ProviderError::new(ErrorKind::Other, None, e.to_string()))
}

/// Copies a finished run's outputs into the object store of its location (and to a
/// pinned `uri`); returns the data objects to record.
async fn gather_outputs(
    sh: &Shared,
    addr: &TaskAddr,
    provider_id: &str,
    placement: &PlacementRecord,
) -> Result<Vec<DataObject>, ProviderError> {
    let Some(task) = sh.spec.tasks.get(addr) else { return Ok(vec![]) };
    let lineage = sh.state.lock().await.lineage.clone();
    let mut objects = Vec::new();
    for (name, o) in &task.outputs {
        let from = format!("sandbox://{provider_id}/outputs/{name}");
        let store = store_prefix(sh.providers.get(&placement.cloud), &loc(placement), &lineage);
        let to = format!("{store}/{}/{}", addr.as_str().replace('.', "/"), name);
        let r = sh.transfer(&placement.cloud, &from, &to).await?;
        if let Some(pinned) = &o.uri {
            let dst = resolve_uri(&sh.opts.job_dir, pinned);
            let r2 = sh.transfer(&placement.cloud, &from, &dst).await?;
            sh.hooks.event(&Event::Transferred {
                task: addr.clone(),
                what: format!("output {name} → {pinned}"),
                bytes: r2.bytes,
                cost: 0.0,
            });
        }
        objects.push(DataObject {
            name: name.clone(),
            uri: to,
            size_gb: r.bytes as f64 / 1e9,
            checksum: r.checksum,
            location: format!("{}/{}/{}", placement.cloud, placement.region, placement.zone),
        });
    }
    Ok(objects)
}

/// Runs one task to its end. Returns its final status.
async fn run_task(sh: &Arc<Shared>, change: &crate::plan::Change) -> Result<TaskStatus, ApplyError> {
    let addr = &change.address;
    let task: Task = match sh.spec.tasks.get(addr) {
        Some(t) => t.clone(),
        None => return Ok(TaskStatus::Failed),
    };
    let Some(planned) = &change.after else { return Ok(TaskStatus::Failed) };
    let policy = &sh.spec.policy;
    let budget = planned.placement.cost * (1.0 + policy.failover.max_cost_increase) + 1e-9;
    let mut candidates: Vec<PlacementRecord> = vec![planned.placement.clone()];
    candidates.extend(planned.alternatives.iter().filter(|a| a.cost <= budget).cloned());
    let mut idx = 0usize;
    let mut attempts = 0u32;
    let mut runs = 0u32;
    let lineage = sh.state.lock().await.lineage.clone();
    while idx < candidates.len() {
        if sh.cancel.load(Ordering::SeqCst) {
            return Ok(TaskStatus::Pending);
        }
        let cand = candidates[idx].clone();
        let here = loc(&cand);
        if let Some(t) = &sh.tracker {
            if let Ok(v) = t.view(now()) {
                if v.blocked(&here).is_some() {
                    idx += 1;
                    continue;
                }
            }
        }
        if attempts >= policy.failover.max_attempts {
            break;
        }
        attempts += 1;
        let token = uuid::Uuid::new_v4().to_string();
        let tags: BTreeMap<String, String> = [
            ("skyform:lineage", lineage.clone()),
            ("skyform:job", sh.spec.name.clone()),
            ("skyform:task", addr.to_string()),
            ("skyform:attempt", attempts.to_string()),
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
            created: now(),
            released: None,
            status: "requested".into(),
        };
        let slot = {
            let st = sh.state.lock().await;
            st.tasks.get(addr).map(|t| t.allocations.len()).unwrap_or(0)
        };
        sh.commit(addr, |s| {
            let t = s.tasks.entry(addr.clone()).or_default();
            t.allocations.push(intent);
            t.placement = Some(cand.clone());
        })
        .await?;
        sh.hooks.event(&Event::Allocating {
            task: addr.clone(),
            attempt: attempts,
            location: here.to_string(),
            instance_type: cand.instance_type.clone(),
            spot: cand.spot,
        });
        let req = AllocateRequest {
            task: addr.to_string(),
            location: here.clone(),
            instance_type: cand.instance_type.clone(),
            spot: cand.spot,
            num_nodes: task.resources.num_nodes.max(1),
            owner_tags: tags,
            idempotency_token: token,
        };
        let allocated = allocate(sh, &cand.cloud, req).await;
        let provider_id = match allocated {
            Ok(a) => a.provider_id,
            Err(e) => {
                sh.commit(addr, |s| {
                    if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(slot)) {
                        x.status = format!("failed: {}", e.kind);
                        x.released = Some(now());
                    }
                })
                .await?;
                sh.hooks.event(&Event::AllocationFailed {
                    task: addr.clone(),
                    location: here.to_string(),
                    kind: e.kind,
                    scope: e.scope,
                    message: e.message.clone(),
                });
                // A location that keeps timing out or failing transiently is blocked like
                // one without capacity, so a hanging region cannot stall the run.
                if e.kind.blocks_location() || matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) {
                    if let Some(t) = &sh.tracker {
                        let at = e.location.as_deref().cloned().unwrap_or_else(|| here.clone());
                        let _ = t.record_failure(&at, e.scope, e.kind, &e.message, now());
                    }
                    // Skip the rest of the blocked scope in this run, too.
                    let scope = e.scope;
                    idx += 1;
                    while idx < candidates.len() && loc(&candidates[idx]).within(scope, &here) {
                        idx += 1;
                    }
                    continue;
                }
                sh.commit(addr, |s| {
                    if let Some(t) = s.tasks.get_mut(addr) {
                        t.status = TaskStatus::Failed;
                        t.tainted = true;
                    }
                })
                .await?;
                sh.hooks.event(&Event::TaskDone { task: addr.clone(), status: TaskStatus::Failed, cost: 0.0 });
                return Ok(TaskStatus::Failed);
            }
        };
        // The provider id is recorded with the run's start (recovery finds an allocation by
        // its token either way).
        // Stage inputs.
        let staged = stage_inputs(sh, &task, &provider_id, &cand).await;
        if let Err(e) = staged {
            let pid = provider_id.clone();
            sh.commit(addr, |s| {
                if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(slot)) {
                    x.provider_id = Some(pid);
                    x.status = "allocated".into();
                }
            })
            .await?;
            sh.hooks.event(&Event::RunFailed {
                task: addr.clone(),
                run: runs,
                exit_code: None,
                log: e.to_string(),
                retrying: false,
            });
            release_all(sh, addr).await?;
            sh.commit(addr, |s| {
                if let Some(t) = s.tasks.get_mut(addr) {
                    t.status = TaskStatus::Failed;
                    t.tainted = true;
                }
            })
            .await?;
            return Ok(TaskStatus::Failed);
        }
        runs += 1;
        let rreq = RunTaskRequest {
            provider_id: provider_id.clone(),
            task: addr.to_string(),
            setup: task.setup.clone(),
            run: task.run.clone(),
            env: task.env.clone(),
            inputs: task.inputs.keys().cloned().collect(),
            outputs: task.outputs.keys().cloned().collect(),
            workdir: task.workdir.clone(),
        };
        let started = Instant::now();
        let log = match sh.call(&cand.cloud, move |p| p.run_task(&rreq)).await {
            Ok(r) => r.log,
            Err(e) => e.to_string(),
        };
        let run_no = runs;
        let log2 = log.clone();
        let pid = provider_id.clone();
        sh.commit(addr, |s| {
            if let Some(t) = s.tasks.get_mut(addr) {
                t.status = TaskStatus::Running;
                t.runs.push(Run {
                    attempt: run_no,
                    status: TaskStatus::Running,
                    exit_code: None,
                    log: Some(log2),
                    start: now(),
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
        sh.hooks.event(&Event::Running { task: addr.clone(), run: runs, log: log.clone() });
        // Poll.
        let mut delay = Duration::from_millis(2);
        let mut grace_started: Option<Instant> = None;
        let result = loop {
            let id = provider_id.clone();
            let st = sh.call(&cand.cloud, move |p| p.task_status(&TaskStatusRequest { provider_id: id.clone() })).await;
            match st {
                Ok(s) if s.state != RunState::Running => break s.state,
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::Preempted => break RunState::Preempted,
                Err(_) => {}
            }
            if sh.cancel.load(Ordering::SeqCst) {
                let g = *grace_started.get_or_insert_with(Instant::now);
                if g.elapsed() >= sh.opts.grace || sh.hard_cancel.load(Ordering::SeqCst) {
                    break RunState::Failed { exit_code: None };
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_millis(200));
        };
        let hours = started.elapsed().as_secs_f64() / 3600.0;
        let cost = cand.hourly * hours * task.resources.num_nodes.max(1) as f64;
        let cancelled = sh.cancel.load(Ordering::SeqCst) && result != RunState::Succeeded;
        match result {
            RunState::Succeeded => {
                let collected = gather_outputs(sh, addr, &provider_id, &cand).await;
                let id = provider_id.clone();
                let released =
                    sh.call(&cand.cloud, move |p| p.release(&ReleaseRequest { provider_id: id.clone() })).await.is_ok();
                let ok = collected.is_ok();
                let status = if ok { TaskStatus::Succeeded } else { TaskStatus::Failed };
                let objects = collected.unwrap_or_default();
                sh.commit(addr, |s| {
                    if let Some(t) = s.tasks.get_mut(addr) {
                        t.data = objects;
                        if released {
                            if let Some(x) = t.allocations.get_mut(slot) {
                                x.released = Some(now());
                                x.status = "released".into();
                            }
                        }
                        t.status = status;
                        t.tainted = !ok;
                        if let Some(r) = t.runs.last_mut() {
                            r.status = status;
                            r.exit_code = Some(0);
                            r.end = Some(now());
                            r.cost = cost;
                        }
                    }
                })
                .await?;
                if !released {
                    release_all(sh, addr).await?;
                }
                sh.hooks.event(&Event::TaskDone { task: addr.clone(), status, cost });
                return Ok(status);
            }
            RunState::Preempted => {
                release_all(sh, addr).await?;
                sh.commit(addr, |s| {
                    if let Some(t) = s.tasks.get_mut(addr) {
                        t.status = TaskStatus::Preempted;
                        if let Some(r) = t.runs.last_mut() {
                            r.status = TaskStatus::Preempted;
                            r.end = Some(now());
                            r.cost = cost;
                        }
                    }
                })
                .await?;
                if let Some(t) = &sh.tracker {
                    let _ = t.record_preemption(&here, &cand.instance_type, now());
                }
                let recovery = task.recovery;
                sh.hooks.event(&Event::Preempted {
                    task: addr.clone(),
                    location: here.to_string(),
                    recovery: format!("{recovery:?}"),
                });
                match recovery {
                    Recovery::SameZone => {}
                    Recovery::NextZone | Recovery::NextRegion => {
                        let scope = if recovery == Recovery::NextZone { Scope::Zone } else { Scope::Region };
                        if let Some(t) = &sh.tracker {
                            let _ = t.record_failure(&here, scope, ErrorKind::Preempted, "preempted", now());
                        }
                        idx += 1;
                        while idx < candidates.len() && loc(&candidates[idx]).within(scope, &here) {
                            idx += 1;
                        }
                    }
                }
                continue;
            }
            RunState::Failed { exit_code } => {
                release_all(sh, addr).await?;
                let retrying = !cancelled && runs <= task.retries;
                let status = if cancelled || retrying { TaskStatus::Pending } else { TaskStatus::Failed };
                sh.commit(addr, |s| {
                    if let Some(t) = s.tasks.get_mut(addr) {
                        t.status = status;
                        t.tainted = status == TaskStatus::Failed;
                        if let Some(r) = t.runs.last_mut() {
                            r.status = TaskStatus::Failed;
                            r.exit_code = exit_code;
                            r.end = Some(now());
                            r.cost = cost;
                        }
                    }
                })
                .await?;
                sh.hooks.event(&Event::RunFailed {
                    task: addr.clone(),
                    run: runs,
                    exit_code,
                    log: log.clone(),
                    retrying,
                });
                if cancelled {
                    return Ok(TaskStatus::Pending);
                }
                if retrying {
                    // Same placement again: a run failure says nothing about the location.
                    attempts = attempts.saturating_sub(1);
                    continue;
                }
                sh.hooks.event(&Event::TaskDone { task: addr.clone(), status: TaskStatus::Failed, cost });
                return Ok(TaskStatus::Failed);
            }
            RunState::Running => unreachable!("the poll loop ends on a final state"),
        }
    }
    sh.commit(addr, |s| {
        if let Some(t) = s.tasks.get_mut(addr) {
            t.status = TaskStatus::Failed;
            t.tainted = true;
        }
    })
    .await?;
    sh.hooks.event(&Event::AllocationFailed {
        task: addr.clone(),
        location: "-".into(),
        kind: ErrorKind::CapacityUnavailable,
        scope: Scope::Cloud,
        message: format!(
            "no placement left within policy.failover (max {} attempts, +{:.0}% cost)",
            policy.failover.max_attempts,
            policy.failover.max_cost_increase * 100.0
        ),
    });
    sh.hooks.event(&Event::TaskDone { task: addr.clone(), status: TaskStatus::Failed, cost: 0.0 });
    Ok(TaskStatus::Failed)
}

/// Allocates with the per-call timeout. A call that times out may still succeed later in
/// its thread: it is awaited in the background and what it allocated is released, so a
/// hanging region never leaves an allocation behind.
async fn allocate(sh: &Arc<Shared>, cloud: &str, req: AllocateRequest) -> Result<AllocateResponse, ProviderError> {
    let p = sh.provider(cloud)?;
    let mut delay = Duration::from_millis(100);
    for attempt in 0..4 {
        let (p2, r2) = (p.clone(), req.clone());
        let mut handle = tokio::task::spawn_blocking(move || p2.allocate(&r2));
        let result = match tokio::time::timeout(sh.opts.call_timeout, &mut handle).await {
            Ok(j) => j.expect("join"),
            Err(_) => {
                let p3 = p.clone();
                let late = tokio::spawn(async move {
                    if let Ok(Ok(a)) = handle.await {
                        let _ = tokio::task::spawn_blocking(move || {
                            p3.release(&ReleaseRequest { provider_id: a.provider_id })
                        })
                        .await;
                    }
                });
                sh.stragglers.lock().expect("lock").push(late);
                Err(ProviderError::new(
                    ErrorKind::Transient,
                    Some(&req.location),
                    format!("the call timed out after {:?}", sh.opts.call_timeout),
                ))
            }
        };
        match result {
            Err(e) if matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) && attempt < 3 => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

async fn stage_inputs(
    sh: &Shared,
    task: &Task,
    provider_id: &str,
    cand: &PlacementRecord,
) -> Result<(), ProviderError> {
    let here = Place::from(&loc(cand));
    for (name, src) in &task.inputs {
        let (from, place, gb) = match src {
            InputSource::Storage { uri, size_gb, region, .. } => {
                (resolve_uri(&sh.opts.job_dir, uri), Place::of_uri(uri, region.as_deref()), *size_gb)
            }
            InputSource::TaskOutput { task: up, output, size_gb } => {
                let st = sh.state.lock().await;
                let d = st.tasks.get(up).and_then(|t| t.data.iter().find(|d| &d.name == output)).cloned();
                drop(st);
                let Some(d) = d else {
                    return Err(ProviderError::new(
                        ErrorKind::Other,
                        None,
                        format!("input {name}: {up} has no output {output} in the state"),
                    ));
                };
                let place = d.location.split('/').collect::<Vec<_>>();
                let p = Place {
                    cloud: place.first().unwrap_or(&"local").to_string(),
                    region: place.get(1).map(|s| s.to_string()),
                    zone: place.get(2).map(|s| s.to_string()),
                };
                (d.uri, p, *size_gb)
            }
        };
        let to = format!("sandbox://{provider_id}/inputs/{name}");
        let r = sh.transfer(&cand.cloud, &from, &to).await?;
        let cost = sh.egress.egress(&place, &here, gb).0;
        sh.hooks.event(&Event::Transferred {
            task: task.address.clone(),
            what: format!("input {name} ← {from}"),
            bytes: r.bytes,
            cost,
        });
    }
    Ok(())
}

/// Refresh: compares the state's live allocations (not released) with what their
/// providers report, by idempotency token. Returns, per task, what drifted: an allocation
/// that is gone (terminated outside skyform) or interrupted (stopped, shutting down).
pub fn drift(state: &State, providers: &Providers) -> BTreeMap<TaskAddr, String> {
    let mut out = BTreeMap::new();
    let tags: BTreeMap<String, String> = [("skyform:lineage".to_string(), state.lineage.clone())].into();
    let mut seen: BTreeMap<String, Option<Vec<ResourceInfo>>> = BTreeMap::new();
    for (addr, t) in &state.tasks {
        for a in t.allocations.iter().filter(|a| a.released.is_none() && a.provider_id.is_some()) {
            let found = seen.entry(a.placement.cloud.clone()).or_insert_with(|| {
                providers
                    .get(&a.placement.cloud)
                    .and_then(|p| p.read(&ReadRequest { owner_tags: tags.clone() }).ok())
                    .map(|r| r.resources)
            });
            let Some(found) = found else { continue };
            let id = a.provider_id.clone().unwrap_or_default();
            match found.iter().find(|r| r.idempotency_token == a.idempotency_token) {
                None => {
                    out.insert(addr.clone(), format!("{id} is gone (terminated outside skyform)"));
                }
                Some(r) if r.state == RunState::Preempted => {
                    out.insert(addr.clone(), format!("{id} was interrupted (stopped or shutting down)"));
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// Lists what carries skyform's owner tags for this job — this state's lineage, or the
/// job's name (a state that was lost and made anew) — but is unknown to the state (or
/// already released in it), and releases it when `release` is set. Other jobs' resources
/// in the same account are never touched.
pub fn sweep(state: &State, job: &str, providers: &Providers, release: bool) -> Vec<(String, ResourceInfo)> {
    let live: BTreeSet<String> = state
        .tasks
        .values()
        .flat_map(|t| t.allocations.iter().filter(|a| a.released.is_none()).map(|a| a.idempotency_token.clone()))
        .collect();
    let ours = |r: &ResourceInfo| {
        r.owner_tags.get("skyform:lineage") == Some(&state.lineage)
            || (r.owner_tags.contains_key("skyform:lineage")
                && r.owner_tags.get("skyform:job").map(String::as_str) == Some(job))
    };
    let mut found = Vec::new();
    for (cloud, p) in providers {
        for r in p.read(&ReadRequest::default()).map(|r| r.resources).unwrap_or_default() {
            if ours(&r) && !live.contains(&r.idempotency_token) {
                if release {
                    let _ = p.release(&ReleaseRequest { provider_id: r.provider_id.clone() });
                }
                found.push((cloud.clone(), r));
            }
        }
    }
    found
}
