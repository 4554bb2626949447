//! Failover by re-solving: when an allocation fails in a way that blocks its location
//! (capacity, quota, unauthorized, a preemption that moves to the next zone or region),
//! [`replan`] hands what is not finished back to the optimizer — finished tasks held where
//! their outputs are, started tasks where they are, the failed scope removed — within
//! `policy.failover.max_cost_increase`, the budget left and the time left to the deadline.
//! The failed task then walks the re-solved placement and its new ranked alternatives;
//! tasks that have not started take their new placements when they start. So a
//! not-yet-started consumer can follow its producer to the new zone when that is cheaper
//! overall than the producer's ranked alternative with the consumer fixed.
//!
//! Bounded: a re-solve that does not finish within `Options::resolve_limit` (or stops
//! before its proof, or fails) is not used, and failover walks the ranked alternatives as
//! planned. Every re-plan (and every fallback) is recorded in the failed task's state and
//! reported as [`Event::Replanned`]. Without a resolved job in the context
//! ([`super::Context::resolved`]) failover only walks the ranked alternatives.

use super::call::Shared;
use super::data::loc;
use super::events::Event;
use super::ApplyError;
use crate::config::TaskAddr;
use crate::optimize::replan::{cost_of, pinned, Pin};
use crate::optimize::Goal;
use crate::plan::Planned;
use crate::state::{Moved, PlacementRecord, Replan, TaskStatus};
use skyform_provider::{ErrorKind, Location, Scope};
use std::collections::BTreeMap;
use std::time::Instant;

fn pin_of(p: &PlacementRecord, done: bool) -> Pin {
    Pin { location: loc(p), instance_type: p.instance_type.clone(), spot: p.spot, done }
}

fn same_place(a: &PlacementRecord, b: &PlacementRecord) -> bool {
    loc(a) == loc(b) && a.instance_type == b.instance_type && a.spot == b.spot
}

/// What failed, for a re-plan.
pub(crate) struct Failure<'a> {
    pub task: &'a TaskAddr,
    /// The placement that failed.
    pub placement: &'a PlacementRecord,
    pub kind: ErrorKind,
    pub scope: Scope,
    pub at: &'a Location,
    /// The failed task's ranked alternatives still ahead of it (for the comparison).
    pub ahead: &'a [PlacementRecord],
    /// The failed task's per-placement cost bound (`policy.failover.max_cost_increase`
    /// over its planned cost): its new alternatives are kept within it.
    pub budget: f64,
}

