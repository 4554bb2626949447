//! `skyform bench catalog|optimize|apply|catalog-update`: benchmarks that print figures
//! (text or `-json`). `bench apply -plugin` also runs the local provider as a plugin process
//! (`skyform-provider-local`) and prints the protocol's cost per task.

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
    /// apply a generated DAG of trivial commands on the local provider (in process, and with
    /// -plugin also as a plugin process)
    Apply(ApplyBench),
    /// `catalog update --source aws` from a generated Price List offer file served on
    /// 127.0.0.1: wall time and peak memory of the process
    #[command(name = "catalog-update")]
    CatalogUpdate(CatalogUpdateBench),
    /// failover re-solve after one failure against the first solve, on generated jobs
    Replan(ReplanBench),
}

#[derive(Debug, Args)]
pub struct CatalogUpdateBench {
    /// Size of the generated offer file, MB
    #[arg(long = "size-mb", default_value_t = 200)]
    pub size_mb: u64,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

/// Serves the files under `root` on 127.0.0.1 (HTTP/1.1, `Connection: close`, one thread
/// per request, the file copied to the socket as it is read) until the process ends.
/// Hand-written because the binary carries an HTTP client but no server, and the bench
/// needs only GET of static files; returns the base URL.
fn serve_files(root: std::path::PathBuf) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", l.local_addr()?);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(&s);
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                let mut w = std::io::BufWriter::new(&s);
                match (!path.contains("..")).then(|| std::fs::File::open(root.join(&path))).and_then(Result::ok) {
                    Some(mut f) => {
                        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                        let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
                        let _ = std::io::copy(&mut f, &mut w);
                    }
                    None => {
                        let _ = write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
                let _ = w.flush();
            });
        }
    });
    Ok(url)
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
    /// Also run the local provider as a plugin (this executable; without a value
    /// `skyform-provider-local` next to skyform, then on PATH) and print the time the
    /// plugin protocol adds per task
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub plugin: Option<String>,
    /// Repetitions (in process and plugin runs alternate; the medians are printed)
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

