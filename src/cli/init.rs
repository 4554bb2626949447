//! `skyform init`: create `.skyform/` in the job directory (state, tracker and local
//! provider data live there), validate the job, and explain the next steps.

use super::Env;
use clap::Args;

#[derive(Debug, Args)]
pub struct InitArgs {}

pub fn run(env: &Env, _args: InitArgs) -> anyhow::Result<i32> {
    let dot = env.dir.join(".skyform");
    let existed = dot.is_dir();
    std::fs::create_dir_all(&dot).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dot.display()))?;
    let gi = dot.join(".gitignore");
    if !gi.exists() {
        std::fs::write(&gi, "*\n")?;
    }
    eprintln!("{} {}", if existed { "Reusing" } else { "Created" }, dot.display());
    match crate::config::load(&env.dir, &env.load_options()) {
        Ok(l) => {
            let clouds = l.spec.enabled_clouds().join(", ");
            eprintln!("Job \"{}\": {} task(s), clouds enabled: {clouds}.", l.spec.name, l.spec.tasks.len());
            println!("skyform has been successfully initialized!");
            println!();
            println!("Next steps:");
            println!("  skyform validate   check the job");
            println!("  skyform plan       see where each task would run and what it costs");
            println!("  skyform apply      run it");
            Ok(0)
        }
        Err(d) => {
            super::output::print_diagnostics(&d, env.color);
            println!("skyform initialized .skyform/, but the job has errors: fix them, then run `skyform validate`.");
            Ok(1)
        }
    }
}
