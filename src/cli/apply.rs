//! `skyform apply [FILE]`, `destroy`, `status`, `logs TASK [-f]` and `sweep`: running the
//! plan for real. Progress goes to stderr (indicatif on a terminal, plain lines
//! otherwise); `-json` turns events into JSON lines on stdout. `status` refreshes live
//! allocations against their providers (drift); `logs` reads local files or objects (S3).
//! The providers of a job: `local` always, `aws` with a `provider "aws"` block.

use super::plan::{make_plan, PlanArgs, StateArgs};
use super::{output, Env, VarArgs};
use crate::apply::{self, Event, Hooks, Providers};
use crate::plan::{render, Plan};
use crate::state::{StateStore, TaskStatus};
use crate::tracker::{now_secs, Tracker};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A saved plan (from `plan -out`); applied without a prompt
    pub file: Option<PathBuf>,
    /// Do not ask for approval
    #[arg(long = "auto-approve")]
    pub auto_approve: bool,
    /// Events as JSON lines on stdout
    #[arg(long)]
    pub json: bool,
    /// How many tasks run at once
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Seconds running tasks may go on after an interrupt before they are cancelled
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
    /// Seconds one provider call may take before it counts as failed
    #[arg(long = "call-timeout", default_value_t = 60.0)]
    pub call_timeout: f64,
    /// Replace this task even if nothing changed (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Only this task and what it depends on (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// As JSON
    #[arg(long)]
    pub json: bool,
    /// Ask the providers whether live allocations still exist (drift); `-refresh=false` reads
    /// the state only
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task, e.g. task.train
    pub task: String,
    /// Follow the log while the task runs
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Only list, release nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

/// The providers a job can use in this build.
pub fn providers(env: &Env, spec: &crate::config::JobSpec) -> anyhow::Result<Providers> {
    let cfg = match spec.providers.get("local") {
        Some(v) => skyform_provider_local::LocalConfig::from_json(v).map_err(|e| anyhow::anyhow!(e))?,
        None => skyform_provider_local::LocalConfig::default(),
    };
    let local = skyform_provider_local::runtime::LocalProvider::new(cfg, &env.dir).map_err(|e| anyhow::anyhow!(e))?;
    let mut p: Providers = Providers::new();
    p.insert("local".into(), Arc::new(local));
    #[cfg(feature = "aws")]
    if let Some(v) = spec.providers.get("aws") {
        p.insert("aws".into(), Arc::new(aws_provider(v)?));
    }
    Ok(p)
}

/// The AWS provider of a `provider "aws"` block.
#[cfg(feature = "aws")]
pub fn aws_provider(body: &serde_json::Value) -> anyhow::Result<skyform_provider_aws::AwsProvider> {
    let cfg = skyform_provider_aws::AwsConfig::from_json(body).map_err(|e| anyhow::anyhow!(e))?;
    skyform_provider_aws::AwsProvider::new(cfg).map_err(|e| anyhow::anyhow!(e))
}

/// Progress on a terminal: one spinner line per running task under an overall bar.
struct Bars {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    tasks: std::sync::Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>>,
}

struct View {
    json: bool,
    bars: Option<Bars>,
    color: bool,
}

impl View {
    fn line(&self, s: String) {
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(s);
            }
            None => eprintln!("{s}"),
        }
    }

    /// Updates (or starts, or ends) the task's own line.
    fn task_line(&self, task: &str, msg: Option<String>) {
        let Some(b) = &self.bars else { return };
        let mut tasks = b.tasks.lock().expect("lock");
        match msg {
            Some(m) => {
                let bar = tasks.entry(task.to_string()).or_insert_with(|| {
                    let p = b.multi.insert_before(&b.overall, indicatif::ProgressBar::new_spinner());
                    p.set_style(indicatif::ProgressStyle::with_template("  {spinner} {msg}").expect("template"));
                    p.enable_steady_tick(std::time::Duration::from_millis(120));
                    p
                });
                bar.set_message(format!("{task}: {m}"));
            }
            None => {
                if let Some(p) = tasks.remove(task) {
                    p.finish_and_clear();
                }
            }
        }
    }
}

