//! Lower bounds by message passing, and the candidates they rule out.
//!
//! A residual cost problem `E(x) = Σ_t θ_t(x_t) + Σ_(a,b) θ_ab(x_a, x_b)` is
//! reparametrized (`θ̂`, the same `E` for every `x`) by sequential star updates: a task
//! collects the min-marginals of its edges, then hands shares of the sum to the edges
//! toward the tasks after it in the pass (SRMP's weights, passes alternating
//! direction). Any reparametrization gives the lower bound
//! `LB = Σ_t min θ̂_t + Σ_e min θ̂_e`, and the updates never lower it.
//!
//! Forcing task `t` to candidate `c` raises that bound to
//! `LB_c = LB − min θ̂_t + θ̂_t(c) + Σ_{e∋t} (min_y θ̂_e(c, y) − min θ̂_e)`. With `UB` the
//! cost of any solution that satisfies every constraint, a candidate with
//! `LB_c > UB` is in no solution as good as that one, hence in no optimal solution:
//! dropping it is exact (reduced-cost fixing). When `LB` reaches `UB` the solution is
//! proven optimal outright. Dropping constraints (a deadline) only lowers `LB`, so the
//! same holds for the deadline problem with a feasible `UB`.

use super::reduce::Problem;
use std::time::Instant;

/// Total table entries above which the bound is not attempted (memory).
const TABLE_BUDGET: usize = 40_000_000;

pub(super) struct Dual {
    /// Local task ids of the problem, in pass order (topological).
    nodes: Vec<usize>,
    theta: Vec<Vec<f64>>,
    /// (node a, node b, table a×b).
    edges: Vec<(usize, usize, Vec<f64>)>,
    /// Per node: (edge, this node is the edge's `a`).
    adj: Vec<Vec<(usize, bool)>>,
}

impl Dual {
    /// The reparametrizable model of residual component `comp` of `p` (cost edges only),
    /// or None when its tables would be too large.
    pub fn new(p: &Problem, comp: &[usize]) -> Option<Dual> {
        let mut idx = vec![usize::MAX; p.len()];
        for (i, &t) in comp.iter().enumerate() {
            idx[t] = i;
        }
        let pe: Vec<usize> = (0..p.edges.len())
            .filter(|&ei| p.edges[ei].alive && idx[p.edges[ei].a] != usize::MAX && idx[p.edges[ei].b] != usize::MAX)
            .collect();
        let entries: usize = pe.iter().map(|&ei| p.cands[p.edges[ei].a].len() * p.cands[p.edges[ei].b].len()).sum();
        if entries > TABLE_BUDGET {
            return None;
        }
        let mut adj = vec![vec![]; comp.len()];
        let edges: Vec<(usize, usize, Vec<f64>)> = pe
            .iter()
            .enumerate()
            .map(|(k, &ei)| {
                let (a, b) = (p.edges[ei].a, p.edges[ei].b);
                let (la, lb) = (p.cands[a].len(), p.cands[b].len());
                let mut tab = Vec::with_capacity(la * lb);
                for pa in 0..la {
                    for pb in 0..lb {
                        tab.push(p.pair(ei, pa, pb));
                    }
                }
                adj[idx[a]].push((k, true));
                adj[idx[b]].push((k, false));
                (idx[a], idx[b], tab)
            })
            .collect();
        let theta = comp.iter().map(|&t| p.unary[t].clone()).collect();
        Some(Dual { nodes: comp.to_vec(), theta, edges, adj })
    }

    fn size(&self, i: usize) -> usize {
        self.theta[i].len()
    }

    /// Σ_t min θ̂_t + Σ_e min θ̂_e.
    pub fn bound(&self) -> f64 {
        let nodes: f64 = self.theta.iter().map(|v| v.iter().copied().fold(f64::INFINITY, f64::min)).sum();
        let edges: f64 = self.edges.iter().map(|(_, _, t)| t.iter().copied().fold(f64::INFINITY, f64::min)).sum();
        nodes + edges
    }

    /// Min-marginal of edge `k` on the side of node `i`.
    fn marginal(&self, k: usize, is_a: bool, out: &mut Vec<f64>) {
        let (a, b, tab) = &self.edges[k];
        let (la, lb) = (self.size(*a), self.size(*b));
        out.clear();
        if is_a {
            for pa in 0..la {
                out.push(tab[pa * lb..(pa + 1) * lb].iter().copied().fold(f64::INFINITY, f64::min));
            }
        } else {
            out.resize(lb, f64::INFINITY);
            for pa in 0..la {
                for (pb, o) in out.iter_mut().enumerate() {
                    *o = o.min(tab[pa * lb + pb]);
                }
            }
        }
    }

