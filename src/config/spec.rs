//! The typed job: [`JobSpec`] and everything in it, plus the parsers of the small value
//! languages inside HCL strings (`"8+"`, `"V100:8"`, `"12h"`, `"25%"`).
//!
//! A `JobSpec` is what `config::load` returns: validated, with variables, locals and
//! modules resolved, the task DAG built, and a source position on every item. It is
//! plain data (serde) and does no I/O.

use super::diag::Pos;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The address of a task: `task.prep`, `module.train.task.fit`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskAddr(pub String);

impl TaskAddr {
    pub fn new(module_path: &[String], name: &str) -> Self {
        let mut s = String::new();
        for m in module_path {
            s.push_str("module.");
            s.push_str(m);
            s.push('.');
        }
        s.push_str("task.");
        s.push_str(name);
        TaskAddr(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The task's own name (last label).
    pub fn name(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for TaskAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TaskAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        let ok = parts.len() >= 2
            && parts.len() % 2 == 0
            && parts[parts.len() - 2] == "task"
            && parts.chunks(2).take(parts.len() / 2 - 1).all(|c| c[0] == "module" && !c[1].is_empty())
            && !parts[parts.len() - 1].is_empty();
        if ok {
            Ok(TaskAddr(s.to_string()))
        } else {
            Err(format!("`{s}` is not a task address (expected task.NAME or module.M.task.NAME)"))
        }
    }
}

/// What the optimizer minimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    #[default]
    Cost,
    Time,
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Objective::Cost => "cost",
            Objective::Time => "time",
        })
    }
}

/// The `policy { }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub minimize: Objective,
    /// Makespan bound, hours.
    pub deadline_hours: Option<f64>,
    /// Total cost bound, USD.
    pub budget: Option<f64>,
    /// Allowed locations as globs `cloud:region` or `cloud:region:zone` (empty: anywhere).
    pub regions: Vec<String>,
    /// Whether spot capacity may be used at all.
    pub spot_allowed: bool,
    /// Highest hourly price of one node, USD/h.
    pub max_hourly_price: Option<f64>,
    /// Largest re-priced drift of a saved plan's total before `apply` refuses it (fraction).
    pub max_cost_drift: f64,
    pub failover: Failover,
    /// Hysteresis of scheduled re-optimization (`plan` proposes moving a running task only
    /// past both thresholds).
    #[serde(default)]
    pub reoptimize: Reoptimize,
    pub fail_if: FailIf,
    pub pos: Option<Pos>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            minimize: Objective::Cost,
            deadline_hours: None,
            budget: None,
            regions: Vec::new(),
            spot_allowed: true,
            max_hourly_price: None,
            max_cost_drift: 0.10,
            failover: Failover::default(),
            reoptimize: Reoptimize::default(),
            fail_if: FailIf::default(),
            pos: None,
        }
    }
}

/// `policy { reoptimize { min_saving = "10%", min_saving_usd = 5 } }`: moving an
/// unfinished task must save at least this share of its remaining cost and this many
/// dollars, net of the transfers and the work lost, so that prices that wobble do not move
/// work back and forth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reoptimize {
    /// Fraction of the remaining cost where the task is.
    pub min_saving: f64,
    /// USD.
    pub min_saving_usd: f64,
}

impl Default for Reoptimize {
    fn default() -> Self {
        Reoptimize { min_saving: 0.10, min_saving_usd: 5.0 }
    }
}

/// `policy { failover { } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// Largest cost increase of a re-placed task over its planned cost (fraction).
    pub max_cost_increase: f64,
    pub max_attempts: u32,
}

impl Default for Failover {
    fn default() -> Self {
        Failover { max_cost_increase: 0.25, max_attempts: 8 }
    }
}

/// `policy { fail_if { } }`: CI guardrails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FailIf {
    pub total_cost_over: Option<f64>,
    /// Fraction.
    pub increase_over: Option<f64>,
}

/// A `storage "name" { }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub address: String,
    pub uri: String,
    pub size_gb: f64,
    /// The region the bucket lives in, when known (prices reading it).
    pub region: Option<String>,
    pub pos: Option<Pos>,
}

