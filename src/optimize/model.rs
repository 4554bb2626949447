//! The optimizer's view of a job: interned location keys per candidate, merged data
//! edges with their price per level and source cloud, adjacency, and the exact pruning
//! that gives each task its working candidates (dominance, deadline cut, location
//! symmetry). Also the evaluation of a full choice (cost, schedule). Pure.

use super::{Goal, EPS};
use crate::catalog::egress::Level;
use crate::resolve::{Candidate, ResolvedJob};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Interned location keys of a candidate. Zone, region and continent ids share one
/// interner (they never collide); cloud ids index `Model::cloud_names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Keys {
    pub zone: u32,
    pub region: u32,
    pub cont: u32,
    pub cloud: u32,
}

impl Keys {
    /// The group id at a level: 0 zone, 1 region, 2 continent, 3 cloud.
    pub fn at(&self, lvl: usize) -> u32 {
        [self.zone, self.region, self.cont, self.cloud][lvl]
    }
}

/// A merged edge (all outputs between the same pair), with per-level weights.
pub(super) struct Edge {
    pub a: usize,
    pub b: usize,
    pub size: f64,
    /// Hours per level.
    pub hours: [f64; 5],
}

pub(super) struct Model<'a> {
    pub job: &'a ResolvedJob,
    pub keys: Vec<Vec<Keys>>,
    pub cloud_names: Vec<String>,
    /// Working candidates per task (indices into `job.tasks[t].candidates`).
    pub work: Vec<Vec<usize>>,
    pub edges: Vec<Edge>,
    /// Egress price of edge `e` from source cloud `c` at level `l`:
    /// `price[(e * clouds + c) * 5 + l]`.
    price: Vec<f64>,
    /// Edges incident to each task, into and out of it.
    pub ins: Vec<Vec<usize>>,
    pub outs: Vec<Vec<usize>>,
}

