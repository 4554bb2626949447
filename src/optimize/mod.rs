//! `optimize`: ResolvedJob × objective → [`Assignment`], exact. Pure (no I/O); the
//! only clock is the time limit.
//!
//! Cost = compute + egress on every data edge (from the producer's location to the
//! consumer's) + reading storage inputs and writing pinned outputs. Time = the makespan
//! (critical path of runtimes, staging and transfer times). `policy.deadline` bounds the
//! makespan and `policy.budget` the cost; with an objective and the other bound, the
//! constrained problem is solved. The time objective is lexicographic: the optimal
//! makespan, then the cheapest placement at it.
//!
//! How, exactly and fast (files: `model` prunes, `reduce` and `dual` shrink, `ilp` and
//! `chain` solve):
//! 1. **Pruning per task** (`model`). Dominance: egress between two locations depends
//!    only on their lowest common level (zone, region, continent within a cloud, cloud,
//!    other cloud) and the source cloud, so a candidate that costs more than its group's
//!    best by the sum of the incident edges' price steps (and, when time matters, is
//!    slower by one in-edge plus one out-edge step) is never needed. Deadline cut:
//!    candidates that miss the deadline with every other task at its fastest go.
//! 2. **Components.** Tasks not linked by a data edge (cost) or any edge (time) are
//!    independent: each weakly connected component is solved alone (the makespan is the
//!    components' maximum, the cost their sum). A sweep of 10,000 tasks is 10,000
//!    one-task problems. Location symmetry then runs per component: a zone (region,
//!    continent, cloud) whose every task can move to one zone of a sibling group at no
//!    higher cost and time (and, across clouds, no dearer internet egress) is dropped —
//!    moving all of a solution's tasks there never makes anything worse.
//! 3. **Exact reductions** (`reduce`), to a fixpoint: singleton folding, leaf elimination
//!    (the forest DP: `min_k unary(k) + edge(k, j)` folded into the neighbour),
//!    dead-end elimination (candidate `c` goes when another `c'` is never worse whatever
//!    the neighbours' live candidates, Goldstein's criterion), and, when it solves the
//!    whole component, series elimination (a degree-2 task becomes a table on its
//!    neighbours; fan-out/fan-in and every series-parallel graph reduce to nothing).
//! 4. **Bounds by message passing** (`dual`): the residual is reparametrized by
//!    sequential star updates, which never lower `LB = Σ min θ̂_t + Σ min θ̂_e`; a
//!    solution read off the messages and improved by best responses gives `UB`. When
//!    `LB = UB` the solution is proven optimal (the usual case: the relaxation is tight
//!    on these hierarchical egress prices); otherwise every candidate whose forced bound
//!    exceeds `UB` is dropped (reduced-cost fixing) and the reductions run again.
//! 5. **ILP** (`ilp`, good_lp + microlp) on whatever is left: binaries per (task,
//!    candidate), per edge "same group" indicators `u_g ≤ Y_a,g`, `u_g ≤ Y_b,g` at the
//!    zone, region, continent and cloud levels (egress is linear in them with
//!    non-positive coefficients, so the solver raises each `u` to `min(Y_a, Y_b)`: exact
//!    for integral placements), finish-time variables for the time network.
//!
//! With a deadline, only *timed* tasks need time constraints: those on a path that could
//! exceed it when every choice is at its slowest; paths through the others meet it
//! whatever is chosen (leaf elimination applies to them; dead-end elimination on a timed
//! task also asks for a candidate no slower on every time edge). The relaxation without
//! the deadline is solved first (steps 3–5); when its optimum meets the deadline, it is
//! the answer. Otherwise a feasible placement (the timed tasks as in the fastest
//! placement, the others cheapest around them; then best responses that keep the
//! deadline and, on large residuals, an ILP over a few candidates per task) is the `UB`
//! of reduced-cost fixing against the relaxation's bound, and the ILP with the time
//! network finishes from it. This is where large jobs can still be slow: a 1,000-task
//! DAG's cost tie-break at its optimal makespan leaves an ILP of ~60,000 variables, and
//! the time limit returns the best placement with the relaxation's bound.
//!
//! The time objective: each component's optimal makespan (an ILP minimizing the finish
//! of its timed network; a chain by the lexicographic (time, cost) DP), then the
//! cheapest placement within the largest of them (the deadline problem above, started
//! from the fastest placement, which is kept among the candidates). With a budget, one
//! ILP minimizes the makespan within it (the budget couples the components), then the
//! same cost pass.
//!
//! Every step keeps an optimal solution, so the result is the proven optimum. A search
//! the time limit ([`DEFAULT_TIME_LIMIT`], or [`optimize_within`]) stops returns its
//! incumbent and says so in [`Report::stopped`] with the proven lower bound — never
//! silently. Deterministic: ties go to the candidates' stable order.

