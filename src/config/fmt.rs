//! `skyform fmt`: the canonical layout of job files, the way `terraform fmt` lays out
//! Terraform: two-space indentation by nesting, one space around `=`, the `=` of
//! consecutive one-line attributes aligned, no trailing spaces, at most one blank line in
//! a row, one final newline. Comments and heredocs are kept exactly.
//!
//! A file is first parsed with hcl-edit, so a syntax error is reported (with its
//! position) instead of formatted. Pure: takes text, returns text.

use super::diag::{Diagnostic, Pos};

/// Formats one file. `display` names it in errors.
pub fn format_source(display: &str, text: &str) -> Result<String, Box<Diagnostic>> {
    if let Err(e) = hcl_edit::parser::parse_body(text) {
        let loc = e.location();
        let pos = Pos { file: display.to_string(), line: loc.line() as u32, col: loc.column() as u32 };
        return Err(Box::new(
            Diagnostic::error("Syntax error", e.message().to_string()).at(Some((pos, e.line().to_string()))),
        ));
    }
    Ok(layout(text))
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Code,
    Str,
    BlockComment,
}

struct Line {
    /// Trimmed content (verbatim for heredoc bodies and block-comment continuations).
    text: String,
    indent: usize,
    verbatim: bool,
    /// True when the line is a whole `key = value` attribute on one line.
    one_line_attr: bool,
}

