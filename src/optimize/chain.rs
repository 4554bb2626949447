//! The time objective on a chain: the makespan of a chain is the sum of its durations
//! and transfer times, so (makespan, cost) is additive along it and a DP over the chain
//! finds the lexicographic optimum exactly.

use super::model::Model;
use super::EPS;

/// True when the component (sorted, connected) is one directed path.
pub(super) fn is_chain(m: &Model, comp: &[usize]) -> bool {
    let edges: usize = comp.iter().map(|&t| m.ins[t].len()).sum();
    comp.len() >= 2 && edges + 1 == comp.len() && comp.iter().all(|&t| m.ins[t].len() <= 1 && m.outs[t].len() <= 1)
}

/// (time, cost), compared lexicographically.
type W = (f64, f64);

fn lt(a: W, b: W) -> bool {
    a.0 < b.0 - EPS || ((a.0 - b.0).abs() <= EPS && a.1 < b.1 - EPS)
}

/// The lexicographic (makespan, cost) optimum of a chain component: a candidate id per
/// task, in the component's (path) order.
pub(super) fn lexicographic(m: &Model, comp: &[usize]) -> Vec<usize> {
    let node = |t: usize, c: usize| -> W {
        let k = m.cand(t, c);
        (k.duration(), k.fixed_cost())
    };
    let first = comp[0];
    let mut f: Vec<W> = m.work[first].iter().map(|&c| node(first, c)).collect();
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(comp.len());
    for w in comp.windows(2) {
        let (a, b) = (w[0], w[1]);
        let e = m.ins[b][0];
        let mut g = Vec::with_capacity(m.work[b].len());
        let mut arg = Vec::with_capacity(m.work[b].len());
        for &cb in &m.work[b] {
            let nb = node(b, cb);
            let mut best: Option<(W, usize)> = None;
            for (ka, &ca) in m.work[a].iter().enumerate() {
                let v = (f[ka].0 + m.edge_hours(e, ca, cb) + nb.0, f[ka].1 + m.edge_cost(e, ca, cb) + nb.1);
                if best.is_none_or(|(bv, _)| lt(v, bv)) {
                    best = Some((v, ka));
                }
            }
            let (v, ka) = best.expect("candidates");
            g.push(v);
            arg.push(ka);
        }
        f = g;
        back.push(arg);
    }
    let mut j = 0;
    for (i, v) in f.iter().enumerate() {
        if lt(*v, f[j]) {
            j = i;
        }
    }
    let mut pos = vec![0usize; comp.len()];
    pos[comp.len() - 1] = j;
    for i in (1..comp.len()).rev() {
        pos[i - 1] = back[i - 1][pos[i]];
    }
    comp.iter().zip(pos).map(|(&t, p)| m.work[t][p]).collect()
}
