//! Benchmarks behind `skyform bench`: figures, not assertions.
//!
//! - `catalog`: decoding the embedded catalog, an in-process search, and `skyform catalog
//!   search` end to end (a fresh process each time, as a user runs it).
//! - `optimize`: resolve + optimize over the full embedded catalog on generated jobs —
//!   chains, layered DAGs (diamonds, fan-out, fan-in), independent sweeps and one
//!   fan-out/fan-in of mixed CPU/GPU tasks with data edges — for both objectives. Prints
//!   wall times, candidates per task, variables/constraints, the objective and the peak
//!   resident memory ([`peak_rss_kb`]). The same jobs written as HCL ([`to_hcl`]) time
//!   `skyform validate` and `skyform plan` as processes.
//!
//! - `catalog-update`: `skyform catalog update --source aws` as a process against a
//!   generated AWS Price List offer file ([`write_aws_offer`]) served on 127.0.0.1: its wall
//!   time and peak resident memory (the file is streamed, never held).
//!
//! Job generation is seeded and deterministic. I/O: spawning the skyform binary for the
//! end-to-end figures, reading `/proc/self/status`, writing the generated offer file.

use crate::catalog::{Catalog, Filter};
use crate::config::*;
use crate::optimize::{optimize_for, Goal};
use crate::tracker::TrackerView;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Instant;

/// Shape of a generated job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Each task reads the previous one.
    Chain,
    /// Layers of width ~√n; each task reads 1–3 tasks of the previous layer.
    Dag,
    /// Independent tasks (a hyper-parameter search), each reading the same dataset.
    Sweep,
    /// One task fans out to n − 2 workers whose outputs one task gathers.
    Fan,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chain" => Ok(Shape::Chain),
            "dag" => Ok(Shape::Dag),
            "sweep" => Ok(Shape::Sweep),
            "fan" => Ok(Shape::Fan),
            o => Err(format!("unknown shape `{o}` (chain, dag, sweep, fan)")),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Shape::Chain => "chain",
            Shape::Dag => "dag",
            Shape::Sweep => "sweep",
            Shape::Fan => "fan",
        })
    }
}

fn resources(rng: &mut rand_chacha::ChaCha8Rng) -> (Resources, String) {
    let mut r = Resources { num_nodes: 1, ..Default::default() };
    let est;
    match rng.gen_range(0..10) {
        0..=5 => {
            let cpus = [2.0, 4.0, 8.0, 16.0, 32.0][rng.gen_range(0..5)];
            r.cpus = Some(Quantity { value: cpus, at_least: true });
            r.memory_gb = Some(Quantity { value: cpus * 4.0, at_least: true });
            est = format!("{}", rng.gen_range(1..8));
        }
        6 | 7 => {
            let a = [("T4", 1.0), ("V100", 1.0), ("L4", 1.0)][rng.gen_range(0..3)];
            r.accelerators = vec![Accel { name: a.0.into(), count: a.1 }];
            r.spot = if rng.gen_bool(0.5) { SpotPref::Spot } else { SpotPref::OnDemand };
            est = format!("{}", rng.gen_range(2..12));
        }
        _ => {
            r.accelerators = vec![Accel { name: "V100".into(), count: 8.0 }, Accel { name: "A100".into(), count: 8.0 }];
            r.spot = SpotPref::Either;
            est = "20 / (resource.accelerator == \"A100\" ? 2.2 : 1)".into();
        }
    }
    (r, est)
}

