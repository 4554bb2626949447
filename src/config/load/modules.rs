//! Modules: loading a module directory, evaluating it in its own scope with the caller's inputs,
//! module calls in dependency order, and outputs.

use super::*;

impl Loader {
    pub(super) fn load_module(
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

    pub(super) fn eval_module(
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
        // A provider block naming its plugin (`plugin = "path"`) makes its name a cloud of
        // this job: tasks' `cloud` and the policy's `regions` may use it.
        if !self.clouds.is_empty() {
            for p in &raw.providers {
                if p.node.body.get_attribute("plugin").is_some() && !self.clouds.contains(&p.name) {
                    self.clouds.push(p.name.clone());
                }
            }
        }
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

    pub(super) fn prefix(scope: &Scope) -> String {
        scope.module_path.iter().map(|m| format!("module.{m}.")).collect()
    }

    pub(super) fn eval_modules(&mut self, raw: &RawModule, scope: &mut Scope) {
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

    pub(super) fn eval_module_call(&mut self, m: &Item<Block>, scope: &mut Scope) {
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

    pub(super) fn eval_outputs(&mut self, raw: &RawModule, scope: &Scope, is_root: bool) -> ModuleResult {
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
            if is_root && !sensitive {
                let secrets: Vec<String> = {
                    let mut j = JobSpec::empty("");
                    j.variables = self.out.variables.clone();
                    j.sensitive_values()
                };
                let shown = user_json(&v).to_string();
                if secrets.iter().any(|x| shown.contains(x.as_str())) {
                    let at = self.pos(f, b.get_attribute("value").and_then(|a| a.value.span()));
                    self.err(
                        at,
                        "Output refers to sensitive values",
                        format!(
                            "Output \"{}\" would show the value of a sensitive variable. skyform does not print sensitive values.",
                            o.name
                        ),
                        Some("mark the output as sensitive: sensitive = true".into()),
                    );
                }
            }
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
}