impl Hooks for View {
    fn event(&self, e: &Event) {
        if self.json {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            let msg = describe(e);
            if let serde_json::Value::Object(m) = &mut v {
                m.insert(
                    "@level".into(),
                    serde_json::json!(if matches!(e, Event::AllocationFailed { .. } | Event::RunFailed { .. }) {
                        "warn"
                    } else {
                        "info"
                    }),
                );
                m.insert("@message".into(), serde_json::json!(msg));
                m.insert("@timestamp".into(), serde_json::json!(crate::tracker::format_time(now_secs())));
            }
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
            return;
        }
        match e {
            Event::Allocating { task, location, instance_type, .. } => {
                self.task_line(task.as_str(), Some(format!("allocating {instance_type} in {location}")))
            }
            Event::Running { task, run, .. } => self.task_line(task.as_str(), Some(format!("running (run {run})"))),
            Event::Preempted { task, .. } => self.task_line(task.as_str(), Some("preempted, recovering".into())),
            Event::TaskDone { task, .. } => {
                self.task_line(task.as_str(), None);
                if let Some(b) = &self.bars {
                    b.overall.inc(1);
                }
            }
            Event::Destroyed { .. } => {
                if let Some(b) = &self.bars {
                    b.overall.inc(1);
                }
            }
            _ => {}
        }
        // On a terminal the task lines carry the routine events; the rest is printed above.
        if self.bars.is_some()
            && matches!(e, Event::Allocating { .. } | Event::Running { .. } | Event::Transferred { .. })
        {
            return;
        }
        let s = describe(e);
        let s = if self.color && matches!(e, Event::AllocationFailed { .. } | Event::RunFailed { .. }) {
            format!("\x1b[33m{s}\x1b[0m")
        } else {
            s
        };
        self.line(s);
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::Recovered { task, provider_id, adopted } => {
            format!(
                "{task}: found {provider_id} from an interrupted apply; {}",
                if *adopted { "its run had finished: adopted" } else { "released" }
            )
        }
        Event::Allocating { task, attempt, location, instance_type, spot } => {
            format!(
                "{task}: allocating {instance_type}{} in {location} (attempt {attempt})...",
                if *spot { " (spot)" } else { "" }
            )
        }
        Event::AllocationFailed { task, location, kind, scope, message } => {
            format!("{task}: {kind} in {location} ({message}); {scope} blocked, trying the next placement")
        }
        Event::Running { task, run, log } => format!("{task}: running (run {run}, log {log})"),
        Event::RunFailed { task, run, exit_code, log, retrying } => format!(
            "{task}: run {run} failed (exit {}); {}; log: {log}",
            exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            if *retrying { "retrying" } else { "no retries left" }
        ),
        Event::Preempted { task, location, recovery } => {
            format!("{task}: preempted in {location}; recovering ({recovery})")
        }
        Event::Transferred { task, what, bytes, cost } => {
            format!("{task}: {what}: {bytes} bytes, {}", render::usd(*cost))
        }
        Event::TaskDone { task, status, cost } => format!("{task}: {status} after {}", render::usd(*cost)),
        Event::Destroyed { task } => format!("{task}: destroyed"),
        Event::Interrupted { message } => message.clone(),
    }
}

