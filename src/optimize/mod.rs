//! `optimize`: ResolvedJob × objective → [`Assignment`], exact.
//!
//! Cost = compute + egress on every data edge (from the producer's location to the
//! consumer's) + reading storage inputs and writing pinned outputs. Time = the makespan
//! (critical path of runtimes, staging and transfer times). `policy.deadline` bounds the
//! makespan and `policy.budget` the cost; with an objective and the other bound, the
//! constrained problem is solved.
//!
//! How, exactly and fast:
//! 1. **Exact dominance pruning.** Egress between two locations depends only on their
//!    lowest common level (zone, region, continent within a cloud, cloud, other cloud) and
//!    the source cloud. Moving a task between two locations of the same group changes each
//!    incident edge's egress by at most that group's price step, so a candidate that costs
//!    more than the group's best by the sum of those steps (and, when time matters, is
//!    slower by the step of one in-edge plus one out-edge) can never be needed.
//! 2. **DP** when the cost-coupled graph is a forest (cost objective, no bound) or the job
//!    is one chain (time objective, no bound): exact, linear in candidates per edge thanks
//!    to per-group minima.
//! 3. **ILP** otherwise (good_lp + microlp): binaries per (task, candidate); per data edge,
//!    continuous "same group" indicators `u_g ≤ Y_a,g`, `u_g ≤ Y_b,g` at the zone, region,
//!    continent and cloud levels — never |C_a|×|C_b| pair variables. Egress is linear in
//!    those indicators with non-positive coefficients, so the solver raises each `u` to
//!    `min(Y_a, Y_b)`, which is exact for integral placements. Finish-time variables carry
//!    the makespan.
//! 4. **Exact location symmetry.** A zone (region, continent, cloud) whose every task can
//!    move to one zone of a sibling group at no higher cost and time (and, across clouds,
//!    no dearer internet egress for what it sends) is dropped: moving all of a solution's
//!    tasks there never makes anything worse. With uniform zone prices this collapses most
//!    of the catalog's ~200 locations per task to a few.
//! 5. **Deadline cut.** Candidates that miss the deadline even with every other task at its
//!    fastest are dropped.
//!
//! For the time objective, a second pass breaks makespan ties by cost: exactly (an ILP at
//! the optimal makespan, warm-started) up to 2,500 working candidates, above that by a
//! deterministic descent that never exceeds the optimal makespan. The makespan itself is
//! always optimal.
//!
//! Pure and deterministic: ties are broken by the candidates' stable order.

use crate::catalog::egress::{EgressModel, Level};
use crate::config::{Objective, TaskAddr};
use crate::resolve::{Candidate, ResolvedJob};
use good_lp::{constraint, variable, Expression, ProblemVariables, Solution, SolverModel, Variable};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

const EPS: f64 = 1e-9;
/// Above this many working candidates, the time objective's cost tie-break is a
/// deterministic descent instead of a second exact ILP (the makespan stays optimal).
const EXACT_TIE_BREAK_LIMIT: usize = 2500;

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

/// Optimizes for an explicit goal.
pub fn optimize_for(job: &ResolvedJob, goal: Goal) -> Result<Assignment, OptimizeError> {
    let t0 = Instant::now();
    let model = Model::new(job, goal);
    let (choice, method, vars, cons) = match solve(&model, goal) {
        Ok(x) => x,
        Err(OptimizeError::Infeasible(_)) => return Err(explain_infeasible(job, goal)),
        Err(e) => return Err(e),
    };
    // A bound on the objective's own quantity holds iff the optimum meets it.
    let over_budget =
        goal.objective == Objective::Cost && goal.budget.is_some_and(|b| total_cost(&model, &choice) > b + 1e-9);
    let over_deadline =
        goal.objective == Objective::Time && goal.deadline_hours.is_some_and(|d| makespan(&model, &choice) > d + 1e-9);
    if over_budget || over_deadline {
        return Err(explain_infeasible(job, goal));
    }
    let solve_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(assemble(job, &model, goal, &choice, method, vars, cons, solve_ms))
}

// ------------------------------------------------------------------ the model

/// Interned location keys of a candidate.
#[derive(Debug, Clone, Copy)]
struct Keys {
    zone: u32,
    region: u32,
    cont: u32,
    cloud: u32,
}

/// A merged edge (all outputs between the same pair), with per-level weights.
struct Edge {
    a: usize,
    b: usize,
    size: f64,
    /// hours per level
    hours: [f64; 5],
}

struct Model<'a> {
    job: &'a ResolvedJob,
    keys: Vec<Vec<Keys>>,
    cloud_names: Vec<String>,
    /// Working candidates per task (indices into `job.tasks[t].candidates`).
    work: Vec<Vec<usize>>,
    edges: Vec<Edge>,
}