/// A CPU or memory requirement: exactly `value`, or at least it with `+`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    pub value: f64,
    pub at_least: bool,
}

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let t = s.trim();
        let (num, at_least) = match t.strip_suffix('+') {
            Some(n) => (n.trim(), true),
            None => (t, false),
        };
        let value: f64 =
            num.parse().map_err(|_| format!("`{s}` is not a count; expected a number such as \"8\" or \"8+\""))?;
        if !value.is_finite() || value <= 0.0 {
            return Err(format!("`{s}` must be a positive number"));
        }
        Ok(Quantity { value, at_least })
    }

    pub fn admits(&self, have: f64) -> bool {
        if self.at_least {
            have + 1e-9 >= self.value
        } else {
            (have - self.value).abs() < 1e-9
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.value, if self.at_least { "+" } else { "" })
    }
}

/// One accelerator requirement such as `V100:8`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accel {
    pub name: String,
    pub count: f64,
}

impl Accel {
    pub fn parse(s: &str) -> Result<Accel, String> {
        let t = s.trim();
        let (name, count) = match t.split_once(':') {
            Some((n, c)) => {
                let count: f64 = c
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{s}`: the count after `:` must be a number, as in \"V100:8\""))?;
                (n.trim(), count)
            }
            None => (t, 1.0),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("`{s}` is not an accelerator; expected NAME or NAME:COUNT, as in \"V100:8\""));
        }
        if !count.is_finite() || count <= 0.0 || count > 64.0 {
            return Err(format!("`{s}`: accelerator count must be between 0 and 64"));
        }
        Ok(Accel { name: name.to_string(), count })
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.count)
    }
}

/// Spot or on-demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpotPref {
    #[default]
    OnDemand,
    Spot,
    /// Either; the optimizer picks.
    Either,
}

/// `resources { }` of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Resources {
    pub cpus: Option<Quantity>,
    pub memory_gb: Option<Quantity>,
    /// Any of these (empty: no accelerator).
    pub accelerators: Vec<Accel>,
    /// True when `ordered` was used: prefer them in this order.
    pub ordered: bool,
    pub instance_type: Option<String>,
    pub spot: SpotPref,
    pub disk_gb: Option<f64>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub num_nodes: u32,
}

impl Resources {
    /// A one-line description, as in `cpus 8+, memory 32+ GiB, V100:8 or A100:8, spot`.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if let Some(c) = self.cpus {
            v.push(format!("cpus {c}"));
        }
        if let Some(m) = self.memory_gb {
            v.push(format!("memory {m} GiB"));
        }
        if !self.accelerators.is_empty() {
            let names: Vec<String> =
                self.accelerators.iter().map(|a| format!("{}:{}", a.name, fmt_count(a.count))).collect();
            v.push(names.join(if self.ordered { " then " } else { " or " }));
        }
        if let Some(t) = &self.instance_type {
            v.push(t.clone());
        }
        v.push(match self.spot {
            SpotPref::OnDemand => "on-demand".into(),
            SpotPref::Spot => "spot".into(),
            SpotPref::Either => "spot or on-demand".into(),
        });
        for (k, x) in [("cloud", &self.cloud), ("region", &self.region), ("zone", &self.zone)] {
            if let Some(x) = x {
                v.push(format!("{k} {x}"));
            }
        }
        if self.num_nodes > 1 {
            v.push(format!("{} nodes", self.num_nodes));
        }
        v.join(", ")
    }
}

/// Where a task input comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSource {
    Storage { address: String, uri: String, size_gb: f64, region: Option<String> },
    TaskOutput { task: TaskAddr, output: String, size_gb: f64 },
}

impl InputSource {
    pub fn size_gb(&self) -> f64 {
        match self {
            InputSource::Storage { size_gb, .. } | InputSource::TaskOutput { size_gb, .. } => *size_gb,
        }
    }
}

/// One named output of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub size_gb: f64,
    /// Where it must end up (object-store URI or a path relative to the job directory).
    pub uri: Option<String>,
}

/// How a preempted task is re-placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    SameZone,
    #[default]
    NextZone,
    NextRegion,
}

/// The time estimator of a task: an HCL expression kept as source, evaluated per
/// candidate with `resource.*` bound (see `resolve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub source: String,
    /// The `var` and `local` values of the task's module, which the expression may use.
    pub scope: serde_json::Value,
    pub pos: Option<Pos>,
}

/// `task { checkpoint { path = "ckpt", every = "30m" } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Its name under the task's checkpoints in the object store.
    pub path: String,
    /// How often it is synced while the task runs, hours.
    pub every_hours: f64,
    /// Its estimated size (GB): what moving it to another object store costs.
    #[serde(default)]
    pub size_gb: f64,
    /// How long a run takes to resume from it (start, setup, restore), hours: what a move
    /// adds to the work left.
    #[serde(default)]
    pub restart_hours: f64,
}

/// A `task "name" { }` block, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub address: TaskAddr,
    pub resources: Resources,
    pub inputs: BTreeMap<String, InputSource>,
    pub outputs: BTreeMap<String, OutputSpec>,
    pub depends_on: Vec<TaskAddr>,
    pub setup: Option<String>,
    pub run: String,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub estimate: Option<Estimate>,
    pub retries: u32,
    pub recovery: Recovery,
    /// `checkpoint { path, every }`: a directory the provider keeps in the task's object
    /// store and restores when the task runs again (not part of the spec hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Hash of everything that defines the task's work (for no-op detection).
    pub spec_hash: String,
    pub pos: Option<Pos>,
}

impl Task {
    /// This task with every occurrence of `secrets` in what the user wrote (run, setup,
    /// env, workdir, URIs) replaced by [`REDACTED`]. The hash stays that of the real task.
    pub fn redacted(&self, secrets: &[String]) -> Task {
        let mut t = self.clone();
        if secrets.is_empty() {
            return t;
        }
        let r = |s: &mut String| *s = redact_str(s, secrets);
        r(&mut t.run);
        if let Some(x) = &mut t.setup {
            r(x);
        }
        if let Some(x) = &mut t.workdir {
            r(x);
        }
        t.env = t.env.into_iter().map(|(k, v)| (k, redact_str(&v, secrets))).collect();
        for i in t.inputs.values_mut() {
            if let InputSource::Storage { uri, .. } = i {
                r(uri);
            }
        }
        for o in t.outputs.values_mut() {
            if let Some(u) = &mut o.uri {
                r(u);
            }
        }
        if let Some(e) = &mut t.estimate {
            let mut v = serde_json::to_value(&*e).expect("serializable");
            redact_json(&mut v, secrets);
            if let Ok(x) = serde_json::from_value(v) {
                *e = x;
            }
        }
        t
    }

