//! `skyform force-unlock ID [-force]`: remove a state lock left behind (local lock file or
//! a remote backend's lock object), after showing who held it. An unreadable lock file
//! (no ID to give) is removed with `force-unlock -force`. Without `-force` it asks for
//! `yes` — only on a terminal; elsewhere it refuses instead of reading stdin.

use super::{backend, Ctx, StateArgs, VarArgs};
use crate::state::lock::{LockError, Removed};
use clap::Args;
use std::io::IsTerminal;

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The lock ID shown in the lock error (not needed for an unreadable lock with -force)
    pub id: Option<String>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, a: ForceUnlockArgs) -> anyhow::Result<i32> {
    match backend::holder(ctx, &a.state) {
        Ok(None) => {
            errln!("Error: the state is not locked.");
            return Ok(1);
        }
        Ok(Some(holder)) => {
            let Some(id) = &a.id else {
                errln!("Error: give the lock's ID: skyform force-unlock {}\nLock Info:\n{holder}", holder.id);
                return Ok(1);
            };
            if !a.force {
                if !std::io::stdin().is_terminal() {
                    errln!("Error: force-unlock asks for confirmation and there is no terminal; run it again with -force (skyform force-unlock -force {id}).");
                    return Ok(1);
                }
                errln!("Lock Info:\n{holder}");
                errln!("Do you really want to force-unlock? Only 'yes' will be accepted:");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                if line.trim() != "yes" {
                    errln!("force-unlock cancelled.");
                    return Ok(1);
                }
            }
        }
        Err(e @ LockError::Corrupt { .. }) if !a.force => {
            errln!("{e}");
            return Ok(1);
        }
        Err(LockError::Corrupt { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    match backend::force_unlock(ctx, &a.state, a.id.as_deref(), a.force)? {
        Removed::Lock(info) => {
            outln!("skyform state has been successfully unlocked (lock {} held by {}).", info.id, info.who)
        }
        Removed::Unreadable => {
            outln!("skyform state has been successfully unlocked (the unreadable lock file was removed).")
        }
    }
    Ok(0)
}
