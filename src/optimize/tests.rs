//! Exactness against brute force on random small jobs, and hand checks on the catalog.

use super::ilp::{self, Target};
use super::reduce::Problem;
use super::*;
use crate::catalog::egress::{EgressModel, Place};
use crate::config::Policy;
use crate::resolve::{Candidate, ResolvedEdge, ResolvedJob, ResolvedTask};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use skyform_provider::Location;

const LOCS: &[(&str, &str, &str)] = &[
    ("aws", "us-east-1", "us-east-1a"),
    ("aws", "us-east-1", "us-east-1b"),
    ("aws", "us-west-2", "us-west-2a"),
    ("aws", "eu-west-1", "eu-west-1a"),
    ("gcp", "us-central1", "us-central1-a"),
    ("gcp", "us-central1", "us-central1-b"),
    ("gcp", "europe-west4", "europe-west4-a"),
    ("azure", "eastus", "eastus"),
    ("local", "local", "zone-a"),
    ("aws", "us-east-2", "us-east-2a"),
    ("gcp", "us-east1", "us-east1-b"),
];

fn cand(loc: usize, hours: f64, hourly: f64, storage_cost: f64) -> Candidate {
    let (c, r, z) = LOCS[loc];
    Candidate {
        location: Location::new(c, r, z),
        instance_type: format!("t-{loc}-{hours}-{hourly}"),
        vcpus: 4.0,
        memory_gb: 16.0,
        accelerator: None,
        accelerator_count: 0.0,
        spot: false,
        hourly,
        hours,
        compute_cost: hourly * hours,
        storage_cost,
        staging_hours: 0.0,
    }
}

#[derive(Debug, Clone)]
struct Case {
    tasks: Vec<Vec<(usize, f64, f64, f64)>>,
    edges: Vec<(usize, usize, f64)>,
    objective: Objective,
    deadline_frac: Option<f64>,
    budget_frac: Option<f64>,
}

fn job_of(case: &Case) -> ResolvedJob {
    let tasks = case
        .tasks
        .iter()
        .enumerate()
        .map(|(i, cs)| ResolvedTask {
            address: TaskAddr(format!("task.t{i}")),
            num_nodes: 1,
            candidates: cs.iter().map(|&(l, h, p, s)| cand(l, h, p, s)).collect(),
            funnel: vec![],
            considered: cs.len(),
        })
        .collect::<Vec<_>>();
    let index = tasks.iter().enumerate().map(|(i, t)| (t.address.clone(), i)).collect();
    ResolvedJob {
        tasks,
        index,
        edges: case
            .edges
            .iter()
            .map(|&(a, b, s)| ResolvedEdge { from: a, to: b, size_gb: s, output: Some("o".into()) })
            .collect(),
        policy: Policy::default(),
        egress: EgressModel::default(),
        warnings: vec![],
    }
}

/// Exact cost and makespan of one full choice, computed independently of the model.
fn brute_eval(job: &ResolvedJob, choice: &[usize]) -> (f64, f64) {
    let eg = &job.egress;
    let c = |t: usize| &job.tasks[t].candidates[choice[t]];
    let mut cost: f64 = (0..job.tasks.len()).map(|t| c(t).fixed_cost()).sum();
    let mut finish = vec![0.0f64; job.tasks.len()];
    for t in 0..job.tasks.len() {
        let mut start: f64 = 0.0;
        for e in job.edges.iter().filter(|e| e.to == t) {
            let (ec, secs) = eg.egress(&Place::from(&c(e.from).location), &Place::from(&c(t).location), e.size_gb);
            start = start.max(finish[e.from] + secs / 3600.0);
            let _ = ec;
        }
        finish[t] = start + c(t).duration();
    }
    for e in &job.edges {
        cost += eg.egress(&Place::from(&c(e.from).location), &Place::from(&c(e.to).location), e.size_gb).0;
    }
    (cost, finish.iter().copied().fold(0.0, f64::max))
}

