//! Diagnostics: what went wrong in a job's HCL, where, and what to do about it.
//!
//! A [`Diagnostic`] carries a severity, a one-line summary, a detail, an optional hint
//! ("did you mean `task.prep`?") and a [`Pos`] (file:line:col). [`SourceMap`] turns the
//! byte offsets that hcl-edit reports into positions and keeps the source lines for the
//! snippet shown under the location. Rendering as text or JSON lives here so that
//! `validate`, `plan` and every other command print problems the same way. No I/O.

use serde::Serialize;
use std::fmt::Write as _;
use std::ops::Range;

/// A position in a source file (1-based line and column, columns in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, Default)]
pub struct Pos {
    pub file: String,
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos: Option<Pos>,
    /// The source line the position points into — cut to a window around the position
    /// when the line is long ([`SNIPPET_WIDTH`]).
    #[serde(skip)]
    pub snippet: Option<String>,
    /// The caret's column within `snippet` (1-based), when the snippet was cut.
    #[serde(skip)]
    pub caret: Option<u32>,
}

/// Characters of a source line a diagnostic shows around its position.
pub const SNIPPET_WIDTH: usize = 100;
/// Problems printed as text; the rest are counted (`validate -json` lists them all).
pub const MAX_SHOWN: usize = 50;

/// A window of `line` around column `col` (1-based): the text to show and the caret's
/// column in it. Short lines are kept whole.
pub fn snippet_window(line: &str, col: u32) -> (String, u32) {
    let line = line.trim_end();
    let n = line.chars().count();
    if n <= SNIPPET_WIDTH {
        return (line.to_string(), col);
    }
    let at = (col.max(1) as usize - 1).min(n);
    let start = at.saturating_sub(SNIPPET_WIDTH / 2).min(n.saturating_sub(SNIPPET_WIDTH));
    let end = (start + SNIPPET_WIDTH).min(n);
    let mut out = String::new();
    let mut caret = (at - start + 1) as u32;
    if start > 0 {
        out.push('…');
        caret += 1;
    }
    out.extend(line.chars().skip(start).take(end - start));
    if end < n {
        out.push('…');
    }
    (out, caret)
}

impl Diagnostic {
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            summary: summary.into(),
            detail: detail.into(),
            hint: None,
            pos: None,
            snippet: None,
            caret: None,
        }
    }

    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(summary, detail) }
    }

    pub fn at(mut self, pos: Option<(Pos, String)>) -> Self {
        if let Some((p, line)) = pos {
            if !line.is_empty() {
                self.set_snippet(&line, p.col);
            }
            self.pos = Some(p);
        }
        self
    }

    fn set_snippet(&mut self, line: &str, col: u32) {
        let (s, c) = snippet_window(line, col);
        self.snippet = Some(s);
        self.caret = Some(c);
    }

    pub fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic as text, Terraform-style, with the source line and a caret.
    pub fn render(&self, color: bool) -> String {
        let mut s = String::new();
        let (label, on, off) = match (self.severity, color) {
            (Severity::Error, true) => ("Error", "\x1b[1;31m", "\x1b[0m"),
            (Severity::Warning, true) => ("Warning", "\x1b[1;33m", "\x1b[0m"),
            (Severity::Error, false) => ("Error", "", ""),
            (Severity::Warning, false) => ("Warning", "", ""),
        };
        let _ = writeln!(s, "{on}{label}:{off} {}", self.summary);
        if let Some(p) = &self.pos {
            let _ = writeln!(s);
            let _ = writeln!(s, "  on {p}:");
            if let Some(line) = &self.snippet {
                let num = p.line.to_string();
                let _ = writeln!(s, "  {num} | {}", line.trim_end());
                let col = self.caret.unwrap_or(p.col);
                let caret_pad = " ".repeat(num.len() + 3 + col.saturating_sub(1) as usize);
                let _ = writeln!(s, "  {caret_pad}^");
            }
        }
        if !self.detail.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "{}", self.detail);
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(s, "Hint: {h}");
        }
        s
    }
}

/// A list of diagnostics, errors and warnings together.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        // The same problem reported twice at the same place is one problem.
        if !self.0.iter().any(|e| e.summary == d.summary && e.pos == d.pos && e.detail == d.detail) {
            self.0.push(d);
        }
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }
    /// Errors first, then by position.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| (!a.is_error(), &a.pos).cmp(&(!b.is_error(), &b.pos)));
        self
    }
    /// The problems as text: the first [`MAX_SHOWN`], then how many more there are.
    pub fn render(&self, color: bool) -> String {
        let mut out = self.0.iter().take(MAX_SHOWN).map(|d| d.render(color)).collect::<Vec<_>>().join("\n");
        if self.0.len() > MAX_SHOWN {
            let more = self.0.len() - MAX_SHOWN;
            let _ = write!(
                out,
                "\n…and {} more problem{} (`skyform validate -json` lists every one).\n",
                thousands(more),
                if more == 1 { "" } else { "s" }
            );
        }
        out
    }
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

/// The text of every loaded file, for turning byte offsets into positions.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

