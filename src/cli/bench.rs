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
    /// Job shapes: chain, dag
    #[arg(long, value_delimiter = ',', default_value = "chain,dag")]
    pub shapes: Vec<String>,
    /// Objectives: cost, time
    #[arg(long, value_delimiter = ',', default_value = "cost,time")]
    pub objectives: Vec<String>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<i32> {
    match cmd {
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
            let catalog = Catalog::embedded();
            let shapes: Vec<Shape> = a
                .shapes
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()
                .map_err(|e: String| anyhow::anyhow!("--shapes: {e}"))?;
            let objectives: Vec<Objective> = a
                .objectives
                .iter()
                .map(|o| match o.as_str() {
                    "cost" => Ok(Objective::Cost),
                    "time" => Ok(Objective::Time),
                    other => Err(anyhow::anyhow!("--objectives: unknown objective `{other}` (cost, time)")),
                })
                .collect::<Result<_, _>>()?;
            let mut rows = Vec::new();
            if !a.json {
                outln!(
                    "{:<6} {:>5} {:>5} {:<5} {:>10} {:>11} {:>10} {:>9} {:>8} {:<20} {:>8} {:>8} {:>12} {:>9}",
                    "shape",
                    "tasks",
                    "edges",
                    "obj",
                    "resolve ms",
                    "optimize ms",
                    "total ms",
                    "cand/task",
                    "work/task",
                    "method",
                    "vars",
                    "cons",
                    "cost $",
                    "makespan h"
                );
            }
            for &shape in &shapes {
                for &n in &a.sizes {
                    for &obj in &objectives {
                        let r = bench::run_optimize(&catalog, shape, n, obj)
                            .map_err(|e| anyhow::anyhow!("{shape} {n} {obj}: {e}"))?;
                        if !a.json {
                            outln!(
                                "{:<6} {:>5} {:>5} {:<5} {:>10.1} {:>11.1} {:>10.1} {:>9.1} {:>8.1} {:<20} {:>8} {:>8} {:>12.2} {:>9.2}",
                                r.shape, r.tasks, r.edges, r.objective, r.resolve_ms, r.optimize_ms, r.total_ms, r.candidates_per_task,
                                r.working_per_task, r.method, r.variables, r.constraints, r.total_cost, r.makespan_hours
                            );
                        }
                        rows.push(r);
                    }
                }
            }
            if a.json {
                views::print_json(&serde_json::to_value(&rows)?);
            }
            Ok(0)
        }
    }
}