fn all_choices(job: &ResolvedJob) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for t in &job.tasks {
        out =
            out.into_iter().flat_map(|p| (0..t.candidates.len()).map(move |c| [p.clone(), vec![c]].concat())).collect();
    }
    out
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (1usize..=5)
        .prop_flat_map(|n| {
            let cands = prop::collection::vec(
                prop::collection::vec(
                    (0..LOCS.len(), 0.5f64..10.0, 0.05f64..30.0, prop_oneof![Just(0.0), 0.0f64..5.0]),
                    1..=6,
                ),
                n,
            );
            let edges = prop::collection::vec((0..n, 0..n, prop_oneof![Just(0.0), 0.1f64..800.0]), 0..=(n * 2));
            (cands, edges, prop::bool::ANY, prop::option::of(0.0f64..1.0), prop::option::of(0.0f64..1.0))
        })
        .prop_map(|(tasks, raw_edges, time, d, b)| {
            let mut edges: Vec<(usize, usize, f64)> = Vec::new();
            for (a, bb, s) in raw_edges {
                let (x, y) = (a.min(bb), a.max(bb));
                if x != y && !edges.iter().any(|e| e.0 == x && e.1 == y) {
                    edges.push((x, y, (s * 100.0).round() / 100.0));
                }
            }
            Case {
                tasks,
                edges,
                objective: if time { Objective::Time } else { Objective::Cost },
                deadline_frac: d,
                budget_frac: b,
            }
        })
}

/// The optimizer's answer against every full choice of a small job.
fn check_brute_force(case: &Case) -> Result<(), TestCaseError> {
    let job = job_of(case);
    let evals: Vec<(Vec<usize>, f64, f64)> = all_choices(&job)
        .into_iter()
        .map(|ch| {
            let (c, m) = brute_eval(&job, &ch);
            (ch, c, m)
        })
        .collect();
    let (min_c, max_c) = evals.iter().fold((f64::MAX, 0.0f64), |(lo, hi), e| (lo.min(e.1), hi.max(e.1)));
    let (min_m, max_m) = evals.iter().fold((f64::MAX, 0.0f64), |(lo, hi), e| (lo.min(e.2), hi.max(e.2)));
    // Bounds between the extremes (sometimes infeasible on purpose: frac near 0).
    let deadline = case.deadline_frac.map(|f| min_m * 0.95 + f * (max_m - min_m * 0.95));
    let budget = case.budget_frac.map(|f| min_c * 0.95 + f * (max_c - min_c * 0.95));
    let goal = Goal { objective: case.objective, deadline_hours: deadline, budget };
    let feasible: Vec<&(Vec<usize>, f64, f64)> = evals
        .iter()
        .filter(|e| deadline.is_none_or(|d| e.2 <= d + 1e-9) && budget.is_none_or(|b| e.1 <= b + 1e-9))
        .collect();
    let result = optimize_for(&job, goal);
    if feasible.is_empty() {
        prop_assert!(
            matches!(result, Err(OptimizeError::Infeasible(_))),
            "expected infeasible, got {:?}",
            result.map(|a| (a.total_cost, a.makespan_hours))
        );
        return Ok(());
    }
    let a = result.expect("feasible");
    let best = match case.objective {
        Objective::Cost => feasible.iter().map(|e| e.1).fold(f64::MAX, f64::min),
        Objective::Time => feasible.iter().map(|e| e.2).fold(f64::MAX, f64::min),
    };
    let got = match case.objective {
        Objective::Cost => a.total_cost,
        Objective::Time => a.makespan_hours,
    };
    // The assignment's own figures agree with an independent evaluation.
    let choice: Vec<usize> = a
        .placements
        .iter()
        .enumerate()
        .map(|(t, p)| job.tasks[t].candidates.iter().position(|c| c == &p.choice).unwrap())
        .collect();
    let (c, m) = brute_eval(&job, &choice);
    prop_assert!((c - a.total_cost).abs() < 1e-6 && (m - a.makespan_hours).abs() < 1e-6);
    prop_assert!((got - best).abs() < 1e-6, "objective {got} vs brute force {best} ({})", a.report.method);
    prop_assert!(a.report.stopped.is_empty(), "proven");
    if case.objective == Objective::Time {
        // Lexicographic: the cheapest of the makespan-optimal placements.
        let cheapest = feasible.iter().filter(|e| e.2 <= best + 1e-7).map(|e| e.1).fold(f64::MAX, f64::min);
        prop_assert!(
            a.total_cost <= cheapest + 1e-6,
            "cost {} at the optimal makespan, cheapest there {cheapest}",
            a.total_cost
        );
    }
    if let Some(d) = deadline {
        prop_assert!(a.makespan_hours <= d + 1e-6, "deadline violated");
    }
    if let Some(b) = budget {
        prop_assert!(a.total_cost <= b + 1e-6, "budget violated");
    }
    Ok(())
}

