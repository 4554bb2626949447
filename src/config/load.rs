//! HCL → [`JobSpec`]: parse every `*.sky.hcl` file of a directory with hcl-edit (spans and
//! comments), check every reference, evaluate with `hcl::eval` against a context, and
//! build the typed, validated job with its task DAG.
//!
//! Order inside a module: variables → locals (dependency order) → storage → task outputs →
//! modules (dependency order) → task bodies → outputs. All problems are collected (the
//! loader goes on after an error wherever it can) and returned together.
//!
//! I/O: reads the job's files, module directories, var files and `file()` arguments.

use super::diag::{did_you_mean, Diagnostic, Diagnostics, FileId, Pos, SourceMap};
use super::functions::{self, BaseDirGuard};
use super::spec::*;
use super::vars::{self, VarArg, VarType};
use hcl::eval::{Context, Evaluate};
use hcl::{Map, Value};
use hcl_edit::expr::{Expression as EExpr, ObjectKey, TraversalOperator};
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use hcl_edit::visit::{self, Visit};
use hcl_edit::Span;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where variable values come from besides defaults.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-var` and `-var-file` arguments in command-line order.
    pub var_args: Vec<VarArg>,
    /// `SKYFORM_VAR_<name>` values (name → raw value), injected by the caller.
    pub env_vars: BTreeMap<String, String>,
}

/// A loaded job: the spec, warnings, and the source texts (for later diagnostics).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: JobSpec,
    pub warnings: Diagnostics,
    pub sources: SourceMap,
}

/// Where a diagnostic points: a position and its source line.
type At = Option<(Pos, String)>;
/// A declared variable: type, default, sensitive, file and span.
type VarDecl = (VarType, Option<Value>, bool, FileId, Option<std::ops::Range<usize>>);

/// The clouds skyform knows.
pub const CLOUDS: &[&str] = &["aws", "gcp", "azure", "local"];
/// Attributes `resource.*` offers to an estimate expression.
pub const RESOURCE_ATTRS: &[&str] =
    &["cloud", "region", "zone", "instance_type", "vcpus", "memory_gb", "accelerator", "accelerator_count", "spot"];
const REF_MARK: &str = "__skyform_ref";
const MAX_SIZE_GB: f64 = 1_000_000.0;

/// Loads the job in `dir`.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    let mut l =
        Loader { sm: SourceMap::default(), diags: Diagnostics::default(), out: Out::default(), stack: Vec::new() };
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "job".into());
    let root = l.load_module(dir, "", &[], ModuleInputs::Root(opts), None);
    let mut spec = JobSpec {
        name,
        settings: l.out.settings.take().unwrap_or_default(),
        policy: l.out.policy.take().unwrap_or_default(),
        providers: std::mem::take(&mut l.out.providers),
        storage: std::mem::take(&mut l.out.storage),
        tasks: std::mem::take(&mut l.out.tasks),
        edges: Vec::new(),
        outputs: BTreeMap::new(),
        variables: std::mem::take(&mut l.out.variables),
    };
    if let Some(n) = l.out.job_name.take() {
        spec.name = n;
    }
    if let Some(root) = root {
        spec.outputs = root.outputs_root;
    }
    l.check_dag(&mut spec);
    let mut diags = l.diags.sorted();
    l.sm.fill_snippets(&mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Loaded { spec, warnings: diags, sources: l.sm })
}

#[derive(Default)]
struct Out {
    tasks: BTreeMap<TaskAddr, Task>,
    storage: BTreeMap<String, Storage>,
    providers: BTreeMap<String, serde_json::Value>,
    policy: Option<Policy>,
    settings: Option<Settings>,
    variables: BTreeMap<String, VariableValue>,
    job_name: Option<String>,
}

enum ModuleInputs<'a> {
    Root(&'a LoadOptions),
    Module { values: BTreeMap<String, (Value, Option<(Pos, String)>)>, block_pos: Option<(Pos, String)> },
}

struct ModuleResult {
    /// Output values with reference markers intact, for the parent's `module.NAME`.
    outputs: Map<String, Value>,
    /// Root only: outputs rendered for the user.
    outputs_root: BTreeMap<String, OutputValue>,
}

/// An item of a module: a block or attribute with the file it came from.
struct Item<T> {
    name: String,
    node: T,
    file: FileId,
}

#[derive(Default)]
struct RawModule {
    variables: Vec<Item<Block>>,
    locals: Vec<Item<Attribute>>,
    storage: Vec<Item<Block>>,
    tasks: Vec<Item<Block>>,
    modules: Vec<Item<Block>>,
    outputs: Vec<Item<Block>>,
    providers: Vec<Item<Block>>,
    policy: Vec<Item<Block>>,
    settings: Vec<Item<Block>>,
}

/// The evaluation scope of one module.
struct Scope {
    module_path: Vec<String>,
    dir: PathBuf,
    var: Map<String, Value>,
    local: Map<String, Value>,
    storage: Map<String, Value>,
    task: Map<String, Value>,
    module: Map<String, Value>,
    /// Names that exist syntactically (for reference checks before values exist).
    names: Names,
}

#[derive(Default)]
struct Names {
    vars: BTreeSet<String>,
    locals: BTreeSet<String>,
    storage: BTreeSet<String>,
    /// task name → output names (None when outputs are not a literal object).
    tasks: BTreeMap<String, Option<BTreeSet<String>>>,
    modules: BTreeSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Root {
    Var,
    Local,
    Storage,
    Task,
    Module,
    Resource,
    Path,
}

impl Root {
    fn of(s: &str) -> Option<Root> {
        Some(match s {
            "var" => Root::Var,
            "local" => Root::Local,
            "storage" => Root::Storage,
            "task" => Root::Task,
            "module" => Root::Module,
            "resource" => Root::Resource,
            "path" => Root::Path,
            _ => return None,
        })
    }
}

const CONFIG_ROOTS: &[Root] = &[Root::Var, Root::Local, Root::Path];
const BODY_ROOTS: &[Root] = &[Root::Var, Root::Local, Root::Path, Root::Storage, Root::Task, Root::Module];
const ESTIMATE_ROOTS: &[Root] = &[Root::Var, Root::Local, Root::Path, Root::Resource];

struct Loader {
    sm: SourceMap,
    diags: Diagnostics,
    out: Out,
    /// Canonical module directories being loaded (cycle detection).
    stack: Vec<PathBuf>,
}

/// A reference found in an expression: root, attribute chain, byte span.
struct Ref {
    root: String,
    attrs: Vec<String>,
    span: Option<std::ops::Range<usize>>,
}

#[derive(Default)]
struct RefCollector {
    refs: Vec<Ref>,
}

impl Visit for RefCollector {
    fn visit_traversal(&mut self, node: &hcl_edit::expr::Traversal) {
        if let EExpr::Variable(v) = &node.expr {
            let attrs = node
                .operators
                .iter()
                .map_while(|op| match op.value() {
                    TraversalOperator::GetAttr(id) => Some(id.as_str().to_string()),
                    TraversalOperator::Index(EExpr::String(s)) => Some(s.value().to_string()),
                    _ => None,
                })
                .collect();
            self.refs.push(Ref { root: v.as_str().to_string(), attrs, span: node.span() });
            // The root is recorded with its attributes; only index expressions remain.
            for op in &node.operators {
                visit::visit_traversal_operator(self, op.value());
            }
            return;
        }
        visit::visit_traversal(self, node);
    }

    fn visit_expr(&mut self, node: &EExpr) {
        if let EExpr::Variable(v) = node {
            self.refs.push(Ref { root: v.as_str().to_string(), attrs: vec![], span: v.span() });
        }
        visit::visit_expr(self, node);
    }
}

fn refs_of(expr: &EExpr) -> Vec<Ref> {
    let mut c = RefCollector::default();
    c.visit_expr(expr);
    c.refs
}

fn label(b: &Block, i: usize) -> Option<&str> {
    b.labels.get(i).map(|l| l.as_str())
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_env_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn num_of(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn hjson(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

impl Loader {
    fn pos(&self, file: FileId, span: Option<std::ops::Range<usize>>) -> Option<(Pos, String)> {
        self.sm.span_pos(file, span)
    }

    fn err(&mut self, at: Option<(Pos, String)>, summary: &str, detail: impl Into<String>, hint: Option<String>) {
        self.diags.push(Diagnostic::error(summary, detail).at(at).hint(hint));
    }

    fn warn(&mut self, at: Option<(Pos, String)>, summary: &str, detail: impl Into<String>) {
        self.diags.push(Diagnostic::warning(summary, detail).at(at));
    }

    // ---------------------------------------------------------------- parsing

    fn parse_dir(&mut self, dir: &Path, display_dir: &str, at: Option<(Pos, String)>) -> Option<RawModule> {
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
                    self.err(Some((p, e.line().to_string())), "Syntax error", e.message().to_string(), None);
                }
            }
        }
        Some(raw)
    }

    fn collect(&mut self, raw: &mut RawModule, body: Body, file: FileId) {
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
    fn dedup<T: Span>(&mut self, items: &mut Vec<Item<T>>, what: &str) {
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
    fn check_schema(&mut self, body: &Body, file: FileId, ctx: &str, attrs: &[&str], blocks: &[&str]) {
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

    /// Checks every reference in `expr` against the scope; returns false when any is bad
    /// (the expression is then not evaluated, so each problem is reported once).
    fn check_refs(&mut self, expr: &EExpr, file: FileId, scope: &Scope, allowed: &[Root]) -> bool {
        let mut ok = true;
        for r in refs_of(expr) {
            let Some(root) = Root::of(&r.root) else {
                continue;
            };
            let at = self.pos(file, r.span.clone());
            if !allowed.contains(&root) {
                let detail = match root {
                    Root::Resource => "`resource.*` is only available inside `estimate { hours = ... }`, where it is bound to each candidate placement.".to_string(),
                    Root::Task | Root::Module | Root::Storage => format!(
                        "`{}.*` cannot be used here. Only var, local and path are available in this position.",
                        r.root
                    ),
                    _ => format!("`{}.*` cannot be used here.", r.root),
                };
                self.err(at, "Reference not allowed here", detail, None);
                ok = false;
                continue;
            }
            let first = r.attrs.first().cloned();
            let Some(first) = first else {
                if root != Root::Path {
                    self.err(
                        at,
                        "Invalid reference",
                        format!("`{}` must be followed by a name, as in `{}.NAME`.", r.root, r.root),
                        None,
                    );
                    ok = false;
                }
                continue;
            };
            let (set, what): (Vec<&str>, &str) = match root {
                Root::Var => (scope.names.vars.iter().map(String::as_str).collect(), "variable"),
                Root::Local => (scope.names.locals.iter().map(String::as_str).collect(), "local value"),
                Root::Storage => (scope.names.storage.iter().map(String::as_str).collect(), "storage"),
                Root::Task => (scope.names.tasks.keys().map(String::as_str).collect(), "task"),
                Root::Module => (scope.names.modules.iter().map(String::as_str).collect(), "module"),
                Root::Resource => (RESOURCE_ATTRS.to_vec(), "resource attribute"),
                Root::Path => (vec!["module", "root", "cwd"], "path attribute"),
            };
            if !set.contains(&first.as_str()) {
                let hint = did_you_mean(&first, set.iter().copied()).map(|s| format!("did you mean `{}.{s}`?", r.root));
                let summary = match root {
                    Root::Var => "Undefined variable",
                    Root::Local => "Undefined local value",
                    Root::Storage => "Undefined storage",
                    Root::Task => "Undefined task",
                    Root::Module => "Undefined module",
                    Root::Resource => "Unknown resource attribute",
                    Root::Path => "Unknown path attribute",
                };
                let decl = match root {
                    Root::Var => format!("variable \"{first}\" {{ }}"),
                    Root::Local => format!("locals {{ {first} = ... }}"),
                    Root::Storage => format!("storage \"{first}\" {{ }}"),
                    Root::Task => format!("task \"{first}\" {{ }}"),
                    Root::Module => format!("module \"{first}\" {{ }}"),
                    _ => String::new(),
                };
                let detail = if decl.is_empty() {
                    format!("There is no {what} named `{first}`. Available: {}.", set.join(", "))
                } else {
                    format!("There is no {what} named `{first}` in this module; declare it with `{decl}`.")
                };
                self.err(at, summary, detail, hint);
                ok = false;
                continue;
            }
            if root == Root::Task {
                match r.attrs.get(1).map(String::as_str) {
                    Some("outputs") => {
                        if let (Some(out), Some(Some(outs))) = (r.attrs.get(2), scope.names.tasks.get(&first)) {
                            if !outs.contains(out) {
                                let hint = did_you_mean(out, outs.iter().map(String::as_str))
                                    .map(|s| format!("did you mean `task.{first}.outputs.{s}`?"));
                                let list = outs.iter().cloned().collect::<Vec<_>>().join(", ");
                                self.err(
                                    at,
                                    "Undefined task output",
                                    format!(
                                        "Task \"{first}\" has no output named `{out}`. Its outputs: {}.",
                                        if list.is_empty() { "none".into() } else { list }
                                    ),
                                    hint,
                                );
                                ok = false;
                            }
                        }
                    }
                    Some("address") | None => {}
                    Some(other) => {
                        let hint = did_you_mean(other, ["outputs", "address"])
                            .map(|s| format!("did you mean `task.{first}.{s}`?"));
                        self.err(
                            at,
                            "Unsupported task attribute",
                            format!("A task reference offers `outputs` and `address`, not `{other}`."),
                            hint,
                        );
                        ok = false;
                    }
                }
            }
        }
        ok
    }

    // ---------------------------------------------------------------- evaluation

    /// The context for evaluating `expr`: `var`, `local`, `storage`, `task` and `module`
    /// hold only the names `expr` references (`check_refs` has vetted them), so one
    /// evaluation costs the expression's size, not the module's.
    fn context<'a>(&self, scope: &'a Scope, expr: &EExpr) -> Context<'a> {
        let refs = refs_of(expr);
        let only = |root: &str, all: &Map<String, Value>| -> Value {
            Value::Object(
                refs.iter()
                    .filter(|r| r.root == root)
                    .filter_map(|r| r.attrs.first())
                    .filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            )
        };
        let mut ctx = Context::new();
        functions::declare_all(&mut ctx);
        ctx.declare_var("var", only("var", &scope.var));
        ctx.declare_var("local", only("local", &scope.local));
        ctx.declare_var("storage", only("storage", &scope.storage));
        ctx.declare_var("task", only("task", &scope.task));
        ctx.declare_var("module", only("module", &scope.module));
        let mut path = Map::new();
        path.insert("module".into(), Value::String(scope.dir.display().to_string()));
        path.insert(
            "root".into(),
            Value::String(self.stack.first().map(|p| p.display().to_string()).unwrap_or_default()),
        );
        path.insert(
            "cwd".into(),
            Value::String(std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default()),
        );
        ctx.declare_var("path", Value::Object(path));
        ctx
    }

    /// Evaluates an expression after checking its references. None on error (reported).
    fn eval(&mut self, expr: &EExpr, file: FileId, scope: &Scope, allowed: &[Root]) -> Option<Value> {
        if !self.check_refs(expr, file, scope, allowed) {
            return None;
        }
        let hexpr: hcl::Expression = expr.clone().into();
        let _g = BaseDirGuard::set(scope.dir.clone());
        let ctx = self.context(scope, expr);
        match hexpr.evaluate(&ctx) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = self.pos(file, expr.span());
                use hcl::eval::ErrorKind as K;
                let (summary, hint) = match e.kind() {
                    K::UndefinedFunc(name) => (
                        "Call to unknown function",
                        did_you_mean(&name.to_string(), functions::NAMES.iter().copied())
                            .map(|s| format!("did you mean `{s}`?")),
                    ),
                    K::UndefinedVar(_) => ("Undefined name", None),
                    K::NoSuchKey(_) => ("Unsupported attribute", None),
                    K::FuncCall(..) => ("Error in function call", None),
                    _ => ("Invalid expression", None),
                };
                self.err(at, summary, e.to_string(), hint);
                None
            }
        }
    }

    fn attr_value(
        &mut self,
        body: &Body,
        key: &str,
        file: FileId,
        scope: &Scope,
        allowed: &[Root],
    ) -> Option<(Value, Option<(Pos, String)>)> {
        let a = body.get_attribute(key)?;
        let at = self.pos(file, a.value.span());
        self.eval(&a.value, file, scope, allowed).map(|v| (v, at))
    }

    fn type_err(&mut self, at: Option<(Pos, String)>, key: &str, want: &str, got: &Value) {
        self.err(
            at,
            "Incorrect attribute value type",
            format!("`{key}` must be {want}; got {} `{}`.", type_name(got), short(got)),
            None,
        );
    }

    fn get_string(&mut self, body: &Body, key: &str, file: FileId, scope: &Scope, allowed: &[Root]) -> Option<String> {
        let (v, at) = self.attr_value(body, key, file, scope, allowed)?;
        match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Null => None,
            other => {
                self.type_err(at, key, "a string", &other);
                None
            }
        }
    }

    fn get_number(
        &mut self,
        body: &Body,
        key: &str,
        file: FileId,
        scope: &Scope,
        allowed: &[Root],
    ) -> Option<(f64, Option<(Pos, String)>)> {
        let (v, at) = self.attr_value(body, key, file, scope, allowed)?;
        match &v {
            Value::Number(_) => Some((num_of(&v).unwrap_or(0.0), at)),
            Value::String(s) if s.trim().parse::<f64>().is_ok() => Some((s.trim().parse().expect("checked"), at)),
            Value::Null => None,
            other => {
                self.type_err(at, key, "a number", other);
                None
            }
        }
    }

    fn get_bool(&mut self, body: &Body, key: &str, file: FileId, scope: &Scope, allowed: &[Root]) -> Option<bool> {
        let (v, at) = self.attr_value(body, key, file, scope, allowed)?;
        match v {
            Value::Bool(b) => Some(b),
            Value::Null => None,
            other => {
                self.type_err(at, key, "true or false", &other);
                None
            }
        }
    }

    fn get_strings(
        &mut self,
        body: &Body,
        key: &str,
        file: FileId,
        scope: &Scope,
        allowed: &[Root],
    ) -> Option<(Vec<String>, At)> {
        let (v, at) = self.attr_value(body, key, file, scope, allowed)?;
        match v {
            Value::String(s) => Some((vec![s], at)),
            Value::Array(a) => {
                let mut out = Vec::new();
                for x in a {
                    match x {
                        Value::String(s) => out.push(s),
                        other => {
                            self.type_err(at.clone(), key, "a list of strings", &other);
                            return None;
                        }
                    }
                }
                Some((out, at))
            }
            Value::Null => None,
            other => {
                self.type_err(at, key, "a list of strings", &other);
                None
            }
        }
    }

    fn require(
        &mut self,
        body: &Body,
        key: &str,
        file: FileId,
        block_span: Option<std::ops::Range<usize>>,
        ctx: &str,
    ) -> bool {
        if body.has_attribute(key) {
            return true;
        }
        let at = self.pos(file, block_span);
        self.err(at, "Missing required attribute", format!("The attribute `{key}` is required in {ctx}."), None);
        false
    }

    fn single_block<'b>(&mut self, body: &'b Body, ident: &'b str, file: FileId, ctx: &str) -> Option<&'b Block> {
        let mut it = body.get_blocks(ident);
        let first = it.next();
        for extra in it {
            let at = self.pos(file, extra.span());
            self.err(at, "Duplicate block", format!("Only one `{ident}` block is allowed in {ctx}."), None);
        }
        first
    }

    // ---------------------------------------------------------------- modules

    fn load_module(
        &mut self,
        dir: &Path,
        display_dir: &str,
        module_path: &[String],
        inputs: ModuleInputs<'_>,
        at: Option<(Pos, String)>,
    ) -> Option<ModuleResult> {
        let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if self.stack.contains(&canon) {
            let chain =
                self.stack.iter().chain([&canon]).map(|p| p.display().to_string()).collect::<Vec<_>>().join(" → ");
            self.err(at, "Module cycle", format!("Modules include each other: {chain}."), None);
            return None;
        }
        if self.stack.len() > 16 {
            self.err(at, "Modules nested too deeply", "Module nesting is limited to 16 levels.", None);
            return None;
        }
        let mut raw = self.parse_dir(dir, display_dir, at.clone())?;
        self.stack.push(canon);
        let r = self.eval_module(&mut raw, dir, module_path, inputs);
        self.stack.pop();
        Some(r)
    }

    fn eval_module(
        &mut self,
        raw: &mut RawModule,
        dir: &Path,
        module_path: &[String],
        inputs: ModuleInputs<'_>,
    ) -> ModuleResult {
        let is_root = matches!(inputs, ModuleInputs::Root(_));
        self.dedup(&mut raw.variables, "variable");
        self.dedup(&mut raw.locals, "local value");
        self.dedup(&mut raw.storage, "storage");
        self.dedup(&mut raw.tasks, "task");
        self.dedup(&mut raw.modules, "module");
        self.dedup(&mut raw.outputs, "output");
        self.dedup(&mut raw.providers, "provider");
        let mut scope = Scope {
            module_path: module_path.to_vec(),
            dir: dir.to_path_buf(),
            var: Map::new(),
            local: Map::new(),
            storage: Map::new(),
            task: Map::new(),
            module: Map::new(),
            names: Names::default(),
        };
        scope.names.vars = raw.variables.iter().map(|v| v.name.clone()).collect();
        scope.names.locals = raw.locals.iter().map(|v| v.name.clone()).collect();
        scope.names.storage = raw.storage.iter().map(|v| v.name.clone()).collect();
        scope.names.modules = raw.modules.iter().map(|v| v.name.clone()).collect();
        for t in &raw.tasks {
            let outs = t.node.body.get_attribute("outputs").and_then(|a| match &a.value {
                EExpr::Object(o) => Some(
                    o.iter()
                        .filter_map(|(k, _)| match k {
                            ObjectKey::Ident(i) => Some(i.as_str().to_string()),
                            ObjectKey::Expression(EExpr::String(s)) => Some(s.value().to_string()),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => None,
            });
            scope.names.tasks.insert(t.name.clone(), outs);
        }

        self.eval_variables(raw, &mut scope, inputs);
        self.eval_locals(raw, &mut scope);
        if is_root {
            self.eval_root_settings(raw, &scope);
        } else {
            for (items, what) in [(&raw.policy, "policy"), (&raw.providers, "provider"), (&raw.settings, "skyform")] {
                for it in items.iter() {
                    let at = self.pos(it.file, it.node.span());
                    self.err(
                        at,
                        "Block not allowed in a module",
                        format!("`{what}` blocks belong in the root job, not in a module."),
                        Some("move it to the job that calls this module".into()),
                    );
                }
            }
        }
        self.eval_storage(raw, &mut scope);
        self.eval_task_outputs(raw, &mut scope);
        self.eval_modules(raw, &mut scope);
        self.eval_tasks(raw, &scope);
        self.eval_outputs(raw, &scope, is_root)
    }

    fn eval_variables(&mut self, raw: &RawModule, scope: &mut Scope, inputs: ModuleInputs<'_>) {
        // Declarations first: type, default, sensitive.
        let mut decls: BTreeMap<String, VarDecl> = BTreeMap::new();
        for it in &raw.variables {
            let b = &it.node;
            self.check_schema(
                &b.body,
                it.file,
                &format!("variable \"{}\"", it.name),
                &["type", "default", "description", "sensitive", "nullable"],
                &["validation"],
            );
            let ty = match b.body.get_attribute("type") {
                None => VarType::Any,
                Some(a) => match VarType::from_expr(&a.value) {
                    Ok(t) => t,
                    Err(e) => {
                        let at = self.pos(it.file, a.value.span());
                        self.err(
                            at,
                            "Invalid type specification",
                            e,
                            Some("use string, number, bool, any, list(T), set(T), map(T) or object({...})".into()),
                        );
                        VarType::Any
                    }
                },
            };
            let empty = Scope {
                module_path: vec![],
                dir: scope.dir.clone(),
                var: Map::new(),
                local: Map::new(),
                storage: Map::new(),
                task: Map::new(),
                module: Map::new(),
                names: Names::default(),
            };
            let default = match b.body.get_attribute("default") {
                None => None,
                Some(a) => {
                    let at = self.pos(it.file, a.value.span());
                    match self.eval(&a.value, it.file, &empty, &[]) {
                        Some(v) => match ty.convert(&v) {
                            Ok(v) => Some(v),
                            Err(e) => {
                                self.err(
                                    at,
                                    "Invalid default value for variable",
                                    format!("variable \"{}\": {e}", it.name),
                                    None,
                                );
                                None
                            }
                        },
                        None => None,
                    }
                }
            };
            let sensitive = self.get_bool(&b.body, "sensitive", it.file, &empty, &[]).unwrap_or(false);
            decls.insert(it.name.clone(), (ty, default, sensitive, it.file, b.span()));
        }

        // Values, in precedence order (later wins).
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        match inputs {
            ModuleInputs::Root(opts) => {
                for (name, raw_v) in &opts.env_vars {
                    if let Some((ty, ..)) = decls.get(name) {
                        match vars::parse_cli_value(ty, raw_v) {
                            Ok(v) => {
                                values.insert(name.clone(), v);
                            }
                            Err(e) => {
                                self.err(None, "Invalid value for variable", format!("SKYFORM_VAR_{name}: {e}"), None)
                            }
                        }
                    }
                }
                let mut auto: Vec<PathBuf> = std::fs::read_dir(&scope.dir)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".auto.skyvars")))
                            .collect()
                    })
                    .unwrap_or_default();
                auto.sort();
                let mut args: Vec<VarArg> = auto.into_iter().map(VarArg::File).collect();
                args.extend(opts.var_args.iter().cloned());
                for arg in args {
                    match arg {
                        VarArg::Var(kv) => {
                            let Some((k, v)) = kv.split_once('=') else {
                                self.err(
                                    None,
                                    "Invalid -var option",
                                    format!("The option `-var {kv}` is not of the form NAME=VALUE."),
                                    None,
                                );
                                continue;
                            };
                            match decls.get(k.trim()) {
                                None => {
                                    let hint = did_you_mean(k, decls.keys().map(String::as_str))
                                        .map(|s| format!("did you mean `{s}`?"));
                                    self.err(
                                        None,
                                        "Value for undeclared variable",
                                        format!("-var {k}=...: the job declares no variable named \"{k}\"."),
                                        hint,
                                    );
                                }
                                Some((ty, ..)) => match vars::parse_cli_value(ty, v) {
                                    Ok(val) => {
                                        values.insert(k.trim().to_string(), val);
                                    }
                                    Err(e) => {
                                        self.err(None, "Invalid value for variable", format!("-var {k}: {e}"), None)
                                    }
                                },
                            }
                        }
                        VarArg::File(path) => self.read_var_file(&path, &decls, &mut values),
                    }
                }
            }
            ModuleInputs::Module { values: given, block_pos } => {
                for (k, (v, at)) in given {
                    match decls.get(&k) {
                        None => {
                            let hint = did_you_mean(&k, decls.keys().map(String::as_str))
                                .map(|s| format!("did you mean `{s}`?"));
                            self.err(
                                at,
                                "Unsupported argument",
                                format!("The module declares no variable named \"{k}\"."),
                                hint,
                            );
                        }
                        Some(_) => {
                            values.insert(k, v);
                        }
                    }
                }
                for (name, (_, default, _, _, _)) in &decls {
                    if default.is_none() && !values.contains_key(name) {
                        self.err(
                            block_pos.clone(),
                            "Missing required argument",
                            format!("The module's variable \"{name}\" has no default; set `{name} = ...` in the module block."),
                            None,
                        );
                    }
                }
            }
        }

        let root = self.stack.len() <= 1;
        for (name, (ty, default, sensitive, file, span)) in &decls {
            let v = match values.remove(name) {
                Some(v) => match ty.convert(&v) {
                    Ok(v) => v,
                    Err(e) => {
                        let at = self.pos(*file, span.clone());
                        self.err(at, "Invalid value for variable", format!("variable \"{name}\": {e}"), None);
                        Value::Null
                    }
                },
                None => match default {
                    Some(d) => d.clone(),
                    None => {
                        if root {
                            let at = self.pos(*file, span.clone());
                            self.err(
                                at,
                                "No value for required variable",
                                format!("The variable \"{name}\" has no default and no value was given."),
                                Some(format!("pass -var {name}=VALUE, set SKYFORM_VAR_{name}, or add it to a *.auto.skyvars file")),
                            );
                        }
                        Value::Null
                    }
                },
            };
            scope.var.insert(name.clone(), v.clone());
            if root {
                self.out.variables.insert(name.clone(), VariableValue { value: hjson(&v), sensitive: *sensitive });
            }
        }

        // Validations, now that every value is known.
        for it in &raw.variables {
            for vb in it.node.body.get_blocks("validation") {
                self.check_schema(&vb.body, it.file, "a validation block", &["condition", "error_message"], &[]);
                if !self.require(&vb.body, "condition", it.file, vb.span(), "a validation block")
                    || !self.require(&vb.body, "error_message", it.file, vb.span(), "a validation block")
                {
                    continue;
                }
                let msg = self.get_string(&vb.body, "error_message", it.file, scope, &[Root::Var]).unwrap_or_default();
                if scope.var.get(&it.name).is_some_and(Value::is_null) {
                    continue;
                }
                let cond = vb.body.get_attribute("condition").expect("required");
                let at = self.pos(it.file, cond.value.span());
                match self.eval(&cond.value, it.file, scope, &[Root::Var]) {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        let shown = if decls.get(&it.name).is_some_and(|d| d.2) {
                            "(sensitive value)".to_string()
                        } else {
                            short(scope.var.get(&it.name).unwrap_or(&Value::Null))
                        };
                        self.err(
                            at,
                            "Invalid value for variable",
                            format!("{msg}\n(variable \"{}\" = {shown})", it.name),
                            None,
                        );
                    }
                    Some(other) => self.type_err(at, "condition", "true or false", &other),
                    None => {}
                }
            }
        }
    }

    fn read_var_file(&mut self, path: &Path, decls: &BTreeMap<String, VarDecl>, values: &mut BTreeMap<String, Value>) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.err(None, "Cannot read variables file", format!("{}: {e}", path.display()), None);
                return;
            }
        };
        let id = self.sm.add(path.display().to_string(), text);
        let body = match hcl_edit::parser::parse_body(self.sm.text(id)) {
            Ok(b) => b,
            Err(e) => {
                let (mut p, _) = self.sm.pos(id, 0);
                p.line = e.location().line() as u32;
                p.col = e.location().column() as u32;
                self.err(Some((p, e.line().to_string())), "Syntax error", e.message().to_string(), None);
                return;
            }
        };
        let empty = Scope {
            module_path: vec![],
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            var: Map::new(),
            local: Map::new(),
            storage: Map::new(),
            task: Map::new(),
            module: Map::new(),
            names: Names::default(),
        };
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let k = a.key.as_str();
                    let at = self.pos(id, a.span());
                    if !decls.contains_key(k) {
                        self.warn(
                            at,
                            "Value for undeclared variable",
                            format!("The file sets \"{k}\", which the job does not declare; it is ignored."),
                        );
                        continue;
                    }
                    if let Some(v) = self.eval(&a.value, id, &empty, &[]) {
                        values.insert(k.to_string(), v);
                    }
                }
                Structure::Block(b) => {
                    let at = self.pos(id, b.span());
                    self.err(at, "Unexpected block", "A variables file holds only `name = value` attributes.", None);
                }
            }
        }
    }

    fn eval_locals(&mut self, raw: &RawModule, scope: &mut Scope) {
        let idx: BTreeMap<&str, usize> = raw.locals.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let deps: Vec<Vec<usize>> = raw
            .locals
            .iter()
            .map(|l| {
                refs_of(&l.node.value)
                    .into_iter()
                    .filter(|r| r.root == "local")
                    .filter_map(|r| r.attrs.first().and_then(|a| idx.get(a.as_str()).copied()))
                    .collect()
            })
            .collect();
        // DFS topological order with cycle reporting.
        let mut state = vec![0u8; raw.locals.len()]; // 0 new, 1 on stack, 2 done
        let mut order = Vec::new();
        let mut in_cycle = vec![false; raw.locals.len()];
        fn dfs(
            i: usize,
            deps: &[Vec<usize>],
            state: &mut [u8],
            order: &mut Vec<usize>,
            path: &mut Vec<usize>,
            cycles: &mut Vec<Vec<usize>>,
        ) {
            state[i] = 1;
            path.push(i);
            for &d in &deps[i] {
                if state[d] == 1 {
                    let start = path.iter().position(|&p| p == d).expect("on stack");
                    cycles.push(path[start..].to_vec());
                } else if state[d] == 0 {
                    dfs(d, deps, state, order, path, cycles);
                }
            }
            path.pop();
            state[i] = 2;
            order.push(i);
        }
        let mut cycles = Vec::new();
        for i in 0..raw.locals.len() {
            if state[i] == 0 {
                dfs(i, &deps, &mut state, &mut order, &mut Vec::new(), &mut cycles);
            }
        }
        for c in cycles {
            let names: Vec<String> =
                c.iter().chain(c.first()).map(|&i| format!("local.{}", raw.locals[i].name)).collect();
            let first = &raw.locals[c[0]];
            let at = self.pos(first.file, first.node.span());
            self.err(
                at,
                "Cycle in local values",
                format!("Local values refer to each other in a cycle: {}.", names.join(" → ")),
                None,
            );
            for &i in &c {
                in_cycle[i] = true;
            }
        }
        for i in order {
            let l = &raw.locals[i];
            if in_cycle[i] {
                scope.local.insert(l.name.clone(), Value::Null);
                continue;
            }
            let v = self.eval(&l.node.value, l.file, scope, CONFIG_ROOTS).unwrap_or(Value::Null);
            scope.local.insert(l.name.clone(), v);
        }
    }

    fn eval_root_settings(&mut self, raw: &RawModule, scope: &Scope) {
        // policy
        if raw.policy.len() > 1 {
            for p in &raw.policy[1..] {
                let at = self.pos(p.file, p.node.span());
                self.err(at, "Duplicate block", "Only one `policy` block is allowed in a job.", None);
            }
        }
        let mut policy = Policy::default();
        if let Some(p) = raw.policy.first() {
            let (b, f) = (&p.node.body, p.file);
            policy.pos = self.pos(f, p.node.span()).map(|x| x.0);
            self.check_schema(
                b,
                f,
                "the policy block",
                &["minimize", "deadline", "budget", "regions", "spot", "max_price", "max_cost_drift"],
                &["failover", "fail_if"],
            );
            if let Some(m) = self.get_string(b, "minimize", f, scope, CONFIG_ROOTS) {
                match m.as_str() {
                    "cost" => policy.minimize = Objective::Cost,
                    "time" => policy.minimize = Objective::Time,
                    other => {
                        let at = self.pos(f, b.get_attribute("minimize").and_then(|a| a.value.span()));
                        let hint = did_you_mean(other, ["cost", "time"]).map(|s| format!("did you mean \"{s}\"?"));
                        self.err(
                            at,
                            "Invalid objective",
                            format!("`minimize` must be \"cost\" or \"time\", not \"{other}\"."),
                            hint,
                        );
                    }
                }
            }
            if let Some(d) = self.get_string(b, "deadline", f, scope, CONFIG_ROOTS) {
                match parse_hours(&d) {
                    Ok(h) if h > 0.0 => policy.deadline_hours = Some(h),
                    Ok(_) => {
                        let at = self.pos(f, b.get_attribute("deadline").and_then(|a| a.value.span()));
                        self.err(at, "Invalid deadline", "`deadline` must be longer than zero.", None)
                    }
                    Err(e) => {
                        let at = self.pos(f, b.get_attribute("deadline").and_then(|a| a.value.span()));
                        self.err(at, "Invalid deadline", e, None)
                    }
                }
            }
            if let Some((v, at)) = self.get_number(b, "budget", f, scope, CONFIG_ROOTS) {
                if v <= 0.0 {
                    self.err(at, "Invalid budget", "`budget` must be a positive amount of USD.", None);
                } else {
                    policy.budget = Some(v);
                }
            }
            if let Some((v, at)) = self.get_number(b, "max_price", f, scope, CONFIG_ROOTS) {
                if v <= 0.0 {
                    self.err(at, "Invalid max_price", "`max_price` must be a positive USD per hour.", None);
                } else {
                    policy.max_hourly_price = Some(v);
                }
            }
            if let Some((regions, at)) = self.get_strings(b, "regions", f, scope, CONFIG_ROOTS) {
                for r in &regions {
                    if let Err(e) = check_location_glob(r) {
                        self.err(at.clone(), "Invalid region pattern", e, None);
                    }
                }
                policy.regions = regions;
            }
            if let Some(s) = self.get_bool(b, "spot", f, scope, CONFIG_ROOTS) {
                policy.spot_allowed = s;
            }
            if let Some(d) = self.fraction_attr(b, "max_cost_drift", f, scope) {
                policy.max_cost_drift = d;
            }
            if let Some(fo) = self.single_block(b, "failover", f, "the policy block") {
                self.check_schema(&fo.body, f, "the failover block", &["max_cost_increase", "max_attempts"], &[]);
                if let Some(x) = self.fraction_attr(&fo.body, "max_cost_increase", f, scope) {
                    policy.failover.max_cost_increase = x;
                }
                if let Some((n, at)) = self.get_number(&fo.body, "max_attempts", f, scope, CONFIG_ROOTS) {
                    if n < 1.0 || n.fract() != 0.0 || n > 100.0 {
                        self.err(
                            at,
                            "Invalid max_attempts",
                            "`max_attempts` must be a whole number from 1 to 100.",
                            None,
                        );
                    } else {
                        policy.failover.max_attempts = n as u32;
                    }
                }
            }
            if let Some(fi) = self.single_block(b, "fail_if", f, "the policy block") {
                self.check_schema(&fi.body, f, "the fail_if block", &["total_cost_over", "increase_over"], &[]);
                policy.fail_if.total_cost_over =
                    self.get_number(&fi.body, "total_cost_over", f, scope, CONFIG_ROOTS).map(|x| x.0);
                policy.fail_if.increase_over = self.fraction_attr(&fi.body, "increase_over", f, scope);
            }
        }
        self.out.policy = Some(policy);

        // skyform settings
        let mut settings = Settings::default();
        for (i, s) in raw.settings.iter().enumerate() {
            let (b, f) = (&s.node.body, s.file);
            if i > 0 {
                let at = self.pos(f, s.node.span());
                self.err(at, "Duplicate block", "Only one `skyform` block is allowed in a job.", None);
                continue;
            }
            self.check_schema(
                b,
                f,
                "the skyform block",
                &["name", "state_path", "tracker_path", "catalog"],
                &["backend"],
            );
            self.out.job_name = self.get_string(b, "name", f, scope, CONFIG_ROOTS);
            settings.state_path = self.get_string(b, "state_path", f, scope, CONFIG_ROOTS);
            settings.tracker_path = self.get_string(b, "tracker_path", f, scope, CONFIG_ROOTS);
            settings.catalog_path = self.get_string(b, "catalog", f, scope, CONFIG_ROOTS);
            if let Some(be) = self.single_block(b, "backend", f, "the skyform block") {
                let kind = label(be, 0).unwrap_or("").to_string();
                if !["s3", "local"].contains(&kind.as_str()) {
                    let at = self.pos(f, be.span());
                    self.err(
                        at,
                        "Unsupported backend",
                        format!("Backend \"{kind}\" is not supported; use \"local\" or \"s3\"."),
                        None,
                    );
                } else {
                    let config = self.body_json(&be.body, f, scope);
                    #[cfg(feature = "aws")]
                    if kind == "s3" {
                        if let Err(e) = crate::state::remote::s3::S3BackendConfig::from_json(&config) {
                            let at = self.pos(f, be.span());
                            self.err(at, "Invalid backend configuration", e, None);
                        }
                    }
                    settings.backend = Some(Backend { kind, config });
                }
            }
        }
        self.out.settings = Some(settings);

        // providers
        for p in &raw.providers {
            if !CLOUDS.contains(&p.name.as_str()) {
                let at = self.pos(p.file, p.node.span());
                let hint = did_you_mean(&p.name, CLOUDS.iter().copied()).map(|s| format!("did you mean \"{s}\"?"));
                self.err(
                    at,
                    "Unknown provider",
                    format!("There is no provider named \"{}\". Known: {}.", p.name, CLOUDS.join(", ")),
                    hint,
                );
                continue;
            }
            let body = self.body_json(&p.node.body, p.file, scope);
            if p.name == "local" {
                if let Err(e) = skyform_provider_local::LocalConfig::from_json(&body) {
                    let at = self.pos(p.file, p.node.span());
                    self.err(at, "Invalid provider configuration", e, None);
                }
            }
            #[cfg(feature = "aws")]
            if p.name == "aws" {
                if let Err(e) = skyform_provider_aws::AwsConfig::from_json(&body) {
                    let at = self.pos(p.file, p.node.span());
                    self.err(at, "Invalid provider configuration", e, None);
                }
            }
            self.out.providers.insert(p.name.clone(), body);
        }
    }

    fn fraction_attr(&mut self, b: &Body, key: &str, f: FileId, scope: &Scope) -> Option<f64> {
        let (v, at) = self.attr_value(b, key, f, scope, CONFIG_ROOTS)?;
        let s = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                self.type_err(at, key, "a percentage such as \"25%\"", &other);
                return None;
            }
        };
        match parse_fraction(&s) {
            Ok(x) => Some(x),
            Err(e) => {
                self.err(at, "Invalid percentage", format!("`{key}`: {e}"), None);
                None
            }
        }
    }

    /// A block body as JSON: attributes evaluated, nested blocks as objects (lists when
    /// repeated).
    fn body_json(&mut self, body: &Body, f: FileId, scope: &Scope) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    if let Some(v) = self.eval(&a.value, f, scope, CONFIG_ROOTS) {
                        m.insert(a.key.as_str().to_string(), hjson(&v));
                    }
                }
                Structure::Block(b) => {
                    let v = self.body_json(&b.body, f, scope);
                    let key = b.ident.as_str().to_string();
                    match m.get_mut(&key) {
                        Some(serde_json::Value::Array(a)) => a.push(v),
                        Some(prev) => {
                            let p = prev.take();
                            *prev = serde_json::Value::Array(vec![p, v]);
                        }
                        None => {
                            m.insert(key, v);
                        }
                    }
                }
            }
        }
        serde_json::Value::Object(m)
    }

    fn prefix(scope: &Scope) -> String {
        scope.module_path.iter().map(|m| format!("module.{m}.")).collect()
    }

    fn eval_storage(&mut self, raw: &RawModule, scope: &mut Scope) {
        for s in &raw.storage {
            let (b, f) = (&s.node.body, s.file);
            let ctx = format!("storage \"{}\"", s.name);
            self.check_schema(b, f, &ctx, &["uri", "size_gb", "region"], &[]);
            let address = format!("{}storage.{}", Self::prefix(scope), s.name);
            let mut ok = self.require(b, "uri", f, s.node.span(), &ctx);
            let uri = self.get_string(b, "uri", f, scope, CONFIG_ROOTS).unwrap_or_default();
            if ok {
                if let Err(e) = check_uri(&uri) {
                    let at = self.pos(f, b.get_attribute("uri").and_then(|a| a.value.span()));
                    self.err(
                        at,
                        "Invalid storage URI",
                        e,
                        Some("use s3://, gs://, az://, file:// or local:// URIs".into()),
                    );
                    ok = false;
                }
            }
            let size_gb = self.size_attr(b, "size_gb", f, scope).unwrap_or(0.0);
            let region = self.get_string(b, "region", f, scope, CONFIG_ROOTS);
            let pos = self.pos(f, s.node.span()).map(|x| x.0);
            let mut obj = Map::new();
            obj.insert(REF_MARK.into(), Value::from("storage"));
            obj.insert("address".into(), Value::from(address.clone()));
            obj.insert("uri".into(), Value::from(uri.clone()));
            obj.insert("size_gb".into(), hcl::to_value(size_gb).unwrap_or(Value::Null));
            if let Some(r) = &region {
                obj.insert("region".into(), Value::from(r.clone()));
            }
            scope.storage.insert(s.name.clone(), Value::Object(obj));
            if ok {
                self.out.storage.insert(address.clone(), Storage { address, uri, size_gb, region, pos });
            }
        }
    }

    fn size_attr(&mut self, b: &Body, key: &str, f: FileId, scope: &Scope) -> Option<f64> {
        let (v, at) = self.get_number(b, key, f, scope, CONFIG_ROOTS)?;
        check_size(v).map_err(|e| self.err(at, "Invalid size", format!("`{key}` = {v}: {e}"), None)).ok()
    }

    fn eval_task_outputs(&mut self, raw: &RawModule, scope: &mut Scope) {
        let prefix = Self::prefix(scope);
        for t in &raw.tasks {
            let address = format!("{prefix}task.{}", t.name);
            let mut outs = Map::new();
            if let Some(a) = t.node.body.get_attribute("outputs") {
                let at = self.pos(t.file, a.value.span());
                match self.eval(&a.value, t.file, scope, &[Root::Var, Root::Local, Root::Path, Root::Storage]) {
                    Some(Value::Object(o)) => {
                        for (name, spec) in o {
                            let (size, uri) = match &spec {
                                Value::Object(so) => {
                                    for k in so.keys() {
                                        if k != "size_gb" && k != "uri" {
                                            let hint = did_you_mean(k, ["size_gb", "uri"])
                                                .map(|s| format!("did you mean `{s}`?"));
                                            self.err(at.clone(), "Unsupported attribute", format!("output \"{name}\" of task \"{}\": `{k}` is not expected; an output takes size_gb and uri.", t.name), hint);
                                        }
                                    }
                                    (so.get("size_gb").cloned().unwrap_or(Value::from(0)), so.get("uri").cloned())
                                }
                                other => {
                                    self.type_err(
                                        at.clone(),
                                        &format!("outputs.{name}"),
                                        "an object such as { size_gb = 10 }",
                                        other,
                                    );
                                    continue;
                                }
                            };
                            if !is_env_name(&name) {
                                self.err(at.clone(), "Invalid output name", format!("`{name}` cannot name an output: it becomes SKYFORM_OUTPUT_{}, so use letters, digits and `_`.", name.to_uppercase()), None);
                                continue;
                            }
                            let Some(size) = num_of(&size).or_else(|| size.as_str().and_then(|s| s.parse().ok()))
                            else {
                                self.type_err(at.clone(), &format!("outputs.{name}.size_gb"), "a number", &size);
                                continue;
                            };
                            if let Err(e) = check_size(size) {
                                self.err(
                                    at.clone(),
                                    "Invalid size",
                                    format!("outputs.{name}.size_gb = {size}: {e}"),
                                    None,
                                );
                                continue;
                            }
                            let uri = match uri {
                                None | Some(Value::Null) => None,
                                Some(Value::String(u)) => {
                                    if let Err(e) = check_output_uri(&u) {
                                        self.err(
                                            at.clone(),
                                            "Invalid output URI",
                                            format!("outputs.{name}.uri: {e}"),
                                            None,
                                        );
                                    }
                                    Some(u)
                                }
                                Some(other) => {
                                    self.type_err(at.clone(), &format!("outputs.{name}.uri"), "a string", &other);
                                    None
                                }
                            };
                            let mut m = Map::new();
                            m.insert(REF_MARK.into(), Value::from("task_output"));
                            m.insert("task".into(), Value::from(address.clone()));
                            m.insert("output".into(), Value::from(name.clone()));
                            m.insert("size_gb".into(), hcl::to_value(size).unwrap_or(Value::Null));
                            if let Some(u) = uri {
                                m.insert("uri".into(), Value::from(u));
                            }
                            outs.insert(name, Value::Object(m));
                        }
                    }
                    Some(other) => self.type_err(
                        at,
                        "outputs",
                        "an object of outputs, such as { model = { size_gb = 2 } }",
                        &other,
                    ),
                    None => {}
                }
            }
            let mut obj = Map::new();
            obj.insert("outputs".into(), Value::Object(outs));
            obj.insert("address".into(), Value::from(address));
            scope.task.insert(t.name.clone(), Value::Object(obj));
        }
    }

    fn eval_modules(&mut self, raw: &RawModule, scope: &mut Scope) {
        // Order modules by their references to each other.
        let names: BTreeMap<&str, usize> = raw.modules.iter().enumerate().map(|(i, m)| (m.name.as_str(), i)).collect();
        let deps: Vec<BTreeSet<usize>> = raw
            .modules
            .iter()
            .map(|m| {
                m.node
                    .body
                    .attributes()
                    .flat_map(|a| refs_of(&a.value))
                    .filter(|r| r.root == "module")
                    .filter_map(|r| r.attrs.first().and_then(|n| names.get(n.as_str()).copied()))
                    .collect()
            })
            .collect();
        let mut done = vec![false; raw.modules.len()];
        let mut progress = true;
        while progress {
            progress = false;
            for i in 0..raw.modules.len() {
                if done[i] || !deps[i].iter().all(|&d| done[d] || d == i) {
                    continue;
                }
                done[i] = true;
                progress = true;
                let m = &raw.modules[i];
                if deps[i].contains(&i) {
                    let at = self.pos(m.file, m.node.span());
                    self.err(
                        at,
                        "Module refers to itself",
                        format!("module \"{}\" uses its own outputs as inputs.", m.name),
                        None,
                    );
                    continue;
                }
                self.eval_module_call(m, scope);
            }
        }
        for i in 0..raw.modules.len() {
            if !done[i] {
                let m = &raw.modules[i];
                let at = self.pos(m.file, m.node.span());
                let cycle: Vec<String> = (0..raw.modules.len())
                    .filter(|&j| !done[j])
                    .map(|j| format!("module.{}", raw.modules[j].name))
                    .collect();
                self.err(
                    at,
                    "Cycle between modules",
                    format!("These modules use each other's outputs: {}.", cycle.join(", ")),
                    None,
                );
            }
        }
    }

    fn eval_module_call(&mut self, m: &Item<Block>, scope: &mut Scope) {
        let (b, f) = (&m.node.body, m.file);
        let block_at = self.pos(f, m.node.span());
        if !self.require(b, "source", f, m.node.span(), &format!("module \"{}\"", m.name)) {
            return;
        }
        let src_attr = b.get_attribute("source").expect("required");
        let src_at = self.pos(f, src_attr.value.span());
        let Some(source) = self.get_string(b, "source", f, scope, CONFIG_ROOTS) else {
            return;
        };
        if !(source.starts_with("./") || source.starts_with("../") || source.starts_with('/')) {
            self.err(
                src_at,
                "Unsupported module source",
                format!("`{source}` is not a local path; module sources must start with ./, ../ or /."),
                None,
            );
            return;
        }
        let dir = scope.dir.join(&source);
        if !dir.is_dir() {
            self.err(
                src_at,
                "Module source not found",
                format!("The module directory `{source}` does not exist (relative to the file that calls it)."),
                None,
            );
            return;
        }
        for blk in b.blocks() {
            let at = self.pos(f, blk.span());
            self.err(
                at,
                "Unexpected block",
                "A module block takes only attributes: `source` and the module's variables.",
                None,
            );
        }
        let mut values = BTreeMap::new();
        for a in b.attributes() {
            let k = a.key.as_str();
            if k == "source" {
                continue;
            }
            let at = self.pos(f, a.span());
            if let Some(v) = self.eval(&a.value, f, scope, BODY_ROOTS) {
                values.insert(k.to_string(), (v, at));
            }
        }
        let display = {
            let parent = self.sm.display(f);
            let parent_dir = Path::new(parent).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let joined = if parent_dir.is_empty() { source.clone() } else { format!("{parent_dir}/{source}") };
            joined.trim_start_matches("./").trim_end_matches('/').to_string()
        };
        let mut path = scope.module_path.clone();
        path.push(m.name.clone());
        if let Some(r) = self.load_module(
            &dir,
            &display,
            &path,
            ModuleInputs::Module { values, block_pos: block_at.clone() },
            src_at,
        ) {
            scope.module.insert(m.name.clone(), Value::Object(r.outputs));
        } else {
            scope.module.insert(m.name.clone(), Value::Object(Map::new()));
        }
    }

    fn eval_tasks(&mut self, raw: &RawModule, scope: &Scope) {
        let prefix = Self::prefix(scope);
        for t in &raw.tasks {
            let (b, f) = (&t.node.body, t.file);
            let ctx = format!("task \"{}\"", t.name);
            self.check_schema(
                b,
                f,
                &ctx,
                &["inputs", "outputs", "depends_on", "setup", "run", "env", "workdir", "retries", "recovery"],
                &["resources", "estimate"],
            );
            let address = TaskAddr(format!("{prefix}task.{}", t.name));
            let pos = self.pos(f, t.node.span()).map(|x| x.0);
            self.require(b, "run", f, t.node.span(), &ctx);
            let run = self.get_string(b, "run", f, scope, BODY_ROOTS).unwrap_or_default();
            let setup = self.get_string(b, "setup", f, scope, BODY_ROOTS);
            let workdir = self.get_string(b, "workdir", f, scope, BODY_ROOTS);
            let resources = match self.single_block(b, "resources", f, &ctx) {
                Some(rb) => self.eval_resources(rb, f, scope, &t.name),
                None => Resources { num_nodes: 1, ..Default::default() },
            };
            // env
            let mut env = BTreeMap::new();
            if let Some((v, at)) = self.attr_value(b, "env", f, scope, BODY_ROOTS) {
                match v {
                    Value::Object(o) => {
                        for (k, v) in o {
                            if !is_env_name(&k) {
                                self.err(
                                    at.clone(),
                                    "Invalid environment variable name",
                                    format!("`{k}` is not a valid environment variable name."),
                                    None,
                                );
                                continue;
                            }
                            match v {
                                Value::String(s) => {
                                    env.insert(k, s);
                                }
                                Value::Number(n) => {
                                    env.insert(k, n.to_string());
                                }
                                Value::Bool(x) => {
                                    env.insert(k, x.to_string());
                                }
                                other => self.type_err(at.clone(), &format!("env.{k}"), "a string", &other),
                            }
                        }
                    }
                    other => self.type_err(at, "env", "a map of strings", &other),
                }
            }
            // inputs
            let mut inputs = BTreeMap::new();
            if let Some((v, at)) = self.attr_value(b, "inputs", f, scope, BODY_ROOTS) {
                match v {
                    Value::Object(o) => {
                        for (k, v) in o {
                            if !is_env_name(&k) {
                                self.err(at.clone(), "Invalid input name", format!("`{k}` cannot name an input: it becomes SKYFORM_INPUT_{}, so use letters, digits and `_`.", k.to_uppercase()), None);
                                continue;
                            }
                            match input_source(&v) {
                                Some(src) => {
                                    inputs.insert(k, src);
                                }
                                None => self.err(
                                    at.clone(),
                                    "Invalid input",
                                    format!("inputs.{k} must reference a storage block (storage.NAME) or another task's output (task.NAME.outputs.OUT); got {} `{}`.", type_name(&v), short(&v)),
                                    None,
                                ),
                            }
                        }
                    }
                    other => {
                        self.type_err(at, "inputs", "an object mapping input names to storage or task outputs", &other)
                    }
                }
            }
            let mut uppers: BTreeMap<String, String> = BTreeMap::new();
            for k in inputs.keys() {
                if let Some(prev) = uppers.insert(k.to_uppercase(), k.clone()) {
                    let at = self.pos(f, b.get_attribute("inputs").and_then(|a| a.span()));
                    self.err(
                        at,
                        "Conflicting input names",
                        format!("inputs `{prev}` and `{k}` both become SKYFORM_INPUT_{}.", k.to_uppercase()),
                        None,
                    );
                }
            }
            // outputs (already evaluated for references)
            let mut outputs = BTreeMap::new();
            if let Some(Value::Object(o)) =
                scope.task.get(&t.name).and_then(|v| v.as_object()).and_then(|o| o.get("outputs"))
            {
                for (k, v) in o {
                    let m = v.as_object().expect("marker");
                    outputs.insert(
                        k.clone(),
                        OutputSpec {
                            size_gb: m.get("size_gb").and_then(num_of).unwrap_or(0.0),
                            uri: m.get("uri").and_then(|u| u.as_str()).map(str::to_string),
                        },
                    );
                }
            }
            // depends_on: static references.
            let mut depends_on = Vec::new();
            if let Some(a) = b.get_attribute("depends_on") {
                let at = self.pos(f, a.value.span());
                match &a.value {
                    EExpr::Array(arr) => {
                        for e in arr.iter() {
                            let eat = self.pos(f, e.span()).or(at.clone());
                            let refs = refs_of(e);
                            let r = refs.first().filter(|_| matches!(e, EExpr::Traversal(_)));
                            match r.map(|r| (r.root.as_str(), r.attrs.as_slice())) {
                                Some(("task", [name])) => {
                                    if self.check_refs(e, f, scope, &[Root::Task]) {
                                        depends_on.push(TaskAddr(format!("{prefix}task.{name}")));
                                    }
                                }
                                Some(("module", [name])) => {
                                    if self.check_refs(e, f, scope, &[Root::Module]) {
                                        let mp = format!("{prefix}module.{name}.");
                                        let found: Vec<TaskAddr> =
                                            self.out.tasks.keys().filter(|k| k.0.starts_with(&mp)).cloned().collect();
                                        depends_on.extend(found);
                                    }
                                }
                                _ => self.err(
                                    eat,
                                    "Invalid depends_on",
                                    "Each element of depends_on must be a reference such as task.prep or module.train.",
                                    None,
                                ),
                            }
                        }
                    }
                    _ => self.err(
                        at,
                        "Invalid depends_on",
                        "depends_on must be a list of references such as [task.prep].",
                        None,
                    ),
                }
            }
            // retries, recovery
            let retries = match self.get_number(b, "retries", f, scope, BODY_ROOTS) {
                Some((n, at)) if n < 0.0 || n.fract() != 0.0 || n > 100.0 => {
                    self.err(at, "Invalid retries", "`retries` must be a whole number from 0 to 100.", None);
                    0
                }
                Some((n, _)) => n as u32,
                None => 0,
            };
            let recovery = match self.get_string(b, "recovery", f, scope, BODY_ROOTS) {
                None => Recovery::default(),
                Some(r) => {
                    match r.as_str() {
                        "same_zone" => Recovery::SameZone,
                        "next_zone" => Recovery::NextZone,
                        "next_region" => Recovery::NextRegion,
                        other => {
                            let at = self.pos(f, b.get_attribute("recovery").and_then(|a| a.value.span()));
                            let hint = did_you_mean(other, ["same_zone", "next_zone", "next_region"])
                                .map(|s| format!("did you mean \"{s}\"?"));
                            self.err(at, "Invalid recovery", format!("`recovery` must be \"same_zone\", \"next_zone\" or \"next_region\", not \"{other}\"."), hint);
                            Recovery::default()
                        }
                    }
                }
            };
            // estimate
            let estimate = match self.single_block(b, "estimate", f, &ctx) {
                None => None,
                Some(eb) => {
                    self.check_schema(&eb.body, f, "the estimate block", &["hours"], &[]);
                    match eb.body.get_attribute("hours") {
                        None => {
                            let at = self.pos(f, eb.span());
                            self.err(
                                at,
                                "Missing required attribute",
                                "The estimate block needs `hours = EXPR`.",
                                None,
                            );
                            None
                        }
                        Some(h) => {
                            if self.check_refs(&h.value, f, scope, ESTIMATE_ROOTS) {
                                let span = h.value.span().unwrap_or(0..0);
                                let source = self.sm.slice(f, span).to_string();
                                let mut sc = serde_json::Map::new();
                                sc.insert("var".into(), hjson(&Value::Object(scope.var.clone())));
                                sc.insert("local".into(), hjson(&Value::Object(scope.local.clone())));
                                Some(Estimate {
                                    source,
                                    scope: serde_json::Value::Object(sc),
                                    pos: self.pos(f, h.value.span()).map(|x| x.0),
                                })
                            } else {
                                None
                            }
                        }
                    }
                }
            };
            let mut task = Task {
                address: address.clone(),
                resources,
                inputs,
                outputs,
                depends_on,
                setup,
                run,
                env,
                workdir,
                estimate,
                retries,
                recovery,
                spec_hash: String::new(),
                pos,
            };
            task.spec_hash = spec_hash(&task);
            self.out.tasks.insert(address, task);
        }
    }

    fn eval_resources(&mut self, rb: &Block, f: FileId, scope: &Scope, task: &str) -> Resources {
        let b = &rb.body;
        self.check_schema(
            b,
            f,
            &format!("the resources of task \"{task}\""),
            &[
                "cpus",
                "memory",
                "accelerators",
                "ordered",
                "instance_type",
                "spot",
                "disk_gb",
                "cloud",
                "region",
                "zone",
                "num_nodes",
            ],
            &[],
        );
        let mut r = Resources { num_nodes: 1, ..Default::default() };
        for (key, slot) in [("cpus", 0), ("memory", 1)] {
            if let Some(s) = self.get_string(b, key, f, scope, BODY_ROOTS) {
                let at = self.pos(f, b.get_attribute(key).and_then(|a| a.value.span()));
                match Quantity::parse(&s) {
                    Ok(q) if (slot == 0 && q.value > 1024.0) || (slot == 1 && q.value > 65536.0) => self.err(
                        at,
                        "Absurd resource request",
                        format!("`{key}` = \"{s}\" is larger than any machine offers."),
                        None,
                    ),
                    Ok(q) => {
                        if slot == 0 {
                            r.cpus = Some(q)
                        } else {
                            r.memory_gb = Some(q)
                        }
                    }
                    Err(e) => self.err(at, &format!("Invalid {key} specification"), e, None),
                }
            }
        }
        let has_acc = b.has_attribute("accelerators");
        let has_ord = b.has_attribute("ordered");
        if has_acc && has_ord {
            let at = self.pos(f, b.get_attribute("ordered").and_then(|a| a.span()));
            self.err(
                at,
                "Conflicting attributes",
                "Use either `accelerators` (any of) or `ordered` (in preference order), not both.",
                None,
            );
        }
        for key in ["accelerators", "ordered"] {
            if let Some((list, at)) = self.get_strings(b, key, f, scope, BODY_ROOTS) {
                if list.is_empty() {
                    self.err(
                        at.clone(),
                        "Invalid accelerator specification",
                        format!("`{key}` must name at least one accelerator."),
                        None,
                    );
                }
                for s in list {
                    match Accel::parse(&s) {
                        Ok(a) => r.accelerators.push(a),
                        Err(e) => self.err(
                            at.clone(),
                            "Invalid accelerator specification",
                            e,
                            Some("write NAME:COUNT, as in \"V100:8\"".into()),
                        ),
                    }
                }
                r.ordered = key == "ordered";
            }
        }
        r.instance_type = self.get_string(b, "instance_type", f, scope, BODY_ROOTS);
        if let Some((v, at)) = self.attr_value(b, "spot", f, scope, BODY_ROOTS) {
            r.spot = match v {
                Value::Bool(true) => SpotPref::Spot,
                Value::Bool(false) => SpotPref::OnDemand,
                Value::String(s) if s == "either" || s == "any" => SpotPref::Either,
                other => {
                    self.type_err(at, "spot", "true, false or \"either\"", &other);
                    SpotPref::OnDemand
                }
            };
        }
        if let Some((d, at)) = self.get_number(b, "disk_gb", f, scope, BODY_ROOTS) {
            match check_size(d) {
                Ok(d) => r.disk_gb = Some(d),
                Err(e) => self.err(at, "Invalid size", format!("`disk_gb` = {d}: {e}"), None),
            }
        }
        if let Some(c) = self.get_string(b, "cloud", f, scope, BODY_ROOTS) {
            if CLOUDS.contains(&c.as_str()) {
                r.cloud = Some(c);
            } else {
                let at = self.pos(f, b.get_attribute("cloud").and_then(|a| a.value.span()));
                let hint = did_you_mean(&c, CLOUDS.iter().copied()).map(|s| format!("did you mean \"{s}\"?"));
                self.err(
                    at,
                    "Unknown cloud",
                    format!("`{c}` is not a cloud skyform knows ({}).", CLOUDS.join(", ")),
                    hint,
                );
            }
        }
        r.region = self.get_string(b, "region", f, scope, BODY_ROOTS);
        r.zone = self.get_string(b, "zone", f, scope, BODY_ROOTS);
        if let Some((n, at)) = self.get_number(b, "num_nodes", f, scope, BODY_ROOTS) {
            if n < 1.0 || n.fract() != 0.0 || n > 1000.0 {
                self.err(at, "Invalid num_nodes", "`num_nodes` must be a whole number from 1 to 1000.", None);
            } else {
                r.num_nodes = n as u32;
            }
        }
        r
    }

    fn eval_outputs(&mut self, raw: &RawModule, scope: &Scope, is_root: bool) -> ModuleResult {
        let mut outputs = Map::new();
        let mut outputs_root = BTreeMap::new();
        for o in &raw.outputs {
            let (b, f) = (&o.node.body, o.file);
            let ctx = format!("output \"{}\"", o.name);
            self.check_schema(b, f, &ctx, &["value", "description", "sensitive"], &[]);
            if !self.require(b, "value", f, o.node.span(), &ctx) {
                continue;
            }
            let Some((v, _)) = self.attr_value(b, "value", f, scope, BODY_ROOTS) else {
                continue;
            };
            let description = self.get_string(b, "description", f, scope, CONFIG_ROOTS);
            let sensitive = self.get_bool(b, "sensitive", f, scope, CONFIG_ROOTS).unwrap_or(false);
            if is_root {
                outputs_root.insert(
                    o.name.clone(),
                    OutputValue {
                        value: user_json(&v),
                        description,
                        sensitive,
                        pos: self.pos(f, o.node.span()).map(|x| x.0),
                    },
                );
            }
            outputs.insert(o.name.clone(), v);
        }
        ModuleResult { outputs, outputs_root }
    }

    // ---------------------------------------------------------------- DAG

    fn check_dag(&mut self, spec: &mut JobSpec) {
        let mut edges = Vec::new();
        for t in spec.tasks.values() {
            for (name, i) in &t.inputs {
                if let InputSource::TaskOutput { task, output, size_gb } = i {
                    if !spec.tasks.contains_key(task) {
                        self.err(
                            t.pos.clone().map(|p| (p, String::new())),
                            "Undefined task",
                            format!("input `{name}` of {} reads {task}, which does not exist.", t.address),
                            None,
                        );
                        continue;
                    }
                    edges.push(Edge {
                        from: task.clone(),
                        to: t.address.clone(),
                        size_gb: *size_gb,
                        output: Some(output.clone()),
                    });
                }
            }
            for d in &t.depends_on {
                if d == &t.address {
                    self.err(
                        t.pos.clone().map(|p| (p, String::new())),
                        "Task depends on itself",
                        format!("{} lists itself in depends_on.", t.address),
                        None,
                    );
                    continue;
                }
                if !edges.iter().any(|e: &Edge| &e.from == d && e.to == t.address) {
                    edges.push(Edge { from: d.clone(), to: t.address.clone(), size_gb: 0.0, output: None });
                }
            }
        }
        // Cycle detection (iterative DFS in address order).
        let mut down: BTreeMap<&TaskAddr, Vec<&TaskAddr>> = BTreeMap::new();
        for e in &edges {
            if e.from != e.to {
                down.entry(&e.from).or_default().push(&e.to);
            }
        }
        let mut color: BTreeMap<&TaskAddr, u8> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        for start in spec.tasks.keys() {
            if color.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut stack: Vec<(&TaskAddr, usize)> = vec![(start, 0)];
            color.insert(start, 1);
            while let Some((node, i)) = stack.pop() {
                let kids = down.get(node).map(Vec::as_slice).unwrap_or(&[]);
                if i < kids.len() {
                    stack.push((node, i + 1));
                    let k = kids[i];
                    match color.get(k).copied().unwrap_or(0) {
                        0 => {
                            color.insert(k, 1);
                            stack.push((k, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|(n, _)| *n == k).unwrap_or(0);
                            let mut cyc: Vec<String> = stack[pos..].iter().map(|(n, _)| n.to_string()).collect();
                            cyc.push(k.to_string());
                            let key = {
                                let mut s = cyc.clone();
                                s.sort();
                                s.join(",")
                            };
                            if reported.insert(key) {
                                let at = spec.tasks.get(k).and_then(|t| t.pos.clone()).map(|p| (p, String::new()));
                                self.err(
                                    at,
                                    "Dependency cycle",
                                    format!("Tasks wait for each other in a cycle: {}.", cyc.join(" → ")),
                                    Some("remove one of the inputs or depends_on entries that close the cycle".into()),
                                );
                            }
                        }
                        _ => {}
                    }
                } else {
                    color.insert(node, 2);
                }
            }
        }
        spec.edges = edges;
    }
}

fn input_source(v: &Value) -> Option<InputSource> {
    let o = v.as_object()?;
    match o.get(REF_MARK)?.as_str()? {
        "storage" => Some(InputSource::Storage {
            address: o.get("address")?.as_str()?.to_string(),
            uri: o.get("uri")?.as_str()?.to_string(),
            size_gb: o.get("size_gb").and_then(num_of).unwrap_or(0.0),
            region: o.get("region").and_then(Value::as_str).map(str::to_string),
        }),
        "task_output" => Some(InputSource::TaskOutput {
            task: TaskAddr(o.get("task")?.as_str()?.to_string()),
            output: o.get("output")?.as_str()?.to_string(),
            size_gb: o.get("size_gb").and_then(num_of).unwrap_or(0.0),
        }),
        _ => None,
    }
}

/// A value for display to the user: references become their addresses.
fn user_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Object(o) => match o.get(REF_MARK).and_then(Value::as_str) {
            Some("storage") => {
                serde_json::json!({"storage": hjson(o.get("address").unwrap_or(&Value::Null)), "uri": hjson(o.get("uri").unwrap_or(&Value::Null))})
            }
            Some("task_output") => {
                let task = o.get("task").and_then(Value::as_str).unwrap_or("");
                let out = o.get("output").and_then(Value::as_str).unwrap_or("");
                let mut m = serde_json::json!({"task_output": format!("{task}.outputs.{out}"), "size_gb": hjson(o.get("size_gb").unwrap_or(&Value::Null))});
                if let Some(u) = o.get("uri") {
                    m["uri"] = hjson(u);
                }
                m
            }
            _ => serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), user_json(v))).collect()),
        },
        Value::Array(a) => serde_json::Value::Array(a.iter().map(user_json).collect()),
        other => hjson(other),
    }
}

fn short(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn check_size(v: f64) -> Result<f64, String> {
    if !v.is_finite() || v < 0.0 {
        Err("a size cannot be negative".into())
    } else if v > MAX_SIZE_GB {
        Err(format!("larger than {MAX_SIZE_GB} GB (1 PB); sizes are in GB"))
    } else {
        Ok(v)
    }
}

/// Validates a storage URI (object-store schemes only).
pub fn check_uri(uri: &str) -> Result<(), String> {
    const SCHEMES: &[&str] = &["s3", "gs", "az", "file", "local"];
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!("`{uri}` has no scheme; expected one of {}://", SCHEMES.join("://, ")));
    };
    if !SCHEMES.contains(&scheme) {
        return Err(format!("`{scheme}://` is not a supported scheme; expected one of {}://", SCHEMES.join("://, ")));
    }
    if rest.is_empty() || (scheme != "file" && rest.starts_with('/')) {
        return Err(format!("`{uri}` names no bucket or path"));
    }
    Ok(())
}