    /// Every task this one waits for (data edges and depends_on), deduplicated, sorted.
    pub fn upstream(&self) -> Vec<TaskAddr> {
        let mut v: Vec<TaskAddr> = self
            .inputs
            .values()
            .filter_map(|i| match i {
                InputSource::TaskOutput { task, .. } => Some(task.clone()),
                _ => None,
            })
            .chain(self.depends_on.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A data or ordering edge of the DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub from: TaskAddr,
    pub to: TaskAddr,
    /// GB moved along the edge (0 for `depends_on`).
    pub size_gb: f64,
    /// The output name, for data edges.
    pub output: Option<String>,
}

/// An `output "name" { }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputValue {
    pub value: serde_json::Value,
    pub description: Option<String>,
    pub sensitive: bool,
    pub pos: Option<Pos>,
}

/// A variable's final value, kept for saved plans and display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableValue {
    pub value: serde_json::Value,
    pub sensitive: bool,
}

/// Remote state backend (`skyform { backend "s3" { } }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub kind: String,
    pub config: serde_json::Value,
}

/// The `skyform { }` settings block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Settings {
    pub state_path: Option<String>,
    pub tracker_path: Option<String>,
    pub catalog_path: Option<String>,
    pub backend: Option<Backend>,
}

/// A whole job, typed and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The job's name (its directory's name unless `skyform { name = }` says otherwise).
    pub name: String,
    pub settings: Settings,
    pub policy: Policy,
    /// `provider "NAME" { }` blocks, body as JSON.
    pub providers: BTreeMap<String, serde_json::Value>,
    pub storage: BTreeMap<String, Storage>,
    pub tasks: BTreeMap<TaskAddr, Task>,
    pub edges: Vec<Edge>,
    pub outputs: BTreeMap<String, OutputValue>,
    pub variables: BTreeMap<String, VariableValue>,
}

