//! `skyform plan`: the planning pipeline (load → catalog → tracker view → resolve →
//! optimize → diff against the state) and its views: text, `-json` events, a saved plan
//! file (`-out`), `-detailed-exitcode`, `policy.fail_if` guardrails.

use super::context::PlanRequest;
use super::views::plan as render;
use super::{Ctx, StateArgs, VarArgs};
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
    #[arg(long = "input", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub input: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, args: PlanArgs) -> anyhow::Result<i32> {
    let Some(loaded) = ctx.job_or_report() else { return Ok(1) };
    let req = PlanRequest {
        destroy: args.destroy,
        replace: args.replace.clone(),
        target: args.target.clone(),
        exclude: args.exclude.clone(),
        state: args.state.clone(),
    };
    let Some(planned) = ctx.plan(loaded, &req)? else { return Ok(1) };
    let plan = &planned.plan;
    // The solve's wall time is not part of the plan (plans of the same inputs are
    // byte-identical): it is reported here.
    let solved = planned.assignment.as_ref().map(|a| &a.report);
    if args.json {
        let at = crate::clock::format_time(ctx.clock.now());
        let mut events = render::events(plan, &at);
        if let Some(r) = solved {
            // Before the summary, which stays last (as Terraform's `change_summary`).
            let e = serde_json::json!({
                "@level": "info", "@message": render::solve_line(r), "@timestamp": at, "type": "optimizer",
                "method": r.method, "variables": r.variables, "constraints": r.constraints, "solve_ms": r.solve_ms,
            });
            events.insert(events.len().saturating_sub(1), e);
        }
        for e in events {
            outln!("{}", serde_json::to_string(&e)?);
        }
    } else {
        out!("{}", render::text(plan, ctx.color));
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
            outln!("To perform exactly these actions, run: skyform apply {}", out.display());
        }
    }
    let failures = plan.guardrail_failures();
    if !failures.is_empty() {
        for f in &failures {
            errln!("Error: guardrail failed: {f}");
        }
        return Ok(1);
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { 2 } else { 0 })
}
