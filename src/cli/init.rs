//! `skyform init`: create `.skyform/` in the job directory (state, tracker and local
//! provider data live there), validate the job, and explain the next steps (not under
//! `SKYFORM_IN_AUTOMATION`).

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