/// A generated job of `n` tasks (seeded).
pub fn generate(shape: Shape, n: usize, objective: Objective, seed: u64) -> JobSpec {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (n as u64) << 8);
    let addr = |i: usize| TaskAddr(format!("task.t{i:04}"));
    let mut parents: Vec<Vec<usize>> = vec![vec![]; n];
    match shape {
        Shape::Chain => {
            for (i, p) in parents.iter_mut().enumerate().skip(1) {
                p.push(i - 1);
            }
        }
        Shape::Dag => {
            // Layers of width ~sqrt(n); each task reads 1-3 tasks of the previous layer.
            let width = ((n as f64).sqrt().ceil() as usize).max(2);
            for (i, p) in parents.iter_mut().enumerate() {
                let layer = i / width;
                if layer == 0 {
                    continue;
                }
                let prev = (layer - 1) * width..(layer * width).min(n);
                let k = rng.gen_range(1..=3).min(prev.len());
                let mut picks: Vec<usize> = prev.collect();
                for _ in 0..picks.len().saturating_sub(k) {
                    let j = rng.gen_range(0..picks.len());
                    picks.remove(j);
                }
                *p = picks;
            }
        }
        Shape::Sweep => {}
        Shape::Fan => {
            if n >= 3 {
                for p in parents.iter_mut().take(n - 1).skip(1) {
                    p.push(0);
                }
                parents[n - 1] = (1..n - 1).collect();
            } else if n == 2 {
                parents[1].push(0);
            }
        }
    }
    let mut tasks = BTreeMap::new();
    let mut edges = Vec::new();
    let mut out_size = vec![0.0; n];
    for (i, s) in out_size.iter_mut().enumerate() {
        *s = if i % 3 == 0 { rng.gen_range(20.0..200.0) } else { rng.gen_range(0.5..20.0) };
        *s = (*s * 10.0f64).round() / 10.0;
    }
    for i in 0..n {
        let (res, est) = resources(&mut rng);
        let mut inputs = BTreeMap::new();
        for &p in &parents[i] {
            inputs.insert(
                format!("in{p}"),
                InputSource::TaskOutput { task: addr(p), output: "out".into(), size_gb: out_size[p] },
            );
            edges.push(Edge { from: addr(p), to: addr(i), size_gb: out_size[p], output: Some("out".into()) });
        }
        if parents[i].is_empty() {
            inputs.insert(
                "raw".into(),
                InputSource::Storage {
                    address: "storage.raw".into(),
                    uri: "s3://bench/raw".into(),
                    size_gb: 50.0,
                    region: Some("us-east-1".into()),
                },
            );
        }
        let mut outputs = BTreeMap::new();
        outputs.insert("out".into(), OutputSpec { size_gb: out_size[i], uri: None });
        tasks.insert(
            addr(i),
            Task {
                address: addr(i),
                resources: res,
                inputs,
                outputs,
                depends_on: vec![],
                setup: None,
                run: "true".into(),
                env: BTreeMap::new(),
                workdir: None,
                estimate: Some(Estimate { source: est, scope: serde_json::json!({}), pos: None }),
                retries: 0,
                recovery: Recovery::NextZone,
                checkpoint: None,
                spec_hash: String::new(),
                pos: None,
            },
        );
    }
    let mut providers = BTreeMap::new();
    for c in ["aws", "gcp", "azure"] {
        providers.insert(c.to_string(), serde_json::json!({}));
    }
    JobSpec {
        name: format!("bench-{shape}-{n}"),
        settings: Settings::default(),
        policy: Policy {
            minimize: objective,
            regions: vec!["aws:*".into(), "gcp:*".into(), "azure:*".into()],
            ..Policy::default()
        },
        providers,
        storage: BTreeMap::new(),
        tasks,
        edges,
        outputs: BTreeMap::new(),
        variables: BTreeMap::new(),
    }
}

/// One row of the optimize benchmark.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OptRow {
    pub shape: String,
    pub tasks: usize,
    pub edges: usize,
    pub objective: String,
    pub resolve_ms: f64,
    pub optimize_ms: f64,
    pub total_ms: f64,
    pub candidates_per_task: f64,
    pub working_per_task: f64,
    pub method: String,
    pub variables: usize,
    pub constraints: usize,
    pub total_cost: f64,
    pub makespan_hours: f64,
    /// The process's peak resident memory after the row (`VmHWM`), KiB.
    pub peak_rss_kb: Option<u64>,
    /// When a search stopped before its proof: what, the proven bound, and why.
    pub stopped: Option<String>,
}