mod chain;
mod dual;
mod ilp;
mod model;
mod reduce;
pub mod replan;
mod solve;

use crate::catalog::egress::Level;
use crate::config::{Objective, TaskAddr};
use crate::resolve::{Candidate, ResolvedJob};
use model::Model;
use serde::Serialize;
use solve::{solve, Solved};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const EPS: f64 = 1e-9;

/// How long the solver may search before it stops with its best placement and the
/// proven gap (reported in [`Report::stopped`]).
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(60);

/// Why no assignment exists.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum OptimizeError {
    #[error("{0}")]
    Infeasible(String),
    #[error("the solver failed: {0}")]
    Solver(String),
}

/// Data moved along one edge of the chosen placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transfer {
    pub from: TaskAddr,
    pub to: TaskAddr,
    pub output: Option<String>,
    pub size_gb: f64,
    pub level: Level,
    pub cost: f64,
    pub hours: f64,
}

/// A ranked alternative for failover and display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fallback {
    pub candidate: Candidate,
    /// Its cost (compute + storage + incident egress, neighbours fixed).
    pub cost: f64,
    /// Its cost minus the chosen one's.
    pub delta: f64,
}

/// The chosen placement of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub address: TaskAddr,
    pub num_nodes: u32,
    pub choice: Candidate,
    pub egress_in: Vec<Transfer>,
    pub egress_out: Vec<Transfer>,
    /// compute + storage + egress out (each edge's egress is billed to its producer).
    pub total_cost: f64,
    pub start_hours: f64,
    pub finish_hours: f64,
    /// Best alternatives in other locations, cheapest first.
    pub fallbacks: Vec<Fallback>,
    /// Candidates after resolve's pruning, and after the optimizer's dominance pruning.
    pub candidates: usize,
    pub working_candidates: usize,
}

/// Why the plan is what it is.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Report {
    pub objective: Objective,
    pub method: String,
    pub variables: usize,
    pub constraints: usize,
    /// Wall time of the solve. Not part of a saved plan (two plans of the same inputs are
    /// byte-identical); the CLI prints it from the assignment.
    #[serde(skip)]
    pub solve_ms: f64,
    /// Constraints at their bound (e.g. "deadline").
    pub binding: Vec<String>,
    pub deadline_hours: Option<f64>,
    pub budget: Option<f64>,
    /// Searches the time limit stopped before their proof: the placement returned is the
    /// best found, within the gap given here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<Stopped>,
}

/// A search stopped before its proof: the optimum lies in `[bound, value]`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Stopped {
    /// Why: `the time limit (60 s)`, or the solver's failure.
    pub reason: String,
    /// `cost`, `makespan`, or `cost at the optimal makespan`.
    pub objective: String,
    /// The returned placement's value.
    pub value: f64,
    /// The proven lower bound on the optimum.
    pub bound: f64,
}

/// The optimizer's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assignment {
    /// In the resolved (topological) order.
    pub placements: Vec<Placement>,
    pub compute_cost: f64,
    pub egress_cost: f64,
    pub total_cost: f64,
    pub makespan_hours: f64,
    pub report: Report,
}

impl Assignment {
    pub fn get(&self, a: &TaskAddr) -> Option<&Placement> {
        self.placements.iter().find(|p| &p.address == a)
    }
}

/// What to solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    pub objective: Objective,
    pub deadline_hours: Option<f64>,
    pub budget: Option<f64>,
}

impl Goal {
    pub fn of(job: &ResolvedJob) -> Goal {
        Goal { objective: job.policy.minimize, deadline_hours: job.policy.deadline_hours, budget: job.policy.budget }
    }
    fn time_matters(&self) -> bool {
        self.objective == Objective::Time || self.deadline_hours.is_some()
    }
    fn cost_matters(&self) -> bool {
        self.objective == Objective::Cost || self.budget.is_some()
    }
}

/// Optimizes with the job's own policy.
pub fn optimize(job: &ResolvedJob) -> Result<Assignment, OptimizeError> {
    optimize_for(job, Goal::of(job))
}

