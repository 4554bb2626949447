//! Reading reality: [`refresh`] compares the state's live allocations with what their
//! providers report, reading every cloud in parallel within a timeout (the refresh behind
//! `plan`, `apply` and `status`), [`sweep`] finds (and releases) what
//! carries this job's owner tags but is unknown to the state. Blocking provider calls.

use crate::config::TaskAddr;
use crate::providers::Providers;
use crate::state::{Migration, MigrationStep, State};
use skyform_provider::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What a refresh found: per task what drifted, and the clouds that could not be read
/// (an error or the timeout), which the caller reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refreshed {
    pub drift: BTreeMap<TaskAddr, String>,
    /// cloud → why it was not read.
    pub unread: BTreeMap<String, String>,
}

/// How long [`drift`] waits for one provider's read.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);

/// Compares the live allocations (not released) of unfinished tasks with what their
/// providers report, by idempotency token. Returns, per task, what drifted: an allocation that is gone
/// (terminated outside skyform) or interrupted (stopped, shutting down). A cloud that
/// cannot be read is skipped (see [`refresh`] for why).
pub fn drift(state: &State, providers: &Providers) -> BTreeMap<TaskAddr, String> {
    refresh(state, providers, REFRESH_TIMEOUT).drift
}

/// [`drift`] with the reasons clouds were not read: each cloud holding live allocations is
/// read once, all clouds in parallel, each within `timeout` (a read still running then is
/// left to finish on its own thread and counts as unread).
pub fn refresh(state: &State, providers: &Providers, timeout: Duration) -> Refreshed {
    // A task that succeeded may still hold an allocation being released (an apply that
    // stopped mid-release): its absence is no drift.
    let live: Vec<(&TaskAddr, &crate::state::Allocation, Option<&Migration>)> = state
        .tasks
        .iter()
        .filter(|(_, t)| t.status != crate::state::TaskStatus::Succeeded)
        .flat_map(|(addr, t)| {
            t.allocations
                .iter()
                .filter(|a| a.released.is_none() && a.provider_id.is_some())
                .map(move |a| (addr, a, t.migration.as_ref()))
        })
        .collect();
    let clouds: BTreeSet<&str> = live.iter().map(|(_, a, _)| a.placement.cloud.as_str()).collect();
    let tags: BTreeMap<String, String> = [("skyform:lineage".to_string(), state.lineage.clone())].into();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = Refreshed::default();
    for cloud in &clouds {
        let Some(p) = providers.get(*cloud).cloned() else { continue };
        let (tx, tags, cloud) = (tx.clone(), tags.clone(), cloud.to_string());
        std::thread::spawn(move || {
            let r = p.read(&ReadRequest::tagged(tags)).map(|r| r.resources).map_err(|e| e.to_string());
            let _ = tx.send((cloud, r));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + timeout;
    let mut found: BTreeMap<String, Vec<ResourceInfo>> = BTreeMap::new();
    let mut pending: BTreeSet<&str> = clouds.iter().copied().filter(|c| providers.contains_key(*c)).collect();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((cloud, r)) => {
                pending.remove(cloud.as_str());
                match r {
                    Ok(res) => {
                        found.insert(cloud, res);
                    }
                    Err(e) => {
                        out.unread.insert(cloud, e);
                    }
                }
            }
            Err(_) => break,
        }
    }
    for cloud in pending {
        out.unread.insert(cloud.to_string(), format!("no answer within {} s", timeout.as_secs_f64()));
    }
    for (addr, a, migration) in live {
        let Some(found) = found.get(&a.placement.cloud) else { continue };
        let id = a.provider_id.clone().unwrap_or_default();
        match found.iter().find(|r| r.idempotency_token == a.idempotency_token) {
            // The old run of a migration an apply left after stopping it.
            None if migration.is_some_and(|m| m.step != MigrationStep::Allocate && m.from == a.placement) => {
                let m = migration.expect("checked");
                let to = m.to.as_ref().map(|p| format!(" to {}/{}/{}", p.cloud, p.region, p.zone)).unwrap_or_default();
                out.drift.insert(
                    addr.clone(),
                    format!("{id} is gone: an interrupted apply's migration{to} stopped it (at step `{}`)", m.step),
                );
            }
            None => {
                out.drift.insert(addr.clone(), format!("{id} is gone (terminated outside skyform)"));
            }
            Some(r) if r.state == RunState::Preempted => {
                out.drift.insert(addr.clone(), format!("{id} was interrupted (stopped or shutting down)"));
            }
            Some(_) => {}
        }
    }
    out
}

/// Records what a refresh found in the state, touching no resource (`apply` of a
/// `plan -refresh-only`): each drifted task's live allocations are marked gone, its
/// unfinished run ended, and the task is pending again (the next plan runs it). Returns
/// the tasks changed.
pub fn record(state: &mut State, drift: &BTreeMap<TaskAddr, String>, now: u64) -> Vec<TaskAddr> {
    let mut changed = Vec::new();
    for (addr, what) in drift {
        let Some(t) = state.tasks.get_mut(addr) else { continue };
        if t.status == crate::state::TaskStatus::Succeeded {
            continue;
        }
        for a in t.allocations.iter_mut().filter(|a| a.released.is_none()) {
            a.released = Some(now);
            a.status = format!("changed outside skyform: {what}");
        }
        if let Some(r) = t.runs.last_mut().filter(|r| r.end.is_none()) {
            r.status = crate::state::TaskStatus::Preempted;
            r.end = Some(now);
        }
        t.status = crate::state::TaskStatus::Pending;
        changed.push(addr.clone());
    }
    changed
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
        for r in p.read(&ReadRequest::all()).map(|r| r.resources).unwrap_or_default() {
            if ours(&r) && !live.contains(&r.idempotency_token) {
                if release {
                    let _ = p.release(&ReleaseRequest::new(r.provider_id.clone()));
                }
                found.push((cloud.clone(), r));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Allocation, PlacementRecord, TaskState};
    use std::sync::Arc;

    /// A provider whose `read` answers after `delay` with nothing found.
    struct Slow(Duration);

    impl Provider for Slow {
        fn info(&self) -> ProviderInfo {
            unimplemented!("not called by refresh")
        }
        fn read(&self, _: &ReadRequest) -> Result<ReadResponse, ProviderError> {
            std::thread::sleep(self.0);
            Ok(ReadResponse { resources: vec![] })
        }
        fn allocate(&self, _: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
            unimplemented!()
        }
        fn run_task(&self, _: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
            unimplemented!()
        }
        fn task_status(&self, _: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
            unimplemented!()
        }
        fn transfer(&self, _: &TransferRequest) -> Result<TransferResponse, ProviderError> {
            unimplemented!()
        }
        fn release(&self, _: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
            unimplemented!()
        }
    }

    fn live(cloud: &str) -> TaskState {
        let placement = PlacementRecord {
            cloud: cloud.into(),
            region: "r".into(),
            zone: "z".into(),
            instance_type: "t".into(),
            accelerator: None,
            spot: false,
            hourly: 1.0,
            hours: 1.0,
            cost: 1.0,
        };
        TaskState {
            allocations: vec![Allocation {
                provider: cloud.into(),
                placement: placement.clone(),
                provider_id: Some(format!("{cloud}-1")),
                owner_tags: BTreeMap::new(),
                idempotency_token: format!("tok-{cloud}"),
                created: 1,
                released: None,
                status: "running".into(),
            }],
            placement: Some(placement),
            ..Default::default()
        }
    }

    #[test]
    fn clouds_are_read_in_parallel_and_a_slow_one_times_out() {
        let mut state = State::new();
        state.tasks.insert(TaskAddr("task.a".into()), live("fast"));
        state.tasks.insert(TaskAddr("task.b".into()), live("slow"));
        state.tasks.insert(TaskAddr("task.c".into()), live("slow2"));
        let mut providers: Providers = BTreeMap::new();
        providers.insert("fast".into(), Arc::new(Slow(Duration::ZERO)));
        providers.insert("slow".into(), Arc::new(Slow(Duration::from_secs(5))));
        providers.insert("slow2".into(), Arc::new(Slow(Duration::from_millis(300))));
        let t0 = std::time::Instant::now();
        let r = refresh(&state, &providers, Duration::from_millis(800));
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "the slow cloud's timeout bounds the refresh: {took:?}");
        assert_eq!(r.drift.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["task.a", "task.c"]);
        assert_eq!(r.drift[&TaskAddr("task.a".into())], "fast-1 is gone (terminated outside skyform)");
        assert_eq!(r.unread.keys().map(String::as_str).collect::<Vec<_>>(), ["slow"]);
        assert!(r.unread["slow"].starts_with("no answer within 0.8 s"), "{:?}", r.unread);
    }
}
