//! Settling what an earlier apply left behind, and releasing allocations.
//!
//! Before work starts, every intent (allocation written to state before its provider
//! call) that is not released is looked up by its idempotency token: a run that finished
//! (its `task_status`, when `read` only says the machine runs) is adopted — its outputs
//! collected and the task recorded as succeeded — a run still running is resumed (the
//! task's turn in the DAG follows it to its end), a run preempted meanwhile counts as a
//! preemption seen live (tracker, and a block per the task's `recovery`), anything else is
//! released. Resources carrying this state's lineage that the state does not know (a crash
//! between the provider call and the commit of its id) are released too. So nothing is
//! left that skyform cannot find, and a finished task does not run again.

use super::call::Shared;
use super::events::{Event, Recovery};
use super::ApplyError;
use crate::config::TaskAddr;
use crate::state::{Allocation, MigrationStep, PlacementRecord, TaskStatus};
use skyform_provider::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The status of an allocation whose run recovery found still running.
pub(crate) const RESUMED: &str = "resumed";

fn lineage_tags(lineage: &str) -> BTreeMap<String, String> {
    [("skyform:lineage".to_string(), lineage.to_string())].into()
}

impl Shared {
    /// Releases every unreleased allocation of a task (and records it).
    pub async fn release_all(&self, addr: &TaskAddr) -> Result<(), ApplyError> {
        let allocs: Vec<(usize, Allocation)> = {
            let st = self.state.lock().await;
            st.tasks
                .get(addr)
                .map(|t| t.allocations.iter().cloned().enumerate().filter(|(_, a)| a.released.is_none()).collect())
                .unwrap_or_default()
        };
        for (i, a) in allocs {
            if let Some(id) = a.provider_id.clone() {
                let r = self.call(&a.placement.cloud, move |p| p.release(&ReleaseRequest::new(id.clone()))).await;
                if let Err(e) = r {
                    if e.kind != ErrorKind::Unsupported {
                        self.event(Event::Interrupted { message: format!("{addr}: release failed: {e}") });
                        continue;
                    }
                }
            }
            let now = self.now();
            self.commit(addr, |s| {
                if let Some(x) = s.tasks.get_mut(addr).and_then(|t| t.allocations.get_mut(i)) {
                    x.released = Some(now);
                    x.status = "released".into();
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Records a preemption that recovery found (the run was reclaimed while no apply
    /// watched it) as a watched one is recorded: the preemption in the tracker and, per the
    /// task's `recovery`, its zone or region blocked (in the tracker and for this apply), so
    /// the run starts again elsewhere.
    fn preempted_unwatched(&self, addr: &TaskAddr, at: &PlacementRecord, now: u64) {
        let here = super::data::loc(at);
        let recovery = self.spec.tasks.get(addr).map(|t| t.recovery).unwrap_or_default();
        let scope = super::task::blocked_by(recovery);
        if let Some(t) = &self.tracker {
            let _ = t.record_preemption(&here, &at.instance_type, now);
            if let Some(scope) = scope {
                let _ = t.record_failure(&here, scope, ErrorKind::Preempted, "preempted while no apply watched", now);
            }
        }
        if let Some(scope) = scope {
            self.blocks.lock().expect("lock").push((scope, here.clone()));
        }
        self.event(Event::Preempted {
            task: addr.clone(),
            location: here.to_string(),
            recovery: format!("{recovery:?}"),
        });
    }

    /// Settles intents left by an earlier apply that did not finish (see the module doc).
    pub async fn recover(self: &Arc<Self>) -> Result<(), ApplyError> {
        let st = self.state.lock().await.clone();
        let lineage = st.lineage.clone();
        for (addr, t) in &st.tasks {
            for (i, a) in t.allocations.iter().enumerate() {
                if a.released.is_some() {
                    continue;
                }
                // Find it by token (the intent was written before the call).
                let token = a.idempotency_token.clone();
                let tags = lineage_tags(&lineage);
                let read = self.call(&a.placement.cloud, move |p| p.read(&ReadRequest::tagged(tags.clone()))).await;
                let read_ok = read.is_ok();
                let found = read.ok().and_then(|r| r.resources.into_iter().find(|x| x.idempotency_token == token));
                // A cloud's read sees the machine, which runs on after its task ended: ask
                // the run itself whether it finished.
                let found = match found {
                    Some(mut res) if res.state == RunState::Running => {
                        let id = res.provider_id.clone();
                        let run = self
                            .call(&a.placement.cloud, move |p| p.task_status(&TaskStatusRequest::new(id.clone())))
                            .await;
                        if let Ok(s) = run {
                            res.state = s.state;
                        }
                        Some(res)
                    }
                    other => other,
                };
                // Still running (the engine died, the run did not): followed when the task's
                // turn comes.
                if let Some(res) = found.as_ref().filter(|r| {
                    r.state == RunState::Running && t.status == TaskStatus::Running && a.provider_id.is_some()
                }) {
                    self.commit(addr, |s| {
                        if let Some(x) = s.tasks.get_mut(addr).and_then(|tt| tt.allocations.get_mut(i)) {
                            x.status = RESUMED.into();
                        }
                    })
                    .await?;
                    self.event(Event::Recovered {
                        task: addr.clone(),
                        provider_id: res.provider_id.clone(),
                        action: Recovery::Resumed,
                    });
                    continue;
                }
                let objects = match &found {
                    Some(res) if res.state == RunState::Succeeded && t.status != TaskStatus::Succeeded => {
                        self.gather_outputs(addr, &res.provider_id, &a.placement).await.ok()
                    }
                    _ => None,
                };
                let adopted = objects.is_some();
                let cost = a.placement.hourly * a.placement.hours;
                let now = self.now();
                // A run reclaimed while no apply watched it (interrupted, or gone from a
                // cloud that answered) counts as a preemption seen live — not the old run
                // an interrupted migration stopped itself.
                let stopped_by_migration =
                    t.migration.as_ref().is_some_and(|m| m.step != MigrationStep::Allocate && m.from == a.placement);
                let reclaimed = match &found {
                    Some(r) => r.state == RunState::Preempted,
                    None => read_ok,
                };
                let preempted =
                    reclaimed && t.status == TaskStatus::Running && a.provider_id.is_some() && !stopped_by_migration;
                if preempted {
                    self.preempted_unwatched(addr, &a.placement, now);
                }
                // Adopted: succeeded with its outputs, committed before the release.
                if let Some(objects) = objects {
                    self.commit(addr, |s| {
                        if let Some(tt) = s.tasks.get_mut(addr) {
                            tt.data = objects;
                            tt.status = TaskStatus::Succeeded;
                            tt.tainted = false;
                            if let Some(r) = tt.runs.last_mut() {
                                r.status = TaskStatus::Succeeded;
                                r.exit_code = Some(0);
                                r.end = Some(now);
                                r.cost = cost;
                            }
                        }
                    })
                    .await?;
                }
                if let Some(res) = &found {
                    let id = res.provider_id.clone();
                    let _ = self.call(&a.placement.cloud, move |p| p.release(&ReleaseRequest::new(id.clone()))).await;
                }
                self.commit(addr, |s| {
                    if let Some(tt) = s.tasks.get_mut(addr) {
                        if let Some(x) = tt.allocations.get_mut(i) {
                            x.released = Some(now);
                            x.status = if adopted { "adopted".into() } else { "released".into() };
                        }
                        // Not running any more, unless another run of it goes on (the old
                        // run of an interrupted migration).
                        let goes_on = tt.allocations.iter().any(|x| x.released.is_none() && x.status == RESUMED);
                        if !adopted && tt.status == TaskStatus::Running && !goes_on {
                            tt.status = TaskStatus::Pending;
                        }
                        // The run the allocation carried ended while no apply watched.
                        let ended = match &found {
                            _ if preempted => Some((TaskStatus::Preempted, None)),
                            Some(r) => match r.state {
                                RunState::Failed { exit_code } => Some((TaskStatus::Failed, exit_code)),
                                _ => None,
                            },
                            None => None,
                        };
                        let last_run = tt.runs.last_mut().filter(|r| r.end.is_none() && !adopted);
                        if let (Some(r), Some((status, code))) = (last_run, ended) {
                            r.status = status;
                            r.exit_code = code;
                            r.end = Some(now);
                        }
                    }
                })
                .await?;
                if let Some(res) = found {
                    let action = if adopted { Recovery::Adopted } else { Recovery::Released };
                    self.event(Event::Recovered { task: addr.clone(), provider_id: res.provider_id, action });
                }
            }
        }
        // A migration the interrupted apply left: its allocations were settled above (the
        // new one released unless its run had started; the old run followed if it still
        // goes on); the checkpoint is where the state says it was last synced.
        for (addr, t) in &st.tasks {
            let Some(m) = &t.migration else { continue };
            let mut goes_on = None;
            self.commit(addr, |s| {
                if let Some(tt) = s.tasks.get_mut(addr) {
                    tt.migration = None;
                    goes_on = tt.allocations.iter().find(|x| x.released.is_none() && x.status == RESUMED).cloned();
                    if let Some(a) = &goes_on {
                        tt.placement = Some(a.placement.clone());
                    }
                }
            })
            .await?;
            let left = match goes_on {
                Some(a) => {
                    format!("the run goes on in {}/{}/{}", a.placement.cloud, a.placement.region, a.placement.zone)
                }
                None => "the old run was stopped: the task runs again from its checkpoint".into(),
            };
            self.event(Event::MigrationAbandoned {
                task: addr.clone(),
                reason: format!("an interrupted apply left it at step `{}`; {left}", m.step),
            });
        }
        // Orphans: tagged with our lineage, unknown to the state.
        let known: BTreeSet<String> =
            st.tasks.values().flat_map(|t| t.allocations.iter().map(|a| a.idempotency_token.clone())).collect();
        for cloud in self.providers.keys() {
            let tags = lineage_tags(&lineage);
            let found = self.call(cloud, move |p| p.read(&ReadRequest::tagged(tags.clone()))).await;
            for r in found.map(|r| r.resources).unwrap_or_default() {
                if !known.contains(&r.idempotency_token) {
                    let id = r.provider_id.clone();
                    let _ = self.call(cloud, move |p| p.release(&ReleaseRequest::new(id.clone()))).await;
                    self.event(Event::Recovered {
                        task: TaskAddr(r.owner_tags.get("skyform:task").cloned().unwrap_or_default()),
                        provider_id: r.provider_id,
                        action: Recovery::Released,
                    });
                }
            }
        }
        Ok(())
    }
}
