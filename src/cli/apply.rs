//! `skyform apply [FILE]` (and `destroy`, which is apply with a destroy plan): plan (or read
//! a saved plan and refuse it when stale or re-priced past `policy.max_cost_drift`), show
//! it, ask for approval (on a terminal only, never with `-input=false`), then run the engine under the state lock with progress on stderr
//! (indicatif on a terminal, plain lines otherwise) or `-json` events on stdout. Ctrl-C
//! stops new work and gives running tasks a grace period; a second one exits at once.

use super::backend::Opened;
use super::context::PlanRequest;
use super::views::apply::ApplyView;
use super::views::plan as render;
use super::{Ctx, StateArgs, VarArgs};
use crate::apply;
use crate::config::Loaded;
use crate::plan::{Action, Plan};
use crate::state::{StateStore, TaskStatus};
use crate::tracker::Tracker;
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
    /// How many tasks run at once (at least 1)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelism: u32,
    /// Seconds running tasks may go on after an interrupt before they are cancelled
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
    /// Seconds one provider call may take before it counts as failed
    #[arg(long = "call-timeout", default_value_t = 60.0)]
    pub call_timeout: f64,
    /// Seconds a failover re-solve may take (the optimizer places the unfinished tasks
    /// again around a failed location); past it, failover walks the plan's ranked
    /// alternatives. 0: never re-solve
    #[arg(long = "resolve-limit", value_name = "SECONDS", default_value_t = 10.0)]
    pub resolve_limit: f64,
    /// Replace this task even if nothing changed (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Only this task and what it depends on (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    /// Ask for approval on a terminal (default); `-input=false` never prompts and fails
    /// when approval is needed (use -auto-approve). Without a terminal skyform never prompts.
    #[arg(long = "input", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub input: bool,
    /// Ask the providers whether live allocations still exist before planning (default);
    /// `-refresh=false` plans from the state alone
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
    /// Only record what a refresh finds changed outside skyform in the state (as applying
    /// `plan -refresh-only`); no resource is touched
    #[arg(long = "refresh-only")]
    pub refresh_only: bool,
    /// One line per kind of warning instead of one per task
    #[arg(long = "compact-warnings")]
    pub compact_warnings: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

/// Re-prices a saved plan's placements at today's catalog and tracker prices.
fn reprice(ctx: &Ctx, plan: &Plan) -> anyhow::Result<f64> {
    let catalog = ctx.catalog(&plan.config)?;
    let view = ctx.tracker_view()?;
    let mut total = 0.0;
    for c in &plan.changes {
        let Some(a) = &c.after else { continue };
        if c.action == Action::NoOp {
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
                let series = crate::tracker::series_type(o.cloud, o.instance_type, o.accelerator, o.accelerator_count);
                view.spot_price(&l, &series, o.spot_price, catalog.data_time(o.cloud)).unwrap_or(o.price)
            } else {
                o.price
            }
        });
        let hourly = now.unwrap_or(p.hourly);
        total += c.cost_after + (hourly - p.hourly) * p.hours * a.num_nodes.max(1) as f64;
    }
    Ok(total)
}