fn check_output_uri(uri: &str) -> Result<(), String> {
    if uri.contains("://") {
        check_uri(uri)
    } else if uri.is_empty() {
        Err("an empty path".into())
    } else {
        Ok(())
    }
}

/// Validates a location glob: `cloud`, `cloud:region` or `cloud:region:zone`, with `*`.
pub fn check_location_glob(g: &str) -> Result<(), String> {
    let parts: Vec<&str> = g.split(':').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "`{g}` is not a location pattern; expected CLOUD, CLOUD:REGION or CLOUD:REGION:ZONE, as in \"aws:us-*\""
        ));
    }
    let cloud = parts[0];
    if !cloud.contains('*') && !CLOUDS.contains(&cloud) {
        let hint =
            did_you_mean(cloud, CLOUDS.iter().copied()).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        return Err(format!("`{g}`: unknown cloud `{cloud}`{hint}"));
    }
    for p in &parts {
        globset::Glob::new(p).map_err(|e| format!("`{g}`: {e}"))?;
    }
    Ok(())
}

fn spec_hash(t: &Task) -> String {
    let v = serde_json::json!({
        "resources": t.resources,
        "inputs": t.inputs,
        "outputs": t.outputs,
        "setup": t.setup,
        "run": t.run,
        "env": t.env,
        "workdir": t.workdir,
        "estimate": t.estimate.as_ref().map(|e| (&e.source, &e.scope)),
    });
    let s = serde_json::to_string(&v).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
