//! `skyform show [FILE]`: a saved plan as text, `-json` (`show -json`'s document),
//! `-format=markdown` (a pull-request comment) or `-format=html` (a self-contained page);
//! without FILE, the current state.

use super::views::{self, plan as render};
use super::{Ctx, StateArgs, VarArgs};
use crate::plan::compare::compare;
use crate::plan::Plan;
use crate::state::StateStore;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A saved plan file (default: the current state)
    pub file: Option<PathBuf>,
    /// The JSON document
    #[arg(long)]
    pub json: bool,
    /// text, json, markdown (a pull-request comment) or html (one self-contained page:
    /// timeline, DAG, cost breakdown)
    #[arg(long, default_value = "text")]
    pub format: String,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, args: ShowArgs) -> anyhow::Result<i32> {
    let format = if args.json { "json".to_string() } else { args.format.clone() };
    match &args.file {
        Some(f) => {
            let text = std::fs::read_to_string(ctx.dir.join(f)).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let plan = Plan::decode(&text)?;
            match format.as_str() {
                "json" => views::print_json(&render::json(&plan)),
                "markdown" => out!("{}", render::markdown(&plan)),
                "text" => match &plan.base {
                    Some(base) => {
                        out!("{}", render::compare_text(&compare(base, &plan), ctx.color));
                        outln!();
                        outln!("Against the current state: {}", render::summary_line(&plan));
                    }
                    None => out!("{}", render::text(&plan, ctx.color)),
                },
                "html" => out!("{}", views::html::plan_page(&plan)),
                other => anyhow::bail!("-format={other}: expected text, json, markdown or html"),
            }
        }
        None => {
            let state = ctx.open_state(&args.state, None)?.store.read()?;
            match format.as_str() {
                "json" => outln!("{}", state.to_json()),
                "text" => {
                    if state.tasks.is_empty() {
                        outln!("The state is empty.");
                        ctx.hint("Run `skyform plan` and `skyform apply`.");
                    }
                    for (a, t) in &state.tasks {
                        let place = t
                            .placement
                            .as_ref()
                            .map(|p| format!("{}/{}/{} {}", p.cloud, p.region, p.zone, p.instance_type))
                            .unwrap_or_else(|| "-".into());
                        outln!("{a}: {} at {place}, cost so far {}", t.status, render::usd(t.cost_so_far()));
                    }
                }
                other => anyhow::bail!("-format={other}: the state is shown as text or json"),
            }
        }
    }
    Ok(0)
}