impl<'a> Model<'a> {
    fn new(job: &'a ResolvedJob, goal: Goal) -> Model<'a> {
        let mut names: BTreeMap<String, u32> = BTreeMap::new();
        let mut cloud_names = Vec::new();
        let intern = |s: String, names: &mut BTreeMap<String, u32>| -> u32 {
            let n = names.len() as u32;
            *names.entry(s).or_insert(n)
        };
        let mut cloud_ids: BTreeMap<String, u32> = BTreeMap::new();
        let keys: Vec<Vec<Keys>> = job
            .tasks
            .iter()
            .map(|t| {
                t.candidates
                    .iter()
                    .map(|c| {
                        let l = &c.location;
                        let cloud = match cloud_ids.get(&l.cloud) {
                            Some(i) => *i,
                            None => {
                                let i = cloud_names.len() as u32;
                                cloud_names.push(l.cloud.clone());
                                cloud_ids.insert(l.cloud.clone(), i);
                                i
                            }
                        };
                        Keys {
                            zone: intern(format!("{}/{}/{}", l.cloud, l.region, l.zone), &mut names),
                            region: intern(format!("{}/{}", l.cloud, l.region), &mut names),
                            cont: intern(
                                format!("{}//{}", l.cloud, crate::catalog::egress::continent(&l.cloud, &l.region)),
                                &mut names,
                            ),
                            cloud,
                        }
                    })
                    .collect()
            })
            .collect();
        // Merge parallel edges.
        let mut merged: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        for e in &job.edges {
            *merged.entry((e.from, e.to)).or_default() += e.size_gb;
        }
        let eg = &job.egress;
        let edges: Vec<Edge> = merged
            .into_iter()
            .map(|((a, b), size)| Edge { a, b, size, hours: Level::ALL.map(|l| eg.level_seconds(l, size) / 3600.0) })
            .collect();
        let mut m = Model { job, keys, cloud_names, work: Vec::new(), edges };
        m.work = m.dominance(goal);
        m.deadline_cut(goal);
        m.symmetry(goal);
        m
    }

    /// Drops candidates that miss the deadline even when every other task is at its
    /// fastest: earliest start (longest path of fastest durations and same-zone transfers)
    /// + its duration + the shortest possible tail > deadline. Exact.
    fn deadline_cut(&mut self, goal: Goal) {
        let Some(d) = goal.deadline_hours else { return };
        let n = self.job.tasks.len();
        let fastest: Vec<f64> = (0..n)
            .map(|t| self.work[t].iter().map(|&c| self.cand(t, c).duration()).fold(f64::INFINITY, f64::min))
            .collect();
        let mut es = vec![0.0f64; n];
        for t in 0..n {
            for e in self.edges.iter().filter(|e| e.b == t) {
                es[t] = es[t].max(es[e.a] + fastest[e.a] + e.hours[Level::SameZone as usize]);
            }
        }
        let mut tail = vec![0.0f64; n];
        for t in (0..n).rev() {
            for e in self.edges.iter().filter(|e| e.a == t) {
                tail[t] = tail[t].max(e.hours[Level::SameZone as usize] + fastest[e.b] + tail[e.b]);
            }
        }
        for t in 0..n {
            let job = self.job;
            self.work[t].retain(|&c| es[t] + job.tasks[t].candidates[c].duration() + tail[t] <= d + 1e-7);
        }
    }

    /// Exact location symmetry reduction. Zone Z2 is dropped when another zone Z1 of the
    /// same region can host every task that Z2 can, each at most as expensive (and as slow,
    /// when time matters) as its best in Z2: moving all of a solution's Z2 tasks to Z1 keeps
    /// their mutual edges in one zone, makes edges to Z1 cheaper, and leaves every other
    /// edge's price unchanged. Likewise a region R2 is dropped for a zone of another region
    /// of the same cloud and continent (whose prices to everything else are the same).
    fn symmetry(&mut self, goal: Goal) {
        let n = self.job.tasks.len();
        let (cm, tm) = (goal.cost_matters(), goal.time_matters());
        // Level 0: zones within a region; 1: regions within a (cloud, continent); 2:
        // continents within a cloud; 3: clouds, when the target cloud's internet egress is
        // no dearer for every edge the moved tasks send. Moved tasks all go to one zone.
        // Keys of different kinds never collide: zone/region/cont ids share one interner.
        let out_sizes: Vec<Vec<f64>> =
            (0..n).map(|t| self.edges.iter().filter(|e| e.a == t && e.size > 0.0).map(|e| e.size).collect()).collect();
        for level in 0..4 {
            let unit = |k: &Keys| match level {
                0 => k.zone,
                1 => k.region,
                2 => k.cont,
                _ => k.cloud,
            };
            let parent = |k: &Keys| match level {
                0 => k.region,
                1 => k.cont,
                2 => k.cloud,
                _ => 0,
            };
            // parent → units present
            let mut units: BTreeMap<u32, std::collections::BTreeSet<u32>> = BTreeMap::new();
            for t in 0..n {
                for &c in &self.work[t] {
                    let k = self.keys[t][c];
                    units.entry(parent(&k)).or_default().insert(unit(&k));
                }
            }
            for members in units.values() {
                if members.len() < 2 {
                    continue;
                }
                let members: Vec<u32> = members.iter().copied().collect();
                // Later units go first, so among equals the first (e.g. `us-east-1a`) stays.
                for &u2 in members.iter().rev() {
                    // Per task: (min cost, min duration) in u2.
                    let mut need: Vec<(usize, f64, f64)> = Vec::new();
                    for t in 0..n {
                        let (mut mc, mut md, mut any) = (f64::INFINITY, f64::INFINITY, false);
                        for &c in &self.work[t] {
                            if unit(&self.keys[t][c]) == u2 {
                                any = true;
                                mc = mc.min(self.cand(t, c).fixed_cost());
                                md = md.min(self.cand(t, c).duration());
                            }
                        }
                        if any {
                            need.push((t, mc, md));
                        }
                    }
                    // Candidate target zones: those of the other (remaining) units of this
                    // parent group (unit ids are global, so membership is the group test).
                    let mut target_zones: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
                    for t in 0..n {
                        for &c in &self.work[t] {
                            let k = self.keys[t][c];
                            if unit(&k) != u2 && members.contains(&unit(&k)) {
                                target_zones.insert(k.zone);
                            }
                        }
                    }
                    let eg = &self.job.egress;
                    let fits = |z: u32| -> bool {
                        need.iter().all(|&(t, mc, md)| {
                            self.work[t].iter().any(|&c| {
                                let x = self.cand(t, c);
                                let net_ok = level < 3
                                    || !cm
                                    || out_sizes[t].iter().all(|&gb| {
                                        let to = &self.cloud_names[self.keys[t][c].cloud as usize];
                                        let from = &self.cloud_names[u2 as usize];
                                        eg.level_cost(to, Level::OtherCloud, gb)
                                            <= eg.level_cost(from, Level::OtherCloud, gb) + EPS
                                    });
                                self.keys[t][c].zone == z
                                    && net_ok
                                    && (!cm || x.fixed_cost() <= mc + EPS)
                                    && (!tm || x.duration() <= md + EPS)
                            })
                        })
                    };
                    let ok = target_zones.into_iter().any(fits);
                    if ok {
                        for t in 0..n {
                            let keys = &self.keys[t];
                            self.work[t].retain(|&c| unit(&keys[c]) != u2);
                        }
                    }
                }
            }
        }
    }

    fn level(&self, ta: usize, ca: usize, tb: usize, cb: usize) -> Level {
        let (x, y) = (self.keys[ta][ca], self.keys[tb][cb]);
        if x.zone == y.zone {
            Level::SameZone
        } else if x.region == y.region {
            Level::SameRegion
        } else if x.cont == y.cont {
            Level::SameContinent
        } else if x.cloud == y.cloud {
            Level::SameCloud
        } else {
            Level::OtherCloud
        }
    }

    fn cand(&self, t: usize, c: usize) -> &Candidate {
        &self.job.tasks[t].candidates[c]
    }

    fn edge_cost(&self, e: &Edge, ca: usize, cb: usize) -> f64 {
        let lvl = self.level(e.a, ca, e.b, cb);
        self.job.egress.level_cost(&self.cand(e.a, ca).location.cloud, lvl, e.size)
    }

    fn edge_hours(&self, e: &Edge, ca: usize, cb: usize) -> f64 {
        e.hours[self.level(e.a, ca, e.b, cb) as usize]
    }

    /// Largest egress of an edge at a level (over the possible source clouds).
    fn max_cost_at(&self, e: &Edge, level: Level) -> f64 {
        self.cloud_names.iter().map(|c| self.job.egress.level_cost(c, level, e.size)).fold(0.0, f64::max)
    }

    /// Exact dominance pruning (see the module docs).
    fn dominance(&self, goal: Goal) -> Vec<Vec<usize>> {
        let n = self.job.tasks.len();
        let mut incident: Vec<Vec<usize>> = vec![vec![]; n];
        for (i, e) in self.edges.iter().enumerate() {
            incident[e.a].push(i);
            incident[e.b].push(i);
        }
        (0..n)
            .map(|t| {
                let cands = &self.job.tasks[t].candidates;
                let mut keep = vec![true; cands.len()];
                // Bounds per level: moving within a group of level L changes each incident
                // edge by at most the price of L (the farthest two members can be).
                for (li, level) in [Level::SameRegion, Level::SameContinent, Level::SameCloud, Level::OtherCloud]
                    .into_iter()
                    .enumerate()
                {
                    let b_cost: f64 = incident[t].iter().map(|&e| self.max_cost_at(&self.edges[e], level)).sum();
                    let max_in = incident[t]
                        .iter()
                        .filter(|&&e| self.edges[e].b == t)
                        .map(|&e| self.edges[e].hours[level as usize])
                        .fold(0.0, f64::max);
                    let max_out = incident[t]
                        .iter()
                        .filter(|&&e| self.edges[e].a == t)
                        .map(|&e| self.edges[e].hours[level as usize])
                        .fold(0.0, f64::max);
                    let b_time = max_in + max_out;
                    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
                    for (i, k) in self.keys[t].iter().enumerate() {
                        let g = match li {
                            0 => k.region,
                            1 => k.cont,
                            2 => k.cloud,
                            _ => 0,
                        };
                        groups.entry(g).or_default().push(i);
                    }
                    for members in groups.values() {
                        dominate(cands, members, b_cost, b_time, goal, &mut keep);
                    }
                }
                (0..cands.len()).filter(|&i| keep[i]).collect()
            })
            .collect()
    }
}

/// Marks members dominated within one group. `members` are in the candidates' stable
/// order (by cost). A member is dominated by an earlier one that is cheaper by at least
/// `b_cost` (when cost matters) and faster by at least `b_time` (when time matters).
fn dominate(cands: &[Candidate], members: &[usize], b_cost: f64, b_time: f64, goal: Goal, keep: &mut [bool]) {
    let cost = |i: usize| cands[i].fixed_cost();
    let dur = |i: usize| cands[i].duration();
    let (cm, tm) = (goal.cost_matters(), goal.time_matters());
    if cm && !tm {
        let best = members.iter().copied().min_by(|&a, &b| cost(a).total_cmp(&cost(b)));
        if let Some(b) = best {
            for &i in members {
                if i != b && cost(b) + b_cost <= cost(i) + EPS {
                    keep[i] = false;
                }
            }
        }
        return;
    }
    if tm && !cm {
        let best = members.iter().copied().min_by(|&a, &b| dur(a).total_cmp(&dur(b)).then(cost(a).total_cmp(&cost(b))));
        if let Some(b) = best {
            for &i in members {
                if i != b && dur(b) + b_time <= dur(i) + EPS {
                    keep[i] = false;
                }
            }
        }
        return;
    }
    // Both: sorted by cost; the prefix cheaper by b_cost, and its fastest member.
    let mut sorted: Vec<usize> = members.to_vec();
    sorted.sort_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(a.cmp(&b)));
    let mut p = 0;
    let mut best: Option<usize> = None;
    for (pos, &i) in sorted.iter().enumerate() {
        while p < pos && cost(sorted[p]) + b_cost <= cost(i) + EPS {
            if best.is_none_or(|b| dur(sorted[p]) < dur(b)) {
                best = Some(sorted[p]);
            }
            p += 1;
        }
        if let Some(b) = best {
            if dur(b) + b_time <= dur(i) + EPS {
                keep[i] = false;
            }
        }
    }
}