/// Applies a refresh-only plan: records its drift in the state, touching no resource.
fn record_drift(ctx: &Ctx, a: &ApplyArgs, plan: &Plan, store: &crate::state::SledStore) -> anyhow::Result<i32> {
    if a.file.is_some() && !a.json {
        out!("{}", render::drift_notes(&plan.drift, plan));
    }
    if !a.json {
        outln!("{}", render::summary_line(plan));
    }
    if plan.drift.is_empty() {
        return Ok(0);
    }
    if a.file.is_none() && !a.auto_approve {
        errln!("Error: apply -refresh-only needs approval: run skyform apply -refresh-only -auto-approve, or apply a saved plan (skyform plan -refresh-only -out=FILE, then skyform apply FILE).");
        return Ok(1);
    }
    let mut st = store.read()?;
    let changed = apply::record(&mut st, &plan.drift, ctx.clock.now());
    store.commit(&st)?;
    if a.json {
        outln!("{}", serde_json::to_string(&serde_json::json!({"type": "refresh_complete", "recorded": changed}))?);
    } else {
        outln!(
            "\nApply complete! Recorded {} change{} made outside skyform in the state; no resource was touched.",
            changed.len(),
            if changed.len() == 1 { "" } else { "s" }
        );
    }
    Ok(0)
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    errln!("{question}");
    errln!("  Only 'yes' will be accepted to approve.");
    super::views::eprint_str("\n  Enter a value: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

pub fn run(ctx: &Ctx, a: ApplyArgs) -> anyhow::Result<i32> {
    run_as(ctx, a, false)
}

/// `apply` (`destroy` false) or `destroy`.
pub fn run_as(ctx: &Ctx, a: ApplyArgs, destroy: bool) -> anyhow::Result<i32> {
    ctx.set_compact_warnings(a.compact_warnings);
    let Some(loaded) = ctx.job_or_report() else { return Ok(1) };
    let opened = ctx.open_state(&a.state, Some(if destroy { "destroy" } else { "apply" }))?;
    let code = apply_opened(ctx, a, destroy, loaded, &opened)?;
    // The last push of a remote state: when it fails, so does the command (the commits
    // stay in the local copy).
    if let Err(e) = opened.finish() {
        errln!("Error: {e}");
        return Ok(1);
    }
    Ok(code)
}

/// `apply` or `destroy` on the opened (and locked) state.
fn apply_opened(ctx: &Ctx, a: ApplyArgs, destroy: bool, loaded: &Loaded, opened: &Opened) -> anyhow::Result<i32> {
    let store = opened.store.clone();
    let plan = match &a.file {
        Some(f) => {
            let text = std::fs::read_to_string(ctx.dir.join(f)).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let plan = match Plan::decode(&text)?.with_config(&loaded.spec) {
                Ok(p) => p,
                Err(e) => {
                    errln!("Error: {e}");
                    return Ok(1);
                }
            };
            let state = store.read()?;
            // A refresh-only plan changes no task: there is nothing to re-price.
            let repriced = if plan.refresh_only { None } else { Some(reprice(ctx, &plan)?) };
            if let Err(e) = crate::plan::check_saved(&plan, &state, repriced) {
                errln!("Error: {e}");
                return Ok(1);
            }
            plan
        }
        None => {
            let req = PlanRequest {
                destroy,
                replace: a.replace.clone(),
                target: a.target.clone(),
                exclude: vec![],
                state: a.state.clone(),
                refresh: a.refresh,
            };
            match ctx.plan(loaded, &req)? {
                Some(p) => {
                    let plan = if a.refresh_only { p.plan.refresh_only(p.changed_outside.clone()) } else { p.plan };
                    if !a.json {
                        out!("{}", render::drift_notes(&p.changed_outside, &plan));
                    }
                    plan
                }
                None => return Ok(1),
            }
        }
    };
    if plan.refresh_only {
        return record_drift(ctx, &a, &plan, &store);
    }
    let providers = ctx.providers(&loaded.spec)?;
    for c in &plan.changes {
        if let Some(after) = &c.after {
            let cloud = &after.placement.cloud;
            if !providers.contains_key(cloud) {
                let why = match ctx.registry.factory(cloud) {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("the job has no provider \"{cloud}\" block"),
                };
                errln!(
                    "Error: {} is placed on {cloud}, and {why}; restrict policy.regions (e.g. [\"local\"]) to run it elsewhere",
                    c.address
                );
                return Ok(1);
            }
        }
    }
    if !a.json {
        out!("{}", render::text(&plan, ctx.color));
    }
    if !plan.has_changes() && plan.changes.iter().all(|c| c.action == Action::NoOp) {
        let st = store.read()?;
        let unfinished =
            plan.changes.iter().any(|c| st.tasks.get(&c.address).is_none_or(|t| t.status != TaskStatus::Succeeded));
        if !unfinished {
            outln!(
                "\nApply complete! Resources: 0 added, 0 changed, 0 destroyed. Cost: {} (planned {}).",
                render::usd(0.0),
                render::usd(0.0)
            );
            return Ok(0);
        }
    }
    if a.file.is_none() && !a.auto_approve {
        let word = if destroy { "destroy" } else { "apply" };
        // Never a prompt that nobody can answer: -input=false, or no terminal.
        let why = if !a.input {
            Some("-input=false forbids the prompt")
        } else if !std::io::stdin().is_terminal() {
            Some("there is no terminal to ask on")
        } else {
            None
        };
        if let Some(why) = why {
            errln!("Error: {word} needs approval and {why}; run skyform {word} -auto-approve, or apply a saved plan (skyform plan{} -out=FILE, then skyform apply FILE).", if destroy { " -destroy" } else { "" });
            return Ok(1);
        }
        let q = if destroy {
            "\nDo you really want to destroy all resources?\n  skyform will destroy all your managed tasks, as shown above."
        } else {
            "\nDo you want to perform these actions?\n  skyform will perform the actions described above."
        };
        if !confirm(q)? {
            errln!("\n{} cancelled.", if destroy { "Destroy" } else { "Apply" });
            return Ok(1);
        }
    }
    let tracker = Tracker::open(&ctx.tracker_path()).ok().map(Arc::new);
    let total = plan.changes.iter().filter(|c| c.action != Action::NoOp || c.after.is_some()).count() as u64;
    let tty = std::io::stderr().is_terminal() && !a.json;
    let view = Arc::new(ApplyView::new(a.json, ctx.color, tty, total));
    let cancel = Arc::new(AtomicBool::new(false));
    let hard = Arc::new(AtomicBool::new(false));
    store.hold()?;
    opened.go_live();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let options = apply::Options {
        parallelism: a.parallelism as usize,
        call_timeout: std::time::Duration::from_secs_f64(a.call_timeout.max(0.01)),
        grace: std::time::Duration::from_secs(a.grace),
        job_dir: ctx.dir.clone(),
        log_dir: ctx.state_path(&a.state).parent().and_then(|p| std::path::absolute(p.join("logs")).ok()),
        resolve_limit: std::time::Duration::from_secs_f64(a.resolve_limit.max(0.0)),
    };
    // What failover re-solves: the plan's job with today's catalog and tracker (a job that
    // no longer resolves fails over by its ranked alternatives alone).
    let resolved = if destroy || a.resolve_limit <= 0.0 {
        None
    } else {
        let view = match &tracker {
            Some(t) => t.view(ctx.clock.now())?,
            None => ctx.tracker_view()?,
        };
        ctx.catalog(&plan.config).ok().and_then(|c| crate::resolve::resolve(&plan.config, &c, &view).ok()).map(Arc::new)
    };
    let (c2, h2) = (cancel.clone(), hard.clone());
    let outcome = rt.block_on(async {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                errln!("\nInterrupt received. No new tasks will start; running tasks may finish (grace period), then they are cancelled and released. Press Ctrl-C again to exit at once.");
                c2.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    h2.store(true, Ordering::SeqCst);
                    errln!("Second interrupt: exiting now. The state is consistent; the next apply releases what was running.");
                    std::process::exit(130);
                }
            }
        });
        let actx = apply::Context {
            store: store.clone(),
            tracker,
            providers,
            hooks: view.clone(),
            options,
            clock: ctx.clock.clone(),
            cancel: cancel.clone(),
            hard_cancel: hard.clone(),
            resolved,
        };
        apply::apply(&plan, actx).await
    });
    store.release_handle();
    view.finish();
    let outcome = outcome?;
    if a.json {
        outln!("{}", serde_json::to_string(&serde_json::json!({"type": "apply_complete", "outcome": outcome}))?);
    }
    let word = if destroy { "Destroy" } else { "Apply" };
    if !outcome.failed.is_empty() || outcome.interrupted {
        let st = store.read()?;
        for f in &outcome.failed {
            let log =
                st.tasks.get(f).and_then(|t| t.runs.last()).and_then(|r| r.log.clone()).unwrap_or_else(|| "-".into());
            errln!("Error: {f} failed; log: {log}");
        }
        for n in &outcome.not_started {
            errln!("  {n} did not start");
        }
        errln!(
            "{word} {}. Cost so far: {}.",
            if outcome.interrupted { "interrupted" } else { "failed" },
            render::usd(outcome.cost)
        );
        return Ok(1);
    }
    outln!(
        "\n{word} complete! Resources: {} added, {} changed, {} destroyed. Cost: {} (planned {}).",
        outcome.added,
        outcome.changed,
        outcome.destroyed,
        render::usd(outcome.cost),
        render::usd(outcome.planned)
    );
    Ok(0)
}