/// The process's peak resident set size so far (`VmHWM` of `/proc/self/status`), KiB;
/// None where procfs is missing.
pub fn peak_rss_kb() -> Option<u64> {
    proc_status_kb("/proc/self/status", "VmHWM:")
}

/// A `kB` field of a `/proc/PID/status` file.
pub fn proc_status_kb(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Runs resolve + optimize on one generated job.
pub fn run_optimize(catalog: &Catalog, shape: Shape, n: usize, objective: Objective) -> Result<OptRow, String> {
    let spec = generate(shape, n, objective, 7);
    let t0 = Instant::now();
    let resolved = crate::resolve::resolve(&spec, catalog, &TrackerView::default()).map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let a =
        optimize_for(&resolved, Goal { objective, deadline_hours: None, budget: None }).map_err(|e| e.to_string())?;
    let t2 = Instant::now();
    let n_t = resolved.tasks.len().max(1) as f64;
    Ok(OptRow {
        shape: shape.to_string(),
        tasks: n,
        edges: resolved.edges.len(),
        objective: objective.to_string(),
        resolve_ms: (t1 - t0).as_secs_f64() * 1e3,
        optimize_ms: (t2 - t1).as_secs_f64() * 1e3,
        total_ms: (t2 - t0).as_secs_f64() * 1e3,
        candidates_per_task: resolved.tasks.iter().map(|t| t.candidates.len()).sum::<usize>() as f64 / n_t,
        working_per_task: a.placements.iter().map(|p| p.working_candidates).sum::<usize>() as f64 / n_t,
        method: a.report.method.clone(),
        variables: a.report.variables,
        constraints: a.report.constraints,
        total_cost: a.total_cost,
        makespan_hours: a.makespan_hours,
        peak_rss_kb: peak_rss_kb(),
        stopped: a
            .report
            .stopped
            .first()
            .map(|s| format!("{}: {:.2}, optimum ≥ {:.2} ({})", s.objective, s.value, s.bound, s.reason)),
    })
}

/// A failover re-solve against the first solve on one generated job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplanRow {
    pub shape: String,
    pub tasks: usize,
    /// The first solve (optimize only, after resolve).
    pub first_ms: f64,
    /// The re-solve after one failure (pinning + optimize).
    pub resolve_ms: f64,
    /// Tasks held: finished (before the failed one in topological order).
    pub finished: usize,
    /// The failed task and its blocked zone.
    pub failed: String,
    /// Free tasks placed elsewhere by the re-solve.
    pub moved: usize,
    /// The re-solved cost of the whole job minus the first solve's.
    pub cost_delta: f64,
    pub method: String,
}