// ------------------------------------------------------------------ solving

type Solved = (Vec<usize>, String, usize, usize);
/// An edge's same-group indicator: (cost coefficient, time coefficient, level, group).
type GroupNode = (f64, f64, usize, u32);

fn solve(m: &Model, goal: Goal) -> Result<Solved, OptimizeError> {
    let n = m.job.tasks.len();
    if n == 0 {
        return Ok((vec![], "empty".into(), 0, 0));
    }
    if m.work.iter().any(Vec::is_empty) {
        return Err(OptimizeError::Infeasible(String::new()));
    }
    let bounded = goal.deadline_hours.is_some() && goal.objective == Objective::Cost
        || goal.budget.is_some() && goal.objective == Objective::Time;
    if !bounded {
        let coupled: Vec<&Edge> = match goal.objective {
            Objective::Cost => m.edges.iter().filter(|e| e.size > 0.0).collect(),
            Objective::Time => m.edges.iter().collect(),
        };
        let dp_ok = match goal.objective {
            Objective::Cost => is_forest(n, &coupled),
            Objective::Time => is_single_chain(n, &coupled),
        };
        if dp_ok && goal.objective == Objective::Cost {
            let choice = dp(m, &coupled, goal.objective);
            let vars: usize = m.work.iter().map(Vec::len).sum();
            return Ok((choice, "dp".into(), vars, coupled.len()));
        }
        if dp_ok {
            // Time on a chain: lexicographic (time, cost), so the model keeps what cost needs.
            let m2 = Model::new(m.job, Goal { budget: Some(f64::INFINITY), ..goal });
            let coupled: Vec<&Edge> = m2.edges.iter().collect();
            let choice = dp(&m2, &coupled, goal.objective);
            let vars: usize = m2.work.iter().map(Vec::len).sum();
            return Ok((choice, "dp".into(), vars, coupled.len()));
        }
    }
    ilp(m, goal)
}

