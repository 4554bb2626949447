//! Storage, task outputs, task bodies (resources, inputs, run, estimate, retries, recovery) and the
//! checks of sizes, URIs and location patterns.

use super::*;

impl Loader {
    pub(super) fn eval_storage(&mut self, raw: &RawModule, scope: &mut Scope) {
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

    /// A duration attribute such as `every = "30m"`, in hours (positive, or also zero
    /// unless `positive`); a diagnostic at the attribute otherwise.
    pub(super) fn duration_attr(
        &mut self,
        b: &Body,
        key: &str,
        f: FileId,
        scope: &Scope,
        positive: bool,
    ) -> Option<f64> {
        let e = self.get_string(b, key, f, scope, BODY_ROOTS)?;
        match crate::config::spec::parse_hours(&e) {
            Ok(h) if h > 0.0 || (!positive && h == 0.0) => Some(h),
            Ok(_) | Err(_) => {
                let at = self.pos(f, b.get_attribute(key).and_then(|a| a.value.span()));
                let what = if positive { "a positive" } else { "a" };
                self.err(
                    at,
                    &format!("Invalid {key}"),
                    format!("`{key}` = \"{e}\" must be {what} duration such as \"30m\" or \"1h\"."),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn size_attr(&mut self, b: &Body, key: &str, f: FileId, scope: &Scope) -> Option<f64> {
        let (v, at) = self.get_number(b, key, f, scope, CONFIG_ROOTS)?;
        check_size(v).map_err(|e| self.err(at, "Invalid size", format!("`{key}` = {v}: {e}"), None)).ok()
    }

    pub(super) fn eval_task_outputs(&mut self, raw: &RawModule, scope: &mut Scope) {
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

    pub(super) fn eval_tasks(&mut self, raw: &RawModule, scope: &Scope) {
        let prefix = Self::prefix(scope);
        for t in &raw.tasks {
            let (b, f) = (&t.node.body, t.file);
            let ctx = format!("task \"{}\"", t.name);
            self.check_schema(
                b,
                f,
                &ctx,
                &["inputs", "outputs", "depends_on", "setup", "run", "env", "workdir", "retries", "recovery"],
                &["resources", "estimate", "checkpoint"],
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
            // inputs (and where each `task.X.outputs.Y` reference is written)
            if let Some(a) = b.get_attribute("inputs") {
                for r in refs_of(&a.value) {
                    if let ("task", Some(name)) = (r.root.as_str(), r.attrs.first()) {
                        if let Some(at) = self.pos(f, r.span.clone()) {
                            let to = TaskAddr(format!("{prefix}task.{name}"));
                            self.refs.entry((address.clone(), to)).or_insert(at);
                        }
                    }
                }
            }
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
                                        let to = TaskAddr(format!("{prefix}task.{name}"));
                                        if let Some(at) = eat.clone() {
                                            self.refs.entry((address.clone(), to.clone())).or_insert(at);
                                        }
                                        depends_on.push(to);
                                    }
                                }
                                Some(("module", [name])) => {
                                    if self.check_refs(e, f, scope, &[Root::Module]) {
                                        let mp = format!("{prefix}module.{name}.");
                                        let found: Vec<TaskAddr> =
                                            self.out.tasks.keys().filter(|k| k.0.starts_with(&mp)).cloned().collect();
                                        if let Some(at) = &eat {
                                            for to in &found {
                                                self.refs.entry((address.clone(), to.clone())).or_insert(at.clone());
                                            }
                                        }
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
            let checkpoint = self.single_block(b, "checkpoint", f, &ctx).map(|cb| {
                self.check_schema(&cb.body, f, "the checkpoint block", &["path", "every", "size_gb", "restart"], &[]);
                let path = self.get_string(&cb.body, "path", f, scope, BODY_ROOTS).unwrap_or_else(|| "ckpt".into());
                let every_hours = self.duration_attr(&cb.body, "every", f, scope, true).unwrap_or(0.5);
                let restart_hours = self.duration_attr(&cb.body, "restart", f, scope, false).unwrap_or(0.0);
                let size_gb = self.size_attr(&cb.body, "size_gb", f, scope).unwrap_or(0.0);
                Checkpoint { path, every_hours, size_gb, restart_hours }
            });
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
                checkpoint,
                spec_hash: String::new(),
                pos,
            };
            task.spec_hash = spec_hash(&task);
            self.out.tasks.insert(address, task);
        }
    }

    pub(super) fn eval_resources(&mut self, rb: &Block, f: FileId, scope: &Scope, task: &str) -> Resources {
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
            if self.clouds.is_empty() || self.clouds.contains(&c) {
                r.cloud = Some(c);
            } else {
                let at = self.pos(f, b.get_attribute("cloud").and_then(|a| a.value.span()));
                let hint =
                    did_you_mean(&c, self.clouds.iter().map(String::as_str)).map(|s| format!("did you mean \"{s}\"?"));
                self.err(
                    at,
                    "Unknown cloud",
                    format!(
                        "`{c}` is not a cloud skyform knows ({}); a provider that is not built in needs its plugin `skyform-provider-{c}` in .skyform/plugins/ or on PATH.",
                        self.clouds.join(", ")
                    ),
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
}