    /// Adds `w · v` along node `i`'s side of edge `k`.
    fn add_side(&mut self, k: usize, is_a: bool, v: &[f64], w: f64) {
        let (a, b) = (self.edges[k].0, self.edges[k].1);
        let (la, lb) = (self.size(a), self.size(b));
        let tab = &mut self.edges[k].2;
        for pa in 0..la {
            for pb in 0..lb {
                tab[pa * lb + pb] += w * if is_a { v[pa] } else { v[pb] };
            }
        }
    }

    /// One sequential pass (forward: in topological order).
    fn pass(&mut self, forward: bool) {
        let n = self.nodes.len();
        let mut mu = Vec::new();
        for s in 0..n {
            let i = if forward { s } else { n - 1 - s };
            // Collect every incident edge's min-marginal into the node.
            for j in 0..self.adj[i].len() {
                let (k, is_a) = self.adj[i][j];
                self.marginal(k, is_a, &mut mu);
                self.add_side(k, is_a, &mu, -1.0);
                for (x, m) in self.theta[i].iter_mut().zip(&mu) {
                    *x += m;
                }
            }
            // Hand shares to the edges toward later nodes of this pass.
            let later = |k: usize, is_a: bool| {
                let other = if is_a { self.edges[k].1 } else { self.edges[k].0 };
                if forward {
                    other > i
                } else {
                    other < i
                }
            };
            let fwd: Vec<(usize, bool)> = self.adj[i].iter().copied().filter(|&(k, a)| later(k, a)).collect();
            let bwd = self.adj[i].len() - fwd.len();
            if fwd.is_empty() {
                continue;
            }
            let w = 1.0 / fwd.len().max(bwd) as f64;
            let a = self.theta[i].clone();
            for (k, is_a) in fwd.iter().copied() {
                self.add_side(k, is_a, &a, w);
            }
            let keep = 1.0 - w * fwd.len() as f64;
            for x in self.theta[i].iter_mut() {
                *x *= keep;
            }
        }
    }

    /// Passes until the bound stops improving (relative 1e-9), `max_passes`, or `until`.
    /// Returns the bound.
    pub fn run(&mut self, max_passes: usize, until: Instant) -> f64 {
        let mut lb = self.bound();
        for it in 0..max_passes {
            self.pass(it % 2 == 0);
            let nb = self.bound();
            let done = nb - lb <= 1e-9 * nb.abs().max(1.0);
            lb = lb.max(nb);
            if (done && it % 2 == 1) || Instant::now() > until {
                break;
            }
        }
        lb
    }

    /// A choice (positions per node) read from the reparametrized model: tasks in order,
    /// each at its best given the ones already chosen.
    pub fn decode(&self) -> Vec<usize> {
        let n = self.nodes.len();
        let mut pos = vec![usize::MAX; n];
        for i in 0..n {
            let mut vals = self.theta[i].clone();
            for &(k, is_a) in &self.adj[i] {
                let (a, b, tab) = &self.edges[k];
                let other = if is_a { *b } else { *a };
                if pos[other] == usize::MAX {
                    continue;
                }
                let lb = self.size(*b);
                for (p, v) in vals.iter_mut().enumerate() {
                    *v += if is_a { tab[p * lb + pos[other]] } else { tab[pos[other] * lb + p] };
                }
            }
            pos[i] = super::reduce::argmin(&vals);
        }
        pos
    }

    /// Per node, the positions whose forced bound exceeds `ub` (never all of them).
    pub fn ruled_out(&self, lb: f64, ub: f64) -> Vec<Vec<bool>> {
        let tol = 1e-7 + 1e-9 * ub.abs();
        let emin: Vec<f64> =
            self.edges.iter().map(|(_, _, t)| t.iter().copied().fold(f64::INFINITY, f64::min)).collect();
        let mut mu = Vec::new();
        (0..self.nodes.len())
            .map(|i| {
                let nmin = self.theta[i].iter().copied().fold(f64::INFINITY, f64::min);
                let mut forced: Vec<f64> = self.theta[i].iter().map(|&x| lb - nmin + x).collect();
                for &(k, is_a) in &self.adj[i] {
                    self.marginal(k, is_a, &mut mu);
                    for (f, m) in forced.iter_mut().zip(&mu) {
                        *f += m - emin[k];
                    }
                }
                let out: Vec<bool> = forced.iter().map(|&f| f > ub + tol).collect();
                if out.iter().all(|&x| x) {
                    vec![false; out.len()]
                } else {
                    out
                }
            })
            .collect()
    }

    pub fn nodes(&self) -> &[usize] {
        &self.nodes
    }
}