fn is_forest(n: usize, edges: &[&Edge]) -> bool {
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
    for e in edges {
        let (ra, rb) = (find(&mut parent, e.a), find(&mut parent, e.b));
        if ra == rb {
            return false;
        }
        parent[ra] = rb;
    }
    true
}

fn is_single_chain(n: usize, edges: &[&Edge]) -> bool {
    if edges.len() + 1 != n {
        return false;
    }
    let mut indeg = vec![0; n];
    let mut outdeg = vec![0; n];
    for e in edges {
        indeg[e.b] += 1;
        outdeg[e.a] += 1;
    }
    indeg.iter().all(|&d| d <= 1) && outdeg.iter().all(|&d| d <= 1) && is_forest(n, edges)
}

/// A DP value: (the objective, the other measure as a tie-break), compared
/// lexicographically. Both are additive along a chain, and the cost along any forest.
type W = (f64, f64);

fn lt(a: W, b: W) -> bool {
    a.0 < b.0 - EPS || ((a.0 - b.0).abs() <= EPS && a.1 < b.1 - EPS)
}

/// Exact DP over a forest (additive objective). Per-group minima make each edge linear.
fn dp(m: &Model, edges: &[&Edge], obj: Objective) -> Vec<usize> {
    let n = m.job.tasks.len();
    let mut adj: Vec<Vec<(usize, usize)>> = vec![vec![]; n]; // (neighbour, edge idx)
    for (i, e) in edges.iter().enumerate() {
        adj[e.a].push((e.b, i));
        adj[e.b].push((e.a, i));
    }
    let node_w = |t: usize, c: usize| -> W {
        let k = m.cand(t, c);
        match obj {
            Objective::Cost => (k.fixed_cost(), k.duration()),
            Objective::Time => (k.duration(), k.fixed_cost()),
        }
    };
    let mut choice = vec![usize::MAX; n];
    let mut visited = vec![false; n];
    // f[t][j]: best subtree value with t at its j-th working candidate;
    // pick[child][j_parent] = the child's working index.
    let mut f: Vec<Vec<W>> = vec![vec![]; n];
    let mut pick: Vec<Vec<usize>> = vec![vec![]; n];
    let mut parent = vec![(usize::MAX, usize::MAX); n];
    for root in 0..n {
        if visited[root] {
            continue;
        }
        let mut order = Vec::new();
        let mut stack = vec![root];
        visited[root] = true;
        while let Some(v) = stack.pop() {
            order.push(v);
            for &(w, ei) in &adj[v] {
                if !visited[w] {
                    visited[w] = true;
                    parent[w] = (v, ei);
                    stack.push(w);
                }
            }
        }
        for &v in order.iter().rev() {
            let mut fv: Vec<W> = m.work[v].iter().map(|&c| node_w(v, c)).collect();
            for &(w, ei) in &adj[v] {
                if parent[w] != (v, ei) {
                    continue;
                }
                let (best, arg) = child_minima(m, edges[ei], v, w, &f[w], obj);
                for (j, val) in best.iter().enumerate() {
                    fv[j].0 += val.0;
                    fv[j].1 += val.1;
                }
                pick[w] = arg;
            }
            f[v] = fv;
        }
        choice[root] = argmin(&f[root]);
        for &v in &order {
            if v != root {
                choice[v] = pick[v][choice[parent[v].0]];
            }
        }
    }
    choice.iter().enumerate().map(|(t, &j)| m.work[t][j]).collect()
}