/// Re-prices a saved plan's placements at today's catalog and tracker prices.
fn reprice(env: &Env, plan: &Plan) -> anyhow::Result<f64> {
    let catalog = crate::catalog::Catalog::for_job(&plan.config)?;
    let view = super::plan::tracker_view(env)?;
    let mut total = 0.0;
    for c in &plan.changes {
        let Some(a) = &c.after else { continue };
        if c.action == crate::plan::Action::NoOp {
            total += c.cost_after;
            continue;
        }
        let p = &a.placement;
        let f = crate::catalog::Filter {
            cloud: Some(p.cloud.clone()),
            instance_type: Some(p.instance_type.clone()),
            ..Default::default()
        };
        let now = catalog.search(&f).into_iter().find(|o| o.region == p.region && o.zone == p.zone).map(|o| {
            let l = o.location();
            if p.spot {
                view.spot_price(&l, o.instance_type, o.spot_price).unwrap_or(o.price)
            } else {
                o.price
            }
        });
        let hourly = now.unwrap_or(p.hourly);
        total += c.cost_after + (hourly - p.hourly) * p.hours * a.num_nodes.max(1) as f64;
    }
    Ok(total)
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprintln!("{question}");
    eprintln!("  Only 'yes' will be accepted to approve.");
    eprint!("\n  Enter a value: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

pub fn run_apply(env: &Env, a: ApplyArgs, destroy: bool) -> anyhow::Result<i32> {
    let Some(loaded) = super::plan::load_job(env) else { return Ok(1) };
    let opened = super::backend::open(env, &a.state, Some(&loaded), Some(if destroy { "destroy" } else { "apply" }))?;
    let store = opened.store.clone();
    let plan = match &a.file {
        Some(f) => {
            let text = std::fs::read_to_string(env.dir.join(f)).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let plan = Plan::decode(&text)?;
            let state = store.read()?;
            let repriced = reprice(env, &plan)?;
            if let Err(e) = crate::plan::check_saved(&plan, &state, Some(repriced)) {
                eprintln!("Error: {e}");
                return Ok(1);
            }
            plan
        }
        None => {
            let pa = PlanArgs {
                out: None,
                json: false,
                detailed_exitcode: false,
                destroy,
                replace: a.replace.clone(),
                target: a.target.clone(),
                exclude: vec![],
                input: true,
                state: a.state.clone(),
                vars: a.vars.clone(),
            };
            match make_plan(env, &loaded, &pa)? {
                Ok(p) => p,
                Err(msg) => {
                    eprintln!("Error: {msg}");
                    return Ok(1);
                }
            }
        }
    };
    let providers = providers(env, &loaded.spec)?;
    for c in &plan.changes {
        if let Some(after) = &c.after {
            if !providers.contains_key(&after.placement.cloud) {
                eprintln!(
                    "Error: {} is placed on {}, and this build has no {} provider yet; restrict policy.regions (e.g. [\"local\"]) to run it here",
                    c.address, after.placement.cloud, after.placement.cloud
                );
                return Ok(1);
            }
        }
    }
    if !a.json {
        print!("{}", render::text(&plan, env.color));
    }
    if !plan.has_changes() && plan.changes.iter().all(|c| c.action == crate::plan::Action::NoOp) {
        let st = store.read()?;
        let unfinished =
            plan.changes.iter().any(|c| st.tasks.get(&c.address).is_none_or(|t| t.status != TaskStatus::Succeeded));
        if !unfinished {
            println!(
                "\nApply complete! Resources: 0 added, 0 changed, 0 destroyed. Cost: {} (planned {}).",
                render::usd(0.0),
                render::usd(0.0)
            );
            return Ok(0);
        }
    }
    if a.file.is_none() && !a.auto_approve {
        let q = if destroy {
            "\nDo you really want to destroy all resources?\n  skyform will destroy all your managed tasks, as shown above."
        } else {
            "\nDo you want to perform these actions?\n  skyform will perform the actions described above."
        };
        if !confirm(q)? {
            eprintln!("\n{} cancelled.", if destroy { "Destroy" } else { "Apply" });
            return Ok(1);
        }
    }
    let tracker_path = super::tracker::tracker_path(env);
    let tracker = Tracker::open(&tracker_path).ok().map(Arc::new);
    let total =
        plan.changes.iter().filter(|c| c.action != crate::plan::Action::NoOp || c.after.is_some()).count() as u64;
    let tty = std::io::stderr().is_terminal() && !a.json;
    let bars = tty.then(|| {
        let multi = indicatif::MultiProgress::new();
        let overall = multi.add(indicatif::ProgressBar::new(total));
        overall.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks")
                .expect("template"),
        );
        overall.enable_steady_tick(std::time::Duration::from_millis(120));
        Bars { multi, overall, tasks: std::sync::Mutex::new(Default::default()) }
    });
    let overall = bars.as_ref().map(|b| b.overall.clone());
    let view = Arc::new(View { json: a.json, bars, color: env.color });
    let cancel = Arc::new(AtomicBool::new(false));
    let hard = Arc::new(AtomicBool::new(false));
    store.hold()?;
    opened.go_live();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let opts = apply::Options {
        parallelism: a.parallelism.max(1),
        call_timeout: std::time::Duration::from_secs_f64(a.call_timeout.max(0.01)),
        grace: std::time::Duration::from_secs(a.grace),
        job_dir: env.dir.clone(),
    };
    let (c2, h2) = (cancel.clone(), hard.clone());
    let outcome = rt.block_on(async {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nInterrupt received. No new tasks will start; running tasks may finish (grace period), then they are cancelled and released. Press Ctrl-C again to exit at once.");
                c2.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    h2.store(true, Ordering::SeqCst);
                    eprintln!("Second interrupt: exiting now. The state is consistent; the next apply releases what was running.");
                    std::process::exit(130);
                }
            }
        });
        let ctx = apply::Context {
            store: store.clone(),
            tracker,
            providers,
            hooks: view.clone(),
            options: opts,
            cancel: cancel.clone(),
            hard_cancel: hard.clone(),
        };
        apply::apply(&plan, ctx).await
    });
    store.release_handle();
    if let Some(b) = overall {
        b.finish_and_clear();
    }
    let outcome = outcome?;
    if a.json {
        println!("{}", serde_json::to_string(&serde_json::json!({"type": "apply_complete", "outcome": outcome}))?);
    }
    let word = if destroy { "Destroy" } else { "Apply" };
    if !outcome.failed.is_empty() || outcome.interrupted {
        for f in &outcome.failed {
            let st = store.read()?;
            let log =
                st.tasks.get(f).and_then(|t| t.runs.last()).and_then(|r| r.log.clone()).unwrap_or_else(|| "-".into());
            eprintln!("Error: {f} failed; log: {log}");
        }
        for n in &outcome.not_started {
            eprintln!("  {n} did not start");
        }
        eprintln!(
            "{word} {}. Cost so far: {}.",
            if outcome.interrupted { "interrupted" } else { "failed" },
            render::usd(outcome.cost)
        );
        return Ok(1);
    }
    println!(
        "\n{word} complete! Resources: {} added, {} changed, {} destroyed. Cost: {} (planned {}).",
        outcome.added,
        outcome.changed,
        outcome.destroyed,
        render::usd(outcome.cost),
        render::usd(outcome.planned)
    );
    Ok(0)
}

