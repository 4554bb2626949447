//! Re-solving part of a job: the problem that failover and re-optimization hand to the
//! same optimizer. Pure.
//!
//! [`pinned`] turns a resolved job into one where some tasks are held where they are
//! ([`Pin`]: a finished task where its outputs are, its compute spent; a running task
//! where it runs) and the other tasks lose every candidate in a blocked location. The
//! optimizer then places the free tasks around the pinned ones, so a not-yet-started
//! neighbour of a failed task can move with it when that is cheaper overall.
//! [`cost_of`] prices a given placement of every task in such a job (what the current
//! plan, or walking one task's ranked alternatives, would cost), so a re-solve can be
//! compared with them on the same figures.

use super::model::Model;
use super::OptimizeError;
use crate::config::TaskAddr;
use crate::resolve::{Candidate, ResolvedJob};
use skyform_provider::Location;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a task is (or would be) placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub location: Location,
    pub instance_type: String,
    pub spot: bool,
    /// Finished: its compute is spent and it takes no more time (only the egress of its
    /// outputs from `location` is still to pay).
    pub done: bool,
}

impl Pin {
    pub fn new(location: Location, instance_type: impl Into<String>, spot: bool) -> Pin {
        Pin { location, instance_type: instance_type.into(), spot, done: false }
    }

    fn matches(&self, c: &Candidate) -> bool {
        c.location == self.location && c.instance_type == self.instance_type && c.spot == self.spot
    }
}

/// The candidate of task `t` that `pin` names: the exact one, else one in the same
/// location, else the task's first candidate moved there (resolve may have pruned the
/// exact one; egress depends on the location alone).
fn pinned_candidate(job: &ResolvedJob, t: usize, pin: &Pin) -> Option<Candidate> {
    let cands = &job.tasks[t].candidates;
    let mut c = cands
        .iter()
        .find(|c| pin.matches(c))
        .or_else(|| cands.iter().find(|c| c.location == pin.location))
        .or_else(|| cands.first())?
        .clone();
    c.location = pin.location.clone();
    c.instance_type = pin.instance_type.clone();
    c.spot = pin.spot;
    if pin.done {
        c.compute_cost = 0.0;
        c.storage_cost = 0.0;
        c.hours = 0.0;
        c.staging_hours = 0.0;
    }
    Some(c)
}

/// The job with `pins` held (one candidate each) and every other task's candidates in a
/// location for which `blocked` is true removed; pinned tasks that share no edge with a
/// free task are left out (price a full placement with [`cost_of`] on a job pinned
/// without them). Fails when a free task has no candidate left.
pub fn pinned(
    job: &ResolvedJob,
    pins: &BTreeMap<TaskAddr, Pin>,
    blocked: &dyn Fn(&Location) -> bool,
) -> Result<ResolvedJob, OptimizeError> {
    let mut out = job.clone();
    for (t, task) in out.tasks.iter_mut().enumerate() {
        let cands: Vec<Candidate> = match pins.get(&task.address) {
            Some(pin) => pinned_candidate(job, t, pin).into_iter().collect(),
            None => task.candidates.iter().filter(|c| !blocked(&c.location)).cloned().collect(),
        };
        if cands.is_empty() {
            return Err(OptimizeError::Infeasible(format!("{}: every candidate location is blocked", task.address)));
        }
        task.candidates = Arc::from(cands);
    }
    Ok(frontier(out, pins))
}

/// Drops the pinned tasks that share no edge with a free task (their cost is a constant
/// of every placement of the free ones), so a re-solve late in a large job only sees the
/// part still in play. Indices are renumbered; the topological order is kept.
fn frontier(job: ResolvedJob, pins: &BTreeMap<TaskAddr, Pin>) -> ResolvedJob {
    let free: Vec<bool> = job.tasks.iter().map(|t| !pins.contains_key(&t.address)).collect();
    let mut keep = free.clone();
    for e in &job.edges {
        if free[e.from] || free[e.to] {
            keep[e.from] = true;
            keep[e.to] = true;
        }
    }
    if keep.iter().all(|&k| k) {
        return job;
    }
    let mut new_id = vec![usize::MAX; job.tasks.len()];
    let mut tasks = Vec::new();
    for (i, t) in job.tasks.into_iter().enumerate() {
        if keep[i] {
            new_id[i] = tasks.len();
            tasks.push(t);
        }
    }
    let edges = job
        .edges
        .into_iter()
        .filter(|e| keep[e.from] && keep[e.to])
        .map(|mut e| {
            e.from = new_id[e.from];
            e.to = new_id[e.to];
            e
        })
        .collect();
    let index = tasks.iter().enumerate().map(|(i, t)| (t.address.clone(), i)).collect();
    ResolvedJob { tasks, index, edges, ..job }
}

/// The cost (compute + storage + egress) of placing every task as `at` says, in `job`
/// (candidates matched as [`pinned`] matches them). `None` when a task has no placement
/// in `at`.
pub fn cost_of(job: &ResolvedJob, at: &BTreeMap<TaskAddr, Pin>) -> Option<f64> {
    if job.tasks.is_empty() {
        return Some(0.0);
    }
    let mut one = job.clone();
    for (t, task) in one.tasks.iter_mut().enumerate() {
        let c = pinned_candidate(job, t, at.get(&task.address)?)?;
        task.candidates = Arc::from(vec![c]);
    }
    let choice = vec![0; one.tasks.len()];
    Some(Model::bare(&one).total_cost(&choice))
}