fn argmin(v: &[W]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if lt(*x, v[best]) {
            best = i;
        }
    }
    best
}

/// For each working candidate j of `p`: min over the child's working candidates k of
/// f_child[k] + edge weight(j, k), and the k achieving it (first in order on ties).
fn child_minima(m: &Model, e: &Edge, p: usize, child: usize, fc: &[W], obj: Objective) -> (Vec<W>, Vec<usize>) {
    let wc = &m.work[child];
    let wp = &m.work[p];
    // Group minima of the child by zone / region / continent / cloud / all.
    let mut by: [BTreeMap<u32, (W, usize)>; 4] = Default::default();
    let mut all: Option<(W, usize)> = None;
    let upd = |slot: &mut Option<(W, usize)>, val: W, k: usize| {
        if slot.is_none_or(|(b, _)| lt(val, b)) {
            *slot = Some((val, k));
        }
    };
    for (k, &c) in wc.iter().enumerate() {
        let key = m.keys[child][c];
        for (lvl, g) in [key.zone, key.region, key.cont, key.cloud].into_iter().enumerate() {
            let mut s = by[lvl].get(&g).copied();
            upd(&mut s, fc[k], k);
            by[lvl].insert(g, s.expect("set"));
        }
        upd(&mut all, fc[k], k);
    }
    let parent_is_src = e.a == p;
    let weight = |lvl: Level, src_cloud: &str| -> W {
        let (c, h) = (m.job.egress.level_cost(src_cloud, lvl, e.size), e.hours[lvl as usize]);
        match obj {
            Objective::Cost => (c, h),
            Objective::Time => (h, c),
        }
    };
    let add = |a: W, b: W| (a.0 + b.0, a.1 + b.1);
    let mut best = Vec::with_capacity(wp.len());
    let mut arg = Vec::with_capacity(wp.len());
    for &cp in wp {
        let key = m.keys[p][cp];
        let mut cand: Option<(W, usize)> = None;
        let pc = &m.cloud_names[key.cloud as usize];
        for (lvl, g) in [
            (Level::SameZone, key.zone),
            (Level::SameRegion, key.region),
            (Level::SameContinent, key.cont),
            (Level::SameCloud, key.cloud),
        ] {
            if let Some((v, k)) = by[lvl as usize].get(&g) {
                upd(&mut cand, add(*v, weight(lvl, pc)), *k);
            }
        }
        if parent_is_src {
            if let Some((v, k)) = all {
                upd(&mut cand, add(v, weight(Level::OtherCloud, pc)), k);
            }
        } else {
            for (g, (v, k)) in &by[3] {
                if *g != key.cloud {
                    upd(&mut cand, add(*v, weight(Level::OtherCloud, &m.cloud_names[*g as usize])), *k);
                }
            }
        }
        let (v, k) = cand.expect("the child has candidates");
        best.push(v);
        arg.push(k);
    }
    (best, arg)
}

