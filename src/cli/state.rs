//! `skyform state list|show|pull|push|rm|recover`: the state from the command line.
//! Writes take the state lock. The state never holds a sensitive value skyform knows of
//! (tasks are recorded redacted); `show` and `pull` also hide the job's sensitive values in
//! states written by older versions, unless `-show-sensitive`.

use super::{Ctx, StateArgs, VarArgs};
use crate::state::{self, SledStore, State, StateStore};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// The addresses in the state
    List(Plain),
    /// One task's state
    Show(AddrArgs),
    /// The state as JSON on stdout
    Pull(PullArgs),
    /// Replace the state with a JSON file (refuses another lineage or a lower serial)
    Push(PushArgs),
    /// Forget a task (its resources are not released)
    Rm(AddrArgs),
    /// Rebuild a damaged or missing state from its newest good copy (the snapshot beside it)
    Recover(Plain),
}

/// The state's location and the job's variables (the job names its backend).
#[derive(Debug, Args)]
pub struct Plain {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

#[derive(Debug, Args)]
pub struct AddrArgs {
    pub address: String,
    /// Show the job's sensitive values instead of hiding them
    #[arg(long = "show-sensitive")]
    pub show_sensitive: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Show the job's sensitive values instead of hiding them
    #[arg(long = "show-sensitive")]
    pub show_sensitive: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

/// `v` as pretty JSON, the job's sensitive values hidden unless `show`.
fn shown(ctx: &Ctx, mut v: serde_json::Value, show: bool) -> String {
    if !show {
        if let Some(l) = ctx.job_opt() {
            crate::config::redact_json(&mut v, &l.spec.sensitive_values());
        }
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[derive(Debug, Args)]
pub struct PushArgs {
    pub file: PathBuf,
    /// Push even over another lineage or a higher serial
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

fn store(ctx: &Ctx, a: &StateArgs) -> anyhow::Result<Arc<SledStore>> {
    Ok(ctx.open_state(a, None)?.store.clone())
}

fn locked<T>(ctx: &Ctx, a: &StateArgs, op: &str, f: impl FnOnce(&SledStore) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let opened = ctx.open_state(a, Some(op))?;
    let r = f(&opened.store)?;
    opened.finish()?;
    Ok(r)
}

pub fn run(ctx: &Ctx, cmd: StateCmd) -> anyhow::Result<i32> {
    match cmd {
        StateCmd::List(a) => {
            for k in store(ctx, &a.state)?.read()?.tasks.keys() {
                outln!("{k}");
            }
            Ok(0)
        }
        StateCmd::Show(a) => {
            let st = store(ctx, &a.state)?.read()?;
            match st.tasks.get(&crate::config::TaskAddr(a.address.clone())) {
                Some(t) => {
                    outln!("{}", shown(ctx, serde_json::to_value(t)?, a.show_sensitive));
                    Ok(0)
                }
                None => {
                    errln!("Error: no task {} in the state", a.address);
                    Ok(1)
                }
            }
        }
        StateCmd::Pull(a) => {
            let st = store(ctx, &a.state)?.read()?;
            outln!("{}", shown(ctx, serde_json::to_value(&st)?, a.show_sensitive));
            Ok(0)
        }
        StateCmd::Push(a) => {
            let text = std::fs::read_to_string(ctx.dir.join(&a.file))
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
            let incoming = State::from_json(&text)?;
            locked(ctx, &a.state, "state push", |s| {
                let current = s.read()?;
                state::check_push(&current, &incoming, a.force)?;
                s.replace(&incoming)?;
                errln!("Pushed state serial {} (lineage {}).", incoming.serial, incoming.lineage);
                Ok(0)
            })
        }
        StateCmd::Recover(a) => {
            if super::backend::remote(ctx, &a.state)?.is_some() {
                errln!("This job keeps its state in a remote backend: every command pulls it into a fresh local copy, so there is nothing to recover here.");
                return Ok(0);
            }
            locked(ctx, &a.state, "state recover", |s| {
                if let Ok(st) = s.read() {
                    errln!(
                        "The state at {} reads fine (serial {}, {} task(s)); nothing to recover.",
                        s.path().display(),
                        st.serial,
                        st.tasks.len()
                    );
                    return Ok(0);
                }
                let r = s.recover(None)?;
                outln!(
                    "Restored state serial {} (lineage {}, {} task(s)) from {}.",
                    r.serial,
                    r.lineage,
                    r.tasks,
                    r.source
                );
                if let Some(m) = &r.moved_to {
                    errln!("The damaged database was kept at {}.", m.display());
                }
                Ok(0)
            })
        }
        StateCmd::Rm(a) => locked(ctx, &a.state, "state rm", |s| {
            let mut st = s.read()?;
            if st.tasks.remove(&crate::config::TaskAddr(a.address.clone())).is_none() {
                errln!("Error: no task {} in the state", a.address);
                return Ok(1);
            }
            let next = s.commit(&st)?;
            errln!("Removed {} (state serial {}). Its resources, if any, were not released.", a.address, next.serial);
            Ok(0)
        }),
    }
}
