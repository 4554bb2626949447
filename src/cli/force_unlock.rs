//! `skyform force-unlock ID [-force]`: remove a state lock left behind (local lock file or
//! a remote backend's lock object), after showing who held it.

use super::{backend, Ctx, StateArgs};
use clap::Args;

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The lock ID shown in the lock error
    pub id: String,
    /// Do not ask for confirmation
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

pub fn run(ctx: &Ctx, a: ForceUnlockArgs) -> anyhow::Result<i32> {
    let Some(holder) = backend::holder(ctx, &a.state)? else {
        errln!("Error: the state is not locked.");
        return Ok(1);
    };
    if !a.force {
        errln!("Lock Info:\n{holder}");
        errln!("Do you really want to force-unlock? Only 'yes' will be accepted:");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != "yes" {
            errln!("force-unlock cancelled.");
            return Ok(1);
        }
    }
    let info = backend::force_unlock(ctx, &a.state, &a.id)?;
    outln!("skyform state has been successfully unlocked (lock {} held by {}).", info.id, info.who);
    Ok(0)
}
