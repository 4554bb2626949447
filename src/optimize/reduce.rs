//! Exact reductions of one component's cost problem before any ILP.
//!
//! The problem: choose one live candidate per task minimizing Σ unary + Σ pairwise edge
//! costs (egress by level and source cloud, or a dense table made by an elimination).
//! Tasks in the *time network* (those a deadline can still bind, see `mod.rs`) are
//! never eliminated, and their candidates are only dropped for candidates that are
//! also no slower. Every rule keeps an optimal solution reachable:
//!
//! - **Singleton folding.** A task with one candidate adds its edges' costs to its
//!   neighbours' unary costs.
//! - **Leaf elimination** (bucket elimination of degree ≤ 1): a task with one edge is
//!   replaced by `min_k unary(k) + edge(k, j)` added to its neighbour's candidate `j`;
//!   an isolated task takes its cheapest candidate. This is the forest DP.
//! - **Dead-end elimination** (Goldstein's criterion): candidate `c` is dropped when
//!   another candidate `c'` of the same task is never worse whatever the neighbours do:
//!   `unary(c') − unary(c) + Σ_edges max_y [edge(c', y) − edge(c, y)] ≤ 0`, `y` over the
//!   neighbour's live candidates. Swapping `c` for `c'` in any solution then never
//!   raises its cost, so an optimum survives. Repeated to a fixpoint, since every drop
//!   sharpens the neighbours' maxima.
//! - **Series elimination** (degree 2, tried only when it reduces the whole component):
//!   a task between two neighbours becomes a table `min_k unary(k) + e1(i, k) + e2(k, j)`
//!   on the pair, merged with any edge already between them. Together with leaf
//!   elimination this solves every series-parallel component (fan-out/fan-in) exactly.
//!
//! What remains goes to the ILP; eliminated tasks are decided afterwards, in reverse
//! order of elimination, from the recorded arg-minima.

use super::model::{Keys, Model};
use super::EPS;

/// Largest table (entries) a series elimination may create.
const TABLE_LIMIT: usize = 1 << 14;

/// A cost edge between two local tasks: a model edge (egress) or a table.
#[derive(Clone)]
pub(super) struct PEdge {
    pub a: usize,
    pub b: usize,
    /// The model edge (unused for tables).
    pub e: usize,
    pub alive: bool,
    /// `table[pa * |cands[b]| + pb]`, by candidate positions at creation (sets no
    /// longer shrink once tables exist).
    table: Option<Vec<f64>>,
}

#[derive(Clone)]
enum Step {
    Fixed { t: usize, c: usize },
    Leaf { t: usize, nb: usize, nb_cands: Vec<usize>, pick: Vec<usize> },
    Series { t: usize, n1: usize, n2: usize, c1: Vec<usize>, c2: Vec<usize>, pick: Vec<usize> },
}

#[derive(Clone)]
pub(super) struct Problem<'m, 'a> {
    pub m: &'m Model<'a>,
    /// Global task ids; local ids are positions here.
    pub tasks: Vec<usize>,
    /// Live candidates per task (indices into the job's candidates), in stable order.
    pub cands: Vec<Vec<usize>>,
    /// Cost per live candidate (fixed cost plus what eliminations folded in).
    pub unary: Vec<Vec<f64>>,
    /// In the time network: kept for the ILP, pruned only with time in mind.
    pub timed: Vec<bool>,
    pub edges: Vec<PEdge>,
    /// Model edges between timed tasks: (local a, local b, model edge).
    pub time_edges: Vec<(usize, usize, usize)>,
    adj: Vec<Vec<usize>>,
    tadj: Vec<Vec<usize>>,
    deg: Vec<usize>,
    /// Eliminated (decided by a step).
    pub done: Vec<bool>,
    steps: Vec<Step>,
    /// Cost of eliminated tasks not folded anywhere.
    pub constant: f64,
    /// A candidate id per task that dead-end elimination keeps (a known feasible
    /// placement), or `usize::MAX`.
    protect: Vec<usize>,
}

