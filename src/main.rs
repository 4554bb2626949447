//! The `skyform` binary: normalize Terraform-style flags, parse, run, map errors to exit
//! codes (0 ok, 1 error, 2 changes present with -detailed-exitcode, 3 fmt -check found
//! unformatted files).

use clap::Parser;

fn main() {
    // Crash points (`FAILPOINTS`) exist only in test builds; see `crash_point` in apply.
    let _failpoints = fail::has_failpoints().then(fail::FailScenario::setup);
    let argv = skyform::cli::normalize_args(std::env::args());
    let cli = match skyform::cli::Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    match skyform::cli::run(cli, argv) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}