/// Solves a generated job, then fails its middle task (in topological order): every task
/// before it finished where it was placed, its zone blocked, and re-solves the rest, as
/// failover does. Times both solves.
pub fn run_replan(catalog: &Catalog, shape: Shape, n: usize) -> Result<ReplanRow, String> {
    use crate::optimize::replan::{pinned, Pin};
    let spec = generate(shape, n, Objective::Cost, 7);
    let resolved = crate::resolve::resolve(&spec, catalog, &TrackerView::default()).map_err(|e| e.to_string())?;
    let goal = Goal { objective: Objective::Cost, deadline_hours: None, budget: None };
    let t0 = Instant::now();
    let first = optimize_for(&resolved, goal).map_err(|e| e.to_string())?;
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    let k = resolved.tasks.len() / 2;
    let failed = &first.placements[k];
    let at = failed.choice.location.clone();
    let mut pins = BTreeMap::new();
    for p in &first.placements[..k] {
        let mut pin = Pin::new(p.choice.location.clone(), p.choice.instance_type.as_str(), p.choice.spot);
        pin.done = true;
        pins.insert(p.address.clone(), pin);
    }
    let t1 = Instant::now();
    let free = pinned(&resolved, &pins, &|l| *l == at).map_err(|e| e.to_string())?;
    let again = optimize_for(&free, goal).map_err(|e| e.to_string())?;
    let resolve_ms = t1.elapsed().as_secs_f64() * 1e3;
    let moved = again
        .placements
        .iter()
        .filter(|b| !pins.contains_key(&b.address))
        .filter(|b| {
            first.get(&b.address).is_some_and(|a| {
                a.choice.location != b.choice.location || a.choice.instance_type != b.choice.instance_type
            })
        })
        .count();
    // Both placements priced on the job with the finished tasks' compute spent.
    let sunk = pinned(&resolved, &pins, &|_| false).map_err(|e| e.to_string())?;
    let placed = |a: &crate::optimize::Assignment| -> BTreeMap<TaskAddr, Pin> {
        a.placements
            .iter()
            .map(|p| {
                let pin = pins.get(&p.address).cloned().unwrap_or_else(|| {
                    Pin::new(p.choice.location.clone(), p.choice.instance_type.as_str(), p.choice.spot)
                });
                (p.address.clone(), pin)
            })
            .collect()
    };
    let cost = |a| crate::optimize::replan::cost_of(&sunk, &placed(a)).unwrap_or(f64::NAN);
    let cost_delta = cost(&again) - cost(&first);
    Ok(ReplanRow {
        shape: shape.to_string(),
        tasks: n,
        first_ms,
        resolve_ms,
        finished: k,
        failed: format!("{} in {at}", failed.address),
        moved,
        cost_delta,
        method: again.report.method.clone(),
    })
}

/// A generated job as `*.sky.hcl` files (name, text): providers, policy and the dataset
/// in `main.sky.hcl`, tasks 250 per file, every data edge a `task.X.outputs.out`
/// reference — what a user would write, for timing `validate` and `plan` end to end.
pub fn to_hcl(spec: &JobSpec) -> Vec<(String, String)> {
    use std::fmt::Write as _;
    let mut main = String::new();
    for p in spec.providers.keys() {
        let _ = writeln!(main, "provider \"{p}\" {{}}");
    }
    let regions: Vec<String> = spec.policy.regions.iter().map(|r| format!("\"{r}\"")).collect();
    let _ = writeln!(
        main,
        "\npolicy {{\n  minimize = \"{}\"\n  regions  = [{}]\n}}\n",
        spec.policy.minimize,
        regions.join(", ")
    );
    let _ = writeln!(
        main,
        "storage \"raw\" {{\n  uri     = \"s3://bench/raw\"\n  size_gb = 50\n  region  = \"us-east-1\"\n}}"
    );
    let mut files = vec![("main.sky.hcl".to_string(), main)];
    let name = |a: &TaskAddr| a.as_str().trim_start_matches("task.").to_string();
    for (i, t) in spec.tasks.values().enumerate() {
        if i % 250 == 0 {
            files.push((format!("tasks-{:03}.sky.hcl", i / 250), String::new()));
        }
        let text = &mut files.last_mut().expect("a file").1;
        let r = &t.resources;
        let mut res = Vec::new();
        if let Some(c) = r.cpus {
            res.push(format!("    cpus   = \"{c}\""));
        }
        if let Some(m) = r.memory_gb {
            res.push(format!("    memory = \"{m}\""));
        }
        if !r.accelerators.is_empty() {
            let a: Vec<String> = r
                .accelerators
                .iter()
                .map(|a| format!("\"{}:{}\"", a.name, crate::catalog::fmt_count(a.count)))
                .collect();
            res.push(format!("    accelerators = [{}]", a.join(", ")));
        }
        match r.spot {
            SpotPref::Spot => res.push("    spot = true".into()),
            SpotPref::Either => res.push("    spot = \"either\"".into()),
            SpotPref::OnDemand => {}
        }
        let inputs: Vec<String> = t
            .inputs
            .iter()
            .map(|(k, v)| match v {
                InputSource::TaskOutput { task, output, .. } => format!("{k} = task.{}.outputs.{output}", name(task)),
                _ => format!("{k} = storage.raw"),
            })
            .collect();
        let outputs: Vec<String> =
            t.outputs.iter().map(|(k, o)| format!("{k} = {{ size_gb = {} }}", o.size_gb)).collect();
        let est = t.estimate.as_ref().map(|e| e.source.clone()).unwrap_or_else(|| "1".into());
        let _ = writeln!(
            text,
            "task \"{}\" {{\n  resources {{\n{}\n  }}\n  inputs  = {{ {} }}\n  outputs = {{ {} }}\n  run     = \"{}\"\n\n  estimate {{\n    hours = {est}\n  }}\n}}\n",
            name(&t.address),
            res.join("\n"),
            inputs.join(", "),
            outputs.join(", "),
            t.run,
        );
    }
    files
}

