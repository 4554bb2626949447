//! `skyform state list|show|pull|push|rm` and `skyform force-unlock`: the state from the
//! command line. Writes take the state lock.

use super::plan::StateArgs;
use super::Env;
use crate::state::{self, SledStore, State, StateStore};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// The addresses in the state
    List(StateArgs),
    /// One task's state
    Show(AddrArgs),
    /// The state as JSON on stdout
    Pull(StateArgs),
    /// Replace the state with a JSON file (refuses another lineage or a lower serial)
    Push(PushArgs),
    /// Forget a task (its resources are not released)
    Rm(AddrArgs),
}

#[derive(Debug, Args)]
pub struct AddrArgs {
    pub address: String,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    pub file: PathBuf,
    /// Push even over another lineage or a higher serial
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

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

fn store(env: &Env, a: &StateArgs) -> anyhow::Result<Arc<SledStore>> {
    let loaded = crate::config::load(&env.dir, &env.load_options()).ok();
    Ok(super::backend::open(env, a, loaded.as_ref(), None)?.store.clone())
}

fn locked<T>(env: &Env, a: &StateArgs, op: &str, f: impl FnOnce(&SledStore) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let loaded = crate::config::load(&env.dir, &env.load_options()).ok();
    let opened = super::backend::open(env, a, loaded.as_ref(), Some(op))?;
    let r = f(&opened.store)?;
    opened.finish()?;
    Ok(r)
}

pub fn run(env: &Env, cmd: StateCmd) -> anyhow::Result<i32> {
    match cmd {
        StateCmd::List(a) => {
            for k in store(env, &a)?.read()?.tasks.keys() {
                println!("{k}");
            }
            Ok(0)
        }
        StateCmd::Show(a) => {
            let st = store(env, &a.state)?.read()?;
            match st.tasks.get(&crate::config::TaskAddr(a.address.clone())) {
                Some(t) => {
                    println!("{}", serde_json::to_string_pretty(t)?);
                    Ok(0)
                }
                None => {
                    eprintln!("Error: no task {} in the state", a.address);
                    Ok(1)
                }
            }
        }
        StateCmd::Pull(a) => {
            println!("{}", store(env, &a)?.read()?.to_json());
            Ok(0)
        }
        StateCmd::Push(a) => {
            let text = std::fs::read_to_string(env.dir.join(&a.file))
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
            let incoming = State::from_json(&text)?;
            locked(env, &a.state, "state push", |s| {
                let current = s.read()?;
                state::check_push(&current, &incoming, a.force)?;
                s.replace(&incoming)?;
                eprintln!("Pushed state serial {} (lineage {}).", incoming.serial, incoming.lineage);
                Ok(0)
            })
        }
        StateCmd::Rm(a) => locked(env, &a.state, "state rm", |s| {
            let mut st = s.read()?;
            if st.tasks.remove(&crate::config::TaskAddr(a.address.clone())).is_none() {
                eprintln!("Error: no task {} in the state", a.address);
                return Ok(1);
            }
            let next = s.commit(&st)?;
            eprintln!(
                "Removed {} (state serial {}). Its resources, if any, were not released.",
                a.address, next.serial
            );
            Ok(0)
        }),
    }
}

pub fn force_unlock(env: &Env, a: ForceUnlockArgs) -> anyhow::Result<i32> {
    let loaded = crate::config::load(&env.dir, &env.load_options()).ok();
    let current = super::backend::holder(env, &a.state, loaded.as_ref())?;
    let Some(holder) = current else {
        eprintln!("Error: the state is not locked.");
        return Ok(1);
    };
    if !a.force {
        eprintln!("Lock Info:\n{holder}");
        eprintln!("Do you really want to force-unlock? Only 'yes' will be accepted:");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != "yes" {
            eprintln!("force-unlock cancelled.");
            return Ok(1);
        }
    }
    let info = super::backend::force_unlock(env, &a.state, loaded.as_ref(), &a.id)?;
    println!("skyform state has been successfully unlocked (lock {} held by {}).", info.id, info.who);
    Ok(0)
}
