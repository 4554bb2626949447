//! `skyform fmt [-check] [-diff] [-recursive] [PATH...]`: rewrite `*.sky.hcl` and
//! `*.skyvars` files in the canonical layout. With `-check`, change nothing and exit 3 when
//! a file would change; `-diff` prints a unified diff of each change.

use super::{views, Ctx};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Do not write; exit 3 if any file is not formatted
    #[arg(long)]
    pub check: bool,
    /// Print a diff of the changes
    #[arg(long)]
    pub diff: bool,
    /// Also process subdirectories
    #[arg(long)]
    pub recursive: bool,
    /// Do not list the files that changed
    #[arg(long = "list", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub list: bool,
    /// Files or directories (default: the job directory)
    pub paths: Vec<PathBuf>,
}

fn is_job_file(p: &Path) -> bool {
    let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    n.ends_with(".sky.hcl") || n.ends_with(".skyvars")
}

fn collect(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if recursive && !hidden {
                collect(&p, recursive, out)?;
            }
        } else if is_job_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

pub fn run(ctx: &Ctx, args: FmtArgs) -> anyhow::Result<i32> {
    let roots = if args.paths.is_empty() {
        vec![ctx.dir.clone()]
    } else {
        args.paths.iter().map(|p| ctx.dir.join(p)).collect()
    };
    let mut files = Vec::new();
    for r in &roots {
        if r.is_dir() {
            collect(r, args.recursive, &mut files).map_err(|e| anyhow::anyhow!("{}: {e}", r.display()))?;
        } else if r.is_file() {
            files.push(r.clone());
        } else {
            anyhow::bail!("{}: no such file or directory", r.display());
        }
    }
    let mut changed = 0;
    let mut errors = crate::config::Diagnostics::default();
    for f in files {
        let shown = f.strip_prefix(&ctx.dir).unwrap_or(&f).display().to_string();
        let text = std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        let formatted = match crate::config::fmt::format_source(&shown, &text) {
            Ok(t) => t,
            Err(d) => {
                errors.push(*d);
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        changed += 1;
        if args.list {
            outln!("{shown}");
        }
        if args.diff {
            let diff = similar::TextDiff::from_lines(&text, &formatted);
            out!("{}", diff.unified_diff().context_radius(3).header(&format!("old/{shown}"), &format!("new/{shown}")));
        }
        if !args.check {
            std::fs::write(&f, formatted).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        }
    }
    if errors.has_errors() {
        views::print_diagnostics(&errors, ctx.color);
        return Ok(1);
    }
    Ok(if args.check && changed > 0 { 3 } else { 0 })
}