/// What a sensitive value is shown as.
pub const REDACTED: &str = "(sensitive value)";

/// `s` with every occurrence of each secret replaced by [`REDACTED`].
pub fn redact_str(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_string();
    for x in secrets {
        if out.contains(x.as_str()) {
            out = out.replace(x.as_str(), REDACTED);
        }
    }
    out
}

/// Replaces every occurrence of each secret in every string of a user's value (keys too).
pub fn redact_json(v: &mut serde_json::Value, secrets: &[String]) {
    match v {
        serde_json::Value::String(s) => *s = redact_str(s, secrets),
        serde_json::Value::Number(n) if secrets.iter().any(|x| *x == n.to_string()) => {
            *v = serde_json::Value::String(REDACTED.into())
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| redact_json(x, secrets)),
        serde_json::Value::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut x) in old {
                redact_json(&mut x, secrets);
                m.insert(redact_str(&k, secrets), x);
            }
        }
        _ => {}
    }
}

/// The strings a sensitive value shows up as: a string itself, a number's digits (four or
/// more, so `1` does not hide every `1`), and every such leaf of a list or object.
fn secret_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => out.push(s.clone()),
        serde_json::Value::Number(n) if n.to_string().len() >= 4 => out.push(n.to_string()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| secret_strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| secret_strings(x, out)),
        _ => {}
    }
}

impl JobSpec {
    /// Values of sensitive variables, as they appear in strings (longest first, so a
    /// secret that contains another is hidden whole).
    pub fn sensitive_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.variables.values().filter(|v| v.sensitive) {
            secret_strings(&v.value, &mut out);
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }

    /// This job with every sensitive value replaced by [`REDACTED`] in what the user wrote
    /// (what saved plans keep). Hashes (`spec_hash`) are of the real values.
    pub fn redacted(&self) -> JobSpec {
        let secrets = self.sensitive_values();
        let mut j = self.clone();
        if secrets.is_empty() {
            return j;
        }
        for v in j.variables.values_mut() {
            if v.sensitive {
                v.value = serde_json::Value::String(REDACTED.into());
            } else {
                redact_json(&mut v.value, &secrets);
            }
        }
        for t in j.tasks.values_mut() {
            *t = t.redacted(&secrets);
        }
        for o in j.outputs.values_mut() {
            redact_json(&mut o.value, &secrets);
        }
        for st in j.storage.values_mut() {
            st.uri = redact_str(&st.uri, &secrets);
        }
        for b in j.providers.values_mut() {
            redact_json(b, &secrets);
        }
        if let Some(be) = &mut j.settings.backend {
            redact_json(&mut be.config, &secrets);
        }
        j
    }

    /// A job with nothing in it (no tasks, no provider blocks, default policy).
    pub fn empty(name: &str) -> JobSpec {
        JobSpec {
            name: name.to_string(),
            settings: Settings::default(),
            policy: Policy::default(),
            providers: BTreeMap::new(),
            storage: BTreeMap::new(),
            tasks: BTreeMap::new(),
            edges: Vec::new(),
            outputs: BTreeMap::new(),
            variables: BTreeMap::new(),
        }
    }

    /// Tasks in a topological order (ties broken by address). The loader has rejected
    /// cycles, so every task appears.
    pub fn topo_order(&self) -> Vec<TaskAddr> {
        let mut indeg: BTreeMap<&TaskAddr, usize> = self.tasks.keys().map(|k| (k, 0)).collect();
        let mut down: BTreeMap<&TaskAddr, Vec<&TaskAddr>> = BTreeMap::new();
        for t in self.tasks.values() {
            for u in t.upstream() {
                if let Some((k, _)) = self.tasks.get_key_value(&u) {
                    *indeg.get_mut(&t.address).expect("task") += 1;
                    down.entry(k).or_default().push(&t.address);
                }
            }
        }
        let mut ready: std::collections::BTreeSet<&TaskAddr> =
            indeg.iter().filter(|(_, &d)| d == 0).map(|(k, _)| *k).collect();
        let mut out = Vec::with_capacity(self.tasks.len());
        while let Some(t) = ready.pop_first() {
            out.push(t.clone());
            for d in down.get(t).into_iter().flatten() {
                let e = indeg.get_mut(d).expect("task");
                *e -= 1;
                if *e == 0 {
                    ready.insert(d);
                }
            }
        }
        out
    }

