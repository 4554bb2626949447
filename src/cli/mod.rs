//! The command line: clap arguments, one file per command, and the views that render
//! results (human text on stdout/stderr, `-json` twins on stdout).
//!
//! Flags follow Terraform: single-dash long flags (`-json`, `-chdir=DIR`, `-var k=v`)
//! are accepted as well as the double-dash forms ([`normalize_args`]). Commands return
//! an exit code; errors bubble up as `anyhow` errors to `main`.

pub mod apply;
pub mod backend;
pub mod bench;
pub mod catalog;
pub mod fmt;
pub mod init;
pub mod output;
pub mod plan;
pub mod state;
pub mod tracker;
pub mod validate;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// skyform: an intercloud broker for batch jobs, driven like Terraform.
///
/// Write a job (a DAG of tasks with resources, data and estimates) in *.sky.hcl files;
/// `skyform plan` finds the cheapest or fastest placement across AWS, GCP, Azure and the
/// local provider and shows the cost; `skyform apply` makes it real.
#[derive(Debug, Parser)]
#[command(name = "skyform", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Switch to DIR before doing anything (the job directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Disable colour (also honoured: the NO_COLOR environment variable).
    #[arg(long = "no-color", global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the job's files are valid (offline; exit 1 on errors)
    Validate(validate::ValidateArgs),
    /// Rewrite job files into the canonical format
    Fmt(fmt::FmtArgs),
    /// Prepare the job directory (.skyform/) and explain the next steps
    Init(init::InitArgs),
    /// Show where each task would run, what changes and what it costs
    Plan(plan::PlanArgs),
    /// Run the plan: allocate, move data, run every task, release (FILE: a saved plan)
    Apply(apply::ApplyArgs),
    /// Release everything the state holds and forget the tasks
    Destroy(apply::ApplyArgs),
    /// Task states, placements and cost so far
    Status(apply::StatusArgs),
    /// A task's log (-f follows it)
    Logs(apply::LogsArgs),
    /// Release resources carrying skyform's owner tags that the state does not know
    Sweep(apply::SweepArgs),
    /// Show a saved plan (text, -json, -format=markdown) or the current state
    Show(plan::ShowArgs),
    /// The task DAG with placements and edge sizes (dot or mermaid)
    Graph(plan::GraphArgs),
    /// The job's outputs
    Output(plan::OutputArgs),
    /// Inspect and edit the state
    #[command(subcommand)]
    State(state::StateCmd),
    /// Remove a state lock left behind (by its ID)
    #[command(name = "force-unlock")]
    ForceUnlock(state::ForceUnlockArgs),
    /// Instance offerings, GPUs, regions and prices
    #[command(subcommand)]
    Catalog(catalog::CatalogCmd),
    /// Observed spot prices, allocation failures and preemptions
    #[command(subcommand)]
    Tracker(tracker::TrackerCmd),
    /// Benchmarks that print figures (catalog, optimize)
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Print the skyform version
    Version(VersionArgs),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

/// Variables of a job: `-var NAME=VALUE` and `-var-file FILE` (repeatable; later wins).
#[derive(Debug, Args, Clone, Default)]
pub struct VarArgs {
    /// Set a variable: -var 'NAME=VALUE' (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub var: Vec<String>,
    /// Read variables from an HCL file of NAME = VALUE lines (repeatable)
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_file: Vec<PathBuf>,
}

/// Turns Terraform-style `-flag` / `-flag=value` into clap's `--flag` forms. Short flags
/// (`-h`, `-V`) and values after `--` are left alone.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let is_long_single = a.starts_with('-')
            && !a.starts_with("--")
            && a.len() > 2
            && a.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic());
        if is_long_single {
            out.push(format!("-{a}"));
        } else {
            out.push(a);
        }
    }
    out
}

