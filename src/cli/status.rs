//! `skyform status [-json | -format=html] [-refresh=false]`: task states, placements and
//! cost so far (`-format=html`: a page with the runs on a timeline); by
//! default live allocations are refreshed against their providers (drift: terminated or
//! interrupted outside skyform).

use super::views::{self, plan::usd};
use super::{Ctx, StateArgs, VarArgs};
use crate::state::StateStore;
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// As JSON
    #[arg(long)]
    pub json: bool,
    /// text, json or html (one self-contained page: the runs on a timeline, coloured by status)
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Ask the providers whether live allocations still exist (drift); `-refresh=false` reads
    /// the state only
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, a: StatusArgs) -> anyhow::Result<i32> {
    let st = ctx.open_state(&a.state, None)?.store.read()?;
    let live = st.tasks.values().any(|t| t.allocations.iter().any(|x| x.released.is_none() && x.provider_id.is_some()));
    let drift = match (ctx.job_opt(), a.refresh && live) {
        (Some(l), true) => crate::apply::drift(&st, &ctx.providers(&l.spec)?),
        _ => Default::default(),
    };
    let format = if a.json { "json" } else { a.format.as_str() };
    if !matches!(format, "text" | "json" | "html") {
        anyhow::bail!("-format={format}: expected text, json or html");
    }
    if format == "html" {
        let job = ctx.job_opt().map(|l| l.spec.name.clone()).unwrap_or_else(|| "job".into());
        out!("{}", views::html::status_page(&job, &st, ctx.clock.now()));
        return Ok(0);
    }
    if format == "json" {
        let rows: Vec<serde_json::Value> = st
            .tasks
            .iter()
            .map(|(k, t)| {
                serde_json::json!({
                    "address": k, "status": t.status, "tainted": t.tainted, "placement": t.placement,
                    "runs": t.runs.len(), "cost_so_far": crate::plan::money(t.cost_so_far()).to_string(),
                    "drift": drift.get(k), "migration": t.migration,
                })
            })
            .collect();
        views::print_json(&serde_json::json!({"serial": st.serial, "tasks": rows}));
        return Ok(0);
    }
    if st.tasks.is_empty() {
        outln!("No tasks in the state.");
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
        if t.migration.is_some() {
            status.push_str(" (migrating)");
        }
        rows.push(vec![k.to_string(), status, place, it, t.runs.len().to_string(), usd(t.cost_so_far())]);
    }
    out!("{}", views::table(&rows));
    outln!("Total cost so far: {}", usd(total));
    for (k, d) in &drift {
        outln!("Drift: {k}: {d}; the next apply releases it and runs the task again.");
    }
    for (k, m) in st.tasks.iter().filter_map(|(k, t)| Some((k, t.migration.as_ref()?))) {
        let at = |p: &crate::state::PlacementRecord| format!("{}/{}/{}", p.cloud, p.region, p.zone);
        let to = m.to.as_ref().map(at).unwrap_or_else(|| "-".into());
        outln!(
            "Migration: {k}: {} → {to}, at step `{}` since {}; an apply that stopped here left it, the next apply settles it.",
            at(&m.from),
            m.step,
            crate::clock::format_time(m.since)
        );
    }
    Ok(0)
}