/// Jobs of 2–3 independent groups of 1–3 tasks (edges only inside a group).
fn components_strategy() -> impl Strategy<Value = Case> {
    prop::collection::vec(1usize..=3, 2..=3)
        .prop_flat_map(|sizes| {
            let n: usize = sizes.iter().sum();
            let cands = prop::collection::vec(
                prop::collection::vec(
                    (0..LOCS.len(), 0.5f64..10.0, 0.05f64..30.0, prop_oneof![Just(0.0), 0.0f64..5.0]),
                    1..=3,
                ),
                n,
            );
            let edges = prop::collection::vec((0..n, 0..n, prop_oneof![Just(0.0), 0.1f64..800.0]), 0..=(n * 2));
            (Just(sizes), cands, edges, prop::bool::ANY, prop::option::of(0.0f64..1.0), prop::option::of(0.0f64..1.0))
        })
        .prop_map(|(sizes, tasks, raw_edges, time, d, b)| {
            let group: Vec<usize> = sizes.iter().enumerate().flat_map(|(g, &k)| std::iter::repeat_n(g, k)).collect();
            let mut edges: Vec<(usize, usize, f64)> = Vec::new();
            for (a, bb, s) in raw_edges {
                let (x, y) = (a.min(bb), a.max(bb));
                if x != y && group[x] == group[y] && !edges.iter().any(|e| e.0 == x && e.1 == y) {
                    edges.push((x, y, (s * 100.0).round() / 100.0));
                }
            }
            Case {
                tasks,
                edges,
                objective: if time { Objective::Time } else { Objective::Cost },
                deadline_frac: d,
                budget_frac: b,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn optimizer_matches_brute_force(case in case_strategy()) {
        check_brute_force(&case)?;
    }

    #[test]
    fn components_match_brute_force(case in components_strategy()) {
        check_brute_force(&case)?;
    }
}

/// The exact model before components, reductions and bounds: dominance, deadline cut and
/// location symmetry over the whole job, then one ILP over every task. (cost, makespan).
fn reference(job: &ResolvedJob, goal: Goal) -> (f64, f64) {
    let far = Instant::now() + Duration::from_secs(3600);
    let n = job.tasks.len();
    let all: Vec<usize> = (0..n).collect();
    let solve = |goal: Goal, target: Target| -> Vec<usize> {
        let mut m = Model::new(job, goal);
        m.symmetry(goal, &all);
        let p = Problem::new(&m, all.clone(), vec![goal.time_matters(); n]);
        ilp::solve(&p, &all, target, None, far).expect("solved").choice
    };
    let m = Model::bare(job);
    let choice = match goal.objective {
        Objective::Cost => solve(goal, Target::Cost { deadline: goal.deadline_hours }),
        Objective::Time => {
            let first = solve(goal, Target::Makespan { budget: goal.budget });
            let best = m.makespan(&first);
            let g2 = Goal { objective: Objective::Cost, deadline_hours: Some(best * (1.0 + 1e-9) + 1e-9), ..goal };
            solve(g2, Target::Cost { deadline: g2.deadline_hours })
        }
    };
    (m.total_cost(&choice), m.makespan(&choice))
}

/// A random job of `n` tasks: 2–6 candidates each over [`LOCS`], every task but a few
/// reading 1–3 of the 12 tasks before it (a layered-looking DAG, sometimes in pieces),
/// data sizes up to 300 GB (some edges carry none).
fn random_dag(n: usize, seed: u64) -> ResolvedJob {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let tasks: Vec<Vec<(usize, f64, f64, f64)>> = (0..n)
        .map(|_| {
            let hours = rng.gen_range(0.5..8.0);
            (0..rng.gen_range(2..=6))
                .map(|_| {
                    let fast = rng.gen_range(0.5..1.0);
                    (rng.gen_range(0..LOCS.len()), hours * fast, rng.gen_range(0.1..4.0) / fast, 0.0)
                })
                .collect()
        })
        .collect();
    let mut edges = Vec::new();
    for b in 1..n {
        if rng.gen_bool(0.05) {
            continue;
        }
        for _ in 0..rng.gen_range(1..=3) {
            let a = rng.gen_range(b.saturating_sub(12)..b);
            if !edges.iter().any(|&(x, y, _)| x == a && y == b) {
                let size = if rng.gen_bool(0.1) { 0.0 } else { (rng.gen_range(1.0..300.0f64) * 10.0).round() / 10.0 };
                edges.push((a, b, size));
            }
        }
    }
    job_of(&Case { tasks, edges, objective: Objective::Cost, deadline_frac: None, budget_frac: None })
}

fn assert_same(what: &str, new: &Assignment, old: (f64, f64)) {
    assert!(
        (new.total_cost - old.0).abs() <= 1e-6 * old.0.max(1.0),
        "{what}: cost {} ({}) vs the exact model's {}",
        new.total_cost,
        new.report.method,
        old.0
    );
    assert!(new.report.stopped.is_empty(), "{what}: proven");
}

#[test]
fn the_new_path_matches_the_exact_model_on_random_dags() {
    for n in [50, 100, 200] {
        for seed in 1..=3 {
            let job = random_dag(n, seed);
            let goal = Goal { objective: Objective::Cost, deadline_hours: None, budget: None };
            assert_same(
                &format!("cost, {n} tasks, seed {seed}"),
                &optimize_for(&job, goal).unwrap(),
                reference(&job, goal),
            );
        }
    }
    for n in [50, 100] {
        for seed in 1..=2 {
            let job = random_dag(n, seed);
            let goal = Goal { objective: Objective::Time, deadline_hours: None, budget: None };
            let (new, old) = (optimize_for(&job, goal).unwrap(), reference(&job, goal));
            assert!((new.makespan_hours - old.1).abs() < 1e-6, "time, {n} tasks, seed {seed}: makespan");
            assert_same(&format!("time, {n} tasks, seed {seed}"), &new, old);
            // A deadline halfway between the fastest and the cheapest placements' makespans.
            let cheapest = optimize_for(&job, Goal { objective: Objective::Cost, ..goal }).unwrap();
            let d = (new.makespan_hours + cheapest.makespan_hours) / 2.0;
            let goal = Goal { objective: Objective::Cost, deadline_hours: Some(d), budget: None };
            assert_same(
                &format!("cost within {d:.2} h, {n} tasks, seed {seed}"),
                &optimize_for(&job, goal).unwrap(),
                reference(&job, goal),
            );
        }
    }
}

#[test]
fn the_new_path_matches_the_exact_model_on_catalog_dags() {
    let catalog = crate::catalog::Catalog::embedded();
    let view = crate::tracker::TrackerView::default();
    for (n, objective, seeds) in
        [(50, Objective::Cost, 1..=3), (100, Objective::Cost, 1..=2), (50, Objective::Time, 1..=2)]
    {
        for seed in seeds {
            let spec = crate::bench::generate(crate::bench::Shape::Dag, n, objective, seed);
            let job = crate::resolve::resolve(&spec, &catalog, &view).unwrap();
            let goal = Goal::of(&job);
            assert_same(
                &format!("{objective}, {n} tasks, seed {seed}"),
                &optimize_for(&job, goal).unwrap(),
                reference(&job, goal),
            );
        }
    }
}

#[test]
fn a_fan_out_fan_in_is_solved_without_an_ilp() {
    let base = random_dag(32, 9);
    let mut tasks: Vec<Vec<(usize, f64, f64, f64)>> = Vec::new();
    for t in &base.tasks {
        tasks.push(
            t.candidates
                .iter()
                .map(|c| (LOCS.iter().position(|l| l.2 == c.location.zone).unwrap(), c.hours, c.hourly, 0.0))
                .collect(),
        );
    }
    let edges: Vec<(usize, usize, f64)> =
        (1..31).flat_map(|w| [(0, w, 40.0 + w as f64), (w, 31, 5.0 * w as f64)]).collect();
    let job = job_of(&Case { tasks, edges, objective: Objective::Cost, deadline_frac: None, budget_frac: None });
    let goal = Goal { objective: Objective::Cost, deadline_hours: None, budget: None };
    let a = optimize_for(&job, goal).unwrap();
    assert_eq!((a.report.method.as_str(), a.report.variables), ("dp", 0));
    assert_same("fan", &a, reference(&job, goal));
}

#[test]
fn a_sweep_is_independent_tasks_each_at_its_best() {
    let job = random_dag(300, 4);
    let mut sweep = job.clone();
    sweep.edges.clear();
    let a = optimize_for(&sweep, Goal::of(&sweep)).unwrap();
    for (t, p) in a.placements.iter().enumerate() {
        let best = job.tasks[t].candidates.iter().map(|c| c.fixed_cost()).fold(f64::MAX, f64::min);
        assert!((p.choice.fixed_cost() - best).abs() < 1e-9);
    }
    assert_eq!(a.report.variables, 0);
}

#[test]
fn forests_and_series_parallel_graphs_are_solved_without_an_ilp() {
    let two = vec![(0, 1.0, 1.0, 0.0), (4, 1.0, 0.5, 0.0)];
    let chain = Case {
        tasks: vec![two.clone(); 3],
        edges: vec![(0, 1, 100.0), (1, 2, 100.0)],
        objective: Objective::Cost,
        deadline_frac: None,
        budget_frac: None,
    };
    let a = optimize(&job_of(&chain)).unwrap();
    assert_eq!((a.report.method.as_str(), a.report.variables), ("dp", 0));
    let mut diamond = chain.clone();
    diamond.tasks.push(two.clone());
    diamond.edges = vec![(0, 1, 100.0), (0, 2, 100.0), (1, 3, 100.0), (2, 3, 100.0)];
    let b = optimize(&job_of(&diamond)).unwrap();
    assert_eq!((b.report.method.as_str(), b.report.variables), ("dp", 0));
    // Everything in gcp (cheaper compute, no egress).
    assert!((b.total_cost - 4.0 * 0.5).abs() < 1e-9, "{}", b.total_cost);
}

#[test]
fn infeasible_deadline_says_by_how_much() {
    let case = Case {
        tasks: vec![vec![(0, 5.0, 1.0, 0.0), (1, 3.0, 2.0, 0.0)]],
        edges: vec![],
        objective: Objective::Cost,
        deadline_frac: None,
        budget_frac: None,
    };
    let mut job = job_of(&case);
    job.policy.deadline_hours = Some(2.0);
    let err = optimize(&job).unwrap_err().to_string();
    assert!(
        err.contains("policy.deadline (2 h) cannot be met: the fastest placement takes 3.00 h (1.00 h over)"),
        "{err}"
    );
    job.policy.deadline_hours = None;
    job.policy.budget = Some(4.0);
    let err = optimize(&job).unwrap_err().to_string();
    assert!(
        err.contains("policy.budget ($4.00) cannot be met: the cheapest placement costs $5.00 ($1.00 over)"),
        "{err}"
    );
}

#[test]
fn fallbacks_are_ranked_in_other_locations() {
    let case = Case {
        tasks: vec![vec![(0, 1.0, 1.0, 0.0), (1, 1.0, 1.2, 0.0), (4, 1.0, 1.1, 0.0), (0, 1.0, 3.0, 0.0)]],
        edges: vec![],
        objective: Objective::Cost,
        deadline_frac: None,
        budget_frac: None,
    };
    let a = optimize(&job_of(&case)).unwrap();
    let p = &a.placements[0];
    assert_eq!(p.choice.location.zone, "us-east-1a");
    let zones: Vec<&str> = p.fallbacks.iter().map(|f| f.candidate.location.zone.as_str()).collect();
    assert_eq!(zones, ["us-central1-a", "us-east-1b"]);
    assert!((p.fallbacks[0].delta - 0.1).abs() < 1e-9);
}

#[test]
fn time_objective_breaks_ties_by_cost() {
    let case = Case {
        tasks: vec![vec![(0, 1.5, 18.0, 0.0), (0, 3.0, 0.05, 0.0)], vec![(0, 7.0, 0.05, 0.0)]],
        edges: vec![],
        objective: Objective::Time,
        deadline_frac: None,
        budget_frac: None,
    };
    let a =
        optimize_for(&job_of(&case), Goal { objective: Objective::Time, deadline_hours: None, budget: None }).unwrap();
    assert_eq!(a.makespan_hours, 7.0);
    assert!((a.total_cost - (0.15 + 0.35)).abs() < 1e-9, "{} via {}", a.total_cost, a.report.method);
}

/// Five tasks whose relaxation is not tight (found by search): the reductions and the
/// bounds leave an ILP.
fn not_tight() -> Case {
    Case {
        tasks: vec![
            vec![
                (7, 1.0, 16.672223119587983, 0.0),
                (1, 1.0, 14.99741638490681, 0.0),
                (9, 1.0, 10.883132073547177, 0.0),
            ],
            vec![(6, 1.0, 7.024781550756494, 0.0), (10, 1.0, 18.0278300903473, 0.0), (7, 1.0, 12.433432370068989, 0.0)],
            vec![(2, 1.0, 4.074816345320547, 0.0), (2, 1.0, 18.34400533181363, 0.0), (6, 1.0, 11.787959630602973, 0.0)],
            vec![
                (10, 1.0, 13.071000487241896, 0.0),
                (8, 1.0, 18.53329588107342, 0.0),
                (9, 1.0, 15.096921336857992, 0.0),
            ],
            vec![
                (6, 1.0, 18.543635276508674, 0.0),
                (5, 1.0, 17.42713858402614, 0.0),
                (2, 1.0, 12.793962985232907, 0.0),
            ],
        ],
        edges: vec![
            (0, 1, 145.0),
            (0, 3, 168.0),
            (0, 4, 114.0),
            (1, 2, 149.0),
            (1, 3, 258.0),
            (1, 4, 282.0),
            (2, 3, 132.0),
            (3, 4, 215.0),
        ],
        objective: Objective::Cost,
        deadline_frac: None,
        budget_frac: None,
    }
}

#[test]
fn a_search_stopped_by_the_time_limit_says_so_with_a_valid_gap() {
    // Twenty copies of a job the bounds do not settle, side by side.
    let one = not_tight();
    let mut case = Case { tasks: vec![], edges: vec![], ..one.clone() };
    for k in 0..20 {
        let base = case.tasks.len();
        case.tasks.extend(one.tasks.iter().cloned());
        case.edges.extend(one.edges.iter().map(|&(a, b, s)| (a + base, b + base, s + k as f64)));
    }
    let job = job_of(&case);
    let goal = Goal { objective: Objective::Cost, deadline_hours: None, budget: None };
    let exact = optimize_for(&job, goal).unwrap();
    assert!(exact.report.stopped.is_empty() && exact.report.method == "ilp", "{}", exact.report.method);
    assert!((exact.total_cost - reference(&job, goal).0).abs() < 1e-6);
    let a = optimize_within(&job, goal, Duration::ZERO).unwrap();
    let [s] = &a.report.stopped[..] else { panic!("stopped: {:?}", a.report.stopped) };
    assert_eq!((s.objective.as_str(), s.reason.as_str()), ("cost", "the time limit (0 s)"));
    assert!((s.value - a.total_cost).abs() < 1e-9, "the value is the returned placement's");
    assert!(s.bound <= exact.total_cost + 1e-6 && exact.total_cost <= s.value + 1e-6, "{s:?}");
    assert!(a.report.method.ends_with("(stopped)"), "{}", a.report.method);
}
