//! The ILP of a residual component (good_lp + microlp, or HiGHS with the `highs`
//! feature).
//!
//! Binaries `x` per (task, live candidate); per cost or time edge, continuous "same
//! group" indicators `u_g ≤ Y_a,g`, `u_g ≤ Y_b,g` at the zone, region, continent and
//! cloud levels, where `Y_t,g` sums the `x` of `t`'s candidates in group `g` — never
//! |C_a|×|C_b| pair variables. Egress is the source cloud's internet price minus
//! non-negative discounts per shared group, linear in the indicators, so the solver
//! raises each `u` to `min(Y_a, Y_b)`: exact for integral placements, and on a tree
//! metric the same relaxation as the pairwise flow form. Finish-time variables over the
//! time network carry a deadline or the makespan.

use super::model::Model;
use super::reduce::Problem;
use super::OptimizeError;
use crate::catalog::egress::Level;
use good_lp::{
    constraint, variable, Expression, ProblemVariables, Solution, SolverModel, Variable, WithInitialSolution,
    WithTimeLimit,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// What the ILP minimizes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// Σ cost, with every timed path within the deadline when one is given.
    Cost { deadline: Option<f64> },
    /// The makespan of the timed tasks, with the total cost within the budget when one is
    /// given.
    Makespan { budget: Option<f64> },
}

pub(super) struct IlpOut {
    /// Candidate id per task of the component (in the component's order).
    pub choice: Vec<usize>,
    pub vars: usize,
    pub cons: usize,
    /// The objective at the returned choice.
    pub value: f64,
    /// The objective's proven lower bound when the time limit stopped the search
    /// (None when proven optimal).
    pub bound: Option<f64>,
    /// Set when a solver failure, not the time limit, stopped the search.
    pub failure: Option<String>,
}

/// An edge's same-group indicator: (cost coefficient, time coefficient, level, group).
type GroupNode = (f64, f64, usize, u32);

