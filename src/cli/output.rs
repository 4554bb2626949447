//! Small rendering helpers shared by the command views: colour, JSON printing, tables.
//! Views write data to stdout and progress/diagnostics to stderr.

use crate::config::Diagnostics;

/// Prints diagnostics to stderr (text) — the human view.
pub fn print_diagnostics(d: &Diagnostics, color: bool) {
    if !d.0.is_empty() {
        eprintln!("{}", d.render(color));
    }
}

/// Prints a JSON value on one line to stdout.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
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
