//! The root module's settings: the `policy` block, the `skyform` block (with its backend) and the
//! `provider` blocks, kept as JSON bodies with their positions for the provider registry to check.

use super::*;

impl Loader {
    pub(super) fn eval_root_settings(&mut self, raw: &RawModule, scope: &Scope) {
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
                &["failover", "reoptimize", "fail_if"],
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
                    if let Err(e) = check_location_glob(r, &self.clouds) {
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
            if let Some(ro) = self.single_block(b, "reoptimize", f, "the policy block") {
                self.check_schema(&ro.body, f, "the reoptimize block", &["min_saving", "min_saving_usd"], &[]);
                if let Some(x) = self.fraction_attr(&ro.body, "min_saving", f, scope) {
                    policy.reoptimize.min_saving = x;
                }
                if let Some((n, at)) = self.get_number(&ro.body, "min_saving_usd", f, scope, CONFIG_ROOTS) {
                    if n < 0.0 {
                        self.err(at, "Invalid min_saving_usd", "`min_saving_usd` must not be negative.", None);
                    } else {
                        policy.reoptimize.min_saving_usd = n;
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
                // Which kinds exist and what their blocks hold is the registry's to check
                // (the provider registry's `check`), with the positions kept here.
                let kind = label(be, 0).unwrap_or("").to_string();
                let config = self.body_json(&be.body, f, scope);
                self.out.positions.backend = Some(self.block_pos(be, f));
                settings.backend = Some(Backend { kind, config });
            }
        }
        self.out.settings = Some(settings);

        // providers: the bodies and where they are; the registry checks them.
        for p in &raw.providers {
            let body = self.body_json(&p.node.body, p.file, scope);
            self.out.positions.providers.insert(p.name.clone(), self.block_pos(&p.node, p.file));
            self.out.providers.insert(p.name.clone(), body);
        }
    }

    /// Where a block and its attributes (nested ones as `inner.attr`) are.
    pub(super) fn block_pos(&self, b: &Block, f: FileId) -> BlockPos {
        fn walk(l: &Loader, body: &Body, f: FileId, prefix: &str, out: &mut BTreeMap<String, Pos>) {
            for s in body.iter() {
                match s {
                    Structure::Attribute(a) => {
                        if let Some((p, _)) = l.pos(f, a.span()) {
                            out.insert(format!("{prefix}{}", a.key.as_str()), p);
                        }
                    }
                    Structure::Block(inner) => {
                        let name = format!("{prefix}{}", inner.ident.as_str());
                        if let Some((p, _)) = l.pos(f, inner.span()) {
                            out.entry(name.clone()).or_insert(p);
                        }
                        walk(l, &inner.body, f, &format!("{name}."), out);
                    }
                }
            }
        }
        let mut attributes = BTreeMap::new();
        walk(self, &b.body, f, "", &mut attributes);
        BlockPos { block: self.pos(f, b.span()).map(|x| x.0).unwrap_or_default(), attributes }
    }

    pub(super) fn fraction_attr(&mut self, b: &Body, key: &str, f: FileId, scope: &Scope) -> Option<f64> {
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
    pub(super) fn body_json(&mut self, body: &Body, f: FileId, scope: &Scope) -> serde_json::Value {
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
}
