//! `skyform validate [-json]`: load the job offline and report every problem — the HCL,
//! the provider and backend blocks (through the registry) and the job against the catalog.
//! Exit 0 when valid (warnings allowed), 1 on errors.

use super::{views, Ctx, VarArgs};
use clap::Args;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, args: ValidateArgs) -> anyhow::Result<i32> {
    let diags = match ctx.job() {
        Ok(loaded) => {
            let catalog = ctx.catalog(&loaded.spec)?;
            crate::pipeline::validate(loaded, &ctx.registry, &catalog)
        }
        Err(d) => d.clone(),
    };
    let errors = diags.errors().count();
    let warnings = diags.warnings().count();
    if args.json {
        views::print_json(&serde_json::json!({
            "format_version": "1.0",
            "valid": errors == 0,
            "error_count": errors,
            "warning_count": warnings,
            "diagnostics": diags.0,
        }));
    } else {
        views::print_diagnostics(&diags, ctx.color);
        if errors == 0 {
            outln!("Success! The job is valid.");
        }
    }
    Ok(if errors == 0 { 0 } else { 1 })
}