/// The `-var` / `-var-file` arguments in command-line order (later wins, so order matters
/// across the two flags).
pub fn ordered_var_args(argv: &[String]) -> Vec<crate::config::VarArg> {
    use crate::config::VarArg;
    let mut out = Vec::new();
    let mut it = argv.iter().peekable();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if let Some(v) = a.strip_prefix("--var=") {
            out.push(VarArg::Var(v.to_string()));
        } else if let Some(v) = a.strip_prefix("--var-file=") {
            out.push(VarArg::File(PathBuf::from(v)));
        } else if a == "--var" {
            if let Some(v) = it.next() {
                out.push(VarArg::Var(v.clone()));
            }
        } else if a == "--var-file" {
            if let Some(v) = it.next() {
                out.push(VarArg::File(PathBuf::from(v)));
            }
        }
    }
    out
}

/// `SKYFORM_VAR_<name>` values from the environment.
pub fn env_vars() -> std::collections::BTreeMap<String, String> {
    std::env::vars().filter_map(|(k, v)| k.strip_prefix("SKYFORM_VAR_").map(|n| (n.to_string(), v))).collect()
}

/// Everything a command needs from the outside world, injected (so tests can drive
/// commands in-process).
#[derive(Debug, Clone)]
pub struct Env {
    /// The job directory (after -chdir).
    pub dir: PathBuf,
    pub color: bool,
    /// The normalized argv, for ordered -var/-var-file.
    pub argv: Vec<String>,
}

impl Env {
    pub fn load_options(&self) -> crate::config::LoadOptions {
        crate::config::LoadOptions { var_args: ordered_var_args(&self.argv), env_vars: env_vars() }
    }
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli, argv: Vec<String>) -> anyhow::Result<i32> {
    let dir = match &cli.chdir {
        Some(d) => {
            if !d.is_dir() {
                anyhow::bail!("-chdir={}: no such directory", d.display());
            }
            d.clone()
        }
        None => PathBuf::from("."),
    };
    let color =
        !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let env = Env { dir, color, argv };
    match cli.command {
        Command::Validate(a) => validate::run(&env, a),
        Command::Fmt(a) => fmt::run(&env, a),
        Command::Init(a) => init::run(&env, a),
        Command::Plan(a) => plan::run_plan(&env, a),
        Command::Apply(a) => apply::run_apply(&env, a, false),
        Command::Destroy(a) => apply::run_apply(&env, a, true),
        Command::Status(a) => apply::run_status(&env, a),
        Command::Logs(a) => apply::run_logs(&env, a),
        Command::Sweep(a) => apply::run_sweep(&env, a),
        Command::Show(a) => plan::run_show(&env, a),
        Command::Graph(a) => plan::run_graph(&env, a),
        Command::Output(a) => plan::run_output(&env, a),
        Command::State(c) => state::run(&env, c),
        Command::ForceUnlock(a) => state::force_unlock(&env, a),
        Command::Catalog(c) => catalog::run(&env, c),
        Command::Tracker(c) => tracker::run(&env, c),
        Command::Bench(c) => bench::run(c),
        Command::Version(a) => {
            let v = env!("CARGO_PKG_VERSION");
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"skyform_version": v, "catalog": crate::catalog::Catalog::embedded_info()})
                );
            } else {
                println!("skyform v{v}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_flags_become_double() {
        let v = normalize_args(
            ["skyform", "-chdir=x", "plan", "-json", "-h", "-var", "a=1", "--", "-json"].map(String::from),
        );
        assert_eq!(v, ["skyform", "--chdir=x", "plan", "--json", "-h", "--var", "a=1", "--", "-json"]);
    }

    #[test]
    fn var_order_is_kept_across_flags() {
        use crate::config::VarArg;
        let argv = normalize_args(["s", "plan", "-var", "a=1", "-var-file=f", "-var=a=2"].map(String::from));
        assert_eq!(
            ordered_var_args(&argv),
            vec![VarArg::Var("a=1".into()), VarArg::File("f".into()), VarArg::Var("a=2".into())]
        );
    }
}