/// Solves the component `comp` (local task ids of `p`) exactly, or until `until`.
/// `hint`: a feasible choice (candidate ids, in `comp`'s order) to start from.
pub(super) fn solve(
    p: &Problem,
    comp: &[usize],
    target: Target,
    hint: Option<&[usize]>,
    until: Instant,
) -> Result<IlpOut, OptimizeError> {
    let m: &Model = p.m;
    let k = comp.len();
    let mut pos = vec![usize::MAX; p.len()];
    for (i, &t) in comp.iter().enumerate() {
        pos[t] = i;
    }
    let gt = |i: usize| p.tasks[comp[i]];
    let mut vars = ProblemVariables::new();
    let mut nvars = 0usize;
    let mut cons: Vec<good_lp::Constraint> = Vec::new();
    // x[i][j] for live candidate j of comp task i; None when fixed (single candidate).
    let x: Vec<Vec<Option<Variable>>> = comp
        .iter()
        .map(|&t| {
            let n = p.cands[t].len();
            if n == 1 {
                vec![None]
            } else {
                nvars += n;
                (0..n).map(|_| Some(vars.add(variable().binary()))).collect()
            }
        })
        .collect();
    let xe = |i: usize, j: usize| -> Expression {
        match x[i][j] {
            Some(v) => v.into(),
            None => Expression::from(1.0),
        }
    };
    for xs in x.iter().filter(|xs| xs.len() > 1) {
        let s: Expression = xs.iter().map(|v| Expression::from(v.expect("var"))).sum();
        cons.push(constraint!(s == 1.0));
    }
    let mut cost = Expression::from(0.0);
    let mut dur: Vec<Expression> = Vec::with_capacity(k);
    for (i, &t) in comp.iter().enumerate() {
        let mut d = Expression::from(0.0);
        for (j, &c) in p.cands[t].iter().enumerate() {
            cost += p.unary[t][j] * xe(i, j);
            if p.timed[t] {
                d += m.cand(gt(i), c).duration() * xe(i, j);
            }
        }
        dur.push(d);
    }
    let key = |i: usize, j: usize| m.keys[gt(i)][p.cands[comp[i]][j]];
    let group_expr = |i: usize, lvl: usize, g: u32| -> Expression {
        let mut e = Expression::from(0.0);
        for j in 0..p.cands[comp[i]].len() {
            if key(i, j).at(lvl) == g {
                e += xe(i, j);
            }
        }
        e
    };
    let groups_of =
        |i: usize, lvl: usize| -> BTreeSet<u32> { (0..p.cands[comp[i]].len()).map(|j| key(i, j).at(lvl)).collect() };
    let members = |i: usize, lvl: usize, g: u32| -> Vec<usize> {
        (0..p.cands[comp[i]].len()).filter(|&j| key(i, j).at(lvl) == g).collect()
    };
    // Model edges inside the component: whether their cost and their time count.
    let mut wanted: BTreeMap<usize, (usize, usize, bool, bool)> = BTreeMap::new();
    let cost_counts = !matches!(target, Target::Makespan { budget: None });
    for e in p.alive_edges().filter(|_| cost_counts) {
        if pos[e.a] != usize::MAX && pos[e.b] != usize::MAX {
            wanted.entry(e.e).or_insert((pos[e.a], pos[e.b], false, false)).2 = true;
        }
    }
    for &(a, b, e) in &p.time_edges {
        if pos[a] != usize::MAX && pos[b] != usize::MAX {
            wanted.entry(e).or_insert((pos[a], pos[b], false, false)).3 = true;
        }
    }
    let mut transfer: Vec<(usize, usize, Expression)> = Vec::new();
    let mut u_vars: Vec<(Variable, usize, usize, usize, u32)> = Vec::new();
    for (&e, &(a, b, with_cost, with_time)) in &wanted {
        let ed = &m.edges[e];
        let mut tr = Expression::from(ed.hours[Level::OtherCloud as usize]);
        if with_cost {
            // Source-cloud internet price: Σ_k net_k · Y_a,k.
            for g in groups_of(a, 3) {
                cost += m.price(e, g, Level::OtherCloud) * group_expr(a, 3, g);
            }
        }
        // Same-group indicators, from the cloud level down to the zone level. A group
        // whose members (on both sides) are those of its parent group has the same
        // indicator value: its coefficients are folded into the parent's variable.
        let steps = [
            (3usize, Level::SameCloud, Level::OtherCloud),
            (2, Level::SameContinent, Level::SameCloud),
            (1, Level::SameRegion, Level::SameContinent),
            (0, Level::SameZone, Level::SameRegion),
        ];
        let mut nodes: BTreeMap<(Vec<usize>, Vec<usize>), GroupNode> = BTreeMap::new();
        for (lvl, lower, upper) in steps {
            let common: Vec<u32> = groups_of(a, lvl).intersection(&groups_of(b, lvl)).copied().collect();
            for g in common {
                // The source cloud of the group (every member shares it).
                let cloud =
                    (0..p.cands[comp[a]].len()).map(|j| key(a, j)).find(|k| k.at(lvl) == g).expect("member").cloud;
                let dc = if with_cost { m.price(e, cloud, lower) - m.price(e, cloud, upper) } else { 0.0 };
                let dt = if with_time { ed.hours[lower as usize] - ed.hours[upper as usize] } else { 0.0 };
                let entry = nodes.entry((members(a, lvl, g), members(b, lvl, g))).or_insert((0.0, 0.0, lvl, g));
                entry.0 += dc;
                entry.1 += dt;
            }
        }
        for (dc, dt, lvl, g) in nodes.into_values() {
            if dc.abs() < 1e-15 && dt.abs() < 1e-15 {
                continue;
            }
            let u = vars.add(variable().min(0.0).max(1.0));
            nvars += 1;
            u_vars.push((u, a, b, lvl, g));
            cons.push(constraint!(u <= group_expr(a, lvl, g)));
            cons.push(constraint!(u <= group_expr(b, lvl, g)));
            cost += dc * u;
            tr += dt * u;
        }
        if with_time {
            transfer.push((a, b, tr));
        }
    }
    // Finish times over the time network.
    let timed: Vec<usize> = (0..k).filter(|&i| p.timed[comp[i]]).collect();
    let mut finish: Option<(BTreeMap<usize, Variable>, Variable)> = None;
    if !timed.is_empty()
        && (matches!(target, Target::Makespan { .. }) || matches!(target, Target::Cost { deadline: Some(_) }))
    {
        let f: BTreeMap<usize, Variable> = timed.iter().map(|&i| (i, vars.add(variable().min(0.0)))).collect();
        let ms = vars.add(variable().min(0.0));
        nvars += f.len() + 1;
        for (&i, &fv) in &f {
            cons.push(constraint!(fv >= dur[i].clone()));
            cons.push(constraint!(ms >= fv));
        }
        for (a, b, tr) in &transfer {
            let (fa, fb) = (f[a], f[b]);
            cons.push(constraint!(fb >= fa + tr.clone() + dur[*b].clone()));
        }
        if let Target::Cost { deadline: Some(d) } = target {
            cons.push(constraint!(ms <= d));
        }
        finish = Some((f, ms));
    }
    if let Target::Makespan { budget: Some(b) } = target {
        cons.push(constraint!(cost.clone() <= b));
    }
    let objective: Expression = match target {
        Target::Cost { .. } => cost.clone(),
        Target::Makespan { .. } => finish.as_ref().map(|f| Expression::from(f.1)).unwrap_or_default(),
    };
    let ncons = cons.len();
    // A feasible starting point (all variables) from the hint.
    let mut start: Vec<(Variable, f64)> = Vec::new();
    if let Some(h) = hint {
        let hp: Option<Vec<usize>> = (0..k).map(|i| p.cands[comp[i]].iter().position(|&c| c == h[i])).collect();
        if let Some(hp) = hp {
            for (i, xs) in x.iter().enumerate() {
                for (j, v) in xs.iter().enumerate() {
                    if let Some(v) = v {
                        start.push((*v, if j == hp[i] { 1.0 } else { 0.0 }));
                    }
                }
            }
            for (u, a, b, lvl, g) in &u_vars {
                let same = key(*a, hp[*a]).at(*lvl) == *g && key(*b, hp[*b]).at(*lvl) == *g;
                start.push((*u, if same { 1.0 } else { 0.0 }));
            }
            if let Some((f, ms)) = &finish {
                // Longest timed path ending at each timed task under the hint.
                let mut fin: BTreeMap<usize, f64> = BTreeMap::new();
                let mut order: Vec<usize> = f.keys().copied().collect();
                order.sort_by_key(|&i| gt(i));
                let mut preds: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
                for (&e, &(a, b, _, with_time)) in &wanted {
                    if with_time {
                        preds.entry(b).or_default().push((a, e));
                    }
                }
                let mut worst: f64 = 0.0;
                for i in order {
                    let s = preds
                        .get(&i)
                        .into_iter()
                        .flatten()
                        .map(|&(a, e)| fin[&a] + m.edge_hours(e, h[a], h[i]))
                        .fold(0.0, f64::max);
                    let v = s + m.cand(gt(i), h[i]).duration();
                    fin.insert(i, v);
                    worst = worst.max(v);
                    start.push((f[&i], v));
                }
                start.push((*ms, worst));
            }
        }
    }
    let secs = until.saturating_duration_since(Instant::now()).as_secs_f64().max(0.001);
    let to_err = |e: good_lp::ResolutionError| match e {
        good_lp::ResolutionError::Infeasible => OptimizeError::Infeasible(String::new()),
        other => OptimizeError::Solver(other.to_string()),
    };
    #[cfg(feature = "highs")]
    let solver = good_lp::highs;
    #[cfg(not(feature = "highs"))]
    let solver = good_lp::microlp;
    let mut problem = vars.minimise(objective.clone()).using(solver);
    for c in cons {
        problem = problem.with(c);
    }
    if !start.is_empty() {
        problem = problem.with_initial_solution(start);
    }
    let problem = problem.with_time_limit(secs);
    let sol = problem.solve().map_err(to_err)?;
    let choice: Vec<usize> = (0..k)
        .map(|i| {
            let cs = &p.cands[comp[i]];
            if cs.len() == 1 {
                return cs[0];
            }
            let j = (0..cs.len())
                .max_by(|&a, &b| {
                    sol.value(x[i][a].expect("var")).total_cmp(&sol.value(x[i][b].expect("var"))).then(b.cmp(&a))
                })
                .expect("non-empty");
            cs[j]
        })
        .collect();
    let value = objective.eval_with(&sol);
    let bound = match sol.status() {
        good_lp::SolutionStatus::Optimal => None,
        _ => Some(best_bound(sol).unwrap_or(f64::NEG_INFINITY) + good_lp::IntoAffineExpression::constant(&objective)),
    };
    Ok(IlpOut { choice, vars: nvars, cons: ncons, value, bound, failure: None })
}

/// The solver's proven lower bound on the objective (without its constant), when known.
#[cfg(not(feature = "highs"))]
fn best_bound(sol: good_lp::solvers::microlp::MicroLpSolution) -> Option<f64> {
    sol.into_inner().stats().best_bound
}

#[cfg(feature = "highs")]
fn best_bound<S: Solution>(_sol: S) -> Option<f64> {
    None
}