/// Optimizes for an explicit goal, within [`DEFAULT_TIME_LIMIT`].
pub fn optimize_for(job: &ResolvedJob, goal: Goal) -> Result<Assignment, OptimizeError> {
    optimize_within(job, goal, DEFAULT_TIME_LIMIT)
}

/// Optimizes for an explicit goal. When `limit` stops a search before its proof, the
/// best placement found is returned and [`Report::stopped`] says how far from the
/// optimum it can be.
pub fn optimize_within(job: &ResolvedJob, goal: Goal, limit: Duration) -> Result<Assignment, OptimizeError> {
    let t0 = Instant::now();
    let solved = match solve(job, goal, t0 + limit) {
        Ok(x) => x,
        Err(OptimizeError::Infeasible(_)) => return Err(explain_infeasible(job, goal)),
        Err(e) => return Err(e),
    };
    let m = Model::bare(job);
    let choice = &solved.choice;
    // A bound on the objective's own quantity holds iff the optimum meets it.
    let over_budget = goal.objective == Objective::Cost && goal.budget.is_some_and(|b| m.total_cost(choice) > b + 1e-9);
    let over_deadline =
        goal.objective == Objective::Time && goal.deadline_hours.is_some_and(|d| m.makespan(choice) > d + 1e-9);
    let mut stopped = Vec::new();
    let limit_s = limit.as_secs_f64();
    let reason = solved.failure.clone().unwrap_or_else(|| format!("the time limit ({limit_s} s)"));
    if let Some((value, bound)) = solved.span_gap {
        stopped.push(Stopped { reason: reason.clone(), objective: "makespan".into(), value, bound });
    }
    if let Some((objective, gap)) = &solved.cost_gap {
        let value = m.total_cost(choice);
        stopped.push(Stopped { reason: reason.clone(), objective: objective.clone(), value, bound: value - gap });
    }
    if over_budget || over_deadline {
        if let Some(s) = stopped.first() {
            return Err(OptimizeError::Infeasible(format!(
                "no placement within the policy was found before {}: the best found has a {} of {:.2}; the optimum is at least {:.2}",
                s.reason, s.objective, s.value, s.bound
            )));
        }
        return Err(explain_infeasible(job, goal));
    }
    let solve_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(assemble(job, &m, goal, solved, stopped, solve_ms))
}

// ------------------------------------------------------------------ the result

fn assemble(
    job: &ResolvedJob,
    m: &Model,
    goal: Goal,
    solved: Solved,
    stopped: Vec<Stopped>,
    solve_ms: f64,
) -> Assignment {
    let choice = &solved.choice;
    let times = m.schedule(choice);
    let mut placements: Vec<Placement> = Vec::with_capacity(job.tasks.len());
    let mut egress_in: Vec<Vec<Transfer>> = vec![vec![]; job.tasks.len()];
    let mut egress_out: Vec<Vec<Transfer>> = vec![vec![]; job.tasks.len()];
    for e in &job.edges {
        let lvl = m.level(e.from, choice[e.from], e.to, choice[e.to]);
        let src = &m.cand(e.from, choice[e.from]).location.cloud;
        let tr = Transfer {
            from: job.tasks[e.from].address.clone(),
            to: job.tasks[e.to].address.clone(),
            output: e.output.clone(),
            size_gb: e.size_gb,
            level: lvl,
            cost: job.egress.level_cost(src, lvl, e.size_gb),
            hours: job.egress.level_seconds(lvl, e.size_gb) / 3600.0,
        };
        egress_in[e.to].push(tr.clone());
        egress_out[e.from].push(tr);
    }
    let working = Model::new(job, goal);
    let mut compute = 0.0;
    let mut egress_total = 0.0;
    for (t, rt) in job.tasks.iter().enumerate() {
        let c = m.cand(t, choice[t]).clone();
        let out_cost: f64 = egress_out[t].iter().map(|x| x.cost).sum();
        compute += c.compute_cost;
        egress_total += c.storage_cost + out_cost;
        placements.push(Placement {
            address: rt.address.clone(),
            num_nodes: rt.num_nodes,
            total_cost: c.fixed_cost() + out_cost,
            choice: c,
            egress_in: std::mem::take(&mut egress_in[t]),
            egress_out: std::mem::take(&mut egress_out[t]),
            start_hours: times[t].0,
            finish_hours: times[t].1,
            fallbacks: fallbacks(m, choice, t, 8),
            candidates: rt.candidates.len(),
            working_candidates: working.work[t].len(),
        });
    }
    let total = m.total_cost(choice);
    let ms = times.iter().map(|x| x.1).fold(0.0, f64::max);
    let mut binding = Vec::new();
    if let Some(d) = goal.deadline_hours {
        if (d - ms).abs() <= 1e-6 * d.max(1.0) {
            binding.push(format!("deadline ({d} h)"));
        }
    }
    if let Some(b) = goal.budget {
        if (b - total).abs() <= 1e-6 * b.max(1.0) {
            binding.push(format!("budget (${b:.2})"));
        }
    }
    Assignment {
        placements,
        compute_cost: compute,
        egress_cost: egress_total,
        total_cost: total,
        makespan_hours: ms,
        report: Report {
            objective: goal.objective,
            method: solved.method(),
            variables: solved.vars,
            constraints: solved.cons,
            solve_ms,
            binding,
            deadline_hours: goal.deadline_hours,
            budget: goal.budget,
            stopped,
        },
    }
}

