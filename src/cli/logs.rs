//! `skyform logs TASK [-f]`: the log of a task's last run — a local file, or an object in a
//! provider's store (`s3://…/log.txt`) fetched through the provider that speaks its scheme.
//! `-f` follows it while the task runs.

use super::{Ctx, StateArgs, VarArgs};
use crate::providers::Providers;
use crate::state::{StateStore, TaskStatus};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task, e.g. task.train
    pub task: String,
    /// Follow the log while the task runs
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, a: LogsArgs) -> anyhow::Result<i32> {
    let opened = ctx.open_state(&a.state, None)?;
    let store = opened.store.clone();
    let addr = crate::config::TaskAddr(a.task.clone());
    let mut offset = 0usize;
    // Built once, and only when a log lives in an object store.
    let mut remote: Option<Providers> = None;
    loop {
        let st = store.read()?;
        let Some(t) = st.tasks.get(&addr) else {
            let hint = crate::config::diag::did_you_mean(&a.task, st.tasks.keys().map(|k| k.as_str()))
                .map(|h| format!(" Did you mean {h}?"))
                .unwrap_or_default();
            errln!("Error: no task {} in the state.{hint}", a.task);
            return Ok(1);
        };
        let Some(log) = t.runs.last().and_then(|r| r.log.clone()) else {
            errln!("{} has not run yet.", a.task);
            return Ok(if a.follow { 0 } else { 1 });
        };
        if let Ok(bytes) = read_log(ctx, &mut remote, &log) {
            if bytes.len() > offset {
                let mut out = std::io::stdout().lock();
                if let Err(e) = out.write_all(&bytes[offset..]).and_then(|_| out.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(super::views::BROKEN_PIPE_STATUS);
                    }
                    return Err(e.into());
                }
                offset = bytes.len();
            }
        }
        if !a.follow || !matches!(t.status, TaskStatus::Running | TaskStatus::Pending) {
            return Ok(0);
        }
        // An object store is asked less often than a local file is read.
        let every = if log.contains("://") { 2000 } else { 200 };
        std::thread::sleep(std::time::Duration::from_millis(every));
    }
}

/// A run's log: a local file, or an object fetched through the provider that speaks its
/// scheme.
fn read_log(ctx: &Ctx, remote: &mut Option<Providers>, log: &str) -> anyhow::Result<Vec<u8>> {
    if !log.contains("://") {
        return Ok(std::fs::read(log)?);
    }
    let scheme = log.split("://").next().unwrap_or_default();
    if remote.is_none() {
        let loaded = ctx.job_opt().ok_or_else(|| anyhow::anyhow!("the job does not load; cannot reach {log}"))?;
        *remote = Some(ctx.providers(&loaded.spec)?);
    }
    let p = remote
        .as_ref()
        .expect("built above")
        .values()
        .find(|p| p.info().capabilities.schemes.iter().any(|s| s == scheme))
        .ok_or_else(|| anyhow::anyhow!("no provider of this job reaches {log}"))?;
    let dir = temp_dir()?;
    let r = p.transfer(&skyform_provider::TransferRequest::new(log, format!("file://{}", dir.display())));
    let name = log.rsplit('/').next().unwrap_or("log.txt");
    let out = r.map_err(|e| anyhow::anyhow!("{e}")).and_then(|_| Ok(std::fs::read(dir.join(name))?));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn temp_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("skyform-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
