//! `skyform init`: create `.skyform/` in the job directory (state, tracker and local
//! provider data live there), find the provider of every `provider` block (built in, or a
//! plugin executable: `.skyform/plugins/`, `PATH`, or the block's `plugin`), report the
//! missing ones with how to install them, validate the job, and explain the next steps
//! (not under `SKYFORM_IN_AUTOMATION`).

use super::{views, Ctx};
use clap::Args;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Accepted for Terraform compatibility: init never prompts
    #[arg(long = "input", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub input: bool,
}

pub fn run(ctx: &Ctx, _args: InitArgs) -> anyhow::Result<i32> {
    let dot = ctx.dir.join(".skyform");
    let existed = dot.is_dir();
    std::fs::create_dir_all(&dot).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dot.display()))?;
    crate::db::restrict_dir(&dot);
    let gi = dot.join(".gitignore");
    if !gi.exists() {
        std::fs::write(&gi, "*\n")?;
    }
    errln!("{} {}", if existed { "Reusing" } else { "Created" }, dot.display());
    std::fs::create_dir_all(dot.join("plugins"))?;
    if let Some(code) = report_plugins(ctx) {
        return Ok(code);
    }
    match ctx.job() {
        Ok(l) => {
            let clouds = l.spec.enabled_clouds().join(", ");
            errln!("Job \"{}\": {} task(s), clouds enabled: {clouds}.", l.spec.name, l.spec.tasks.len());
            outln!("skyform has been successfully initialized!");
            if !ctx.automation {
                outln!();
                outln!("Next steps:");
                outln!("  skyform validate   check the job");
                outln!("  skyform plan       see where each task would run and what it costs");
                outln!("  skyform apply      run it");
            }
            Ok(0)
        }
        Err(d) => {
            views::print_diagnostics(d, ctx.color);
            outln!("skyform initialized .skyform/, but the job has errors: fix them, then run `skyform validate`.");
            Ok(1)
        }
    }
}

/// Says how each `provider` block is served; `Some(1)` when a plugin is missing or broken
/// (the job cannot run until it is installed).
fn report_plugins(ctx: &Ctx) -> Option<i32> {
    use crate::providers::Source;
    // The blocks are read without checking them (checking needs the plugins), and a task's
    // `cloud` may name a provider whose plugin is missing (no cloud list: all accepted).
    let mut opts = ctx.load_options();
    opts.clouds.clear();
    let spec = crate::config::load(&ctx.dir, &opts).ok()?.spec;
    let mut missing = 0;
    for (name, source) in ctx.registry.sources(&spec) {
        match source {
            Source::BuiltIn { version } => errln!("- provider {name}: built in (v{version})"),
            Source::NotBuilt { feature } => {
                errln!("- provider {name}: not in this build (cargo install --path . --features {feature})")
            }
            Source::Plugin { path, version: Ok(v) } => {
                errln!("- provider {name}: plugin {} (v{v})", path.display())
            }
            Source::Plugin { path, version: Err(e) } => {
                missing += 1;
                errln!("- provider {name}: plugin {} does not work: {e}", path.display());
            }
            Source::Missing { hint } => {
                missing += 1;
                errln!("- provider {name}: no plugin found; {hint}");
            }
        }
    }
    if missing > 0 {
        outln!("skyform initialized .skyform/, but {missing} provider plugin(s) are missing or broken: install them, then run `skyform init` again.");
        return Some(1);
    }
    None
}
