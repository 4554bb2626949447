//! `skyform validate [-json]`: load the job offline and report every problem.
//! Exit 0 when valid (warnings allowed), 1 on errors.

use super::{output, Env, VarArgs};
use clap::Args;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(env: &Env, args: ValidateArgs) -> anyhow::Result<i32> {
    let result = crate::config::load(&env.dir, &env.load_options());
    let diags = match result {
        Ok(loaded) => {
            let mut d = loaded.warnings;
            let catalog = crate::catalog::Catalog::for_job(&loaded.spec)?;
            for x in crate::resolve::check_against_catalog(&loaded.spec, &catalog).0 {
                d.push(x);
            }
            loaded.sources.fill_snippets(&mut d);
            d
        }
        Err(d) => d,
    };
    let errors = diags.errors().count();
    let warnings = diags.warnings().count();
    if args.json {
        output::print_json(&serde_json::json!({
            "format_version": "1.0",
            "valid": errors == 0,
            "error_count": errors,
            "warning_count": warnings,
            "diagnostics": diags.0,
        }));
    } else {
        output::print_diagnostics(&diags, env.color);
        if errors == 0 {
            println!("Success! The job is valid.");
        }
    }
    Ok(if errors == 0 { 0 } else { 1 })
}