/// Re-solves after `f`. Returns the failed task's new placements (the re-solved one,
/// then its ranked alternatives), or None when failover should walk the old ones.
pub(crate) async fn replan(sh: &Shared, f: Failure<'_>) -> Result<Option<Vec<PlacementRecord>>, ApplyError> {
    sh.blocks.lock().expect("lock").push((f.scope, f.at.clone()));
    let Some(job) = sh.resolved.clone() else { return Ok(None) };
    let _one_at_a_time = sh.replanning.lock().await;
    let now = sh.now();
    let view = sh.tracker.as_ref().and_then(|t| t.view(now).ok());
    let blocks = sh.blocks.lock().expect("lock").clone();
    let blocked = move |l: &Location| {
        view.as_ref().is_some_and(|v| v.blocked(l).is_some()) || blocks.iter().any(|(s, at)| l.within(*s, at))
    };
    // Who is held where, and where everything is meant to go now.
    let unstarted = sh.unstarted.lock().expect("lock").clone();
    let planned = sh.planned.lock().expect("lock").clone();
    let mut pins: BTreeMap<TaskAddr, Pin> = BTreeMap::new();
    let mut current: BTreeMap<TaskAddr, Pin> = BTreeMap::new();
    let mut spent = 0.0;
    {
        let st = sh.state.lock().await;
        for rt in &job.tasks {
            let a = &rt.address;
            if a == f.task {
                current.insert(a.clone(), pin_of(f.placement, false));
                continue;
            }
            if unstarted.contains(a) {
                if let Some(p) = planned.get(a) {
                    current.insert(a.clone(), pin_of(&p.placement, false));
                }
                continue;
            }
            let t = st.tasks.get(a);
            let done = t.is_some_and(|t| t.status == TaskStatus::Succeeded);
            let at = t.and_then(|t| t.placement.clone()).or_else(|| planned.get(a).map(|p| p.placement.clone()));
            if let Some(p) = at {
                if done {
                    spent += p.cost;
                }
                pins.insert(a.clone(), pin_of(&p, done));
                current.insert(a.clone(), pin_of(&p, done));
            }
        }
    }
    let next = f.ahead.iter().find(|p| !blocked(&loc(p)));
    let sunk = pinned(&job, &pins, &|_| false).ok();
    let before = sunk.as_ref().and_then(|j| cost_of(j, &current));
    // Walking instead: the failed task at its next ranked alternative, and every task not
    // started yet at its plan, or its first alternative outside the blocked locations.
    let alternatives = next.and_then(|n| {
        let mut walk = current.clone();
        walk.insert(f.task.clone(), pin_of(n, false));
        for a in &unstarted {
            let Some(p) = planned.get(a) else { continue };
            if blocked(&loc(&p.placement)) {
                let alt = p.alternatives.iter().find(|x| !blocked(&loc(x)))?;
                walk.insert(a.clone(), pin_of(alt, false));
            }
        }
        cost_of(sunk.as_ref()?, &walk)
    });
    let mut record = Replan {
        at: now,
        task: f.task.clone(),
        kind: f.kind,
        location: f.at.to_string(),
        moved: Vec::new(),
        cost_delta: 0.0,
        alternatives_delta: alternatives.zip(before).map(|(a, b)| a - b),
        solve_ms: 0.0,
        fallback: None,
    };
    // The goal: the job's, with what is spent and the time gone taken off.
    let mut goal = Goal::of(&job);
    goal.budget = goal.budget.map(|b| b - spent);
    let elapsed = sh.started.elapsed().as_secs_f64() / 3600.0;
    goal.deadline_hours = goal.deadline_hours.map(|d| (d - elapsed).max(0.0));
    let limit = sh.opts.resolve_limit;
    let t0 = Instant::now();
    let solved = match pinned(&job, &pins, &blocked) {
        Err(e) => Err(e.to_string()),
        Ok(free) => {
            let h = tokio::task::spawn_blocking(move || crate::optimize::optimize_within(&free, goal, limit));
            match tokio::time::timeout(limit + limit / 2, h).await {
                Err(_) => Err(format!("the re-solve took longer than {} s", limit.as_secs_f64())),
                Ok(Err(e)) => Err(format!("the re-solve failed: {e}")),
                Ok(Ok(Err(e))) => Err(e.to_string().lines().next().unwrap_or_default().to_string()),
                Ok(Ok(Ok(a))) if !a.report.stopped.is_empty() => {
                    Err(format!("the re-solve took longer than {} s", limit.as_secs_f64()))
                }
                Ok(Ok(Ok(a))) => Ok(a),
            }
        }
    };
    record.solve_ms = t0.elapsed().as_secs_f64() * 1e3;
    let solved = solved.and_then(|a| {
        if t0.elapsed() > limit {
            Err(format!("the re-solve took longer than {} s", limit.as_secs_f64()))
        } else {
            Ok(a)
        }
    });
    // The whole placement as re-solved, priced like the others.
    let solved = solved.map(|a| {
        let mut after = current.clone();
        for p in &a.placements {
            if !pins.contains_key(&p.address) {
                after.insert(
                    p.address.clone(),
                    Pin::new(p.choice.location.clone(), &p.choice.instance_type, p.choice.spot),
                );
            }
        }
        let cost = sunk.as_ref().and_then(|j| cost_of(j, &after));
        (a, cost)
    });
    let max_increase = sh.spec.policy.failover.max_cost_increase;
    let solved = solved.and_then(|(a, after)| match (before, after) {
        (Some(b), Some(x)) if x > b * (1.0 + max_increase) + 1e-9 => Err(format!(
            "it costs {} more than planned, over policy.failover.max_cost_increase ({:.0}%)",
            crate::plan::money(x - b),
            max_increase * 100.0
        )),
        _ => Ok((a, after)),
    });
    let (a, after) = match solved {
        Ok(x) => x,
        Err(why) => {
            record.fallback = Some(why);
            commit(sh, &record, &[]).await?;
            return Ok(None);
        }
    };
    record.cost_delta = before.zip(after).map(|(b, x)| x - b).unwrap_or(0.0);
    // The new placements of the free tasks.
    let mut mine: Vec<PlacementRecord> = Vec::new();
    let mut moved_unstarted: Vec<(TaskAddr, PlacementRecord)> = Vec::new();
    {
        let mut planned = sh.planned.lock().expect("lock");
        for p in &a.placements {
            let addr = &p.address;
            if addr != f.task && !unstarted.contains(addr) {
                continue;
            }
            let new: Planned = crate::plan::planned(p);
            let was =
                if addr == f.task { Some(f.placement.clone()) } else { planned.get(addr).map(|x| x.placement.clone()) };
            let moved = was.as_ref().is_none_or(|w| !same_place(w, &new.placement));
            if moved {
                let from = was.as_ref().map(|w| format!("{} ({})", loc(w), w.instance_type)).unwrap_or_default();
                let to = format!("{} ({})", loc(&new.placement), new.placement.instance_type);
                let m = Moved { task: addr.clone(), from, to };
                if addr == f.task {
                    record.moved.insert(0, m);
                } else {
                    record.moved.push(m);
                    moved_unstarted.push((addr.clone(), new.placement.clone()));
                }
            }
            if addr == f.task {
                mine.push(new.placement.clone());
                mine.extend(new.alternatives.iter().filter(|x| x.cost <= f.budget && !blocked(&loc(x))).cloned());
            } else {
                planned.insert(addr.clone(), new);
            }
        }
    }
    commit(sh, &record, &moved_unstarted).await?;
    Ok(Some(mine))
}

/// Records the re-plan in the failed task's state (and the new placements of the tasks
/// that have not started) and reports it.
async fn commit(sh: &Shared, r: &Replan, moved: &[(TaskAddr, PlacementRecord)]) -> Result<(), ApplyError> {
    let mut keys: Vec<TaskAddr> = vec![r.task.clone()];
    keys.extend(moved.iter().map(|m| m.0.clone()));
    sh.commit_keys(&keys, false, |s| {
        s.tasks.entry(r.task.clone()).or_default().replans.push(r.clone());
        for (a, p) in moved {
            s.tasks.entry(a.clone()).or_default().placement = Some(p.clone());
        }
    })
    .await?;
    sh.event(Event::Replanned(r.clone()));
    Ok(())
}
