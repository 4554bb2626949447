//! The command line: clap arguments, one file per command, and the views that render
//! results (human text on stdout/stderr, `-json` twins on stdout).
//!
//! Every command gets a [`context::Ctx`]: the job directory, colour, the provider registry
//! and the clock, and — loaded once, on first use — the job, its state (local or remote,
//! locked when the command writes), its tracker and catalog. A command parses its flags,
//! calls the library (`crate::pipeline`, `crate::apply`, ...) and renders the result with
//! [`views`]. Nothing else in the crate prints.
//!
//! Flags follow Terraform: single-dash long flags (`-json`, `-chdir=DIR`, `-var k=v`)
//! are accepted as well as the double-dash forms ([`normalize_args`]). Commands return
//! an exit code; errors bubble up as `anyhow` errors to `main`. Output goes through
//! [`out!`]/[`outln!`] (stdout; a closed pipe ends quietly) and [`errln!`] (stderr).

/// `print!` to stdout through [`views::print_str`] (a closed pipe ends the process quietly).
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::views::print_str(&format!($($t)*)) };
}

/// `println!` to stdout through [`views::print_str`].
macro_rules! outln {
    () => { $crate::cli::views::print_str("\n") };
    ($($t:tt)*) => { $crate::cli::views::print_line(&format!($($t)*)) };
}

/// `eprintln!` (progress, diagnostics, hints: never data).
macro_rules! errln {
    () => { $crate::cli::views::eprint_line("") };
    ($($t:tt)*) => { $crate::cli::views::eprint_line(&format!($($t)*)) };
}

pub mod apply;
pub mod backend;
pub mod bench;
pub mod catalog;
pub mod comment;
pub mod context;
pub mod destroy;
pub mod fmt;
pub mod force_unlock;
pub mod graph;
pub mod init;
pub mod logs;
pub mod output;
pub mod plan;
pub mod show;
pub mod state;
pub mod status;
pub mod sweep;
pub mod tracker;
pub mod validate;
pub mod version;
pub mod views;

pub use context::Ctx;

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
    /// Prepare the job directory (.skyform/), find the provider plugins the job needs
    /// (.skyform/plugins/, PATH, or a block's `plugin`), and explain the next steps
    Init(init::InitArgs),
    /// Show where each task would run, what changes and what it costs
    Plan(plan::PlanArgs),
    /// Run the plan: allocate, move data, run every task, release (FILE: a saved plan)
    Apply(apply::ApplyArgs),
    /// Release everything the state holds and forget the tasks
    Destroy(apply::ApplyArgs),
    /// Task states, placements and cost so far (-format=html: a timeline page)
    Status(status::StatusArgs),
    /// A task's log (-f follows it)
    Logs(logs::LogsArgs),
    /// Release resources carrying skyform's owner tags that the state does not know
    Sweep(sweep::SweepArgs),
    /// Show a saved plan (text, -json, -format=markdown|html) or the current state
    Show(show::ShowArgs),
    /// Post the plan's markdown comment on a GitHub pull request or GitLab merge request
    /// (updates skyform's earlier comment)
    Comment(comment::CommentArgs),
    /// The task DAG with placements and edge sizes (dot or mermaid)
    Graph(graph::GraphArgs),
    /// The job's outputs
    Output(output::OutputArgs),
    /// Inspect and edit the state
    #[command(subcommand)]
    State(state::StateCmd),
    /// Remove a state lock left behind (by its ID)
    #[command(name = "force-unlock")]
    ForceUnlock(force_unlock::ForceUnlockArgs),
    /// Instance offerings, GPUs, regions and prices
    #[command(subcommand)]
    Catalog(catalog::CatalogCmd),
    /// Observed spot prices, allocation failures and preemptions
    #[command(subcommand)]
    Tracker(tracker::TrackerCmd),
    /// Benchmarks that print figures (catalog, optimize, apply)
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Print the skyform version, its providers and the plugins found for the job
    Version(version::VersionArgs),
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

/// Where the state is and how long to wait for its lock.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// Path of the state (default: skyform { state_path } or .skyform/state)
    #[arg(long = "state", value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// How long to wait for the state lock, e.g. 30s
    #[arg(long = "lock-timeout", default_value = "0s")]
    pub lock_timeout: String,
    /// Take the state lock for writes (`-lock=false`: do not; only for a local state, and
    /// only when nothing else can write it)
    #[arg(long = "lock", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub lock: bool,
}

impl Default for StateArgs {
    fn default() -> Self {
        StateArgs { state: None, lock_timeout: "0s".into(), lock: true }
    }
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
    let registry = crate::providers::Registry::builtin().with_plugins(&dir);
    let ctx = Ctx::new(dir, color, argv, registry);
    match cli.command {
        Command::Validate(a) => validate::run(&ctx, a),
        Command::Fmt(a) => fmt::run(&ctx, a),
        Command::Init(a) => init::run(&ctx, a),
        Command::Plan(a) => plan::run(&ctx, a),
        Command::Apply(a) => apply::run(&ctx, a),
        Command::Destroy(a) => destroy::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Logs(a) => logs::run(&ctx, a),
        Command::Sweep(a) => sweep::run(&ctx, a),
        Command::Show(a) => show::run(&ctx, a),
        Command::Comment(a) => comment::run(&ctx, a),
        Command::Graph(a) => graph::run(&ctx, a),
        Command::Output(a) => output::run(&ctx, a),
        Command::State(c) => state::run(&ctx, c),
        Command::ForceUnlock(a) => force_unlock::run(&ctx, a),
        Command::Catalog(c) => catalog::run(&ctx, c),
        Command::Tracker(c) => tracker::run(&ctx, c),
        Command::Bench(c) => bench::run(c),
        Command::Version(a) => version::run(&ctx, a),
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
