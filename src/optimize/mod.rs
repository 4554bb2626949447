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

use crate::catalog::egress::Level;
use crate::config::{Objective, TaskAddr};
use crate::resolve::{Candidate, ResolvedJob};
use ilp::Target;
use model::Model;
use reduce::Problem;
use serde::Serialize;
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

// ------------------------------------------------------------------ solving

/// A full choice (candidate index per task) and how it was found.
struct Solved {
    choice: Vec<usize>,
    /// Tasks decided by the exact reductions (no ILP).
    reduced: usize,
    /// ILPs solved, with their variables and constraints.
    ilps: usize,
    vars: usize,
    cons: usize,
    /// "dp" (a chain's lexicographic DP) or "" when not used.
    chain_dp: bool,
    lexicographic: bool,
    /// Set when the time limit stopped an ILP: the objective it was about and the sum of
    /// the stopped components' gaps (cost), or the makespan and its proven bound.
    cost_gap: Option<(String, f64)>,
    span_gap: Option<(f64, f64)>,
    /// A solver failure that stopped a search (else the time limit did).
    failure: Option<String>,
}

impl Solved {
    fn new(n: usize) -> Solved {
        Solved {
            choice: vec![usize::MAX; n],
            reduced: 0,
            ilps: 0,
            vars: 0,
            cons: 0,
            chain_dp: false,
            lexicographic: false,
            cost_gap: None,
            span_gap: None,
            failure: None,
        }
    }

    fn method(&self) -> String {
        let base = match (self.ilps, self.chain_dp) {
            (0, true) => "dp".to_string(),
            (0, false) => "dp".to_string(),
            _ => "ilp".to_string(),
        };
        let mut s = if self.lexicographic && self.ilps > 0 { format!("{base} (lexicographic)") } else { base };
        if self.cost_gap.is_some() || self.span_gap.is_some() {
            s.push_str(" (stopped)");
        }
        s
    }
}

fn solve(job: &ResolvedJob, goal: Goal, until: Instant) -> Result<Solved, OptimizeError> {
    if job.tasks.iter().any(|t| t.candidates.is_empty()) {
        return Err(OptimizeError::Infeasible(String::new()));
    }
    match goal.objective {
        Objective::Cost => {
            let mut out = Solved::new(job.tasks.len());
            solve_cost(job, goal, None, &mut out, until)?;
            Ok(out)
        }
        Objective::Time if goal.budget.is_some() => solve_time_budget(job, goal, until),
        Objective::Time => solve_time(job, goal, until),
    }
}

