//! `skyform plan`: the planning pipeline (load → refresh of live allocations and of the spot
//! prices of their clouds → catalog → tracker view → resolve → optimize → diff against the state) and its views: text,
//! `-json` events, a saved plan file (`-out`), `-detailed-exitcode`, `policy.fail_if`
//! guardrails, and `-compare-to` (what the plan changes against a base plan; kept in the
//! saved plan for `show` and `comment`).

use super::context::PlanRequest;
use super::views::plan as render;
use super::{Ctx, StateArgs, VarArgs};
use crate::plan::compare::{compare, Base};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Save the plan to FILE (apply it later with `skyform apply FILE`)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Line-delimited JSON events on stdout
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when nothing changes, 2 when something does, 1 on errors
    #[arg(long = "detailed-exitcode")]
    pub detailed_exitcode: bool,
    /// Plan to destroy everything the state holds
    #[arg(long)]
    pub destroy: bool,
    /// Replace this task even if nothing changed (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Only this task and what it depends on (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    /// Leave this task and what depends on it out (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub exclude: Vec<String>,
    /// Accepted for Terraform compatibility: skyform never prompts during plan
    #[arg(long = "input", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub input: bool,
    /// Ask the providers whether live allocations still exist, and record fresh spot
    /// prices of the clouds they run on, before planning (default); `-refresh=false` plans
    /// from the state and the tracker alone
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
    /// Only refresh: show what changed outside skyform (live allocations gone or
    /// interrupted) and no task change; applying the plan records the drift in the state
    /// without touching any resource
    #[arg(long = "refresh-only")]
    pub refresh_only: bool,
    /// One line per kind of warning instead of one per task
    #[arg(long = "compact-warnings")]
    pub compact_warnings: bool,
    /// Compare with a base plan (`skyform show -json` of the base branch's saved plan, or
    /// `skyform plan -json` output): show per task and in total what this change adds,
    /// moves and removes, and what it does to the cost
    #[arg(long = "compare-to", value_name = "BASE.json")]
    pub compare_to: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, args: PlanArgs) -> anyhow::Result<i32> {
    ctx.set_compact_warnings(args.compact_warnings);
    let Some(loaded) = ctx.job_or_report() else { return Ok(1) };
    let req = PlanRequest {
        destroy: args.destroy,
        replace: args.replace.clone(),
        target: args.target.clone(),
        exclude: args.exclude.clone(),
        state: args.state.clone(),
        refresh: args.refresh,
    };
    let base = match &args.compare_to {
        Some(f) => {
            let text = std::fs::read_to_string(ctx.dir.join(f))
                .map_err(|e| anyhow::anyhow!("-compare-to={}: {e}", f.display()))?;
            Some(Base::parse(&text).map_err(|e| anyhow::anyhow!("-compare-to={}: {e}", f.display()))?)
        }
        None => None,
    };
    if args.refresh_only && (!args.refresh || args.destroy) {
        errln!("Error: -refresh-only cannot be combined with -refresh=false or -destroy");
        return Ok(1);
    }
    let Some(mut planned) = ctx.plan(loaded, &req)? else { return Ok(1) };
    if args.refresh_only {
        planned.plan = planned.plan.refresh_only(planned.changed_outside.clone());
    }
    planned.plan.base = base;
    let plan = &planned.plan;
    let cmp = plan.base.as_ref().map(|b| compare(b, plan));
    // The solve's wall time is not part of the plan (plans of the same inputs are
    // byte-identical): it is reported here.
    let solved = planned.assignment.as_ref().map(|a| &a.report);
    if args.json {
        let at = crate::clock::format_time(ctx.clock.now());
        let mut events = render::events(plan, &at);
        // Drift right after the version line, as Terraform's `resource_drift`.
        for (i, e) in render::drift_events(&planned.changed_outside, plan, &at).into_iter().enumerate() {
            events.insert(1 + i, e);
        }
        if let Some(r) = solved {
            // Before the summary, which stays last (as Terraform's `change_summary`).
            let e = serde_json::json!({
                "@level": "info", "@message": render::solve_line(r), "@timestamp": at, "type": "optimizer",
                "method": r.method, "variables": r.variables, "constraints": r.constraints, "solve_ms": r.solve_ms,
            });
            events.insert(events.len().saturating_sub(1), e);
        }
        // The comparison right before the summary.
        if let Some(cmp) = &cmp {
            let at_summary = events.len().saturating_sub(1);
            for (i, e) in render::compare_events(cmp, &at).into_iter().enumerate() {
                events.insert(at_summary + i, e);
            }
        }
        for e in events {
            outln!("{}", serde_json::to_string(&e)?);
        }
    } else {
        out!("{}", render::drift_notes(&planned.changed_outside, plan));
        match &cmp {
            Some(cmp) => {
                out!("{}", render::compare_text(cmp, ctx.color));
                outln!();
                outln!("Against the current state: {}", render::summary_line(plan));
            }
            None => out!("{}", render::text(plan, ctx.color)),
        }
        if let Some(r) = solved {
            errln!("{}", render::solve_line(r));
        }
    }
    if let Some(out) = &args.out {
        let path = ctx.dir.join(out);
        // Readable by the owner only, as everything skyform writes about a job.
        crate::db::write_private(&path, plan.encode().as_bytes())
            .map_err(|e| anyhow::anyhow!("-out={}: {e}", out.display()))?;
        if !args.json {
            outln!();
            outln!("Saved the plan to: {}", out.display());
            if !ctx.automation {
                outln!("To perform exactly these actions, run: skyform apply {}", out.display());
            }
        }
    }
    let failures = plan.guardrail_failures();
    if !failures.is_empty() {
        for f in &failures {
            errln!("Error: guardrail failed: {f}");
        }
        return Ok(1);
    }
    let something = plan.has_changes() || (plan.refresh_only && !plan.drift.is_empty());
    Ok(if args.detailed_exitcode && something { 2 } else { 0 })
}
