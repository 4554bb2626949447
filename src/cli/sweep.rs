//! `skyform sweep [-dry-run]`: release what carries this job's owner tags (its state's
//! lineage, or its name) but is unknown to the state. Other jobs' resources are never
//! touched.

use super::{Ctx, StateArgs, VarArgs};
use crate::state::StateStore;
use clap::Args;

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

pub fn run(ctx: &Ctx, a: SweepArgs) -> anyhow::Result<i32> {
    let Some(loaded) = ctx.job_or_report() else { return Ok(1) };
    let opened = ctx.open_state(&a.state, Some("sweep"))?;
    let st = opened.store.read()?;
    let found = crate::apply::sweep(&st, &loaded.spec.name, &ctx.providers(&loaded.spec)?, !a.dry_run);
    if found.is_empty() {
        outln!("Nothing to sweep: every resource carrying skyform's owner tags is known to the state.");
        return Ok(0);
    }
    for (cloud, r) in &found {
        outln!(
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