/// The ILP (see the module docs).
fn ilp(m: &Model, goal: Goal) -> Result<Solved, OptimizeError> {
    let first = build_and_solve(m, goal, None)?;
    if goal.objective == Objective::Time {
        // Lexicographic: the cheapest placement at the optimal makespan, on a model pruned
        // for that goal (what may be pruned depends on what matters).
        let best = makespan(m, &first.0);
        let goal2 =
            Goal { objective: Objective::Cost, deadline_hours: Some(best * (1.0 + 1e-9) + 1e-9), budget: goal.budget };
        let m2 = Model::new(m.job, goal2);
        let size: usize = m2.work.iter().map(Vec::len).sum();
        if size > EXACT_TIE_BREAK_LIMIT {
            // The cheapest optimal-makespan placement among the makespan-pruned candidates
            // (exact there, and small), then a descent over the wider candidate sets.
            let start = build_and_solve(m, goal2, Some(&first.0)).map(|s| s.0).unwrap_or_else(|_| first.0.clone());
            let improved = descend_cost(&m2, &start, best * (1.0 + 1e-9) + 1e-9);
            return Ok((
                improved,
                "ilp (lexicographic on the fastest candidates, then cost descent)".into(),
                first.2,
                first.3,
            ));
        }
        let second = build_and_solve(&m2, goal2, Some(&first.0));
        if let Ok(s) = second {
            return Ok((s.0, "ilp (lexicographic)".into(), first.2, first.3));
        }
    }
    Ok(first)
}

