//! Reading a module directory: parse every `*.sky.hcl` file with hcl-edit, sort its blocks into a
//! [`RawModule`], refuse duplicates and unknown attributes/blocks.

use super::*;

impl Loader {
    pub(super) fn parse_dir(&mut self, dir: &Path, display_dir: &str, at: Option<(Pos, String)>) -> Option<RawModule> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.err(at, "Cannot read job directory", format!("{}: {e}", dir.display()), None);
                return None;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".sky.hcl")))
            .collect();
        files.sort();
        if files.is_empty() {
            self.err(
                at,
                "No job files",
                format!("The directory {} holds no *.sky.hcl files.", dir.display()),
                Some("write a main.sky.hcl, or pass -chdir=DIR to point at the job".into()),
            );
            return None;
        }
        let mut raw = RawModule::default();
        for path in files {
            let fname = path.file_name().expect("file").to_string_lossy().into_owned();
            let display = if display_dir.is_empty() { fname } else { format!("{display_dir}/{fname}") };
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    self.err(None, "Cannot read file", format!("{display}: {e}"), None);
                    continue;
                }
            };
            let id = self.sm.add(display, text);
            match hcl_edit::parser::parse_body(self.sm.text(id)) {
                Ok(body) => self.collect(&mut raw, body, id),
                Err(e) => {
                    let loc = e.location();
                    let (mut p, _) = self.sm.pos(id, 0);
                    p.line = loc.line() as u32;
                    p.col = loc.column() as u32;
                    match out_of_range_number(e.line(), loc.column()) {
                        Some((start, lit)) => {
                            p.col = start as u32;
                            self.err(
                                Some((p, e.line().to_string())),
                                "Number out of range",
                                format!("`{lit}` is beyond the largest number skyform can hold (about 1.8e308)."),
                                None,
                            );
                        }
                        None => {
                            self.err(Some((p, e.line().to_string())), "Syntax error", e.message().to_string(), None)
                        }
                    }
                }
            }
        }
        Some(raw)
    }

    pub(super) fn collect(&mut self, raw: &mut RawModule, body: Body, file: FileId) {
        const BLOCKS: &[&str] =
            &["variable", "locals", "policy", "storage", "task", "module", "output", "provider", "skyform"];
        for s in body.into_iter() {
            match s {
                Structure::Attribute(a) => {
                    let at = self.pos(file, a.span());
                    let key = a.key.as_str().to_string();
                    self.err(
                        at,
                        "Unexpected attribute",
                        format!("An attribute `{key}` is not expected at the top level of a job file."),
                        Some("put values in a `locals { }` block or a `variable` block".into()),
                    );
                }
                Structure::Block(b) => {
                    let ident = b.ident.as_str().to_string();
                    let at = self.pos(file, b.span());
                    let labels_needed = match ident.as_str() {
                        "variable" | "storage" | "task" | "module" | "output" | "provider" => 1,
                        "locals" | "policy" | "skyform" => 0,
                        _ => {
                            let hint =
                                did_you_mean(&ident, BLOCKS.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                            self.err(
                                at,
                                "Unsupported block type",
                                format!(
                                    "Blocks of type `{ident}` are not expected here. Expected one of: {}.",
                                    BLOCKS.join(", ")
                                ),
                                hint,
                            );
                            continue;
                        }
                    };
                    if b.labels.len() != labels_needed {
                        let detail = if labels_needed == 1 {
                            format!("A `{ident}` block needs exactly one label, its name: {ident} \"NAME\" {{ ... }}.")
                        } else {
                            format!("A `{ident}` block takes no labels.")
                        };
                        self.err(at, "Wrong number of block labels", detail, None);
                        continue;
                    }
                    let name = label(&b, 0).unwrap_or("").to_string();
                    if labels_needed == 1 && !is_ident(&name) {
                        self.err(
                            at,
                            "Invalid name",
                            format!("`{name}` is not a valid {ident} name: use letters, digits, `_` and `-`, starting with a letter."),
                            None,
                        );
                        continue;
                    }
                    if ident == "locals" {
                        for s in b.body.into_iter() {
                            match s {
                                Structure::Attribute(a) => {
                                    raw.locals.push(Item { name: a.key.as_str().to_string(), node: a, file })
                                }
                                Structure::Block(inner) => {
                                    let at = self.pos(file, inner.span());
                                    self.err(at, "Unexpected block", "A `locals` block holds only attributes.", None)
                                }
                            }
                        }
                        continue;
                    }
                    let item = Item { name, node: b, file };
                    match ident.as_str() {
                        "variable" => raw.variables.push(item),
                        "policy" => raw.policy.push(item),
                        "storage" => raw.storage.push(item),
                        "task" => raw.tasks.push(item),
                        "module" => raw.modules.push(item),
                        "output" => raw.outputs.push(item),
                        "provider" => raw.providers.push(item),
                        "skyform" => raw.settings.push(item),
                        _ => unreachable!("checked above"),
                    }
                }
            }
        }
    }

    /// Reports duplicates among named items (keeps the first).
    pub(super) fn dedup<T: Span>(&mut self, items: &mut Vec<Item<T>>, what: &str) {
        let mut seen: BTreeMap<String, Option<(Pos, String)>> = BTreeMap::new();
        let mut keep = Vec::new();
        for it in items.drain(..) {
            let at = self.pos(it.file, it.node.span());
            if let Some(first) = seen.get(&it.name) {
                let first = first.as_ref().map(|(p, _)| p.to_string()).unwrap_or_default();
                self.err(
                    at,
                    &format!("Duplicate {what}"),
                    format!(
                        "A {what} named \"{}\" was already declared at {first}. Names must be unique within a module.",
                        it.name
                    ),
                    None,
                );
                continue;
            }
            seen.insert(it.name.clone(), at);
            keep.push(it);
        }
        *items = keep;
    }

    /// Checks that a block body has only the allowed attributes and blocks, each once.
    pub(super) fn check_schema(&mut self, body: &Body, file: FileId, ctx: &str, attrs: &[&str], blocks: &[&str]) {
        let mut seen = BTreeSet::new();
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let k = a.key.as_str();
                    let at = self.pos(file, a.span());
                    if !attrs.contains(&k) {
                        let hint = did_you_mean(k, attrs.iter().copied().chain(blocks.iter().copied()))
                            .map(|s| format!("did you mean `{s}`?"));
                        let expected = if attrs.is_empty() { "none".to_string() } else { attrs.join(", ") };
                        self.err(
                            at,
                            "Unsupported attribute",
                            format!("An attribute named `{k}` is not expected in {ctx}. Expected: {expected}."),
                            hint,
                        );
                    } else if !seen.insert(k.to_string()) {
                        self.err(
                            at,
                            "Duplicate attribute",
                            format!("The attribute `{k}` is set twice in {ctx}."),
                            None,
                        );
                    }
                }
                Structure::Block(b) => {
                    let k = b.ident.as_str();
                    if !blocks.contains(&k) {
                        let at = self.pos(file, b.span());
                        let hint = did_you_mean(k, blocks.iter().copied().chain(attrs.iter().copied()))
                            .map(|s| format!("did you mean `{s}`?"));
                        let expected = if blocks.is_empty() { "none".to_string() } else { blocks.join(", ") };
                        self.err(
                            at,
                            "Unsupported block type",
                            format!("Blocks of type `{k}` are not expected in {ctx}. Expected blocks: {expected}."),
                            hint,
                        );
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- references
}

/// The numeric literal around `col` (1-based, in characters) of `line` when it is too large
/// for a number (the parser only says "syntax error" there): its start column and text.
fn out_of_range_number(line: &str, col: usize) -> Option<(usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let at = col.checked_sub(1)?.min(chars.len().checked_sub(1)?);
    let is_num = |c: char| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-');
    let mut start = at;
    while start > 0 && is_num(chars[start - 1]) {
        start -= 1;
    }
    let mut end = at;
    while end < chars.len() && is_num(chars[end]) {
        end += 1;
    }
    let lit: String = chars[start..end].iter().collect();
    let lit = lit.trim_start_matches(['+', '-']).to_string();
    let v: f64 = lit.parse().ok()?;
    v.is_infinite().then_some((start + 1, lit))
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_literals_are_found_at_the_error() {
        assert_eq!(super::out_of_range_number("  budget = 1e400", 13), Some((12, "1e400".to_string())));
        assert_eq!(super::out_of_range_number("  budget = 1e40", 13), None);
        assert_eq!(super::out_of_range_number("  x = {", 7), None);
    }
}
