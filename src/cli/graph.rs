//! `skyform graph [-format=dot|mermaid]`: the task DAG with each task's planned placement
//! and each edge's data size.

use super::context::PlanRequest;
use super::{Ctx, VarArgs};
use crate::config::TaskAddr;
use clap::Args;

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// dot or mermaid
    #[arg(long, default_value = "dot")]
    pub format: String,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, args: GraphArgs) -> anyhow::Result<i32> {
    let Some(loaded) = ctx.job_or_report() else { return Ok(1) };
    let Some(planned) = ctx.plan(loaded, &PlanRequest::default())? else { return Ok(1) };
    let plan = &planned.plan;
    let place = |a: &TaskAddr| {
        plan.changes
            .iter()
            .find(|c| &c.address == a)
            .and_then(|c| c.after.as_ref())
            .map(|p| {
                format!(
                    "{}/{}/{}\\n{}",
                    p.placement.cloud, p.placement.region, p.placement.zone, p.placement.instance_type
                )
            })
            .unwrap_or_default()
    };
    let spec = &loaded.spec;
    let id = |a: &TaskAddr| a.as_str().replace(['.', '-'], "_");
    let label = |e: &crate::config::Edge| {
        e.output.as_ref().map(|o| format!("{o}: {} GB", e.size_gb)).unwrap_or_else(|| "depends_on".into())
    };
    match args.format.as_str() {
        "dot" => {
            outln!("digraph \"{}\" {{", spec.name);
            outln!("  rankdir = LR;");
            outln!("  node [shape = box];");
            for a in spec.tasks.keys() {
                outln!("  \"{a}\" [label = \"{a}\\n{}\"];", place(a));
            }
            for e in &spec.edges {
                outln!("  \"{}\" -> \"{}\" [label = \"{}\"];", e.from, e.to, label(e));
            }
            outln!("}}");
        }
        "mermaid" => {
            outln!("flowchart LR");
            for a in spec.tasks.keys() {
                outln!("  {}[\"{a}<br/>{}\"]", id(a), place(a).replace("\\n", "<br/>"));
            }
            for e in &spec.edges {
                outln!("  {} -->|{}| {}", id(&e.from), label(e), id(&e.to));
            }
        }
        other => anyhow::bail!("-format={other}: expected dot or mermaid"),
    }
    Ok(0)
}