fn build_and_solve(m: &Model, goal: Goal, hint: Option<&[usize]>) -> Result<Solved, OptimizeError> {
    if m.work.iter().any(Vec::is_empty) {
        return Err(OptimizeError::Infeasible(String::new()));
    }
    let n = m.job.tasks.len();
    let mut vars = ProblemVariables::new();
    let mut nvars = 0usize;
    let mut cons: Vec<good_lp::Constraint> = Vec::new();
    // x[t][j] for working candidate j; None when fixed (single candidate).
    let x: Vec<Vec<Option<Variable>>> = m
        .work
        .iter()
        .map(|w| {
            if w.len() == 1 {
                vec![None]
            } else {
                nvars += w.len();
                (0..w.len()).map(|_| Some(vars.add(variable().binary()))).collect()
            }
        })
        .collect();
    let xe = |t: usize, j: usize| -> Expression {
        match x[t][j] {
            Some(v) => v.into(),
            None => Expression::from(1.0),
        }
    };
    for xs in x.iter().filter(|xs| xs.len() > 1) {
        let s: Expression = xs.iter().map(|v| Expression::from(v.expect("var"))).sum();
        cons.push(constraint!(s == 1.0));
    }
    // Fixed cost and duration per task.
    let mut cost = Expression::from(0.0);
    let mut dur: Vec<Expression> = Vec::with_capacity(n);
    for t in 0..n {
        let mut d = Expression::from(0.0);
        for (j, &c) in m.work[t].iter().enumerate() {
            let k = m.cand(t, c);
            cost += k.fixed_cost() * xe(t, j);
            d += k.duration() * xe(t, j);
        }
        dur.push(d);
    }
    // Group indicators Y[t][(level, g)] as expressions.
    let group_expr = |t: usize, lvl: usize, g: u32| -> Expression {
        let mut e = Expression::from(0.0);
        for (j, &c) in m.work[t].iter().enumerate() {
            let k = m.keys[t][c];
            let kg = [k.zone, k.region, k.cont, k.cloud][lvl];
            if kg == g {
                e += xe(t, j);
            }
        }
        e
    };
    let groups_of = |t: usize, lvl: usize| -> std::collections::BTreeSet<u32> {
        m.work[t]
            .iter()
            .map(|&c| {
                let k = m.keys[t][c];
                [k.zone, k.region, k.cont, k.cloud][lvl]
            })
            .collect()
    };
    let eg: &EgressModel = &m.job.egress;
    let time = goal.time_matters();
    let mut transfer: Vec<Expression> = Vec::with_capacity(m.edges.len());
    let mut u_vars: Vec<(Variable, usize, usize, usize, u32)> = Vec::new();
    for e in &m.edges {
        let mut tr = Expression::from(e.hours[Level::OtherCloud as usize]);
        if e.size <= 0.0 {
            transfer.push(Expression::from(0.0));
            continue;
        }
        // Source-cloud internet price: Σ_k net_k · Y_a,k.
        for g in groups_of(e.a, 3) {
            cost += eg.level_cost(&m.cloud_names[g as usize], Level::OtherCloud, e.size) * group_expr(e.a, 3, g);
        }
        // Same-group indicators, from the cloud level down to the zone level. A group whose
        // members (on both sides) are those of its parent group has the same indicator value:
        // its coefficients are folded into the parent's variable.
        let steps = [
            (3usize, Level::SameCloud, Level::OtherCloud),
            (2, Level::SameContinent, Level::SameCloud),
            (1, Level::SameRegion, Level::SameContinent),
            (0, Level::SameZone, Level::SameRegion),
        ];
        let members = |t: usize, lvl: usize, g: u32| -> Vec<usize> {
            (0..m.work[t].len())
                .filter(|&j| {
                    let k = m.keys[t][m.work[t][j]];
                    [k.zone, k.region, k.cont, k.cloud][lvl] == g
                })
                .collect()
        };
        // (members of a, members of b) → (coef cost, coef time, lvl, g)
        let mut nodes: BTreeMap<(Vec<usize>, Vec<usize>), GroupNode> = BTreeMap::new();
        for (lvl, lower, upper) in steps {
            let common: Vec<u32> = groups_of(e.a, lvl).intersection(&groups_of(e.b, lvl)).copied().collect();
            for g in common {
                // The source cloud of the group (every member shares it).
                let cloud_id = m.work[e.a]
                    .iter()
                    .map(|&c| m.keys[e.a][c])
                    .find(|k| [k.zone, k.region, k.cont, k.cloud][lvl] == g)
                    .expect("member")
                    .cloud;
                let src = &m.cloud_names[cloud_id as usize];
                let dc = eg.level_cost(src, lower, e.size) - eg.level_cost(src, upper, e.size);
                let dt = e.hours[lower as usize] - e.hours[upper as usize];
                let key = (members(e.a, lvl, g), members(e.b, lvl, g));
                let entry = nodes.entry(key).or_insert((0.0, 0.0, lvl, g));
                entry.0 += dc;
                entry.1 += dt;
            }
        }
        for (dc, dt, lvl, g) in nodes.into_values() {
            if dc.abs() < 1e-15 && (!time || dt.abs() < 1e-15) {
                continue;
            }
            let u = vars.add(variable().min(0.0).max(1.0));
            nvars += 1;
            u_vars.push((u, e.a, e.b, lvl, g));
            cons.push(constraint!(u <= group_expr(e.a, lvl, g)));
            cons.push(constraint!(u <= group_expr(e.b, lvl, g)));
            cost += dc * u;
            tr += dt * u;
        }
        transfer.push(tr);
    }
    // Finish times and makespan.
    let mut makespan_var = None;
    let mut finish_vars: Option<(Vec<Variable>, Variable)> = None;
    if time {
        let f: Vec<Variable> = (0..n).map(|_| vars.add(variable().min(0.0))).collect();
        let ms = vars.add(variable().min(0.0));
        finish_vars = Some((f.clone(), ms));
        nvars += n + 1;
        for t in 0..n {
            cons.push(constraint!(f[t] >= dur[t].clone()));
            cons.push(constraint!(ms >= f[t]));
        }
        for (i, e) in m.edges.iter().enumerate() {
            cons.push(constraint!(f[e.b] >= f[e.a] + transfer[i].clone() + dur[e.b].clone()));
        }
        if let (Some(d), Objective::Cost) = (goal.deadline_hours, goal.objective) {
            cons.push(constraint!(ms <= d));
        }
        makespan_var = Some(ms);
    }
    if let (Some(b), Objective::Time) = (goal.budget, goal.objective) {
        cons.push(constraint!(cost.clone() <= b));
    }
    let objective: Expression = match goal.objective {
        Objective::Cost => cost.clone(),
        Objective::Time => makespan_var.expect("time").into(),
    };
    let ncons = cons.len();
    let to_err = |e: good_lp::ResolutionError| match e {
        good_lp::ResolutionError::Infeasible => OptimizeError::Infeasible(String::new()),
        other => OptimizeError::Solver(other.to_string()),
    };
    #[cfg(feature = "highs")]
    let sol = {
        let mut problem = vars.minimise(objective).using(good_lp::highs);
        for c in cons {
            problem = problem.with(c);
        }
        problem.set_verbose(false);
        problem.solve().map_err(to_err)?
    };
    #[cfg(not(feature = "highs"))]
    let sol = {
        let mut problem = vars.minimise(objective).using(good_lp::microlp);
        for c in cons {
            problem = problem.with(c);
        }
        // A feasible starting point (all variables) when the hint lies inside the model.
        let pos: Option<Vec<usize>> =
            hint.and_then(|h| (0..n).map(|t| m.work[t].iter().position(|&c| c == h[t])).collect());
        if let (Some(h), Some(pos)) = (hint, pos) {
            let mut values: Vec<(Variable, f64)> = Vec::new();
            for (t, xs) in x.iter().enumerate() {
                for (j, v) in xs.iter().enumerate() {
                    if let Some(v) = v {
                        values.push((*v, if j == pos[t] { 1.0 } else { 0.0 }));
                    }
                }
            }
            for (u, a, b, lvl, g) in &u_vars {
                let ka = m.keys[*a][h[*a]];
                let kb = m.keys[*b][h[*b]];
                let ga = [ka.zone, ka.region, ka.cont, ka.cloud][*lvl];
                let gb = [kb.zone, kb.region, kb.cont, kb.cloud][*lvl];
                values.push((*u, if ga == *g && gb == *g { 1.0 } else { 0.0 }));
            }
            if let Some((f, ms)) = &finish_vars {
                let times = schedule(m, h);
                for t in 0..n {
                    values.push((f[t], times[t].1));
                }
                values.push((*ms, times.iter().map(|x| x.1).fold(0.0, f64::max)));
            }
            problem = good_lp::WithInitialSolution::with_initial_solution(problem, values);
        }
        problem.solve().map_err(to_err)?
    };
    let choice: Vec<usize> = (0..n)
        .map(|t| {
            if m.work[t].len() == 1 {
                return m.work[t][0];
            }
            let j = (0..m.work[t].len())
                .max_by(|&a, &b| {
                    sol.value(x[t][a].expect("var")).total_cmp(&sol.value(x[t][b].expect("var"))).then(b.cmp(&a))
                })
                .expect("non-empty");
            m.work[t][j]
        })
        .collect();
    Ok((choice, "ilp".into(), nvars, ncons))
}

