//! References and evaluation: check every reference of an expression against what the scope
//! declares (with did-you-mean hints), build the `hcl::eval` context of a scope, and read typed
//! attributes.

use super::*;

impl Loader {
    /// Checks every reference in `expr` against the scope; returns false when any is bad
    /// (the expression is then not evaluated, so each problem is reported once).
    pub(super) fn check_refs(&mut self, expr: &EExpr, file: FileId, scope: &Scope, allowed: &[Root]) -> bool {
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
    pub(super) fn context<'a>(&self, scope: &'a Scope, expr: &EExpr) -> Context<'a> {
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
    pub(super) fn eval(&mut self, expr: &EExpr, file: FileId, scope: &Scope, allowed: &[Root]) -> Option<Value> {
        if !self.check_refs(expr, file, scope, allowed) {
            return None;
        }
        let hexpr: hcl::Expression = expr.clone().into();
        let _g = BaseDirGuard::set(scope.dir.clone());
        let ctx = self.context(scope, expr);
        match functions::evaluate(&hexpr, &ctx) {
            Ok(v) => Some(v),
            Err(functions::EvalError::NotFinite) => {
                let at = self.pos(file, expr.span());
                self.err(at, "Invalid arithmetic", functions::EvalError::NotFinite.to_string(), None);
                None
            }
            Err(functions::EvalError::Hcl(e)) => {
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

    pub(super) fn attr_value(
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

    pub(super) fn type_err(&mut self, at: Option<(Pos, String)>, key: &str, want: &str, got: &Value) {
        self.err(
            at,
            "Incorrect attribute value type",
            format!("`{key}` must be {want}; got {} `{}`.", type_name(got), short(got)),
            None,
        );
    }

    pub(super) fn get_string(
        &mut self,
        body: &Body,
        key: &str,
        file: FileId,
        scope: &Scope,
        allowed: &[Root],
    ) -> Option<String> {
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

    pub(super) fn get_number(
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

    pub(super) fn get_bool(
        &mut self,
        body: &Body,
        key: &str,
        file: FileId,
        scope: &Scope,
        allowed: &[Root],
    ) -> Option<bool> {
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

    pub(super) fn get_strings(
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

    pub(super) fn require(
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

    pub(super) fn single_block<'b>(
        &mut self,
        body: &'b Body,
        ident: &'b str,
        file: FileId,
        ctx: &str,
    ) -> Option<&'b Block> {
        let mut it = body.get_blocks(ident);
        let first = it.next();
        for extra in it {
            let at = self.pos(file, extra.span());
            self.err(at, "Duplicate block", format!("Only one `{ident}` block is allowed in {ctx}."), None);
        }
        first
    }

    // ---------------------------------------------------------------- modules
}