impl<'a> Model<'a> {
    /// The model with every candidate working (no pruning).
    pub fn bare(job: &'a ResolvedJob) -> Model<'a> {
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut cloud_names: Vec<String> = Vec::new();
        let mut by_location: HashMap<&skyform_provider::Location, Keys> = HashMap::new();
        let mut intern = |s: String| -> u32 {
            let n = names.len() as u32;
            *names.entry(s).or_insert(n)
        };
        let keys: Vec<Vec<Keys>> = job
            .tasks
            .iter()
            .map(|t| {
                t.candidates
                    .iter()
                    .map(|c| {
                        let l = &c.location;
                        *by_location.entry(l).or_insert_with(|| {
                            let cloud = match cloud_names.iter().position(|x| x == &l.cloud) {
                                Some(i) => i as u32,
                                None => {
                                    cloud_names.push(l.cloud.clone());
                                    cloud_names.len() as u32 - 1
                                }
                            };
                            let cont = crate::catalog::egress::continent(&l.cloud, &l.region);
                            Keys {
                                zone: intern(format!("{}/{}/{}", l.cloud, l.region, l.zone)),
                                region: intern(format!("{}/{}", l.cloud, l.region)),
                                cont: intern(format!("{}//{cont}", l.cloud)),
                                cloud,
                            }
                        })
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
        let nc = cloud_names.len();
        let mut price = Vec::with_capacity(edges.len() * nc * 5);
        for e in &edges {
            for c in &cloud_names {
                for l in Level::ALL {
                    price.push(eg.level_cost(c, l, e.size));
                }
            }
        }
        let n = job.tasks.len();
        let (mut ins, mut outs) = (vec![vec![]; n], vec![vec![]; n]);
        for (i, e) in edges.iter().enumerate() {
            outs[e.a].push(i);
            ins[e.b].push(i);
        }
        let work = job.tasks.iter().map(|t| (0..t.candidates.len()).collect()).collect();
        Model { job, keys, cloud_names, work, edges, price, ins, outs }
    }

    /// The model for a goal: dominance pruning and the deadline cut on every task
    /// (location symmetry is applied per component, see [`Model::symmetry`]).
    pub fn new(job: &'a ResolvedJob, goal: Goal) -> Model<'a> {
        let mut m = Model::bare(job);
        m.work = m.dominance(goal);
        m.deadline_cut(goal);
        m
    }

    pub fn n(&self) -> usize {
        self.job.tasks.len()
    }

    pub fn cand(&self, t: usize, c: usize) -> &Candidate {
        &self.job.tasks[t].candidates[c]
    }

    /// Edges incident to `t`.
    pub fn incident(&self, t: usize) -> impl Iterator<Item = usize> + '_ {
        self.ins[t].iter().chain(&self.outs[t]).copied()
    }

    /// The lowest common level of two keys.
    pub fn level_of(x: Keys, y: Keys) -> Level {
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

    pub fn level(&self, ta: usize, ca: usize, tb: usize, cb: usize) -> Level {
        Self::level_of(self.keys[ta][ca], self.keys[tb][cb])
    }

    /// Egress price of edge `e` from a source in cloud `cloud` over a link of `level`.
    pub fn price(&self, e: usize, cloud: u32, level: Level) -> f64 {
        self.price[(e * self.cloud_names.len() + cloud as usize) * 5 + level as usize]
    }

    /// Egress cost of edge `e` between the placements with keys `ka` (source) and `kb`.
    pub fn cost_keys(&self, e: usize, ka: Keys, kb: Keys) -> f64 {
        self.price(e, ka.cloud, Self::level_of(ka, kb))
    }

    /// Egress cost of edge `e` with its ends at candidates `ca` and `cb`.
    pub fn edge_cost(&self, e: usize, ca: usize, cb: usize) -> f64 {
        let ed = &self.edges[e];
        self.cost_keys(e, self.keys[ed.a][ca], self.keys[ed.b][cb])
    }

    pub fn edge_hours(&self, e: usize, ca: usize, cb: usize) -> f64 {
        let ed = &self.edges[e];
        ed.hours[self.level(ed.a, ca, ed.b, cb) as usize]
    }

    /// Largest egress of an edge at a level (over the possible source clouds).
    fn max_cost_at(&self, e: usize, level: Level) -> f64 {
        (0..self.cloud_names.len() as u32).map(|c| self.price(e, c, level)).fold(0.0, f64::max)
    }

    /// Drops candidates that miss the deadline even when every other task is at its
    /// fastest: earliest start (longest path of fastest durations and same-zone transfers)
    /// + its duration + the shortest possible tail > deadline. Exact.
    fn deadline_cut(&mut self, goal: Goal) {
        let Some(d) = goal.deadline_hours else { return };
        let n = self.n();
        let fastest: Vec<f64> = (0..n)
            .map(|t| self.work[t].iter().map(|&c| self.cand(t, c).duration()).fold(f64::INFINITY, f64::min))
            .collect();
        let same_zone = Level::SameZone as usize;
        let mut es = vec![0.0f64; n];
        for t in 0..n {
            for &e in &self.ins[t] {
                let e = &self.edges[e];
                es[t] = es[t].max(es[e.a] + fastest[e.a] + e.hours[same_zone]);
            }
        }
        let mut tail = vec![0.0f64; n];
        for t in (0..n).rev() {
            for &e in &self.outs[t] {
                let e = &self.edges[e];
                tail[t] = tail[t].max(e.hours[same_zone] + fastest[e.b] + tail[e.b]);
            }
        }
        for t in 0..n {
            let job = self.job;
            self.work[t].retain(|&c| es[t] + job.tasks[t].candidates[c].duration() + tail[t] <= d + 1e-7);
        }
    }

    /// Exact location symmetry reduction over the tasks of one component. Zone Z2 is
    /// dropped when another zone Z1 of the same region can host every task that Z2 can,
    /// each at most as expensive (and as slow, when time matters) as its best in Z2:
    /// moving all of a solution's Z2 tasks to Z1 keeps their mutual edges in one zone,
    /// makes edges to Z1 cheaper, and leaves every other edge's price unchanged. Likewise
    /// a region R2 is dropped for a zone of another region of the same cloud and continent
    /// (whose prices to everything else are the same), a continent for a zone of another
    /// continent of the cloud, and a cloud for a zone of another cloud whose internet
    /// egress is no dearer for every edge the moved tasks send. Tasks outside the
    /// component share no edge with it, so the move is exact for the whole job.
    pub fn symmetry(&mut self, goal: Goal, tasks: &[usize]) {
        let (cm, tm) = (goal.cost_matters(), goal.time_matters());
        let out_edges: Vec<Vec<usize>> = tasks
            .iter()
            .map(|&t| self.outs[t].iter().copied().filter(|&e| self.edges[e].size > 0.0).collect())
            .collect();
        for level in 0..4usize {
            let parent = |k: &Keys| match level {
                0 => k.region,
                1 => k.cont,
                2 => k.cloud,
                _ => 0,
            };
            // parent → units present; unit → its zones, and (task position, min cost, min
            // duration) of every task that can be there.
            let mut units: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
            let mut zones: HashMap<u32, BTreeSet<u32>> = HashMap::new();
            let mut need: HashMap<u32, Vec<(usize, f64, f64)>> = HashMap::new();
            for (i, &t) in tasks.iter().enumerate() {
                let mut best: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
                for &c in &self.work[t] {
                    let k = self.keys[t][c];
                    units.entry(parent(&k)).or_default().insert(k.at(level));
                    zones.entry(k.at(level)).or_default().insert(k.zone);
                    let x = self.cand(t, c);
                    let b = best.entry(k.at(level)).or_insert((f64::INFINITY, f64::INFINITY));
                    b.0 = b.0.min(x.fixed_cost());
                    b.1 = b.1.min(x.duration());
                }
                for (u, (mc, md)) in best {
                    need.entry(u).or_default().push((i, mc, md));
                }
            }
            for members in units.values() {
                if members.len() < 2 {
                    continue;
                }
                let mut alive: Vec<u32> = members.iter().copied().collect();
                // Later units go first, so among equals the first (e.g. `us-east-1a`) stays.
                for &u2 in members.iter().rev() {
                    let Some(need) = need.get(&u2) else { continue };
                    // Target zones: those of the other remaining units of this parent group.
                    let targets: BTreeSet<u32> =
                        alive.iter().filter(|&&u| u != u2).flat_map(|u| zones[u].iter().copied()).collect();
                    let eg = &self.job.egress;
                    let fits = |z: u32| -> bool {
                        need.iter().all(|&(i, mc, md)| {
                            let t = tasks[i];
                            self.work[t].iter().any(|&c| {
                                let k = self.keys[t][c];
                                if k.zone != z {
                                    return false;
                                }
                                let x = self.cand(t, c);
                                let net_ok = level < 3
                                    || !cm
                                    || out_edges[i].iter().all(|&e| {
                                        let gb = self.edges[e].size;
                                        let to = &self.cloud_names[k.cloud as usize];
                                        let from = &self.cloud_names[u2 as usize];
                                        eg.level_cost(to, Level::OtherCloud, gb)
                                            <= eg.level_cost(from, Level::OtherCloud, gb) + EPS
                                    });
                                net_ok && (!cm || x.fixed_cost() <= mc + EPS) && (!tm || x.duration() <= md + EPS)
                            })
                        })
                    };
                    if targets.into_iter().any(fits) {
                        alive.retain(|&u| u != u2);
                        for &t in tasks {
                            let keys = &self.keys[t];
                            self.work[t].retain(|&c| keys[c].at(level) != u2);
                        }
                    }
                }
            }
        }
    }

    /// Exact dominance pruning (see the module docs).
    fn dominance(&self, goal: Goal) -> Vec<Vec<usize>> {
        (0..self.n())
            .map(|t| {
                let cands = &self.job.tasks[t].candidates;
                let mut keep = vec![true; cands.len()];
                // Bounds per level: moving within a group of level L changes each incident
                // edge by at most the price of L (the farthest two members can be).
                for (li, level) in [Level::SameRegion, Level::SameContinent, Level::SameCloud, Level::OtherCloud]
                    .into_iter()
                    .enumerate()
                {
                    let b_cost: f64 = self.incident(t).map(|e| self.max_cost_at(e, level)).sum();
                    let max_in = self.ins[t].iter().map(|&e| self.edges[e].hours[level as usize]).fold(0.0, f64::max);
                    let max_out = self.outs[t].iter().map(|&e| self.edges[e].hours[level as usize]).fold(0.0, f64::max);
                    let b_time = max_in + max_out;
                    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
                    for (i, k) in self.keys[t].iter().enumerate() {
                        let g = if li < 3 { k.at(li + 1) } else { 0 };
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

    /// Exact cost of a full choice (candidate index per task).
    pub fn total_cost(&self, choice: &[usize]) -> f64 {
        let fixed: f64 = choice.iter().enumerate().map(|(t, &c)| self.cand(t, c).fixed_cost()).sum();
        let eg: f64 =
            (0..self.edges.len()).map(|e| self.edge_cost(e, choice[self.edges[e].a], choice[self.edges[e].b])).sum();
        fixed + eg
    }

    /// Start and finish times of a full choice.
    pub fn schedule(&self, choice: &[usize]) -> Vec<(f64, f64)> {
        let mut times = vec![(0.0, 0.0); self.n()];
        for t in 0..self.n() {
            // Tasks are in topological order.
            let start = self.ins[t]
                .iter()
                .map(|&e| times[self.edges[e].a].1 + self.edge_hours(e, choice[self.edges[e].a], choice[t]))
                .fold(0.0, f64::max);
            times[t] = (start, start + self.cand(t, choice[t]).duration());
        }
        times
    }

    pub fn makespan(&self, choice: &[usize]) -> f64 {
        self.schedule(choice).iter().map(|x| x.1).fold(0.0, f64::max)
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