/// Weakly connected components of `n` tasks under the edges `coupled` keeps; each
/// sorted (topological order), in order of their first task.
fn components(m: &Model, coupled: impl Fn(usize) -> bool) -> Vec<Vec<usize>> {
    let n = m.n();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while p[r] != r {
            r = p[r];
        }
        let mut y = x;
        while p[y] != r {
            let nx = p[y];
            p[y] = r;
            y = nx;
        }
        r
    }
    for (i, e) in m.edges.iter().enumerate() {
        if coupled(i) {
            let (ra, rb) = (find(&mut parent, e.a), find(&mut parent, e.b));
            if ra != rb {
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for t in 0..n {
        let r = find(&mut parent, t);
        by_root.entry(r).or_default().push(t);
    }
    by_root.into_values().collect()
}

/// The cheapest working candidate of a task (then the fastest, then the first).
fn cheapest(m: &Model, t: usize) -> usize {
    let key = |c: usize| (m.cand(t, c).fixed_cost(), m.cand(t, c).duration());
    let mut best = m.work[t][0];
    for &c in &m.work[t][1..] {
        let (a, b) = (key(c), key(best));
        if a.0 < b.0 - EPS || (a.0 <= b.0 + EPS && a.1 < b.1 - EPS) {
            best = c;
        }
    }
    best
}

/// The fastest working candidate of a task (then the cheapest, then the first).
fn fastest(m: &Model, t: usize) -> usize {
    m.work[t]
        .iter()
        .copied()
        .min_by(|&a, &b| {
            let (x, y) = (m.cand(t, a), m.cand(t, b));
            x.duration().total_cmp(&y.duration()).then(x.fixed_cost().total_cmp(&y.fixed_cost()))
        })
        .expect("non-empty")
}

/// Tasks a deadline can still bind: some path through them may exceed it when every
/// choice is at its worst (slowest working candidate, farthest transfer). Paths through
/// the other tasks meet the deadline whatever is chosen, so only paths made entirely of
/// timed tasks need constraints.
fn timed_tasks(m: &Model, deadline: f64) -> Vec<bool> {
    let n = m.n();
    let dmax: Vec<f64> =
        (0..n).map(|t| m.work[t].iter().map(|&c| m.cand(t, c).duration()).fold(0.0, f64::max)).collect();
    let zones = |t: usize| -> Vec<model::Keys> {
        let mut v: Vec<model::Keys> = Vec::new();
        for &c in &m.work[t] {
            let k = m.keys[t][c];
            if !v.iter().any(|x| x.zone == k.zone) {
                v.push(k);
            }
        }
        v
    };
    let distinct: Vec<Vec<model::Keys>> = (0..n).map(zones).collect();
    let hmax: Vec<f64> = m
        .edges
        .iter()
        .map(|e| {
            let mut lvl = crate::catalog::egress::Level::SameZone;
            for &x in &distinct[e.a] {
                for &y in &distinct[e.b] {
                    lvl = lvl.max(Model::level_of(x, y));
                }
            }
            e.hours[lvl as usize]
        })
        .collect();
    let mut ef = vec![0.0f64; n];
    for t in 0..n {
        let start = m.ins[t].iter().map(|&e| ef[m.edges[e].a] + hmax[e]).fold(0.0, f64::max);
        ef[t] = start + dmax[t];
    }
    let mut tail = vec![0.0f64; n];
    for t in (0..n).rev() {
        tail[t] = m.outs[t].iter().map(|&e| hmax[e] + dmax[m.edges[e].b] + tail[m.edges[e].b]).fold(0.0, f64::max);
    }
    (0..n).map(|t| ef[t] + tail[t] > deadline - 1e-9 * deadline.max(1.0)).collect()
}

/// The cheapest placement (within `deadline` when given), component by component:
/// location symmetry, exact reductions, then an ILP on what remains. `hint`: a feasible
/// full choice to start the ILPs from; tasks already in `out.choice` are left alone
/// (whole components decided elsewhere).
fn solve_cost(
    job: &ResolvedJob,
    goal: Goal,
    hint: Option<&[usize]>,
    out: &mut Solved,
    until: Instant,
) -> Result<(), OptimizeError> {
    let goal = Goal { objective: Objective::Cost, ..goal };
    let deadline = goal.deadline_hours;
    let mut m = Model::new(job, goal);
    if (0..m.n()).any(|t| out.choice[t] == usize::MAX && m.work[t].is_empty()) {
        return Err(OptimizeError::Infeasible(String::new()));
    }
    // The feasible placement stays available (a superset keeps every optimum), also for
    // the timing analysis, which must cover every live candidate.
    let keep_hint = |m: &mut Model| {
        if let Some(h) = hint {
            for t in (0..m.n()).filter(|&t| out.choice[t] == usize::MAX) {
                if let Err(i) = m.work[t].binary_search(&h[t]) {
                    m.work[t].insert(i, h[t]);
                }
            }
        }
    };
    keep_hint(&mut m);
    let timed = match deadline {
        Some(d) => timed_tasks(&m, d),
        None => vec![false; m.n()],
    };
    let comps: Vec<Vec<usize>> = components(&m, |e| {
        let ed = &m.edges[e];
        ed.size > 0.0 || (timed[ed.a] && timed[ed.b])
    })
    .into_iter()
    .filter(|c| out.choice[c[0]] == usize::MAX)
    .collect();
    for comp in comps.iter().filter(|c| c.len() > 1) {
        m.symmetry(goal, comp);
    }
    keep_hint(&mut m);
    for comp in &comps {
        if comp.len() == 1 {
            out.choice[comp[0]] = cheapest(&m, comp[0]);
            out.reduced += 1;
            continue;
        }
        let p = Problem::new(&m, comp.clone(), comp.iter().map(|&t| timed[t]).collect());
        let local = match deadline {
            Some(d) if p.timed.iter().any(|&t| t) => solve_deadline(p, d, hint, out, until)?,
            _ => solve_pure(p, out, until)?,
        };
        for (i, &t) in comp.iter().enumerate() {
            out.choice[t] = local[i];
        }
    }
    Ok(())
}

/// The exact cheapest choice of a problem without a time network (a candidate id per
/// local task): reductions, series elimination, bounds by message passing, then an ILP
/// on what is left.
fn solve_pure(mut p: Problem, out: &mut Solved, until: Instant) -> Result<Vec<usize>, OptimizeError> {
    p.reduce();
    if p.done.iter().any(|d| !d) {
        if let Some(q) = p.series_parallel() {
            p = q;
        }
    }
    if p.done.iter().any(|d| !d) {
        // Bounds by message passing: proven optima, and candidates ruled out.
        for rc in p.residual_components() {
            let Some(mut d) = dual::Dual::new(&p, &rc) else { continue };
            let lb = d.run(200, until);
            let ub_choice = p.improve(&rc, d.decode());
            let ub = p.energy(&rc, &ub_choice);
            if lb >= ub - 1e-7 - 1e-9 * ub.abs() {
                for (i, &t) in rc.iter().enumerate() {
                    let others: Vec<bool> = p.cands[t].iter().map(|&c| c != ub_choice[i]).collect();
                    p.drop_candidates(t, &others);
                }
                continue;
            }
            for (i, out) in d.ruled_out(lb, ub).into_iter().enumerate() {
                p.drop_candidates(d.nodes()[i], &out);
            }
        }
        p.reduce();
    }
    let mut local = vec![usize::MAX; p.len()];
    for rc in p.residual_components() {
        if rc.iter().all(|&t| p.cands[t].len() == 1) {
            for &t in &rc {
                local[t] = p.cands[t][0];
            }
            continue;
        }
        let h = p.heuristic(&rc);
        let r = ilp_or_hint(&p, &rc, Target::Cost { deadline: None }, Some(&h), until, |x| p.energy(&rc, x))?;
        record(out, &r, "cost", &p, &rc);
        for (i, &t) in rc.iter().enumerate() {
            local[t] = r.choice[i];
        }
    }
    out.reduced += p.done.iter().filter(|&&d| d).count();
    p.back_substitute(&mut local);
    Ok(local)
}

/// The ILP, or, when it ends without a placement of its own (the time limit before any
/// incumbent, or a numerical failure), the feasible `hint` as a stopped search (its gap
/// is then against the relaxation's bound, see [`record`]).
fn ilp_or_hint(
    p: &Problem,
    rc: &[usize],
    target: Target,
    hint: Option<&[usize]>,
    until: Instant,
    value: impl Fn(&[usize]) -> f64,
) -> Result<ilp::IlpOut, OptimizeError> {
    match ilp::solve(p, rc, target, hint, until) {
        Err(OptimizeError::Solver(msg)) if hint.is_some() => {
            let choice = hint.expect("hint").to_vec();
            let failure = (Instant::now() < until).then(|| format!("a solver failure ({msg})"));
            Ok(ilp::IlpOut { value: value(&choice), choice, vars: 0, cons: 0, bound: Some(f64::NEG_INFINITY), failure })
        }
        r => r,
    }
}

/// Reduced-cost fixing of every residual component against the feasible placement `x`
/// (kept), then the reductions again.
fn fix_against(p: &mut Problem, x: &[usize], until: Instant) {
    p.protect(x);
    for rc in p.residual_components() {
        let Some(mut d) = dual::Dual::new(p, &rc) else { continue };
        let lb = d.run(200, until);
        let xs: Vec<usize> = rc.iter().map(|&t| x[t]).collect();
        let ub = p.energy(&rc, &xs);
        for (i, out) in d.ruled_out(lb, ub).into_iter().enumerate() {
            p.drop_candidates(d.nodes()[i], &out);
        }
    }
    p.reduce();
}

/// The deadline problem over a few candidates per task: `x`'s and `relaxed`'s and the
/// three cheapest (a heuristic: a feasible placement, not a proof). None when the ILP
/// does not finish by `until`.
fn restricted(p: &Problem, x: &[usize], relaxed: &[usize], deadline: f64, until: Instant) -> Option<Vec<usize>> {
    let mut q = p.clone();
    for t in 0..q.len() {
        if q.done[t] {
            continue;
        }
        let mut by_cost: Vec<usize> = (0..q.cands[t].len()).collect();
        by_cost.sort_by(|&a, &b| q.unary[t][a].total_cmp(&q.unary[t][b]).then(a.cmp(&b)));
        let keep: Vec<usize> = by_cost.into_iter().take(3).map(|i| q.cands[t][i]).chain([x[t], relaxed[t]]).collect();
        let out: Vec<bool> = q.cands[t].iter().map(|c| !keep.contains(c)).collect();
        q.drop_candidates(t, &out);
    }
    q.protect(x);
    q.reduce();
    let mut local = vec![usize::MAX; q.len()];
    for rc in q.residual_components() {
        if rc.len() == 1 && !q.has_edges(rc[0]) {
            local[rc[0]] = q.cands[rc[0]][reduce::argmin(&q.unary[rc[0]])];
            continue;
        }
        let h: Vec<usize> = rc.iter().map(|&t| x[t]).collect();
        let r = ilp::solve(&q, &rc, Target::Cost { deadline: Some(deadline) }, Some(&h), until).ok()?;
        for (i, &t) in rc.iter().enumerate() {
            local[t] = r.choice[i];
        }
    }
    q.back_substitute(&mut local);
    Some(local)
}

/// Counts an ILP of residual component `rc`, and its gap when the time limit stopped it:
/// against the solver's bound or, when higher (or the solver had none), the bound of
/// the relaxation by message passing.
fn record(out: &mut Solved, r: &ilp::IlpOut, what: &str, p: &Problem, rc: &[usize]) {
    out.ilps += 1;
    out.vars += r.vars;
    out.cons += r.cons;
    if r.failure.is_some() {
        out.failure = r.failure.clone();
    }
    if let Some(b) = r.bound {
        let relaxed = dual::Dual::new(p, rc)
            .map_or(f64::NEG_INFINITY, |mut d| d.run(200, Instant::now() + Duration::from_secs(2)));
        let gap = out.cost_gap.get_or_insert((what.into(), 0.0));
        gap.1 += (r.value - b.max(relaxed)).max(0.0);
    }
}

/// The exact cheapest choice of a problem whose timed tasks must finish by `deadline`.
/// The relaxation without the deadline is solved first: when its optimum meets the
/// deadline it is the answer. Otherwise a feasible placement (the timed tasks as in
/// `hint`, the others at their cheapest around them) bounds the optimum from above,
/// message passing on the relaxation bounds it from below, candidates whose forced
/// bound exceeds the feasible cost are dropped, and an ILP with the time network
/// finishes.
fn solve_deadline(
    mut p: Problem,
    deadline: f64,
    hint: Option<&[usize]>,
    out: &mut Solved,
    until: Instant,
) -> Result<Vec<usize>, OptimizeError> {
    let what = if hint.is_some() { "cost at the optimal makespan" } else { "cost" };
    if let Some(h) = hint {
        let local: Vec<usize> = p.tasks.iter().map(|&t| h[t]).collect();
        p.protect(&local);
    }
    p.reduce();
    let mut scratch = Solved::new(0);
    let relaxed = solve_pure(p.relaxed(), &mut scratch, until)?;
    if p.meets_deadline(&relaxed, deadline) {
        if let Some((_, gap)) = scratch.cost_gap {
            let g = out.cost_gap.get_or_insert((what.into(), 0.0));
            g.1 += gap;
        }
        out.ilps += scratch.ilps;
        out.vars += scratch.vars;
        out.cons += scratch.cons;
        out.reduced += p.len();
        return Ok(relaxed);
    }
    let mut feasible: Option<Vec<usize>> = None;
    if let Some(q) = hint.and_then(|h| p.with_timed_fixed(h)) {
        let x = solve_pure(q, &mut scratch, until)?;
        if p.meets_deadline(&x, deadline) {
            feasible = Some(x);
        }
    }
    if let Some(x) = &mut feasible {
        // Cheaper placements that still meet the deadline, then reduced-cost fixing
        // against the best of them with the relaxation's bound.
        p.cheapen_within(x, deadline);
        fix_against(&mut p, x, until);
        let live: usize = (0..p.len()).filter(|&t| !p.done[t]).map(|t| p.cands[t].len()).sum();
        if live > 10_000 {
            // Still large: the ILP over a few candidates per task (this placement's, the
            // relaxation's, the three cheapest) within a fifth of the time left, for a
            // better placement to start from and to fix against.
            let share = until.saturating_duration_since(Instant::now()) / 5;
            if let Some(y) = restricted(&p, x, &relaxed, deadline, Instant::now() + share) {
                if p.energy_all(&y) < p.energy_all(x) - EPS && p.meets_deadline(&y, deadline) {
                    *x = y;
                    fix_against(&mut p, x, until);
                }
            }
        }
    }
    let mut local = vec![usize::MAX; p.len()];
    for rc in p.residual_components() {
        // One task alone: the deadline cut already kept only candidates that meet the
        // deadline by themselves.
        if rc.len() == 1 && !p.has_edges(rc[0]) {
            local[rc[0]] = p.cands[rc[0]][reduce::argmin(&p.unary[rc[0]])];
            continue;
        }
        let h: Option<Vec<usize>> = feasible.as_ref().map(|x| rc.iter().map(|&t| x[t]).collect());
        let target = Target::Cost { deadline: Some(deadline) };
        let r = ilp_or_hint(&p, &rc, target, h.as_deref(), until, |x| p.energy(&rc, x))?;
        record(out, &r, what, &p, &rc);
        for (i, &t) in rc.iter().enumerate() {
            local[t] = r.choice[i];
        }
    }
    out.reduced += p.done.iter().filter(|&&d| d).count();
    p.back_substitute(&mut local);
    Ok(local)
}

/// Minimum makespan, then the cheapest placement at that makespan.
fn solve_time(job: &ResolvedJob, goal: Goal, until: Instant) -> Result<Solved, OptimizeError> {
    let n = job.tasks.len();
    let mut out = Solved::new(n);
    out.lexicographic = true;
    let g1 = Goal { objective: Objective::Time, deadline_hours: goal.deadline_hours, budget: None };
    let mut m1 = Model::new(job, g1);
    if m1.work.iter().any(Vec::is_empty) {
        return Err(OptimizeError::Infeasible(String::new()));
    }
    let comps = components(&m1, |_| true);
    for comp in comps.iter().filter(|c| c.len() > 1) {
        m1.symmetry(g1, comp);
    }
    // Phase 1: each component's optimal makespan (components run side by side).
    let mut first = vec![usize::MAX; n];
    let mut spans: Vec<f64> = Vec::with_capacity(comps.len());
    let mut bound_span = 0.0f64;
    let mut chains: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut both: Option<Model> = None;
    for (ci, comp) in comps.iter().enumerate() {
        if comp.len() == 1 {
            let t = comp[0];
            let fastest = fastest(&m1, t);
            first[t] = fastest;
            spans.push(m1.cand(t, fastest).duration());
            bound_span = bound_span.max(spans[ci]);
            continue;
        }
        if chain::is_chain(&m1, comp) {
            // Lexicographic (time, cost) DP, exact on a chain; kept when the chain is critical.
            let mb = both.get_or_insert_with(|| {
                Model::new(
                    job,
                    Goal {
                        objective: Objective::Time,
                        deadline_hours: goal.deadline_hours,
                        budget: Some(f64::INFINITY),
                    },
                )
            });
            let ch = chain::lexicographic(mb, comp);
            for (i, &t) in comp.iter().enumerate() {
                first[t] = ch[i];
            }
            let span = chain_span(mb, comp, &ch);
            spans.push(span);
            bound_span = bound_span.max(span);
            chains.push((ci, ch));
            continue;
        }
        let p = Problem::new(&m1, comp.clone(), vec![true; comp.len()]);
        let all: Vec<usize> = (0..comp.len()).collect();
        let fastest: Vec<usize> = comp.iter().map(|&t| fastest(&m1, t)).collect();
        let span_of = |x: &[usize]| {
            let mut full = first.clone();
            for (i, &t) in comp.iter().enumerate() {
                full[t] = x[i];
            }
            comp_span(&m1, comp, &full)
        };
        let r = ilp_or_hint(&p, &all, Target::Makespan { budget: None }, Some(&fastest), until, span_of)?;
        out.ilps += 1;
        out.vars += r.vars;
        out.cons += r.cons;
        if r.failure.is_some() {
            out.failure = r.failure.clone();
        }
        for (i, &t) in comp.iter().enumerate() {
            first[t] = r.choice[i];
        }
        let span = comp_span(&m1, comp, &first);
        spans.push(span);
        // Stopped: the solver's bound, or the longest path at the fastest everything.
        bound_span = bound_span.max(r.bound.map_or(span, |b| b.max(fastest_span(&m1, comp))));
    }
    let best = spans.iter().copied().fold(0.0, f64::max);
    if bound_span < best - 1e-9 {
        out.span_gap = Some((best, bound_span));
    }
    // Critical chains keep their lexicographic optimum; everything else gets the cheapest
    // placement within the optimal makespan.
    for (ci, ch) in chains {
        if spans[ci] >= best - 1e-9 * best.max(1.0) {
            for (i, &t) in comps[ci].iter().enumerate() {
                out.choice[t] = ch[i];
            }
            out.chain_dp = true;
        }
    }
    let g2 = Goal { objective: Objective::Cost, deadline_hours: Some(best * (1.0 + 1e-9) + 1e-9), budget: None };
    let mut cost_part = Solved::new(n);
    cost_part.choice = out.choice.clone();
    solve_cost(job, g2, Some(&first), &mut cost_part, until)?;
    out.choice = cost_part.choice;
    out.reduced += cost_part.reduced;
    out.ilps += cost_part.ilps;
    out.vars += cost_part.vars;
    out.cons += cost_part.cons;
    out.cost_gap = cost_part.cost_gap;
    out.failure = out.failure.take().or(cost_part.failure);
    Ok(out)
}

/// Minimum makespan within the budget (one ILP: the budget couples everything), then
/// the cheapest placement at that makespan.
fn solve_time_budget(job: &ResolvedJob, goal: Goal, until: Instant) -> Result<Solved, OptimizeError> {
    let n = job.tasks.len();
    let mut out = Solved::new(n);
    out.lexicographic = true;
    let mut m = Model::new(job, goal);
    if m.work.iter().any(Vec::is_empty) {
        return Err(OptimizeError::Infeasible(String::new()));
    }
    let all: Vec<usize> = (0..n).collect();
    m.symmetry(goal, &all);
    let mut p = Problem::new(&m, all.clone(), vec![true; n]);
    p.reduce();
    let r = ilp::solve(&p, &all, Target::Makespan { budget: goal.budget }, None, until)?;
    out.ilps += 1;
    out.vars += r.vars;
    out.cons += r.cons;
    let first = r.choice.clone();
    let best = m.makespan(&first);
    if let Some(b) = r.bound {
        out.span_gap = Some((best, b));
    }
    let g2 = Goal { objective: Objective::Cost, deadline_hours: Some(best * (1.0 + 1e-9) + 1e-9), budget: goal.budget };
    let mut cost_part = Solved::new(n);
    match solve_cost(job, g2, Some(&first), &mut cost_part, until) {
        Ok(()) => {
            out.choice = cost_part.choice;
            out.reduced += cost_part.reduced;
            out.ilps += cost_part.ilps;
            out.vars += cost_part.vars;
            out.cons += cost_part.cons;
            out.cost_gap = cost_part.cost_gap;
            out.failure = out.failure.take().or(cost_part.failure);
        }
        Err(_) => out.choice = first,
    }
    Ok(out)
}

/// Makespan of one component's tasks under a full choice.
fn comp_span(m: &Model, comp: &[usize], choice: &[usize]) -> f64 {
    let mut fin: std::collections::HashMap<usize, f64> = std::collections::HashMap::with_capacity(comp.len());
    let mut worst: f64 = 0.0;
    for &t in comp {
        let start = m.ins[t]
            .iter()
            .map(|&e| {
                let a = m.edges[e].a;
                fin.get(&a).copied().unwrap_or(0.0) + m.edge_hours(e, choice[a], choice[t])
            })
            .fold(0.0, f64::max);
        let f = start + m.cand(t, choice[t]).duration();
        fin.insert(t, f);
        worst = worst.max(f);
    }
    worst
}

/// A lower bound on a component's makespan: its longest path with every task at its
/// fastest candidate and every transfer within a zone.
fn fastest_span(m: &Model, comp: &[usize]) -> f64 {
    let mut fin: std::collections::HashMap<usize, f64> = std::collections::HashMap::with_capacity(comp.len());
    let mut worst: f64 = 0.0;
    for &t in comp {
        let start = m.ins[t]
            .iter()
            .map(|&e| fin.get(&m.edges[e].a).copied().unwrap_or(0.0) + m.edges[e].hours[Level::SameZone as usize])
            .fold(0.0, f64::max);
        let f = start + m.work[t].iter().map(|&c| m.cand(t, c).duration()).fold(f64::INFINITY, f64::min);
        fin.insert(t, f);
        worst = worst.max(f);
    }
    worst
}

fn chain_span(m: &Model, comp: &[usize], ch: &[usize]) -> f64 {
    let mut full = BTreeMap::new();
    for (i, &t) in comp.iter().enumerate() {
        full.insert(t, ch[i]);
    }
    let mut total = 0.0;
    for (i, &t) in comp.iter().enumerate() {
        total += m.cand(t, ch[i]).duration();
        for &e in &m.ins[t] {
            let a = m.edges[e].a;
            total += m.edge_hours(e, full[&a], ch[i]);
        }
    }
    total
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