pub fn run_status(env: &Env, a: StatusArgs) -> anyhow::Result<i32> {
    let loaded = crate::config::load(&env.dir, &env.load_options()).ok();
    let st = super::backend::open(env, &a.state, loaded.as_ref(), None)?.store.read()?;
    let live = st.tasks.values().any(|t| t.allocations.iter().any(|x| x.released.is_none() && x.provider_id.is_some()));
    let drift = match (&loaded, a.refresh && live) {
        (Some(l), true) => apply::drift(&st, &providers(env, &l.spec)?),
        _ => Default::default(),
    };
    if a.json {
        let rows: Vec<serde_json::Value> = st
            .tasks
            .iter()
            .map(|(k, t)| {
                serde_json::json!({
                    "address": k, "status": t.status, "tainted": t.tainted, "placement": t.placement,
                    "runs": t.runs.len(), "cost_so_far": crate::plan::money(t.cost_so_far()).to_string(),
                    "drift": drift.get(k),
                })
            })
            .collect();
        output::print_json(&serde_json::json!({"serial": st.serial, "tasks": rows}));
        return Ok(0);
    }
    if st.tasks.is_empty() {
        println!("No tasks in the state.");
        return Ok(0);
    }
    let mut rows = vec![["TASK", "STATUS", "PLACEMENT", "INSTANCE", "RUNS", "COST SO FAR"].map(String::from).to_vec()];
    let mut total = 0.0;
    for (k, t) in &st.tasks {
        total += t.cost_so_far();
        let (place, it) = t
            .placement
            .as_ref()
            .map(|p| {
                (
                    skyform_provider::Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str()).to_string(),
                    p.instance_type.clone(),
                )
            })
            .unwrap_or_else(|| ("-".into(), "-".into()));
        let mut status = if t.tainted { format!("{} (tainted)", t.status) } else { t.status.to_string() };
        if drift.contains_key(k) {
            status.push_str(" (drifted)");
        }
        rows.push(vec![k.to_string(), status, place, it, t.runs.len().to_string(), render::usd(t.cost_so_far())]);
    }
    print!("{}", output::table(&rows));
    println!("Total cost so far: {}", render::usd(total));
    for (k, d) in &drift {
        println!("Drift: {k}: {d}; the next apply releases it and runs the task again.");
    }
    Ok(0)
}