/// Deterministic cost descent: switch one task at a time to a cheaper working candidate
/// while the makespan stays within `deadline`, until nothing improves.
fn descend_cost(m: &Model, start: &[usize], deadline: f64) -> Vec<usize> {
    let n = m.job.tasks.len();
    let mut choice = start.to_vec();
    let mut incident: Vec<Vec<&Edge>> = vec![vec![]; n];
    for e in &m.edges {
        incident[e.a].push(e);
        incident[e.b].push(e);
    }
    let local = |ch: &[usize], t: usize, c: usize| -> f64 {
        let own = m.cand(t, c).fixed_cost();
        own + incident[t]
            .iter()
            .map(|e| {
                let (a, b) = (if e.a == t { c } else { ch[e.a] }, if e.b == t { c } else { ch[e.b] });
                m.edge_cost(e, a, b)
            })
            .sum::<f64>()
    };
    for _ in 0..8 {
        let mut changed = false;
        for t in 0..n {
            let current = local(&choice, t, choice[t]);
            let mut options: Vec<(f64, usize)> =
                m.work[t].iter().map(|&c| (local(&choice, t, c), c)).filter(|(v, _)| *v < current - 1e-9).collect();
            options.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (_, c) in options {
                let old = choice[t];
                choice[t] = c;
                if makespan(m, &choice) <= deadline {
                    changed = true;
                    break;
                }
                choice[t] = old;
            }
        }
        if !changed {
            break;
        }
    }
    choice
}

// ------------------------------------------------------------------ evaluation

/// Exact cost of a full choice (candidate index per task).
fn total_cost(m: &Model, choice: &[usize]) -> f64 {
    let fixed: f64 = choice.iter().enumerate().map(|(t, &c)| m.cand(t, c).fixed_cost()).sum();
    let eg: f64 = m.edges.iter().map(|e| m.edge_cost(e, choice[e.a], choice[e.b])).sum();
    fixed + eg
}

/// Start and finish times of a full choice.
fn schedule(m: &Model, choice: &[usize]) -> Vec<(f64, f64)> {
    let n = m.job.tasks.len();
    let mut times = vec![(0.0, 0.0); n];
    let mut inc: Vec<Vec<&Edge>> = vec![vec![]; n];
    for e in &m.edges {
        inc[e.b].push(e);
    }
    for t in 0..n {
        // Tasks are in topological order.
        let start = inc[t].iter().map(|e| times[e.a].1 + m.edge_hours(e, choice[e.a], choice[e.b])).fold(0.0, f64::max);
        times[t] = (start, start + m.cand(t, choice[t]).duration());
    }
    times
}

fn makespan(m: &Model, choice: &[usize]) -> f64 {
    schedule(m, choice).iter().map(|x| x.1).fold(0.0, f64::max)
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    job: &ResolvedJob,
    m: &Model,
    goal: Goal,
    choice: &[usize],
    method: String,
    vars: usize,
    cons: usize,
    solve_ms: f64,
) -> Assignment {
    let times = schedule(m, choice);
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
            working_candidates: m.work[t].len(),
        });
    }
    let total = total_cost(m, choice);
    let ms = makespan(m, choice);
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
            method,
            variables: vars,
            constraints: cons,
            solve_ms,
            binding,
            deadline_hours: goal.deadline_hours,
            budget: goal.budget,
        },
    }
}

/// The best alternatives of task `t` in other locations with its neighbours fixed: one
/// per location, cheapest first.
fn fallbacks(m: &Model, choice: &[usize], t: usize, k: usize) -> Vec<Fallback> {
    let local_cost = |c: usize| -> f64 {
        let mut ch = choice.to_vec();
        ch[t] = c;
        let own = m.cand(t, c).fixed_cost();
        let eg: f64 = m.edges.iter().filter(|e| e.a == t || e.b == t).map(|e| m.edge_cost(e, ch[e.a], ch[e.b])).sum();
        own + eg
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