/// A DAG of `n` trivial tasks: a binary tree where every 7th task also reads its
/// predecessor; data on every edge.
fn apply_job(n: usize, slots: usize, plugin: Option<&std::path::Path>) -> String {
    let plugin = plugin.map(|p| format!("  plugin = {:?}\n", p.display().to_string())).unwrap_or_default();
    let mut s = format!("provider \"local\" {{\n  zones = [\"zone-a\", \"zone-b\"]\n  slots = {slots}\n{plugin}}}\n\n");
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
        BenchCmd::CatalogUpdate(a) => {
            let dir = std::env::temp_dir().join(format!("skyform-bench-catalog-update-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let offers = dir.join("www/offers/v1.0/aws/AmazonEC2");
            std::fs::create_dir_all(offers.join("current"))?;
            std::fs::create_dir_all(offers.join("20260101000000/us-east-1"))?;
            std::fs::write(
                offers.join("current/region_index.json"),
                serde_json::json!({"regions": {"us-east-1": {
                    "regionCode": "us-east-1",
                    "currentVersionUrl": "/offers/v1.0/aws/AmazonEC2/20260101000000/us-east-1/index.json",
                }}})
                .to_string(),
            )?;
            let file = offers.join("20260101000000/us-east-1/index.csv");
            let t = Instant::now();
            let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
            let rows = bench::write_aws_offer(&mut w, a.size_mb * 1_000_000, "us-east-1")?;
            std::io::Write::flush(&mut w)?;
            drop(w);
            let gen_s = t.elapsed().as_secs_f64();
            let bytes = std::fs::metadata(&file)?.len();
            let url = serve_files(dir.join("www"))?;
            let exe = std::env::current_exe()?;
            // The baseline: a process that only loads the catalog.
            let (_, base_peak) = timed_process(&exe, &dir, &["catalog", "info"])?;
            let (secs, peak) =
                timed_process(&exe, &dir, &["catalog", "update", "--source", "aws", "--base-url", &url])?;
            // What the update wrote (read back through `catalog info`, as a user would).
            let info = std::process::Command::new(&exe)
                .args(["catalog", "info", "--json"])
                .current_dir(&dir)
                .env("SKYFORM_HOME", dir.join(".home"))
                .output()?;
            let info: serde_json::Value = serde_json::from_slice(&info.stdout)?;
            let aws = &info["clouds"]["aws"];
            if aws["origin"] != "update" {
                anyhow::bail!("the update did not replace the AWS data: {aws}");
            }
            let offerings = aws["offerings"].as_u64().unwrap_or(0);
            let _ = std::fs::remove_dir_all(&dir);
            let mb = bytes as f64 / 1e6;
            if a.json {
                views::print_json(&serde_json::json!({
                    "offer_file_bytes": bytes, "offer_rows": rows, "generate_s": gen_s, "update_s": secs,
                    "update_mb_per_s": mb / secs, "peak_rss_kb": peak, "catalog_info_peak_rss_kb": base_peak,
                    "aws_offerings_written": offerings,
                }));
            } else {
                outln!("catalog update --source aws: one generated us-east-1 offer file on 127.0.0.1");
                outln!("  offer file                        {mb:>8.1} MB  ({rows} rows, generated in {gen_s:.1} s)");
                outln!("  update (download, stream, write)  {secs:>8.2} s   ({:.0} MB/s, {offerings} AWS offerings written)", mb / secs);
                outln!("  peak memory of the update         {:>8} MiB (VmHWM of the process)", mib(peak));
                outln!(
                    "  peak memory of `catalog info`     {:>8} MiB (the catalog alone, for comparison)",
                    mib(base_peak)
                );
            }
            Ok(0)
        }
        BenchCmd::Apply(a) => {
            let plugin = match &a.plugin {
                None => None,
                Some(p) if !p.is_empty() => Some(std::path::absolute(p)?),
                Some(_) => Some(local_plugin()?),
            };
            // Runs alternate (in process, plugin, in process, ...) so that a busy machine
            // weighs on both alike; each figure is the median of its runs.
            let mut own = Vec::new();
            let mut plugged = Vec::new();
            for _ in 0..a.runs.max(1) {
                own.push(bench_apply(&a, None)?);
                if let Some(p) = &plugin {
                    plugged.push(bench_apply(&a, Some(p))?);
                }
            }
            let (plan_s, apply_s, destroy_s) = medians(&own);
            let per_task_ms = apply_s * 1e3 / a.tasks as f64;
            let per_slot_ms = per_task_ms * a.parallelism as f64;
            let as_plugin = (!plugged.is_empty()).then(|| medians(&plugged));
            // What the protocol adds per task: the difference of the wall times, per task and
            // slot (the runs are parallel).
            let plugin_per_task_ms = as_plugin.map(|(_, s, _)| s * 1e3 / a.tasks as f64);
            let added_ms = plugin_per_task_ms.map(|p| (p - per_task_ms) * a.parallelism as f64);
            if a.json {
                let mut v = serde_json::json!({
                    "tasks": a.tasks, "parallelism": a.parallelism, "runs": a.runs.max(1), "plan_s": plan_s, "apply_s": apply_s,
                    "destroy_s": destroy_s, "wall_ms_per_task": per_task_ms, "overhead_ms_per_task_per_slot": per_slot_ms,
                });
                if let (Some((pp, pa, pd)), Some(p)) = (as_plugin, &plugin) {
                    v["plugin"] = serde_json::json!({
                        "path": p.display().to_string(), "plan_s": pp, "apply_s": pa, "destroy_s": pd,
                        "wall_ms_per_task": plugin_per_task_ms, "added_ms_per_task_per_slot": added_ms,
                    });
                }
                views::print_json(&v);
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
                if let (Some((pp, pa, pd)), Some(p), Some(ppt), Some(add)) =
                    (as_plugin, &plugin, plugin_per_task_ms, added_ms)
                {
                    outln!("local provider as a plugin ({}):", p.display());
                    outln!("  plan                              {pp:>8.2} s");
                    outln!("  apply (wall)                      {pa:>8.2} s");
                    outln!("  wall per task                     {ppt:>8.1} ms");
                    outln!("  added per task per slot           {add:>8.1} ms  (the plugin protocol: process, pipes, JSON)");
                    outln!("  destroy                           {pd:>8.2} s");
                }
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

/// `skyform-provider-local` next to this executable, else on PATH.
fn local_plugin() -> anyhow::Result<std::path::PathBuf> {
    let name = format!("{}local", skyform_provider::plugin::EXECUTABLE_PREFIX);
    let exe = std::env::current_exe()?;
    let mut dirs: Vec<std::path::PathBuf> = exe.parent().map(|d| vec![d.to_path_buf()]).unwrap_or_default();
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    dirs.iter().map(|d| d.join(&name)).find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "no {name} next to skyform or on PATH: build it (cargo build -p skyform-provider-local) or give -plugin=PATH"
        )
    })
}

/// One plan + apply + destroy of the generated job in a fresh directory (the local provider
/// in process, or served by `plugin`): the three wall times in seconds.
fn bench_apply(a: &ApplyBench, plugin: Option<&std::path::Path>) -> anyhow::Result<(f64, f64, f64)> {
    let dir = std::env::temp_dir().join(format!(
        "skyform-bench-apply-{}{}",
        std::process::id(),
        if plugin.is_some() { "-plugin" } else { "" }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("main.sky.hcl"), apply_job(a.tasks, a.parallelism.max(1) * 2, plugin))?;
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
    Ok((plan_s, apply_s, destroy_s))
}

/// The median of each of the three figures over runs.
fn medians(runs: &[(f64, f64, f64)]) -> (f64, f64, f64) {
    let col = |f: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        bench::median(&mut v)
    };
    (col(|r| r.0), col(|r| r.1), col(|r| r.2))
}