pub fn run_logs(env: &Env, a: LogsArgs) -> anyhow::Result<i32> {
    let loaded = crate::config::load(&env.dir, &env.load_options()).ok();
    let opened = super::backend::open(env, &a.state, loaded.as_ref(), None)?;
    let store = opened.store.clone();
    let addr = crate::config::TaskAddr(a.task.clone());
    let mut offset = 0usize;
    // Built once, and only when a log lives in an object store.
    let mut remote: Option<Providers> = None;
    loop {
        let st = store.read()?;
        let Some(t) = st.tasks.get(&addr) else {
            let hint = crate::config::diag::did_you_mean(&a.task, st.tasks.keys().map(|k| k.as_str()))
                .map(|h| format!(" Did you mean {h}?"))
                .unwrap_or_default();
            eprintln!("Error: no task {} in the state.{hint}", a.task);
            return Ok(1);
        };
        let Some(log) = t.runs.last().and_then(|r| r.log.clone()) else {
            eprintln!("{} has not run yet.", a.task);
            return Ok(if a.follow { 0 } else { 1 });
        };
        if let Ok(bytes) = read_log(env, loaded.as_ref(), &mut remote, &log) {
            if bytes.len() > offset {
                use std::io::Write;
                std::io::stdout().write_all(&bytes[offset..])?;
                offset = bytes.len();
            }
        }
        if !a.follow || !matches!(t.status, TaskStatus::Running | TaskStatus::Pending) {
            return Ok(0);
        }
        // An object store is asked less often than a local file is read.
        let every = if log.contains("://") { 2000 } else { 200 };
        std::thread::sleep(std::time::Duration::from_millis(every));
    }
}

/// A run's log: a local file, or an object (`s3://…/log.txt`) fetched through the
/// provider that speaks its scheme.
fn read_log(
    env: &Env,
    loaded: Option<&crate::config::Loaded>,
    remote: &mut Option<Providers>,
    log: &str,
) -> anyhow::Result<Vec<u8>> {
    if !log.contains("://") {
        return Ok(std::fs::read(log)?);
    }
    let scheme = log.split("://").next().unwrap_or_default();
    if remote.is_none() {
        let loaded = loaded.ok_or_else(|| anyhow::anyhow!("the job does not load; cannot reach {log}"))?;
        *remote = Some(providers(env, &loaded.spec)?);
    }
    let p = remote
        .as_ref()
        .expect("built above")
        .values()
        .find(|p| p.info().capabilities.schemes.iter().any(|s| s == scheme))
        .ok_or_else(|| anyhow::anyhow!("no provider of this job reaches {log}"))?;
    let dir = tempfile_dir()?;
    let r = p.transfer(&skyform_provider::TransferRequest {
        from: log.to_string(),
        to: format!("file://{}", dir.display()),
    });
    let name = log.rsplit('/').next().unwrap_or("log.txt");
    let out = r.map_err(|e| anyhow::anyhow!("{e}")).and_then(|_| Ok(std::fs::read(dir.join(name))?));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("skyform-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

pub fn run_sweep(env: &Env, a: SweepArgs) -> anyhow::Result<i32> {
    let Some(loaded) = super::plan::load_job(env) else { return Ok(1) };
    let opened = super::backend::open(env, &a.state, Some(&loaded), Some("sweep"))?;
    let store = opened.store.clone();
    let st = store.read()?;
    let found = apply::sweep(&st, &loaded.spec.name, &providers(env, &loaded.spec)?, !a.dry_run);
    if found.is_empty() {
        println!("Nothing to sweep: every resource carrying skyform's owner tags is known to the state.");
        return Ok(0);
    }
    for (cloud, r) in &found {
        println!(
            "{} {cloud} {} {} task={} lineage={}",
            if a.dry_run { "found" } else { "released" },
            r.provider_id,
            r.location,
            r.owner_tags.get("skyform:task").cloned().unwrap_or_default(),
            r.owner_tags.get("skyform:lineage").cloned().unwrap_or_default()
        );
    }
    Ok(0)
}
