//! `skyform bench catalog|optimize`: benchmarks that print figures (text or `-json`).

use super::views;
use crate::bench::{self, Shape};
use crate::catalog::Catalog;
use crate::config::Objective;
use clap::{Args, Subcommand};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Catalog load and search times (in process and end to end)
    Catalog(CatalogBench),
    /// resolve + optimize on generated chains and DAGs over the full catalog
    Optimize(OptimizeBench),
    /// apply a generated DAG of trivial commands on the local provider
    Apply(ApplyBench),
    /// failover re-solve after one failure against the first solve, on generated jobs
    Replan(ReplanBench),
}

#[derive(Debug, Args)]
pub struct ReplanBench {
    /// Jobs as SHAPE:TASKS (chain, dag, sweep, fan)
    #[arg(long, value_delimiter = ',', default_value = "dag:200,chain:200,dag:1000")]
    pub jobs: Vec<String>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyBench {
    /// Tasks in the DAG
    #[arg(long, default_value_t = 500)]
    pub tasks: usize,
    /// -parallelism of the apply
    #[arg(long, default_value_t = 2)]
    pub parallelism: usize,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

/// A DAG of `n` trivial tasks: a binary tree where every 7th task also reads its
/// predecessor; data on every edge.
fn apply_job(n: usize, slots: usize) -> String {
    let mut s = format!("provider \"local\" {{\n  zones = [\"zone-a\", \"zone-b\"]\n  slots = {slots}\n}}\n\n");
    for i in 0..n {
        let mut parents: Vec<usize> = Vec::new();
        if i > 0 {
            // A binary tree (fan-out), with every 7th task also reading its predecessor
            // (diamonds, fan-in).
            parents.push((i - 1) / 2);
            if i % 7 == 0 && (i - 1) / 2 != i - 1 {
                parents.push(i - 1);
            }
        }
        let inputs: Vec<String> = parents.iter().map(|p| format!("p{p} = task.t{p}.outputs.o")).collect();
        s.push_str(&format!(
            "task \"t{i}\" {{\n  inputs  = {{ {} }}\n  outputs = {{ o = {{ size_gb = 0.000001 }} }}\n  run     = \"echo {i} > $SKYFORM_OUTPUT_O/v\"\n\n  estimate {{\n    hours = 0.001\n  }}\n}}\n\n",
            inputs.join(", ")
        ));
    }
    s
}

#[derive(Debug, Args)]
pub struct CatalogBench {
    /// Repetitions (the median is printed)
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OptimizeBench {
    /// Job sizes (tasks)
    #[arg(long, value_delimiter = ',', default_value = "1,10,50,200,1000")]
    pub sizes: Vec<usize>,
    /// Job shapes: chain, dag, sweep, fan
    #[arg(long, value_delimiter = ',', default_value = "chain,dag")]
    pub shapes: Vec<String>,
    /// Wide jobs, as SHAPE:TASKS (empty: none)
    #[arg(long, value_delimiter = ',', default_value = "sweep:10000,fan:2000")]
    pub wide: Vec<String>,
    /// Generated jobs written as HCL files, timing `skyform validate` and `skyform plan`
    /// as processes, as SHAPE:TASKS (empty: none)
    #[arg(long, value_delimiter = ',', default_value = "dag:1000")]
    pub hcl: Vec<String>,
    /// Objectives: cost, time
    #[arg(long, value_delimiter = ',', default_value = "cost,time")]
    pub objectives: Vec<String>,
    /// Keep the HCL jobs in DIR (one subdirectory per job) instead of a removed temporary
    /// directory
    #[arg(long)]
    pub hcl_dir: Option<std::path::PathBuf>,
    /// Runs per row (a fresh process each; the best and the median are printed)
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
    /// One row in this process, as SHAPE:TASKS:OBJECTIVE, printed as JSON (what the
    /// parent runs in a child process)
    #[arg(long, hide = true)]
    pub row: Option<String>,
}

fn shape_size(s: &str) -> anyhow::Result<(Shape, usize)> {
    let (shape, n) = s.split_once(':').ok_or_else(|| anyhow::anyhow!("`{s}`: expected SHAPE:TASKS"))?;
    let shape: Shape = shape.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    Ok((shape, n.parse().map_err(|_| anyhow::anyhow!("`{s}`: TASKS must be a number"))?))
}

fn objective(o: &str) -> anyhow::Result<Objective> {
    match o {
        "cost" => Ok(Objective::Cost),
        "time" => Ok(Objective::Time),
        other => Err(anyhow::anyhow!("unknown objective `{other}` (cost, time)")),
    }
}

/// Runs one optimize row in a fresh process: its peak memory is the row's own.
fn row_in_child(exe: &std::path::Path, shape: Shape, n: usize, obj: Objective) -> anyhow::Result<bench::OptRow> {
    let o = std::process::Command::new(exe)
        .args(["bench", "optimize", "--row", &format!("{shape}:{n}:{obj}")])
        .env("NO_COLOR", "1")
        .output()?;
    if !o.status.success() {
        anyhow::bail!("{shape} {n} {obj}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(serde_json::from_slice(&o.stdout)?)
}

/// Wall seconds of `skyform ARGS` in `dir`, and its peak resident memory (KiB), sampled
/// from `/proc/PID/status` every 2 ms while it runs (the high-water mark only grows, so
/// the last sample misses at most the final 2 ms).
fn timed_process(exe: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> anyhow::Result<(f64, Option<u64>)> {
    let t = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("SKYFORM_HOME", dir.join(".home"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak: Option<u64> = None;
    let status = loop {
        if let Some(kb) = bench::proc_status_kb(&status_path, "VmHWM:") {
            peak = Some(peak.map_or(kb, |p| p.max(kb)));
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let secs = t.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        anyhow::bail!("skyform {}: {err}", args.join(" "));
    }
    Ok((secs, peak))
}

fn best_median(v: &[f64]) -> (f64, f64) {
    let mut w = v.to_vec();
    let m = bench::median(&mut w);
    (w.first().copied().unwrap_or(0.0), m)
}

fn mib(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.0}", k as f64 / 1024.0)).unwrap_or_else(|| "-".into())
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<i32> {
    match cmd {
        BenchCmd::Replan(a) => {
            let catalog = Catalog::embedded();
            let mut rows = Vec::new();
            for j in &a.jobs {
                let (shape, n) = shape_size(j)?;
                rows.push(bench::run_replan(&catalog, shape, n).map_err(|e| anyhow::anyhow!("{j}: {e}"))?);
            }
            if a.json {
                views::print_json(&serde_json::to_value(&rows)?);
            } else {
                outln!("replan: the middle task (topological order) fails after every task before it finished; its zone is blocked");
                outln!(
                    "  {:<6} {:>6} {:>12} {:>12} {:>6} {:>10}  method",
                    "shape",
                    "tasks",
                    "first (ms)",
                    "re-solve",
                    "moved",
                    "cost Δ"
                );
                for r in &rows {
                    outln!(
                        "  {:<6} {:>6} {:>12.1} {:>12.1} {:>6} {:>10}  {}",
                        r.shape,
                        r.tasks,
                        r.first_ms,
                        r.resolve_ms,
                        r.moved,
                        format!("{:+.2}", r.cost_delta),
                        r.method
                    );
                }
            }
            Ok(0)
        }
        BenchCmd::Apply(a) => {
            let dir = std::env::temp_dir().join(format!("skyform-bench-apply-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("main.sky.hcl"), apply_job(a.tasks, a.parallelism.max(1) * 2))?;
            let exe = std::env::current_exe()?;
            let run = |args: &[&str]| -> anyhow::Result<f64> {
                let t = Instant::now();
                let o = std::process::Command::new(&exe).args(args).current_dir(&dir).env("NO_COLOR", "1").output()?;
                if !o.status.success() {
                    anyhow::bail!("{:?} failed: {}", args, String::from_utf8_lossy(&o.stderr));
                }
                Ok(t.elapsed().as_secs_f64())
            };
            let plan_s = run(&["plan"])?;
            let par = format!("-parallelism={}", a.parallelism);
            let apply_s = run(&["apply", "-auto-approve", &par])?;
            let destroy_s = run(&["destroy", "-auto-approve"])?;
            let _ = std::fs::remove_dir_all(&dir);
            let per_task_ms = apply_s * 1e3 / a.tasks as f64;
            let per_slot_ms = per_task_ms * a.parallelism as f64;
            if a.json {
                views::print_json(&serde_json::json!({
                    "tasks": a.tasks, "parallelism": a.parallelism, "plan_s": plan_s, "apply_s": apply_s,
                    "destroy_s": destroy_s, "wall_ms_per_task": per_task_ms, "overhead_ms_per_task_per_slot": per_slot_ms,
                }));
            } else {
                outln!(
                    "apply: {} trivial tasks (a DAG with data on every edge), parallelism {}",
                    a.tasks,
                    a.parallelism
                );
                outln!("  plan (load, resolve, optimize)    {plan_s:>8.2} s");
                outln!("  apply (wall)                      {apply_s:>8.2} s");
                outln!("  wall per task                     {per_task_ms:>8.1} ms");
                outln!("  overhead per task per slot        {per_slot_ms:>8.1} ms  (allocate, stage, run bash, poll, collect, release, commits)");
                outln!("  destroy                           {destroy_s:>8.2} s");
            }
            Ok(0)
        }
        BenchCmd::Catalog(a) => {
            let (load_ms, search_ms, offerings, matches) = bench::catalog_figures(a.runs);
            // End to end: a fresh `skyform catalog search` process, as a user runs it.
            let exe = std::env::current_exe()?;
            let mut e2e = Vec::new();
            let tmp = std::env::temp_dir();
            for _ in 0..a.runs.max(1) {
                let t = Instant::now();
                let out = std::process::Command::new(&exe)
                    .args(["catalog", "search", "--gpu", "V100:8", "--spot", "--json"])
                    .current_dir(&tmp)
                    .output()?;
                if !out.status.success() {
                    anyhow::bail!("catalog search failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                e2e.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let e2e_ms = bench::median(&mut e2e);
            if a.json {
                views::print_json(&serde_json::json!({
                    "offerings": offerings, "load_ms": load_ms, "search_ms": search_ms,
                    "search_end_to_end_ms": e2e_ms, "search_matches": matches, "runs": a.runs,
                }));
            } else {
                outln!("catalog: {offerings} offerings (embedded), median of {} runs", a.runs);
                outln!("  load (decode snapshot)            {load_ms:>8.2} ms");
                outln!("  search --gpu V100:8 --spot        {search_ms:>8.2} ms  ({matches} matches)");
                outln!("  `skyform catalog search` process  {e2e_ms:>8.2} ms  (end to end)");
            }
            Ok(0)
        }
        BenchCmd::Optimize(a) => {
            if let Some(row) = &a.row {
                let parts: Vec<&str> = row.split(':').collect();
                let [shape, n, obj] = parts[..] else { anyhow::bail!("--row: expected SHAPE:TASKS:OBJECTIVE") };
                let (shape, n) = shape_size(&format!("{shape}:{n}"))?;
                let r = bench::run_optimize(&Catalog::embedded(), shape, n, objective(obj)?)
                    .map_err(|e| anyhow::anyhow!("{shape} {n} {obj}: {e}"))?;
                views::print_json(&serde_json::to_value(&r)?);
                return Ok(0);
            }
            let shapes: Vec<Shape> = a
                .shapes
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()
                .map_err(|e: String| anyhow::anyhow!("--shapes: {e}"))?;
            let objectives: Vec<Objective> =
                a.objectives.iter().map(|o| objective(o)).collect::<anyhow::Result<_>>()?;
            let mut jobs: Vec<(Shape, usize)> =
                shapes.iter().flat_map(|&s| a.sizes.iter().map(move |&n| (s, n))).collect();
            for w in a.wide.iter().filter(|w| !w.is_empty()) {
                jobs.push(shape_size(w)?);
            }
            let exe = std::env::current_exe()?;
            let runs = a.runs.max(1);
            let mut rows = Vec::new();
            if !a.json {
                outln!(
                    "optimize rows: one fresh process per run ({runs} run(s) per row); times in ms; peak = the process's VmHWM (catalog, resolve and optimize), MiB"
                );
                outln!(
                    "{:<6} {:>6} {:>6} {:<5} {:>8} {:>9} {:>9} {:>9} {:>6} {:>9} {:>5} {:<20} {:>7} {:>7} {:>11} {:>9}",
                    "shape",
                    "tasks",
                    "edges",
                    "obj",
                    "resolve",
                    "optimize",
                    "total",
                    "median",
                    "peak",
                    "cand/task",
                    "work",
                    "method",
                    "vars",
                    "cons",
                    "cost $",
                    "makespan h"
                );
            }
            for &(shape, n) in &jobs {
                for &obj in &objectives {
                    let mut all = Vec::new();
                    for _ in 0..runs {
                        all.push(row_in_child(&exe, shape, n, obj)?);
                    }
                    let totals: Vec<f64> = all.iter().map(|r| r.total_ms).collect();
                    let (best, median) = best_median(&totals);
                    let mut peaks: Vec<f64> = all.iter().filter_map(|r| r.peak_rss_kb).map(|k| k as f64).collect();
                    let peak = (!peaks.is_empty()).then(|| bench::median(&mut peaks) as u64);
                    let r = all.into_iter().min_by(|x, y| x.total_ms.total_cmp(&y.total_ms)).expect("at least one run");
                    if !a.json {
                        outln!(
                            "{:<6} {:>6} {:>6} {:<5} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>9.1} {:>5.1} {:<20} {:>7} {:>7} {:>11.2} {:>9.2}",
                            r.shape, r.tasks, r.edges, r.objective, r.resolve_ms, r.optimize_ms, best, median, mib(peak),
                            r.candidates_per_task, r.working_per_task, r.method, r.variables, r.constraints, r.total_cost,
                            r.makespan_hours
                        );
                        if let Some(s) = &r.stopped {
                            outln!("       stopped before its proof: {s}");
                        }
                    }
                    rows.push(serde_json::json!({
                        "row": r, "runs": runs, "total_ms_best": best, "total_ms_median": median, "peak_rss_kb_median": peak,
                    }));
                }
            }
            // The same jobs written as HCL: the whole process, as a user runs it.
            let mut processes = Vec::new();
            for h in a.hcl.iter().filter(|h| !h.is_empty()) {
                let (shape, n) = shape_size(h)?;
                let dir = match &a.hcl_dir {
                    Some(d) => d.join(format!("{shape}-{n}")),
                    None => std::env::temp_dir().join(format!("skyform-bench-hcl-{}-{shape}-{n}", std::process::id())),
                };
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                for (name, text) in bench::to_hcl(&bench::generate(shape, n, Objective::Cost, 7)) {
                    std::fs::write(dir.join(name), text)?;
                }
                for cmd in ["validate", "plan"] {
                    let mut secs = Vec::new();
                    let mut peaks = Vec::new();
                    for _ in 0..runs {
                        let _ = std::fs::remove_dir_all(dir.join(".skyform"));
                        let (s, p) = timed_process(&exe, &dir, &[cmd])?;
                        secs.push(s);
                        peaks.extend(p.map(|k| k as f64));
                    }
                    let (best, median) = best_median(&secs);
                    let peak = (!peaks.is_empty()).then(|| bench::median(&mut peaks) as u64);
                    if !a.json {
                        outln!(
                            "`skyform {cmd}` process on a generated {shape} of {n} tasks written as HCL: best {best:.2} s, median {median:.2} s, peak {} MiB",
                            mib(peak)
                        );
                    }
                    processes.push(serde_json::json!({
                        "command": cmd, "shape": shape.to_string(), "tasks": n, "runs": runs, "seconds_best": best,
                        "seconds_median": median, "peak_rss_kb_median": peak,
                    }));
                }
                if a.hcl_dir.is_none() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            if a.json {
                views::print_json(&serde_json::json!({ "optimize": rows, "processes": processes }));
            }
            Ok(0)
        }
    }
}
