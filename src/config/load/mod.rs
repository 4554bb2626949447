//! HCL → [`JobSpec`]: parse every `*.sky.hcl` file of a directory with hcl-edit (spans and
//! comments), check every reference, evaluate with `hcl::eval` against a context, and
//! build the typed, validated job with its task DAG.
//!
//! Order inside a module: variables → locals (dependency order) → storage → task outputs →
//! modules (dependency order) → task bodies → outputs. All problems are collected (the
//! loader goes on after an error wherever it can) and returned together.
//!
//! The loader is one [`Loader`] whose methods live in a file per step, in that order:
//! `parse` (files → raw blocks), `eval` (references, the evaluation scope, typed
//! attributes), `variables` (variables and locals), `settings` (policy, skyform,
//! provider blocks), `modules` (module calls, outputs), `tasks` (storage, tasks,
//! resources), `dag` (edges and cycles). This file holds the entry point, the shared
//! types and the small helpers.
//!
//! I/O: reads the job's files, module directories, var files and `file()` arguments.

mod dag;
mod eval;
mod modules;
mod parse;
mod settings;
mod tasks;
mod variables;

use super::diag::{did_you_mean, Diagnostic, Diagnostics, FileId, Pos, SourceMap};
use super::functions::{self, BaseDirGuard};
use super::spec::*;
use super::vars::{self, VarArg, VarType};
use hcl::eval::Context;
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
    /// The cloud names a job may use (the provider registry's); empty: any name is
    /// accepted here and left to later checks.
    pub clouds: Vec<String>,
}

/// A loaded job: the spec, warnings, the source texts and where the provider and backend
/// blocks are (for diagnostics found later, e.g. by the provider registry).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: JobSpec,
    pub warnings: Diagnostics,
    pub sources: SourceMap,
    pub positions: Positions,
}

/// Where a block and its attributes are in the source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockPos {
    pub block: Pos,
    /// Attribute name (nested: `faults.capacity_zones`) → position.
    pub attributes: BTreeMap<String, Pos>,
}

impl BlockPos {
    /// The position of `attribute` when it is written, else of the block.
    pub fn of(&self, attribute: Option<&str>) -> Pos {
        attribute.and_then(|a| self.attributes.get(a)).unwrap_or(&self.block).clone()
    }
}

/// Positions of the blocks that other parts of skyform check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Positions {
    /// `provider "NAME"` blocks by name.
    pub providers: BTreeMap<String, BlockPos>,
    /// The `skyform { backend "KIND" { } }` block.
    pub backend: Option<BlockPos>,
}

/// Where a diagnostic points: a position and its source line.
type At = Option<(Pos, String)>;
/// A declared variable: type, default, sensitive, file and span.
type VarDecl = (VarType, Option<Value>, bool, FileId, Option<std::ops::Range<usize>>);

/// Attributes `resource.*` offers to an estimate expression.
pub const RESOURCE_ATTRS: &[&str] =
    &["cloud", "region", "zone", "instance_type", "vcpus", "memory_gb", "accelerator", "accelerator_count", "spot"];
const REF_MARK: &str = "__skyform_ref";
const MAX_SIZE_GB: f64 = 1_000_000.0;

/// Loads the job in `dir`.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    let mut l = Loader {
        sm: SourceMap::default(),
        diags: Diagnostics::default(),
        out: Out::default(),
        clouds: opts.clouds.clone(),
        stack: Vec::new(),
        refs: BTreeMap::new(),
    };
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
    Ok(Loaded { spec, warnings: diags, sources: l.sm, positions: std::mem::take(&mut l.out.positions) })
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
    positions: Positions,
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
    /// Known cloud names (empty: all accepted).
    clouds: Vec<String>,
    /// Canonical module directories being loaded (cycle detection).
    stack: Vec<PathBuf>,
    /// (task, task it waits for) → where the reference is written (an input's
    /// `task.X.outputs.Y` or a `depends_on` entry): cycle diagnostics point there.
    refs: BTreeMap<(TaskAddr, TaskAddr), (Pos, String)>,
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

/// Validates a location glob: `cloud`, `cloud:region` or `cloud:region:zone`, with `*`;
/// the cloud must be one of `clouds` (when not empty).
pub fn check_location_glob(g: &str, clouds: &[String]) -> Result<(), String> {
    let parts: Vec<&str> = g.split(':').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "`{g}` is not a location pattern; expected CLOUD, CLOUD:REGION or CLOUD:REGION:ZONE, as in \"aws:us-*\""
        ));
    }
    let cloud = parts[0];
    if !cloud.contains('*') && !clouds.is_empty() && !clouds.iter().any(|c| c == cloud) {
        let hint = did_you_mean(cloud, clouds.iter().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
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