    /// Which clouds the job enables: `local` always, plus every `provider` block.
    pub fn enabled_clouds(&self) -> Vec<String> {
        let mut v: Vec<String> = self.providers.keys().cloned().collect();
        if !v.iter().any(|c| c == "local") {
            v.push("local".into());
        }
        v.sort();
        v
    }
}

/// Parses a duration: `"12h"`, `"90m"`, `"1h30m"`, `"2d"`, `"45s"`; a bare number is hours.
pub fn parse_hours(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if let Ok(h) = t.parse::<f64>() {
        return if h >= 0.0 && h.is_finite() { Ok(h) } else { Err(format!("`{s}` must be a non-negative duration")) };
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut any = false;
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 =
            num.parse().map_err(|_| format!("`{s}` is not a duration; expected e.g. \"12h\", \"90m\" or \"1h30m\""))?;
        total += n * match c {
            'd' => 24.0,
            'h' => 1.0,
            'm' => 1.0 / 60.0,
            's' => 1.0 / 3600.0,
            _ => return Err(format!("`{s}` is not a duration; units are d, h, m, s")),
        };
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("`{s}` is not a duration; expected e.g. \"12h\", \"90m\" or \"1h30m\""));
    }
    Ok(total)
}

/// Parses a percentage `"25%"` (or a fraction `0.25`) into a fraction.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("`{s}` is not a percentage; expected e.g. \"25%\""))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(v)
}

/// Formats a count without a needless `.0` (`8`, `0.5`).
pub fn fmt_count(c: f64) -> String {
    if c.fract() == 0.0 {
        format!("{}", c as i64)
    } else {
        format!("{c}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(Quantity::parse("8+").unwrap(), Quantity { value: 8.0, at_least: true });
        assert_eq!(Quantity::parse(" 16 ").unwrap(), Quantity { value: 16.0, at_least: false });
        assert!(Quantity::parse("-1").is_err());
        assert!(Quantity::parse("eight").is_err());
        assert!(Quantity::parse("8+").unwrap().admits(16.0));
        assert!(!Quantity::parse("8").unwrap().admits(16.0));
    }

    #[test]
    fn accelerators() {
        assert_eq!(Accel::parse("V100:8").unwrap(), Accel { name: "V100".into(), count: 8.0 });
        assert_eq!(Accel::parse("T4").unwrap().count, 1.0);
        assert!(Accel::parse("V100:").is_err());
        assert!(Accel::parse(":8").is_err());
        assert!(Accel::parse("V100:0").is_err());
        assert!(Accel::parse("V 100:1").is_err());
    }

    #[test]
    fn durations_and_fractions() {
        assert_eq!(parse_hours("12h").unwrap(), 12.0);
        assert_eq!(parse_hours("1h30m").unwrap(), 1.5);
        assert_eq!(parse_hours("2d").unwrap(), 48.0);
        assert_eq!(parse_hours("3").unwrap(), 3.0);
        assert!(parse_hours("12x").is_err());
        assert!(parse_hours("h").is_err());
        assert_eq!(parse_fraction("25%").unwrap(), 0.25);
        assert_eq!(parse_fraction("0.1").unwrap(), 0.1);
        assert!(parse_fraction("lots").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(TaskAddr::new(&["train".into()], "fit").as_str(), "module.train.task.fit");
        assert!("task.a".parse::<TaskAddr>().is_ok());
        assert!("module.m.task.a".parse::<TaskAddr>().is_ok());
        assert!("tusk.a".parse::<TaskAddr>().is_err());
        assert!("module.task.a".parse::<TaskAddr>().is_err());
    }
}