/// The best alternatives of task `t` in other locations with its neighbours fixed: one
/// per location, cheapest first.
fn fallbacks(m: &Model, choice: &[usize], t: usize, k: usize) -> Vec<Fallback> {
    let local_cost = |c: usize| -> f64 {
        let own = m.cand(t, c).fixed_cost();
        let eg_in: f64 = m.ins[t].iter().map(|&e| m.edge_cost(e, choice[m.edges[e].a], c)).sum();
        let eg_out: f64 = m.outs[t].iter().map(|&e| m.edge_cost(e, c, choice[m.edges[e].b])).sum();
        own + eg_in + eg_out
    };
    let chosen = local_cost(choice[t]);
    let here = &m.cand(t, choice[t]).location;
    let mut best: BTreeMap<&skyform_provider::Location, (f64, usize)> = BTreeMap::new();
    for c in 0..m.job.tasks[t].candidates.len() {
        let loc = &m.cand(t, c).location;
        if loc == here {
            continue;
        }
        let v = local_cost(c);
        let e = best.entry(loc).or_insert((v, c));
        if v < e.0 - EPS {
            *e = (v, c);
        }
    }
    let mut v: Vec<(f64, usize)> = best.into_values().collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v.into_iter()
        .take(k)
        .map(|(cost, c)| Fallback { candidate: m.cand(t, c).clone(), cost, delta: cost - chosen })
        .collect()
}

fn explain_infeasible(job: &ResolvedJob, goal: Goal) -> OptimizeError {
    let fastest = optimize_for(job, Goal { objective: Objective::Time, deadline_hours: None, budget: None }).ok();
    let cheapest = optimize_for(job, Goal { objective: Objective::Cost, deadline_hours: None, budget: None }).ok();
    let mut reasons = Vec::new();
    if let (Some(d), Some(f)) = (goal.deadline_hours, &fastest) {
        if f.makespan_hours > d + 1e-9 {
            reasons.push(format!(
                "policy.deadline ({d} h) cannot be met: the fastest placement takes {:.2} h ({:.2} h over)",
                f.makespan_hours,
                f.makespan_hours - d
            ));
        }
    }
    if let (Some(b), Some(c)) = (goal.budget, &cheapest) {
        if c.total_cost > b + 1e-9 {
            reasons.push(format!(
                "policy.budget (${b:.2}) cannot be met: the cheapest placement costs ${:.2} (${:.2} over)",
                c.total_cost,
                c.total_cost - b
            ));
        }
    }
    if reasons.is_empty() {
        if let (Some(d), Some(b)) = (goal.deadline_hours, goal.budget) {
            let within =
                optimize_for(job, Goal { objective: Objective::Cost, deadline_hours: Some(d), budget: None }).ok();
            let detail = within
                .map(|w| {
                    format!(
                        "; within the deadline the cheapest placement costs ${:.2} (${:.2} over budget)",
                        w.total_cost,
                        w.total_cost - b
                    )
                })
                .unwrap_or_default();
            reasons.push(format!("policy.deadline ({d} h) and policy.budget (${b:.2}) cannot both be met{detail}"));
        } else {
            reasons.push("no placement satisfies the policy".into());
        }
    }
    OptimizeError::Infeasible(reasons.join("\n"))
}

#[cfg(test)]
mod tests;
