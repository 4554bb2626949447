//! Solving, component by component: the cost objective (with or without a deadline),
//! the time objective (optimal makespan, then the cheapest placement at it) and the time
//! objective within a budget. Returns a full choice and how it was found; `mod.rs`
//! turns it into an [`super::Assignment`]. See the module docs of `optimize` for the
//! algorithm and why it is exact.

use super::model::{self, Model};
use super::reduce::{self, Problem};
use super::{chain, dual, ilp, Goal, OptimizeError, EPS};
use crate::catalog::egress::Level;
use crate::config::Objective;
use crate::resolve::ResolvedJob;
use ilp::Target;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A full choice (candidate index per task) and how it was found.
pub(super) struct Solved {
    pub(super) choice: Vec<usize>,
    /// ILPs solved, with their variables and constraints.
    pub(super) ilps: usize,
    pub(super) vars: usize,
    pub(super) cons: usize,
    /// The time objective (makespan, then cost).
    pub(super) lexicographic: bool,
    /// Set when the time limit stopped an ILP: the objective it was about and the sum of
    /// the stopped components' gaps (cost), or the makespan and its proven bound.
    pub(super) cost_gap: Option<(String, f64)>,
    pub(super) span_gap: Option<(f64, f64)>,
    /// A solver failure that stopped a search (else the time limit did).
    pub(super) failure: Option<String>,
}

impl Solved {
    fn new(n: usize) -> Solved {
        Solved {
            choice: vec![usize::MAX; n],
            ilps: 0,
            vars: 0,
            cons: 0,
            lexicographic: false,
            cost_gap: None,
            span_gap: None,
            failure: None,
        }
    }

    /// `dp` when no ILP ran (reductions, bounds, the chain DP), else `ilp`.
    pub(super) fn method(&self) -> String {
        let mut s = match (self.ilps, self.lexicographic) {
            (0, _) => "dp".to_string(),
            (_, true) => "ilp (lexicographic)".to_string(),
            (_, false) => "ilp".to_string(),
        };
        if self.cost_gap.is_some() || self.span_gap.is_some() {
            s.push_str(" (stopped)");
        }
        s
    }
}

/// Solves `job` for `goal`, stopping searches at `until`.
pub(super) fn solve(job: &ResolvedJob, goal: Goal, until: Instant) -> Result<Solved, OptimizeError> {
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
/// three cheapest (a heuristic: a feasible placement, not a proof; every component of
/// the result meets the deadline). None when the ILP does not finish by `until`.
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
        let mut r = ilp_or_hint(&p, &rc, target, h.as_deref(), until, |x| p.energy(&rc, x))?;
        if let (Some(_), Some(x)) = (&r.failure, &feasible) {
            // The solver failed early: the rest of the time goes to the ILP over a few
            // candidates per task (a better placement, still not a proof).
            if let Some(y) = restricted(&p, x, &relaxed, deadline, until) {
                let ys: Vec<usize> = rc.iter().map(|&t| y[t]).collect();
                let v = p.energy(&rc, &ys);
                if v < r.value - EPS {
                    (r.choice, r.value) = (ys, v);
                }
            }
        }
        if let (Some(_), Some(x)) = (r.bound, &feasible) {
            // Stopped: best responses that keep the deadline may still improve it.
            let mut y = x.clone();
            for (i, &t) in rc.iter().enumerate() {
                y[t] = r.choice[i];
            }
            p.cheapen_within(&mut y, deadline);
            let ys: Vec<usize> = rc.iter().map(|&t| y[t]).collect();
            let v = p.energy(&rc, &ys);
            if v < r.value - EPS {
                (r.choice, r.value) = (ys, v);
            }
        }
        record(out, &r, what, &p, &rc);
        for (i, &t) in rc.iter().enumerate() {
            local[t] = r.choice[i];
        }
    }
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
        }
    }
    let g2 = Goal { objective: Objective::Cost, deadline_hours: Some(best * (1.0 + 1e-9) + 1e-9), budget: None };
    let mut cost_part = Solved::new(n);
    cost_part.choice = out.choice.clone();
    solve_cost(job, g2, Some(&first), &mut cost_part, until)?;
    out.choice = cost_part.choice;
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