impl<'m, 'a> Problem<'m, 'a> {
    /// The cost problem of one component: its tasks (global ids), their working
    /// candidates, the cost-coupled edges among them (size > 0), and which tasks are timed.
    pub fn new(m: &'m Model<'a>, tasks: Vec<usize>, timed: Vec<bool>) -> Self {
        let k = tasks.len();
        let mut local = std::collections::HashMap::with_capacity(k);
        for (i, &t) in tasks.iter().enumerate() {
            local.insert(t, i);
        }
        let cands: Vec<Vec<usize>> = tasks.iter().map(|&t| m.work[t].clone()).collect();
        let unary: Vec<Vec<f64>> =
            tasks.iter().zip(&cands).map(|(&t, cs)| cs.iter().map(|&c| m.cand(t, c).fixed_cost()).collect()).collect();
        let mut edges = Vec::new();
        let mut time_edges = Vec::new();
        let mut adj = vec![vec![]; k];
        let mut tadj = vec![vec![]; k];
        for (i, &t) in tasks.iter().enumerate() {
            for &e in &m.outs[t] {
                let ed = &m.edges[e];
                let Some(&j) = local.get(&ed.b) else { continue };
                if ed.size > 0.0 {
                    adj[i].push(edges.len());
                    adj[j].push(edges.len());
                    edges.push(PEdge { a: i, b: j, e, alive: true, table: None });
                }
                if timed[i] && timed[j] {
                    tadj[i].push(time_edges.len());
                    tadj[j].push(time_edges.len());
                    time_edges.push((i, j, e));
                }
            }
        }
        let deg = adj.iter().map(Vec::len).collect();
        Problem {
            m,
            tasks,
            cands,
            unary,
            timed,
            edges,
            time_edges,
            adj,
            tadj,
            deg,
            done: vec![false; k],
            steps: Vec::new(),
            constant: 0.0,
            protect: vec![usize::MAX; k],
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Alive cost edges.
    pub fn alive_edges(&self) -> impl Iterator<Item = &PEdge> {
        self.edges.iter().filter(|e| e.alive)
    }

    fn keys(&self, t: usize, p: usize) -> Keys {
        self.m.keys[self.tasks[t]][self.cands[t][p]]
    }

    /// Cost of edge `ei` with its ends at positions `pa` (of `a`) and `pb` (of `b`).
    pub fn pair(&self, ei: usize, pa: usize, pb: usize) -> f64 {
        let ed = &self.edges[ei];
        match &ed.table {
            Some(tab) => tab[pa * self.cands[ed.b].len() + pb],
            None => self.m.cost_keys(ed.e, self.keys(ed.a, pa), self.keys(ed.b, pb)),
        }
    }

    /// Cost of edge `ei` with task `t` at position `pt` and the other end at `po`.
    fn pair_from(&self, ei: usize, t: usize, pt: usize, po: usize) -> f64 {
        if self.edges[ei].a == t {
            self.pair(ei, pt, po)
        } else {
            self.pair(ei, po, pt)
        }
    }

    fn other(&self, ei: usize, t: usize) -> usize {
        let e = &self.edges[ei];
        if e.a == t {
            e.b
        } else {
            e.a
        }
    }

    fn kill(&mut self, ei: usize) {
        let (a, b) = (self.edges[ei].a, self.edges[ei].b);
        self.edges[ei].alive = false;
        self.deg[a] -= 1;
        self.deg[b] -= 1;
    }

    fn alive_adj(&self, t: usize) -> Vec<usize> {
        self.adj[t].iter().copied().filter(|&ei| self.edges[ei].alive).collect()
    }

    /// Applies singleton folding and leaf elimination until neither applies.
    fn simplify(&mut self) {
        let mut queue: Vec<usize> = (0..self.len()).collect();
        while let Some(t) = queue.pop() {
            if self.done[t] {
                continue;
            }
            if self.cands[t].len() == 1 && self.deg[t] > 0 {
                for ei in self.alive_adj(t) {
                    let nb = self.other(ei, t);
                    for pj in 0..self.cands[nb].len() {
                        let v = self.pair_from(ei, t, 0, pj);
                        self.unary[nb][pj] += v;
                    }
                    self.kill(ei);
                    queue.push(nb);
                }
            }
            if self.timed[t] {
                continue;
            }
            if self.deg[t] == 0 {
                let p = argmin(&self.unary[t]);
                self.constant += self.unary[t][p];
                self.steps.push(Step::Fixed { t, c: self.cands[t][p] });
                self.done[t] = true;
            } else if self.deg[t] == 1 {
                let ei = self.alive_adj(t)[0];
                let nb = self.other(ei, t);
                let mut pick = Vec::with_capacity(self.cands[nb].len());
                for pj in 0..self.cands[nb].len() {
                    let vals: Vec<f64> =
                        (0..self.cands[t].len()).map(|pk| self.unary[t][pk] + self.pair_from(ei, t, pk, pj)).collect();
                    let pk = argmin(&vals);
                    self.unary[nb][pj] += vals[pk];
                    pick.push(self.cands[t][pk]);
                }
                self.steps.push(Step::Leaf { t, nb, nb_cands: self.cands[nb].clone(), pick });
                self.kill(ei);
                self.done[t] = true;
                queue.push(nb);
            }
        }
    }

    /// One pass of dead-end elimination over every live task. True when something
    /// was dropped.
    fn dee_pass(&mut self) -> bool {
        let mut changed = false;
        for t in 0..self.len() {
            if self.done[t] || self.cands[t].len() < 2 {
                continue;
            }
            // Per alive edge: (edge, distinct neighbour placements by zone, as positions).
            let nbs: Vec<(usize, Vec<usize>)> = self
                .alive_adj(t)
                .into_iter()
                .map(|ei| {
                    let nb = self.other(ei, t);
                    (ei, self.distinct_zones(nb))
                })
                .collect();
            let tn: Vec<(usize, usize, Vec<usize>)> = if self.timed[t] {
                self.tadj[t]
                    .iter()
                    .map(|&i| {
                        let (a, b, e) = self.time_edges[i];
                        let nb = if a == t { b } else { a };
                        (e, nb, self.distinct_zones(nb))
                    })
                    .collect()
            } else {
                vec![]
            };
            let gt = self.tasks[t];
            let mut alive = vec![true; self.cands[t].len()];
            for c in (0..self.cands[t].len()).rev() {
                if self.cands[t][c] == self.protect[t] {
                    continue;
                }
                let kc = self.keys(t, c);
                let dc = self.m.cand(gt, self.cands[t][c]).duration();
                let dominated = (0..self.cands[t].len()).any(|c2| {
                    if c2 == c || !alive[c2] {
                        return false;
                    }
                    let k2 = self.keys(t, c2);
                    if self.timed[t] {
                        if self.m.cand(gt, self.cands[t][c2]).duration() > dc + EPS {
                            return false;
                        }
                        let slower = tn.iter().any(|(e, nb, ys)| {
                            let h = &self.m.edges[*e].hours;
                            ys.iter().any(|&y| {
                                let ky = self.keys(*nb, y);
                                h[Model::level_of(k2, ky) as usize] > h[Model::level_of(kc, ky) as usize] + EPS
                            })
                        });
                        if slower {
                            return false;
                        }
                    }
                    let mut s = self.unary[t][c2] - self.unary[t][c];
                    for (ei, ys) in &nbs {
                        let worst = ys
                            .iter()
                            .map(|&y| self.pair_from(*ei, t, c2, y) - self.pair_from(*ei, t, c, y))
                            .fold(f64::NEG_INFINITY, f64::max);
                        s += worst;
                    }
                    s < -EPS || (s <= EPS && c2 < c)
                });
                if dominated {
                    alive[c] = false;
                    changed = true;
                }
            }
            if alive.iter().any(|a| !a) {
                let mut i = 0;
                self.cands[t].retain(|_| {
                    i += 1;
                    alive[i - 1]
                });
                let mut i = 0;
                self.unary[t].retain(|_| {
                    i += 1;
                    alive[i - 1]
                });
            }
        }
        changed
    }

    /// Positions of the first live candidate in each distinct zone of task `t` (edge
    /// costs and times depend only on the zone's keys).
    fn distinct_zones(&self, t: usize) -> Vec<usize> {
        let mut seen: Vec<u32> = Vec::new();
        let mut out = Vec::new();
        for p in 0..self.cands[t].len() {
            let z = self.keys(t, p).zone;
            if !seen.contains(&z) {
                seen.push(z);
                out.push(p);
            }
        }
        out
    }

    /// Singleton folding, leaf elimination and dead-end elimination to a fixpoint.
    pub fn reduce(&mut self) {
        loop {
            self.simplify();
            if !self.dee_pass() {
                break;
            }
        }
        self.simplify();
    }

    /// Tries series elimination on a copy; returns it when the whole component reduced
    /// (every task decided), else None.
    pub fn series_parallel(&self) -> Option<Self> {
        if self.timed.iter().any(|&t| t) {
            return None;
        }
        let mut p = self.clone();
        loop {
            p.simplify();
            if p.done.iter().all(|&d| d) {
                return Some(p);
            }
            let t = (0..p.len()).find(|&t| !p.done[t] && p.deg[t] == 2)?;
            p.eliminate_series(t)?;
        }
    }

    fn eliminate_series(&mut self, t: usize) -> Option<()> {
        let es = self.alive_adj(t);
        let (e1, e2) = (es[0], es[1]);
        let (n1, n2) = (self.other(e1, t), self.other(e2, t));
        let (l1, l2, lt) = (self.cands[n1].len(), self.cands[n2].len(), self.cands[t].len());
        if l1 * l2 > TABLE_LIMIT {
            return None;
        }
        let mut tab = vec![0.0; l1 * l2];
        let mut pick = vec![0usize; l1 * l2];
        let mut vals = vec![0.0; lt];
        for p1 in 0..l1 {
            for p2 in 0..l2 {
                for (pk, v) in vals.iter_mut().enumerate() {
                    *v = self.unary[t][pk] + self.pair_from(e1, t, pk, p1) + self.pair_from(e2, t, pk, p2);
                }
                let pk = argmin(&vals);
                tab[p1 * l2 + p2] = vals[pk];
                pick[p1 * l2 + p2] = self.cands[t][pk];
            }
        }
        self.kill(e1);
        self.kill(e2);
        self.done[t] = true;
        self.steps.push(Step::Series { t, n1, n2, c1: self.cands[n1].clone(), c2: self.cands[n2].clone(), pick });
        // Merge with an edge already between n1 and n2.
        if let Some(ei) = self.alive_adj(n1).into_iter().find(|&ei| self.other(ei, n1) == n2) {
            for p1 in 0..l1 {
                for p2 in 0..l2 {
                    tab[p1 * l2 + p2] += self.pair_from(ei, n1, p1, p2);
                }
            }
            self.kill(ei);
        }
        let id = self.edges.len();
        self.edges.push(PEdge { a: n1, b: n2, e: usize::MAX, alive: true, table: Some(tab) });
        self.adj[n1].push(id);
        self.adj[n2].push(id);
        self.deg[n1] += 1;
        self.deg[n2] += 1;
        Some(())
    }

    /// Connected groups of undecided tasks over alive cost edges and time edges.
    pub fn residual_components(&self) -> Vec<Vec<usize>> {
        let k = self.len();
        let mut seen = vec![false; k];
        let mut out = Vec::new();
        for s in 0..k {
            if self.done[s] || seen[s] {
                continue;
            }
            let mut comp = vec![s];
            seen[s] = true;
            let mut i = 0;
            while i < comp.len() {
                let v = comp[i];
                i += 1;
                let nbs = self.adj[v]
                    .iter()
                    .filter(|&&ei| self.edges[ei].alive)
                    .map(|&ei| self.other(ei, v))
                    .chain(self.tadj[v].iter().map(|&ti| {
                        let (a, b, _) = self.time_edges[ti];
                        if a == v {
                            b
                        } else {
                            a
                        }
                    }))
                    .collect::<Vec<_>>();
                for w in nbs {
                    if !seen[w] && !self.done[w] {
                        seen[w] = true;
                        comp.push(w);
                    }
                }
            }
            comp.sort_unstable();
            out.push(comp);
        }
        out
    }

    /// Keeps `choice` (a candidate id per local task) through dead-end elimination.
    pub fn protect(&mut self, choice: &[usize]) {
        self.protect = choice.to_vec();
    }

    /// The same problem without its time network.
    pub fn relaxed(&self) -> Self {
        let mut q = self.clone();
        q.timed = vec![false; q.len()];
        q.time_edges.clear();
        q.tadj = vec![vec![]; q.len()];
        q
    }

    /// The relaxed problem with every timed task fixed to its candidate in `choice`
    /// (global task → candidate id); None when one of those is not live.
    pub fn with_timed_fixed(&self, choice: &[usize]) -> Option<Self> {
        let mut q = self.relaxed();
        for t in (0..self.len()).filter(|&t| self.timed[t]) {
            let c = choice[self.tasks[t]];
            let p = q.cands[t].iter().position(|&x| x == c)?;
            q.cands[t] = vec![c];
            q.unary[t] = vec![q.unary[t][p]];
        }
        Some(q)
    }

    /// Best responses that keep the deadline: each task in turn moves to its cheapest
    /// live candidate (neighbours fixed) with which every timed path still finishes by
    /// `deadline`, until none helps. `x`: a candidate id per local task, feasible.
    pub fn cheapen_within(&self, x: &mut [usize], deadline: f64) {
        for _ in 0..4 {
            let mut changed = false;
            for t in (0..self.len()).filter(|&t| !self.done[t] && self.cands[t].len() > 1) {
                let adj = self.alive_adj(t);
                let cost = |c: usize, x: &[usize]| -> f64 {
                    let p = self.cands[t].iter().position(|&y| y == c).expect("live");
                    self.unary[t][p]
                        + adj
                            .iter()
                            .map(|&ei| {
                                let o = self.other(ei, t);
                                let po = self.cands[o].iter().position(|&y| y == x[o]).expect("live");
                                self.pair_from(ei, t, p, po)
                            })
                            .sum::<f64>()
                };
                let now = cost(x[t], x);
                let mut options: Vec<(f64, usize)> =
                    self.cands[t].iter().map(|&c| (cost(c, x), c)).filter(|&(v, _)| v < now - EPS).collect();
                options.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let old = x[t];
                for (_, c) in options {
                    x[t] = c;
                    if !self.timed[t] || self.meets_deadline(x, deadline) {
                        changed = true;
                        break;
                    }
                    x[t] = old;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Whether every path of timed tasks finishes by `deadline` under `x` (a candidate
    /// id per local task).
    pub fn meets_deadline(&self, x: &[usize], deadline: f64) -> bool {
        let mut finish = vec![0.0f64; self.len()];
        let tol = 1e-9 * deadline.max(1.0);
        for t in (0..self.len()).filter(|&t| self.timed[t]) {
            let gt = self.tasks[t];
            let start = self.tadj[t]
                .iter()
                .map(|&i| self.time_edges[i])
                .filter(|&(_, b, _)| b == t)
                .map(|(a, _, e)| finish[a] + self.m.edge_hours(e, x[a], x[t]))
                .fold(0.0, f64::max);
            finish[t] = start + self.m.cand(gt, x[t]).duration();
            if finish[t] > deadline + tol {
                return false;
            }
        }
        true
    }

    /// Whether `t` still has a cost edge.
    pub fn has_edges(&self, t: usize) -> bool {
        self.deg[t] > 0
    }

    /// A good choice for a residual component, time ignored (an ILP's first incumbent):
    /// the cheapest candidates, then best responses to the neighbours until none helps.
    pub fn heuristic(&self, comp: &[usize]) -> Vec<usize> {
        let start: Vec<usize> = comp.iter().map(|&t| argmin(&self.unary[t])).collect();
        self.improve(comp, start)
    }

    /// Best responses from `start` (positions, in `comp`'s order) until none helps;
    /// returns candidate ids.
    pub fn improve(&self, comp: &[usize], start: Vec<usize>) -> Vec<usize> {
        let mut pos = vec![0usize; self.len()];
        for (i, &t) in comp.iter().enumerate() {
            pos[t] = start[i];
        }
        for _ in 0..20 {
            let mut changed = false;
            for &t in comp {
                let adj = self.alive_adj(t);
                let vals: Vec<f64> = (0..self.cands[t].len())
                    .map(|p| {
                        self.unary[t][p]
                            + adj.iter().map(|&ei| self.pair_from(ei, t, p, pos[self.other(ei, t)])).sum::<f64>()
                    })
                    .collect();
                let b = argmin(&vals);
                if vals[b] < vals[pos[t]] - EPS {
                    pos[t] = b;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        comp.iter().map(|&t| self.cands[t][pos[t]]).collect()
    }

    /// Cost of a choice (candidate ids, in `comp`'s order) of a residual component.
    pub fn energy(&self, comp: &[usize], choice: &[usize]) -> f64 {
        let mut pos = vec![usize::MAX; self.len()];
        for (i, &t) in comp.iter().enumerate() {
            pos[t] = self.cands[t].iter().position(|&c| c == choice[i]).expect("live candidate");
        }
        let unary: f64 = comp.iter().map(|&t| self.unary[t][pos[t]]).sum();
        let edges: f64 = self
            .edges
            .iter()
            .enumerate()
            .filter(|(_, e)| e.alive && pos[e.a] != usize::MAX && pos[e.b] != usize::MAX)
            .map(|(ei, e)| self.pair(ei, pos[e.a], pos[e.b]))
            .sum();
        unary + edges
    }

    /// Drops the candidates of `t` marked in `out` (positions), keeping at least one.
    pub fn drop_candidates(&mut self, t: usize, out: &[bool]) {
        debug_assert!(self.edges.iter().all(|e| e.table.is_none()), "positions are fixed once tables exist");
        if out.iter().all(|&x| x) || !out.iter().any(|&x| x) {
            return;
        }
        let mut i = 0;
        self.cands[t].retain(|_| {
            i += 1;
            !out[i - 1]
        });
        let mut i = 0;
        self.unary[t].retain(|_| {
            i += 1;
            !out[i - 1]
        });
    }

    /// Fills in the eliminated tasks given the choice (candidate ids) of the others.
    pub fn back_substitute(&self, choice: &mut [usize]) {
        for s in self.steps.iter().rev() {
            match s {
                Step::Fixed { t, c } => choice[*t] = *c,
                Step::Leaf { t, nb, nb_cands, pick } => {
                    let pj = nb_cands.iter().position(|&c| c == choice[*nb]).expect("neighbour decided");
                    choice[*t] = pick[pj];
                }
                Step::Series { t, n1, n2, c1, c2, pick } => {
                    let p1 = c1.iter().position(|&c| c == choice[*n1]).expect("neighbour decided");
                    let p2 = c2.iter().position(|&c| c == choice[*n2]).expect("neighbour decided");
                    choice[*t] = pick[p1 * c2.len() + p2];
                }
            }
        }
    }
}

/// First index of the minimum (ties within EPS go to the earlier one).
pub(super) fn argmin(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x < v[best] - EPS {
            best = i;
        }
    }
    best
}
