//! The views of the command line: how results become text, tables, JSON and progress.
//! Views write data to stdout and progress/diagnostics to stderr. The library never
//! imports them.
//!
//! - [`plan`]: a plan as Terraform's text grammar with a cost clause, the `show -json`
//!   document, the markdown pull-request comment (cost by cloud, a mermaid gantt) and
//!   `plan -json` events; a plan compared with a base plan in the same grammar.
//! - [`apply`]: the apply engine's events as lines, progress bars or JSON lines.
//! - [`html`]: one self-contained page (inline SVG and CSS) of a plan or of the state.
//! - here: diagnostics, JSON printing, aligned tables.

pub mod apply;
pub mod html;
pub mod plan;

use crate::config::Diagnostics;
use std::io::Write;

/// The exit status of a process that wrote to a closed pipe (128 + SIGPIPE), as a shell
/// reports one killed by the signal.
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes `s` to stdout. A closed pipe (`skyform ... | head -1`) ends the process quietly
/// with [`BROKEN_PIPE_STATUS`]; any other write error is reported once.
pub fn print_str(s: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        let _ = writeln!(std::io::stderr(), "Error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes a line to stdout (see [`print_str`]).
pub fn print_line(s: &str) {
    print_str(&format!("{s}\n"));
}

/// Writes a line to stderr; a closed stderr is ignored (progress is not data).
pub fn eprint_line(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

/// Writes to stderr without a newline (a prompt).
pub fn eprint_str(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes()).and_then(|_| e.flush());
}

/// Prints diagnostics to stderr (text) — the human view.
pub fn print_diagnostics(d: &Diagnostics, color: bool) {
    if !d.0.is_empty() {
        eprint_line(&d.render(color));
    }
}

/// `-compact-warnings`: errors in full, then one line per kind of warning (its summary,
/// how many times and where).
pub fn print_diagnostics_compact(d: &Diagnostics, color: bool) {
    let errors = Diagnostics(d.0.iter().filter(|x| x.is_error()).cloned().collect());
    print_diagnostics(&errors, color);
    let mut kinds: std::collections::BTreeMap<&str, Vec<String>> = std::collections::BTreeMap::new();
    for w in d.0.iter().filter(|x| !x.is_error()) {
        kinds.entry(w.summary.as_str()).or_default().push(w.pos.as_ref().map(|p| p.to_string()).unwrap_or_default());
    }
    for (summary, at) in kinds {
        let at: Vec<String> = at.into_iter().filter(|a| !a.is_empty()).collect();
        match at.len() {
            0 => eprint_line(&format!("Warning: {summary}")),
            1 => eprint_line(&format!("Warning: {summary} ({})", at[0])),
            n => eprint_line(&format!("Warning: {summary} ({n} times: {})", at.join(", "))),
        }
    }
}

/// `-compact-warnings` for the planner's warnings (`ADDRESS: what`): one line per kind,
/// naming the tasks.
pub fn compact_lines(warnings: &[String]) -> Vec<String> {
    let mut kinds: Vec<(String, Vec<String>)> = Vec::new();
    for w in warnings {
        let (who, what) = match w.split_once(": ") {
            Some((a, rest)) if a.parse::<crate::config::TaskAddr>().is_ok() && !a.contains(' ') => {
                (Some(a.to_string()), rest.to_string())
            }
            _ => (None, w.clone()),
        };
        match kinds.iter_mut().find(|k| k.0 == what) {
            Some(k) => k.1.extend(who),
            None => kinds.push((what, who.into_iter().collect())),
        }
    }
    kinds
        .into_iter()
        .map(|(what, who)| match who.len() {
            0 => what,
            1 => format!("{}: {what}", who[0]),
            n => format!("{what} ({n} tasks: {})", who.join(", ")),
        })
        .collect()
}

/// Prints a JSON value, pretty, to stdout.
pub fn print_json(v: &serde_json::Value) {
    print_line(&serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Renders rows as an aligned text table (first row is the header).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| if i + 1 == r.len() { s.clone() } else { format!("{s:<w$}", w = widths[i]) })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn compact_warnings_take_one_line_per_kind() {
        let w = ["task.a: no estimate", "task.b: no estimate", "task.c: slow", "a note"].map(String::from);
        assert_eq!(super::compact_lines(&w), ["no estimate (2 tasks: task.a, task.b)", "task.c: slow", "a note"]);
    }
}