fn layout(text: &str) -> String {
    let mut lines: Vec<Line> = Vec::new();
    let mut depth: usize = 0;
    // Stack of contexts: Str inside Code; Code(interp) inside Str with its own brace depth.
    let mut stack: Vec<(Mode, usize)> = vec![(Mode::Code, 0)];
    let mut heredoc: Option<String> = None;
    for raw in text.lines() {
        if let Some(tag) = &heredoc {
            let done = raw.trim() == tag;
            lines.push(Line { text: raw.trim_end().to_string(), indent: 0, verbatim: !done, one_line_attr: false });
            if done {
                // The terminator is indented like the line that opened the heredoc.
                let l = lines.last_mut().expect("pushed");
                l.text = raw.trim().to_string();
                l.indent = depth;
                heredoc = None;
            }
            continue;
        }
        let in_block_comment = stack.last().map(|s| s.0) == Some(Mode::BlockComment);
        let trimmed = raw.trim();
        let start_depth = depth;
        let leading_closers =
            if in_block_comment { 0 } else { trimmed.chars().take_while(|c| matches!(c, '}' | ']' | ')')).count() };
        let chars: Vec<char> = raw.chars().collect();
        let mut i = 0;
        let mut line_heredoc = None;
        let mut comment_at: Option<usize> = None;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            let (mode, _) = *stack.last().expect("non-empty");
            match mode {
                Mode::BlockComment => {
                    if c == '*' && next == Some('/') {
                        stack.pop();
                        i += 1;
                    }
                }
                Mode::Str => {
                    if c == '\\' {
                        i += 1;
                    } else if c == '"' {
                        stack.pop();
                    } else if (c == '$' || c == '%') && next == Some('{') {
                        stack.push((Mode::Code, 1));
                        i += 1;
                    }
                }
                Mode::Code => {
                    let interp = stack.len() > 1;
                    if c == '#' || (c == '/' && next == Some('/')) {
                        comment_at = Some(i);
                        break;
                    } else if c == '/' && next == Some('*') {
                        stack.push((Mode::BlockComment, 0));
                        i += 1;
                    } else if c == '"' {
                        stack.push((Mode::Str, 0));
                    } else if c == '<' && next == Some('<') {
                        let rest: String = chars[i + 2..].iter().collect();
                        let tag = rest.trim_start_matches('-').trim();
                        if !tag.is_empty() && tag.chars().all(|c| c.is_alphanumeric() || c == '_') {
                            line_heredoc = Some(tag.to_string());
                            break;
                        }
                    } else if matches!(c, '{' | '[' | '(') {
                        if interp {
                            stack.last_mut().expect("non-empty").1 += 1;
                        } else {
                            depth += 1;
                        }
                    } else if matches!(c, '}' | ']' | ')') {
                        if interp {
                            let top = stack.last_mut().expect("non-empty");
                            top.1 -= 1;
                            if top.1 == 0 {
                                stack.pop();
                            }
                        } else {
                            depth = depth.saturating_sub(1);
                        }
                    }
                }
            }
            i += 1;
        }
        let indent = if in_block_comment { 0 } else { start_depth.saturating_sub(leading_closers) };
        let one_line = !in_block_comment && depth == start_depth && attr_key(trimmed).is_some();
        let text = if in_block_comment {
            raw.trim_end().to_string()
        } else {
            match comment_at {
                // One space between code and a trailing comment.
                Some(at) if !raw[..raw.char_indices().nth(at).map(|x| x.0).unwrap_or(0)].trim().is_empty() => {
                    let byte = raw.char_indices().nth(at).map(|x| x.0).unwrap_or(0);
                    format!("{} {}", normalize_assign(raw[..byte].trim()), raw[byte..].trim_end())
                }
                _ => normalize_assign(trimmed),
            }
        };
        lines.push(Line { text, indent, verbatim: in_block_comment, one_line_attr: one_line });
        if let Some(tag) = line_heredoc {
            heredoc = Some(tag);
        }
    }

    // Align `=` in runs of one-line attributes at the same indent.
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].one_line_attr {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < lines.len() && lines[j].one_line_attr && lines[j].indent == lines[i].indent {
            j += 1;
        }
        let width = lines[i..j].iter().filter_map(|l| attr_key(&l.text).map(|k| k.chars().count())).max().unwrap_or(0);
        for l in &mut lines[i..j] {
            if let Some(k) = attr_key(&l.text) {
                let key = k.to_string();
                let rest = l.text[key.len()..].trim_start().trim_start_matches('=').trim_start().to_string();
                l.text = format!("{key:<width$} = {rest}");
            }
        }
        i = j;
    }

    let mut out = String::new();
    let mut blank_run = 0;
    for l in &lines {
        if l.text.trim().is_empty() && !l.verbatim {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank_run = 0;
        if l.verbatim {
            out.push_str(&l.text);
        } else {
            out.push_str(&"  ".repeat(l.indent));
            out.push_str(&l.text);
        }
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    if out.is_empty() {
        return out;
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The key of a line that starts with `key =` (not `==`), if any.
fn attr_key(line: &str) -> Option<&str> {
    let end = line.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '"'))?;
    let key = &line[..end];
    if key.is_empty() || key.starts_with('-') {
        return None;
    }
    if key.starts_with('"') && !(key.len() >= 2 && key.ends_with('"')) {
        return None;
    }
    let rest = line[end..].trim_start();
    (rest.starts_with('=') && !rest.starts_with("==") && !rest.starts_with("=>")).then_some(key)
}

/// One space on each side of the `=` of an attribute line.
fn normalize_assign(line: &str) -> String {
    match attr_key(line) {
        Some(k) => {
            let rest = line[k.len()..].trim_start();
            let value = rest[1..].trim_start();
            if value.is_empty() {
                format!("{k} =")
            } else {
                format!("{k} = {value}")
            }
        }
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_aligns_and_keeps_comments() {
        let src = "# top comment\ntask \"a\" {\nrun=\"x\" # trailing\n    retries   =  3\n\n\n\n  resources {\n cpus = \"8+\"\n  }\n}\n";
        let out = format_source("t.sky.hcl", src).unwrap();
        assert_eq!(
            out,
            "# top comment\ntask \"a\" {\n  run     = \"x\" # trailing\n  retries = 3\n\n  resources {\n    cpus = \"8+\"\n  }\n}\n"
        );
        assert_eq!(format_source("t", &out).unwrap(), out, "idempotent");
    }

    #[test]
    fn heredocs_and_templates_are_kept() {
        let src = "task \"a\" {\n  run = <<-EOT\n    echo ${var.x} {\n  weird   =  indent\n  EOT\n  env = { A = \"${upper(\"}\")}\" }\n}\n";
        let out = format_source("t", src).unwrap();
        assert!(out.contains("    echo ${var.x} {\n  weird   =  indent\n"), "{out}");
        assert!(out.ends_with("  env = { A = \"${upper(\"}\")}\" }\n}\n"), "{out}");
    }

    #[test]
    fn syntax_errors_are_reported_not_formatted() {
        let d = format_source("bad.sky.hcl", "task \"a\" {\n  run = \n").unwrap_err();
        assert_eq!(d.pos.unwrap().file, "bad.sky.hcl");
    }
}
