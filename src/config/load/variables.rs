//! Variables (declarations, defaults, `SKYFORM_VAR_*`, `*.auto.skyvars`, `-var`/`-var-file`, types,
//! validations, sensitivity) and locals (in dependency order, cycles named).

use super::*;

impl Loader {
    pub(super) fn eval_variables(&mut self, raw: &RawModule, scope: &mut Scope, inputs: ModuleInputs<'_>) {
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

    pub(super) fn read_var_file(
        &mut self,
        path: &Path,
        decls: &BTreeMap<String, VarDecl>,
        values: &mut BTreeMap<String, Value>,
    ) {
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

    pub(super) fn eval_locals(&mut self, raw: &RawModule, scope: &mut Scope) {
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
}