/// Catalog figures: (decode ms, in-process search ms, offerings, matches).
pub fn catalog_figures(runs: usize) -> (f64, f64, usize, usize) {
    let mut load = Vec::new();
    let mut search = Vec::new();
    let mut n = 0;
    let mut found = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let c = Catalog::embedded();
        load.push(t.elapsed().as_secs_f64() * 1e3);
        n = c.len();
        let t = Instant::now();
        let f = Filter { gpu: Some(("V100".into(), Some(8.0))), spot: true, ..Default::default() };
        found = c.search(&f).len();
        search.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(&mut load), median(&mut search), n, found)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// The columns of a generated offer file: those of a real `AmazonEC2` `index.csv` (the
/// source reads some of them by name; the others make the rows as wide as real ones).
const AWS_OFFER_COLUMNS: &[&str] = &[
    "SKU",
    "OfferTermCode",
    "RateCode",
    "TermType",
    "PriceDescription",
    "EffectiveDate",
    "StartingRange",
    "EndingRange",
    "Unit",
    "PricePerUnit",
    "Currency",
    "LeaseContractLength",
    "PurchaseOption",
    "OfferingClass",
    "Product Family",
    "serviceCode",
    "Location",
    "Location Type",
    "Instance Type",
    "Current Generation",
    "Instance Family",
    "vCPU",
    "Physical Processor",
    "Clock Speed",
    "Memory",
    "Storage",
    "Network Performance",
    "Processor Architecture",
    "Storage Media",
    "Volume Type",
    "Max Volume Size",
    "Max IOPS/volume",
    "Max IOPS Burst Performance",
    "Max throughput/volume",
    "Provisioned",
    "Tenancy",
    "EBS Optimized",
    "Operating System",
    "License Model",
    "Group",
    "Group Description",
    "Transfer Type",
    "From Location",
    "From Location Type",
    "To Location",
    "To Location Type",
    "usageType",
    "operation",
    "AvailabilityZone",
    "CapacityStatus",
    "ClassicNetworkingSupport",
    "Dedicated EBS Throughput",
    "ECU",
    "Elastic Graphics Type",
    "Enhanced Networking Supported",
    "From Region Code",
    "GPU",
    "GPU Memory",
    "Instance",
    "Intel AVX Capable",
    "Intel AVX2 Capable",
    "Intel Turbo",
    "MarketOption",
    "Normalization Size Factor",
    "Physical Cores",
    "Pre Installed S/W",
    "Processor Features",
    "Product Type",
    "Region Code",
    "Resource Type",
    "serviceName",
    "SnapshotArchiveFeeType",
    "To Region Code",
    "Volume API Name",
    "VPCNetworkingSupport",
];