#[derive(Debug, Clone)]
struct SourceFile {
    display: String,
    text: String,
    line_starts: Vec<usize>,
}

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(pub usize);

impl SourceMap {
    pub fn add(&mut self, display: String, text: String) -> FileId {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        self.files.push(SourceFile { display, text, line_starts });
        FileId(self.files.len() - 1)
    }

    pub fn text(&self, id: FileId) -> &str {
        &self.files[id.0].text
    }

    pub fn display(&self, id: FileId) -> &str {
        &self.files[id.0].display
    }

    /// Position (and source line) of a byte offset.
    pub fn pos(&self, id: FileId, offset: usize) -> (Pos, String) {
        let f = &self.files[id.0];
        let offset = offset.min(f.text.len());
        let line = f.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = f.line_starts[line];
        let col = f.text[start..offset].chars().count() + 1;
        let end = f.line_starts.get(line + 1).map(|e| e - 1).unwrap_or(f.text.len());
        let text = f.text[start..end.max(start)].trim_end_matches('\r').to_string();
        (Pos { file: f.display.clone(), line: line as u32 + 1, col: col as u32 }, text)
    }

    pub fn span_pos(&self, id: FileId, span: Option<Range<usize>>) -> Option<(Pos, String)> {
        span.map(|r| self.pos(id, r.start))
    }

    /// The source line a position points into (for positions kept without one).
    pub fn snippet(&self, pos: &Pos) -> Option<String> {
        let f = self.files.iter().find(|f| f.display == pos.file)?;
        let start = *f.line_starts.get(pos.line.checked_sub(1)? as usize)?;
        let end = f.text[start..].find('\n').map(|e| start + e).unwrap_or(f.text.len());
        Some(f.text[start..end].trim_end_matches('\r').to_string())
    }

    /// Fills in missing source lines of diagnostics.
    pub fn fill_snippets(&self, d: &mut Diagnostics) {
        for x in &mut d.0 {
            if x.snippet.is_none() {
                if let Some((line, col)) = x.pos.as_ref().and_then(|p| Some((self.snippet(p)?, p.col))) {
                    x.set_snippet(&line, col);
                }
            }
        }
    }

    /// The source text of a span.
    pub fn slice(&self, id: FileId, span: Range<usize>) -> &str {
        &self.files[id.0].text[span]
    }
}

/// "did you mean" over a set of candidates: the closest by edit distance (transpositions
/// count once; `O`/`0` and `l`/`1` are confusable), then by Jaro-Winkler similarity.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let norm = |s: &str| s.to_lowercase().replace('o', "0").replace('l', "1");
    let g = norm(given);
    let mut best: Option<(usize, f64, &str)> = None;
    for c in candidates {
        let n = norm(c);
        let dist = strsim::osa_distance(&g, &n);
        let sim = strsim::jaro_winkler(&g, &n);
        let close = dist <= (g.chars().count() / 3).max(1) || sim > 0.85;
        if !close || c == given {
            continue;
        }
        if best.is_none_or(|(d, s, _)| dist < d || (dist == d && sim > s)) {
            best = Some((dist, sim, c));
        }
    }
    best.map(|(_, _, c)| c.to_string())
}

/// `3982` → `3,982`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let line = format!("{}undefined_thing{}", "a".repeat(5000), "b".repeat(5000));
        let (w, caret) = snippet_window(&line, 5001);
        assert!(w.chars().count() <= SNIPPET_WIDTH + 2, "{}", w.len());
        assert!(w.starts_with('…') && w.ends_with('…'));
        assert_eq!(w.chars().nth(caret as usize - 1), Some('u'), "the caret still points at the problem");
        assert_eq!(snippet_window("short = 1", 9), ("short = 1".to_string(), 9));
    }

    #[test]
    fn many_problems_are_counted_not_all_printed() {
        let mut d = Diagnostics::default();
        for i in 0..4032 {
            d.0.push(Diagnostic::error("Undefined reference", format!("`x{i}` is not declared")));
        }
        let text = d.render(false);
        assert_eq!(text.matches("Undefined reference").count(), MAX_SHOWN);
        assert!(text.contains("…and 3,982 more problems"), "{}", &text[text.len() - 200..]);
    }

    #[test]
    fn positions_are_one_based_and_char_counted() {
        let mut sm = SourceMap::default();
        let id = sm.add("a.hcl".into(), "x = 1\n  é = 2\n".into());
        let (p, line) = sm.pos(id, 0);
        assert_eq!((p.line, p.col), (1, 1));
        assert_eq!(line, "x = 1");
        let off = "x = 1\n  é = ".len();
        let (p, line) = sm.pos(id, off);
        assert_eq!((p.line, p.col), (2, 7));
        assert_eq!(line, "  é = 2");
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("prpe", ["prep", "train"]).as_deref(), Some("prep"));
        assert_eq!(did_you_mean("zzz", ["prep", "train"]), None);
        assert_eq!(did_you_mean("rwa", ["raw", "model"]).as_deref(), Some("raw"));
        assert_eq!(did_you_mean("V1OO", ["V100", "A100", "T4"]).as_deref(), Some("V100"));
    }
}