/// Writes a generated AWS Price List offer file (CSV form) of about `bytes` bytes for
/// `region`: metadata lines, the header, then rows of ~700 bytes cycling through 1,000
/// instance types × operating systems, tenancies and terms (1 in 24 an on-demand shared
/// Linux row, as in real files). Returns the number of rows.
pub fn write_aws_offer(w: &mut impl std::io::Write, bytes: u64, region: &str) -> std::io::Result<u64> {
    let q = |v: &[&str]| v.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(",");
    let mut written: u64 = 0;
    let head = format!(
        "\"FormatVersion\",\"v1.0\"\n\"Disclaimer\",\"Generated by skyform bench for a memory figure.\"\n\"Publication Date\",\"2026-01-01T00:00:00Z\"\n\"Version\",\"20260101000000\"\n\"OfferCode\",\"AmazonEC2\"\n{}\n",
        q(AWS_OFFER_COLUMNS)
    );
    w.write_all(head.as_bytes())?;
    written += head.len() as u64;
    let families = ["m5", "c5", "r5", "m6i", "c6i", "r6i", "m7i", "c7i", "t3", "i4i"];
    let sizes =
        ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "metal", "medium"];
    let oses = ["Linux", "Windows", "RHEL", "SUSE"];
    let tenancies = ["Shared", "Dedicated", "Host"];
    let terms = ["OnDemand", "Reserved"];
    let mut rows: u64 = 0;
    let mut cells: Vec<String> = vec![String::new(); AWS_OFFER_COLUMNS.len()];
    let col = |name: &str| AWS_OFFER_COLUMNS.iter().position(|c| *c == name).expect("a generated column");
    let (c_term, c_unit, c_price, c_type, c_vcpu, c_mem, c_ten, c_os, c_cap, c_sw, c_mkt, c_fam, c_lic, c_cur, c_gpu) = (
        col("TermType"),
        col("Unit"),
        col("PricePerUnit"),
        col("Instance Type"),
        col("vCPU"),
        col("Memory"),
        col("Tenancy"),
        col("Operating System"),
        col("CapacityStatus"),
        col("Pre Installed S/W"),
        col("MarketOption"),
        col("Product Family"),
        col("License Model"),
        col("Currency"),
        col("GPU"),
    );
    while written < bytes {
        let i = rows as usize;
        let (family, size, gen) = (families[i % 10], sizes[(i / 10) % 10], i / 100 % 10);
        let it = format!("{family}{}.{size}", if gen == 0 { String::new() } else { format!("x{gen}") });
        let vcpus = 2u32 << ((i / 10) % 10).min(6);
        for (k, c) in cells.iter_mut().enumerate() {
            c.clear();
            c.push_str(AWS_OFFER_COLUMNS[k]);
            c.push_str(" value");
        }
        cells[0] = format!("SKU{rows:012}");
        cells[c_term] = terms[(i / 1000) % 2].into();
        cells[c_unit] = if cells[c_term] == "OnDemand" { "Hrs".into() } else { "Quantity".into() };
        cells[c_price] = format!("{:.10}", 0.024 * vcpus as f64 + (i % 7) as f64 * 0.001);
        cells[c_type] = it;
        cells[c_vcpu] = vcpus.to_string();
        cells[c_mem] = format!("{} GiB", vcpus * 4);
        cells[c_ten] = tenancies[(i / 2000) % 3].into();
        cells[c_os] = oses[(i / 6000) % 4].into();
        cells[c_cap] = "Used".into();
        cells[c_sw] = "NA".into();
        cells[c_mkt] = "OnDemand".into();
        cells[c_fam] = "Compute Instance".into();
        cells[c_lic] = "No License required".into();
        cells[c_cur] = "USD".into();
        cells[c_gpu] = "NA".into();
        cells[col("Region Code")] = region.into();
        let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        let line = format!("{}\n", q(&refs));
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        rows += 1;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_jobs_are_deterministic_and_acyclic() {
        let a = generate(Shape::Dag, 60, Objective::Cost, 1);
        let b = generate(Shape::Dag, 60, Objective::Cost, 1);
        assert_eq!(a, b);
        assert_eq!(a.topo_order().len(), 60);
        assert!(a.edges.len() >= 50);
        let c = generate(Shape::Chain, 10, Objective::Time, 1);
        assert_eq!(c.edges.len(), 9);
    }

    #[test]
    fn optimizes_a_generated_dag_on_the_full_catalog() {
        let row = run_optimize(&Catalog::embedded(), Shape::Dag, 12, Objective::Cost).unwrap();
        assert!(row.total_cost > 0.0 && row.candidates_per_task > 1.0, "{row:?}");
    }
}
