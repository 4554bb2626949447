//! `resolve`: JobSpec × Catalog × TrackerView → [`ResolvedJob`], every feasible candidate
//! placement of every task.
//!
//! A candidate is (cloud, region, zone, instance type, spot or on-demand) with its hourly
//! price (the tracker's latest spot observation, else the catalog's), its runtime (the
//! task's `estimate` expression evaluated with `resource.*` bound to the candidate; 1 h
//! with a warning when absent), its compute cost (hourly × hours × num_nodes), and the
//! cost and time of reading its storage inputs and writing its pinned outputs.
//!
//! A task that names accelerators but sets neither `cpus`, `memory` nor `instance_type`
//! gets a default host sized for them ([`DEFAULT_HOST`]): at least 4 vCPUs and 16 GiB
//! per accelerator, or, on a cloud whose largest host for that accelerator and count is
//! smaller, that largest host (so the default never removes a cloud that sells the
//! accelerator; AWS and Azure sell fixed shapes, GCP attaches GPUs to any N1 host). An
//! explicit `cpus` or `memory` always wins, `cpus = "1+"` included.
//!
//! Filters, in order (the first one that removes the last candidates is named when a task
//! has none): resources (with the default host), instance type, enabled clouds, the task's cloud/region/zone,
//! `policy.regions` and provider blocks' `regions`, spot, `policy.max_price`, tracker
//! blocks. Every instance type that fits is kept, not just the cheapest per cloud. Exact
//! pruning: within one zone only the Pareto front of (runtime, cost) survives, so nothing
//! the optimizer could want is lost (egress depends only on the location). Pure.

use crate::catalog::egress::{EgressModel, Place};
use crate::catalog::Catalog;
use crate::config::{Diagnostic, Diagnostics, InputSource, JobSpec, Policy, SpotPref, Task, TaskAddr};
use crate::tracker::TrackerView;
use globset::{Glob, GlobMatcher};
use serde::Serialize;
use skyform_provider::Location;
use std::collections::BTreeMap;

/// One feasible placement of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub location: Location,
    pub instance_type: String,
    pub vcpus: f64,
    pub memory_gb: f64,
    pub accelerator: Option<String>,
    pub accelerator_count: f64,
    pub spot: bool,
    /// USD per hour per node.
    pub hourly: f64,
    /// Estimated runtime, hours.
    pub hours: f64,
    /// hourly × hours × num_nodes.
    pub compute_cost: f64,
    /// Egress of reading storage inputs and writing pinned outputs from here.
    pub storage_cost: f64,
    /// Hours spent moving those.
    pub staging_hours: f64,
}

impl Candidate {
    /// Cost that does not depend on other tasks' placements.
    pub fn fixed_cost(&self) -> f64 {
        self.compute_cost + self.storage_cost
    }
    /// Time that does not depend on other tasks' placements.
    pub fn duration(&self) -> f64 {
        self.hours + self.staging_hours
    }
    pub fn place(&self) -> Place {
        Place::from(&self.location)
    }
    /// e.g. `p3.16xlarge (V100:8, spot)`
    pub fn label(&self) -> String {
        let mut extra = Vec::new();
        if let Some(a) = &self.accelerator {
            extra.push(format!("{a}:{}", crate::catalog::fmt_count(self.accelerator_count)));
        }
        if self.spot {
            extra.push("spot".into());
        }
        if extra.is_empty() {
            self.instance_type.clone()
        } else {
            format!("{} ({})", self.instance_type, extra.join(", "))
        }
    }
    fn sort_key(&self) -> (String, String, String, String, bool) {
        (
            self.location.cloud.clone(),
            self.location.region.clone(),
            self.location.zone.clone(),
            self.instance_type.clone(),
            self.spot,
        )
    }
}

/// A task with its candidates.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedTask {
    pub address: TaskAddr,
    pub num_nodes: u32,
    /// Sorted by fixed cost, then runtime, then location and type (a stable order).
    /// Shared by every task written alike (a sweep of 10,000 keeps one copy).
    #[serde(serialize_with = "candidates_json")]
    pub candidates: std::sync::Arc<[Candidate]>,
    /// Offerings left after each filter (for explanations).
    pub funnel: Vec<(String, usize)>,
    /// Offerings considered before pruning.
    pub considered: usize,
}

fn candidates_json<S: serde::Serializer>(c: &std::sync::Arc<[Candidate]>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&c[..], s)
}

/// A data or ordering edge between two resolved tasks (indices into `tasks`).
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedEdge {
    pub from: usize,
    pub to: usize,
    pub size_gb: f64,
    pub output: Option<String>,
}

/// Everything the optimizer needs. Tasks are in topological order.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedJob {
    pub tasks: Vec<ResolvedTask>,
    pub index: BTreeMap<TaskAddr, usize>,
    pub edges: Vec<ResolvedEdge>,
    pub policy: Policy,
    #[serde(skip)]
    pub egress: EgressModel,
    pub warnings: Vec<String>,
}

/// Why a task has no candidate, or why an estimate failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ResolveError {
    #[error("{}", .0.iter().map(|p| format!("{}: {}", p.task, p.reason)).collect::<Vec<_>>().join("\n"))]
    NoCandidates(Vec<Infeasible>),
    #[error("{0}")]
    Estimate(String),
}

/// One task without candidates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Infeasible {
    pub task: TaskAddr,
    pub reason: String,
}

/// Compiled location patterns of `policy.regions` (`cloud[:region[:zone]]` globs), and
/// the regions each provider block allows (`provider "aws" { regions = [...] }`).
pub struct Residency(
    Vec<(GlobMatcher, Option<GlobMatcher>, Option<GlobMatcher>)>,
    BTreeMap<String, std::collections::BTreeSet<String>>,
);

impl Residency {
    pub fn new(patterns: &[String]) -> Residency {
        let m = |s: &str| Glob::new(s).map(|g| g.compile_matcher()).ok();
        Residency(
            patterns
                .iter()
                .filter_map(|p| {
                    let parts: Vec<&str> = p.split(':').collect();
                    Some((m(parts.first()?)?, parts.get(1).and_then(|r| m(r)), parts.get(2).and_then(|z| m(z))))
                })
                .collect(),
            BTreeMap::new(),
        )
    }

    /// Also restricts each cloud to the `regions` of its provider block, when it has any.
    pub fn with_provider_regions(mut self, spec: &JobSpec) -> Residency {
        for (cloud, body) in &spec.providers {
            let regions: std::collections::BTreeSet<String> = body
                .get("regions")
                .and_then(|r| r.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if !regions.is_empty() {
                self.1.insert(cloud.clone(), regions);
            }
        }
        self
    }

    pub fn allows(&self, l: &Location) -> bool {
        if self.1.get(&l.cloud).is_some_and(|rs| !rs.contains(&l.region)) {
            return false;
        }
        if l.cloud == "local" && self.0.is_empty() {
            return true;
        }
        self.0.is_empty()
            || self.0.iter().any(|(c, r, z)| {
                c.is_match(&l.cloud)
                    && r.as_ref().is_none_or(|r| r.is_match(&l.region))
                    && z.as_ref().is_none_or(|z| z.is_match(&l.zone))
            })
    }
}

/// The default host per accelerator when a task sets neither `cpus`, `memory` nor
/// `instance_type`: (accelerator name, or `*` for any; vCPUs per accelerator; GiB per
/// accelerator). SkyPilot sizes GPU hosts the same way (e.g. `n1-highmem-64` for V100:8
/// on GCP); AWS's and Azure's fixed GPU shapes give 4–12 vCPUs and 16–61 GiB per GPU.
pub const DEFAULT_HOST: &[(&str, f64, f64)] = &[("*", 4.0, 16.0)];

/// The default host of `count` accelerators named `name`: (vCPUs, GiB), before the
/// per-cloud cap (see the module docs).
pub fn default_host_for(name: &str, count: f64) -> (f64, f64) {
    let (_, cpus, gib) = DEFAULT_HOST
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .or_else(|| DEFAULT_HOST.iter().find(|(n, _, _)| *n == "*"))
        .copied()
        .unwrap_or(("*", 0.0, 0.0));
    ((cpus * count).ceil().max(1.0), (gib * count).ceil().max(1.0))
}

/// Whether a task's host is sized by [`DEFAULT_HOST`].
pub fn uses_default_host(r: &crate::config::Resources) -> bool {
    !r.accelerators.is_empty() && r.cpus.is_none() && r.memory_gb.is_none() && r.instance_type.is_none()
}

/// Why a task's host is as large as it is, for the plan: e.g. `cpus 32+, memory 128+ GiB
/// (the default host for V100:8)`. None when the task sets its host itself.
pub fn default_host_note(r: &crate::config::Resources) -> Option<String> {
    if !uses_default_host(r) {
        return None;
    }
    // Accelerators with the same host, in order.
    let mut groups: Vec<((f64, f64), Vec<String>)> = Vec::new();
    for a in &r.accelerators {
        let host = default_host_for(&a.name, a.count);
        let label = format!("{}:{}", a.name, crate::catalog::fmt_count(a.count));
        match groups.iter_mut().find(|(h, _)| *h == host) {
            Some((_, v)) => v.push(label),
            None => groups.push((host, vec![label])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|((c, m), names)| format!("cpus {c}+, memory {m}+ GiB (the default host for {})", names.join(" or ")))
        .collect();
    Some(parts.join("; "))
}

/// Per (cloud, lowercase accelerator, count): the largest vCPUs and memory of the hosts
/// that cloud sells with them (the cap of the default host).
type HostCaps = std::collections::HashMap<(String, String, u64), (f64, f64)>;

fn host_caps(catalog: &Catalog) -> HostCaps {
    let mut caps = HostCaps::new();
    for s in &catalog.snap.shapes {
        let Some(a) = &s.accelerator else { continue };
        let e =
            caps.entry((s.cloud.clone(), a.to_ascii_lowercase(), s.accelerator_count.to_bits())).or_insert((0.0, 0.0));
        e.0 = e.0.max(s.vcpus);
        e.1 = e.1.max(s.memory_gb);
    }
    caps
}

/// Whether shape `s` is at least the default host for its accelerators.
fn default_host_admits(s: &crate::catalog::Shape, caps: &HostCaps) -> bool {
    let Some(a) = &s.accelerator else { return true };
    let (cpus, gib) = default_host_for(a, s.accelerator_count);
    let (max_cpus, max_gib) = caps
        .get(&(s.cloud.clone(), a.to_ascii_lowercase(), s.accelerator_count.to_bits()))
        .copied()
        .unwrap_or((s.vcpus, s.memory_gb));
    s.vcpus + 1e-9 >= cpus.min(max_cpus) && s.memory_gb + 1e-9 >= gib.min(max_gib)
}

/// Checks what the config loader cannot: accelerator names against the catalog.
pub fn check_against_catalog(spec: &JobSpec, catalog: &Catalog) -> Diagnostics {
    let mut d = Diagnostics::default();
    for t in spec.tasks.values() {
        for a in &t.resources.accelerators {
            if catalog.canonical_accelerator(&a.name).is_none() {
                let hint = catalog
                    .suggest_accelerator(&a.name)
                    .map(|s| format!("did you mean `{s}:{}`?", crate::catalog::fmt_count(a.count)));
                d.push(
                    Diagnostic::error(
                        "Unknown accelerator",
                        format!("{}: no cloud in the catalog offers an accelerator named `{}`.", t.address, a.name),
                    )
                    .at(t.pos.clone().map(|p| (p, String::new())))
                    .hint(hint.or(Some("`skyform catalog gpus` lists the accelerators".into()))),
                );
            }
        }
    }
    d
}

/// What `resource.*` is bound to while evaluating an estimate: an offering, spot or not.
pub struct Binding<'a> {
    pub offering: crate::catalog::Offering<'a>,
    pub spot: bool,
}

/// Evaluates a task's estimate for candidates, caching by the attributes it uses.
struct Estimator {
    expr: Option<hcl::Expression>,
    scope: Vec<(String, hcl::Value)>,
    uses: Vec<&'static str>,
    cache: BTreeMap<String, f64>,
    source: String,
    pos: String,
}

impl Estimator {
    fn new(task: &Task) -> Result<Estimator, ResolveError> {
        let Some(e) = &task.estimate else {
            return Ok(Estimator {
                expr: None,
                scope: vec![],
                uses: vec![],
                cache: BTreeMap::new(),
                source: String::new(),
                pos: String::new(),
            });
        };
        let pos = e.pos.as_ref().map(|p| p.to_string()).unwrap_or_else(|| task.address.to_string());
        let expr: hcl::Expression = e
            .source
            .parse()
            .map_err(|err: hcl::Error| ResolveError::Estimate(format!("{pos}: estimate of {}: {err}", task.address)))?;
        let uses = crate::config::load::RESOURCE_ATTRS
            .iter()
            .copied()
            .filter(|a| {
                let pat = format!("resource.{a}");
                e.source
                    .match_indices(&pat)
                    .any(|(i, _)| !e.source[i + pat.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'))
            })
            .collect();
        let scope = match &e.scope {
            serde_json::Value::Object(m) => {
                m.iter().filter_map(|(k, v)| hcl::to_value(v).ok().map(|v| (k.clone(), v))).collect()
            }
            _ => vec![],
        };
        Ok(Estimator { expr: Some(expr), scope, uses, cache: BTreeMap::new(), source: e.source.clone(), pos })
    }

    fn hours(&mut self, task: &TaskAddr, c: &Binding) -> Result<f64, ResolveError> {
        let Some(expr) = &self.expr else { return Ok(1.0) };
        if self.uses.is_empty() {
            if let Some(h) = self.cache.get("") {
                return Ok(*h);
            }
        }
        let (o, spot) = (&c.offering, c.spot);
        let attr = |a: &str| -> hcl::Value {
            match a {
                "cloud" => o.cloud.into(),
                "region" => o.region.into(),
                "zone" => o.zone.into(),
                "instance_type" => o.instance_type.into(),
                "vcpus" => hcl::to_value(o.vcpus).unwrap_or(hcl::Value::Null),
                "memory_gb" => hcl::to_value(o.memory_gb).unwrap_or(hcl::Value::Null),
                "accelerator" => hcl::Value::from(o.accelerator.unwrap_or("")),
                "accelerator_count" => hcl::to_value(o.accelerator_count).unwrap_or(hcl::Value::Null),
                "spot" => spot.into(),
                _ => hcl::Value::Null,
            }
        };
        let key: String = self.uses.iter().map(|a| format!("{}\u{1}", attr(a))).collect();
        if let Some(h) = self.cache.get(&key) {
            return Ok(*h);
        }
        let mut ctx = hcl::eval::Context::new();
        crate::config::functions::declare_all(&mut ctx);
        for (k, v) in &self.scope {
            ctx.declare_var(k.as_str(), v.clone());
        }
        let mut res = hcl::Map::new();
        for a in crate::config::load::RESOURCE_ATTRS {
            res.insert(a.to_string(), attr(a));
        }
        ctx.declare_var("resource", hcl::Value::Object(res));
        let v = crate::config::functions::evaluate(expr, &ctx).map_err(|e| {
            ResolveError::Estimate(format!(
                "{}: estimate of {task} (`{}`) failed for {}/{}/{} {}: {e}",
                self.pos, self.source, o.cloud, o.region, o.zone, o.instance_type
            ))
        })?;
        let h = v.as_f64().filter(|h| h.is_finite() && *h > 0.0).ok_or_else(|| {
            ResolveError::Estimate(format!(
                "{}: estimate of {task} (`{}`) must give a positive number of hours; got `{v}` for {}/{}/{} {}",
                self.pos, self.source, o.cloud, o.region, o.zone, o.instance_type
            ))
        })?;
        self.cache.insert(key, h);
        Ok(h)
    }
}

fn matches_opt(pattern: &Option<String>, value: &str) -> bool {
    match pattern {
        None => true,
        Some(p) if p.contains('*') || p.contains('?') => {
            Glob::new(p).map(|g| g.compile_matcher().is_match(value)).unwrap_or(false)
        }
        Some(p) => p == value,
    }
}

/// Resolves every task of the job.
pub fn resolve(spec: &JobSpec, catalog: &Catalog, view: &TrackerView) -> Result<ResolvedJob, ResolveError> {
    let egress = EgressModel::default().with_overrides(&catalog.egress);
    let residency = Residency::new(&spec.policy.regions).with_provider_regions(spec);
    let enabled = spec.enabled_clouds();
    let order = spec.topo_order();
    let index: BTreeMap<TaskAddr, usize> = order.iter().enumerate().map(|(i, a)| (a.clone(), i)).collect();
    let mut tasks = Vec::with_capacity(order.len());
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    // Tasks with identical resources and estimates share their candidates.
    let mut memo: BTreeMap<String, Resolved> = BTreeMap::new();
    let caps =
        if spec.tasks.values().any(|t| uses_default_host(&t.resources)) { host_caps(catalog) } else { HostCaps::new() };
    for addr in &order {
        let task = &spec.tasks[addr];
        if task.estimate.is_none() {
            warnings.push(format!("{addr}: no `estimate {{ hours = ... }}`, so 1 hour per run is assumed"));
        }
        // Not the estimate's position: tasks written alike in different places share too.
        let memo_key = serde_json::to_string(&(
            &task.resources,
            task.estimate.as_ref().map(|e| (&e.source, &e.scope)),
            task.inputs.values().filter(|i| matches!(i, InputSource::Storage { .. })).collect::<Vec<_>>(),
            task.outputs.values().filter(|o| o.uri.is_some()).collect::<Vec<_>>(),
        ))
        .unwrap_or_default();
        let (cands, funnel, considered) = match memo.get(&memo_key) {
            Some(hit) => hit.clone(),
            None => {
                let r = candidates_for(task, catalog, view, &egress, &residency, &enabled, &spec.policy, &caps)?;
                memo.insert(memo_key, r.clone());
                r
            }
        };
        if cands.is_empty() {
            problems.push(Infeasible { task: addr.clone(), reason: explain_empty(task, &funnel, catalog) });
        }
        tasks.push(ResolvedTask {
            address: addr.clone(),
            num_nodes: task.resources.num_nodes.max(1),
            candidates: cands,
            funnel,
            considered,
        });
    }
    if !problems.is_empty() {
        return Err(ResolveError::NoCandidates(problems));
    }
    let edges = spec
        .edges
        .iter()
        .filter_map(|e| {
            Some(ResolvedEdge {
                from: *index.get(&e.from)?,
                to: *index.get(&e.to)?,
                size_gb: e.size_gb,
                output: e.output.clone(),
            })
        })
        .collect();
    Ok(ResolvedJob { tasks, index, edges, policy: spec.policy.clone(), egress, warnings })
}

/// Inserts `l` into a zone's Pareto front (ascending hours, strictly descending cost);
/// among equals the one already there (earlier in catalog order) stays.
fn insert_front(front: &mut Vec<Lite>, l: Lite) {
    let cost = |x: &Lite| x.hourly * x.hours;
    if front.iter().any(|f| f.hours <= l.hours + 1e-12 && cost(f) <= cost(&l) + 1e-12) {
        return;
    }
    front.retain(|f| !(l.hours <= f.hours + 1e-12 && cost(&l) <= cost(f) + 1e-12));
    let pos = front.partition_point(|f| f.hours < l.hours);
    front.insert(pos, l);
}

/// A candidate before materialization: indices only.
#[derive(Clone, Copy)]
struct Lite {
    shape: u32,
    offer: u32,
    spot: bool,
    hourly: f64,
    hours: f64,
}

#[allow(clippy::too_many_arguments)]
fn candidates_for(
    task: &Task,
    catalog: &Catalog,
    view: &TrackerView,
    egress: &EgressModel,
    residency: &Residency,
    enabled: &[String],
    policy: &Policy,
    caps: &HostCaps,
) -> Result<Resolved, ResolveError> {
    let r = &task.resources;
    let default_host = uses_default_host(r);
    let mut est = Estimator::new(task)?;
    let stages = [
        "resources (cpus, memory, accelerators)",
        "resources.instance_type",
        "the enabled clouds (provider blocks)",
        "resources.cloud/region/zone",
        "policy.regions (and the `regions` of provider blocks)",
        "spot availability (resources.spot / policy.spot)",
        "policy.max_price",
        "the tracker's blocked locations",
    ];
    let mut counts = [0usize; 8];
    // Accelerator preference: with `ordered`, the first accelerator that has candidates.
    let accel_groups: Vec<Vec<&crate::config::Accel>> = if r.accelerators.is_empty() {
        vec![vec![]]
    } else if r.ordered {
        r.accelerators.iter().map(|a| vec![a]).collect()
    } else {
        vec![r.accelerators.iter().collect()]
    };
    let storage: Vec<(Place, f64)> = task
        .inputs
        .values()
        .filter_map(|i| match i {
            InputSource::Storage { uri, size_gb, region, .. } => {
                Some((Place::of_uri(uri, region.as_deref()), *size_gb))
            }
            _ => None,
        })
        .collect();
    let sinks: Vec<(Place, f64)> = task
        .outputs
        .values()
        .filter_map(|o| {
            o.uri.as_ref().map(|u| {
                (if u.contains("://") { Place::of_uri(u, None) } else { Place::of_uri("file://", None) }, o.size_gb)
            })
        })
        .collect();
    let want_spot = matches!(r.spot, SpotPref::Spot | SpotPref::Either) && policy.spot_allowed;
    let want_od = matches!(r.spot, SpotPref::OnDemand | SpotPref::Either);
    let nodes = task.resources.num_nodes.max(1) as f64;
    // Location checks depend only on (cloud, region, zone): cache them by interned ids.
    let mut loc_ok: std::collections::HashMap<(usize, u16, u16), (bool, bool, bool)> = std::collections::HashMap::new();
    let shapes = &catalog.snap.shapes;
    // Per enabled cloud, the time of its catalog data (a tracker observation older than it
    // does not override its spot prices).
    let data_times: Vec<Option<u64>> = enabled.iter().map(|c| catalog.data_time(c)).collect();
    // Pareto front per zone on (hours, compute cost), kept as offerings stream by: storage
    // costs and times are the same for every candidate of a zone, so nothing is lost.
    let mut fronts: BTreeMap<(usize, u16, u16), Vec<Lite>> = BTreeMap::new();
    let mut considered = 0usize;
    for group in &accel_groups {
        for (si, s) in shapes.iter().enumerate() {
            let acc_ok = if group.is_empty() {
                s.accelerator.is_none()
            } else {
                group.iter().any(|a| {
                    s.accelerator.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&a.name))
                        && (a.count - s.accelerator_count).abs() < 1e-9
                })
            };
            if !acc_ok
                || r.cpus.is_some_and(|q| !q.admits(s.vcpus))
                || r.memory_gb.is_some_and(|q| !q.admits(s.memory_gb))
                || (default_host && !default_host_admits(s, caps))
            {
                continue;
            }
            let n = (s.end - s.start) as usize;
            counts[0] += n;
            if r.instance_type.as_ref().is_some_and(|t| t != &s.instance_type) {
                continue;
            }
            counts[1] += n;
            let Some(cloud_idx) = enabled.iter().position(|c| c == &s.cloud) else { continue };
            counts[2] += n;
            for oi in s.start..s.end {
                let z = &catalog.snap.zones[oi as usize];
                let (region, zone) = (catalog.name(z.region), catalog.name(z.zone));
                let (task_ok, resid_ok, free) = *loc_ok.entry((cloud_idx, z.region, z.zone)).or_insert_with(|| {
                    let task_ok =
                        matches_opt(&r.cloud, &s.cloud) && matches_opt(&r.region, region) && matches_opt(&r.zone, zone);
                    let loc = Location::new(s.cloud.as_str(), region, zone);
                    (task_ok, residency.allows(&loc), view.blocked(&loc).is_none())
                });
                if !task_ok {
                    continue;
                }
                counts[3] += 1;
                if !resid_ok {
                    continue;
                }
                counts[4] += 1;
                let spot_price = if view.spot.is_empty() {
                    z.spot_price
                } else {
                    view.spot_price(
                        &Location::new(s.cloud.as_str(), region, zone),
                        &crate::tracker::series_type(
                            &s.cloud,
                            &s.instance_type,
                            s.accelerator.as_deref(),
                            s.accelerator_count,
                        ),
                        z.spot_price,
                        data_times[cloud_idx],
                    )
                };
                let od = want_od.then_some(z.price);
                let sp = if want_spot { spot_price } else { None };
                if od.is_none() && sp.is_none() {
                    continue;
                }
                counts[5] += 1;
                let ok = |p: &Option<f64>| p.is_some_and(|p| policy.max_hourly_price.is_none_or(|m| p <= m));
                let (od, sp) = (if ok(&od) { od } else { None }, if ok(&sp) { sp } else { None });
                if od.is_none() && sp.is_none() {
                    continue;
                }
                counts[6] += 1;
                if !free {
                    continue;
                }
                counts[7] += 1;
                for (spot, hourly) in [(false, od), (true, sp)] {
                    let Some(hourly) = hourly else { continue };
                    let b = Binding { offering: catalog.offering(s, z), spot };
                    let hours = est.hours(&task.address, &b)?;
                    considered += 1;
                    insert_front(
                        fronts.entry((cloud_idx, z.region, z.zone)).or_default(),
                        Lite { shape: si as u32, offer: oi, spot, hourly, hours },
                    );
                }
            }
        }
        if !fronts.is_empty() {
            break;
        }
    }
    // Runtime per candidate (the estimator caches by the attributes it reads).
    let materialize = |l: &Lite, hours: f64| -> Candidate {
        let s = &shapes[l.shape as usize];
        let z = &catalog.snap.zones[l.offer as usize];
        Candidate {
            location: Location::new(s.cloud.as_str(), catalog.name(z.region), catalog.name(z.zone)),
            instance_type: s.instance_type.clone(),
            vcpus: s.vcpus,
            memory_gb: s.memory_gb,
            accelerator: s.accelerator.clone(),
            accelerator_count: s.accelerator_count,
            spot: l.spot,
            hourly: l.hourly,
            hours,
            compute_cost: l.hourly * hours * nodes,
            storage_cost: 0.0,
            staging_hours: 0.0,
        }
    };
    let front: Vec<Lite> = fronts.into_values().flatten().collect();
    // Storage egress once per zone.
    let mut zone_cost: std::collections::HashMap<(usize, u16, u16), (f64, f64)> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(front.len());
    for l in &front {
        let mut c = materialize(l, l.hours);
        let z = &catalog.snap.zones[l.offer as usize];
        let cloud_idx = enabled.iter().position(|x| x == &c.location.cloud).unwrap_or(0);
        let (sc, st) = *zone_cost.entry((cloud_idx, z.region, z.zone)).or_insert_with(|| {
            let place = Place::from(&c.location);
            let (mut sc, mut st) = (0.0, 0.0);
            for (src, gb) in &storage {
                let (x, t) = egress.egress(src, &place, *gb);
                sc += x;
                st += t;
            }
            for (dst, gb) in &sinks {
                let (x, t) = egress.egress(&place, dst, *gb);
                sc += x;
                st += t;
            }
            (sc, st)
        });
        c.storage_cost = sc;
        c.staging_hours = st / 3600.0;
        out.push(c);
    }
    let cands: std::sync::Arc<[Candidate]> = prune(out).into();
    let funnel = stages.iter().zip(counts).map(|(s, n)| (s.to_string(), n)).collect();
    Ok((cands, funnel, considered))
}

/// Candidates, the filter funnel and how many offerings were considered.
type Resolved = (std::sync::Arc<[Candidate]>, Vec<(String, usize)>, usize);

/// Per zone, the Pareto front of (duration, fixed cost); then a stable global order.
pub fn prune(mut all: Vec<Candidate>) -> Vec<Candidate> {
    all.sort_by(|a, b| {
        a.location
            .cmp(&b.location)
            .then(a.duration().total_cmp(&b.duration()))
            .then(a.fixed_cost().total_cmp(&b.fixed_cost()))
            .then(a.sort_key().cmp(&b.sort_key()))
    });
    let mut out: Vec<Candidate> = Vec::new();
    let mut best_cost = f64::INFINITY;
    let mut cur: Option<Location> = None;
    for c in all {
        if cur.as_ref() != Some(&c.location) {
            cur = Some(c.location.clone());
            best_cost = f64::INFINITY;
        }
        if c.fixed_cost() < best_cost - 1e-12 {
            best_cost = c.fixed_cost();
            out.push(c);
        }
    }
    out.sort_by(|a, b| {
        a.fixed_cost()
            .total_cmp(&b.fixed_cost())
            .then(a.duration().total_cmp(&b.duration()))
            .then(a.sort_key().cmp(&b.sort_key()))
    });
    out
}

fn explain_empty(task: &Task, funnel: &[(String, usize)], catalog: &Catalog) -> String {
    let r = &task.resources;
    if funnel.first().is_some_and(|(_, n)| *n == 0) {
        let mut want = Vec::new();
        if let Some(c) = r.cpus {
            want.push(format!("cpus {c}"));
        }
        if let Some(m) = r.memory_gb {
            want.push(format!("memory {m} GiB"));
        }
        for a in &r.accelerators {
            let counts: Vec<String> = {
                let mut v: Vec<f64> = catalog
                    .snap
                    .shapes
                    .iter()
                    .filter(|s| s.accelerator.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&a.name)))
                    .map(|s| s.accelerator_count)
                    .collect();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v.iter().map(|c| crate::catalog::fmt_count(*c)).collect()
            };
            if counts.is_empty() {
                want.push(format!("{} (no cloud offers `{}`)", a, a.name));
            } else {
                want.push(format!(
                    "{}:{} (counts offered: {})",
                    a.name,
                    crate::catalog::fmt_count(a.count),
                    counts.join(", ")
                ));
            }
        }
        return format!("no offering in the catalog matches the resources: {}", want.join(", "));
    }
    let mut prev = funnel.first().map(|f| f.1).unwrap_or(0);
    for (stage, n) in funnel.iter().skip(1) {
        if *n == 0 {
            return format!("{prev} offering(s) match the resources, but {stage} removed the last of them");
        }
        prev = *n;
    }
    "no candidate".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(zone: &str, it: &str, hours: f64, cost: f64) -> Candidate {
        Candidate {
            location: Location::new("aws", "us-east-1", zone),
            instance_type: it.into(),
            vcpus: 1.0,
            memory_gb: 1.0,
            accelerator: None,
            accelerator_count: 0.0,
            spot: false,
            hourly: cost / hours,
            hours,
            compute_cost: cost,
            storage_cost: 0.0,
            staging_hours: 0.0,
        }
    }

    #[test]
    fn pruning_keeps_the_pareto_front_per_zone() {
        let out = prune(vec![
            cand("a", "slow-cheap", 4.0, 1.0),
            cand("a", "fast-dear", 1.0, 3.0),
            cand("a", "slow-dear", 4.0, 2.0),
            cand("a", "mid-dearer", 2.0, 5.0),
            cand("b", "other-zone", 4.0, 2.0),
        ]);
        let names: Vec<&str> = out.iter().map(|c| c.instance_type.as_str()).collect();
        assert_eq!(names, ["slow-cheap", "other-zone", "fast-dear"]);
    }

    #[test]
    fn the_default_gpu_host_never_removes_a_cloud_and_sizes_v100x8_at_32_vcpus() {
        let catalog = Catalog::embedded();
        let caps = host_caps(&catalog);
        // Every (cloud, accelerator, count) keeps at least one host.
        let mut kept: std::collections::BTreeMap<(String, String, u64), bool> = Default::default();
        for s in catalog.snap.shapes.iter().filter(|s| s.accelerator.is_some()) {
            let key = (s.cloud.clone(), s.accelerator.clone().unwrap(), s.accelerator_count.to_bits());
            *kept.entry(key).or_default() |= default_host_admits(s, &caps);
        }
        let lost: Vec<_> = kept.iter().filter(|(_, &k)| !k).map(|(k, _)| k).collect();
        assert!(lost.is_empty(), "{lost:?}");
        // V100:8: at least 32 vCPUs and 128 GiB wherever it is sold.
        let v100x8: Vec<_> = catalog
            .snap
            .shapes
            .iter()
            .filter(|s| s.accelerator.as_deref() == Some("V100") && s.accelerator_count == 8.0)
            .collect();
        assert!(v100x8.iter().any(|s| s.cloud == "aws") && v100x8.iter().any(|s| s.cloud == "gcp"));
        for s in v100x8 {
            assert_eq!(default_host_admits(s, &caps), s.vcpus >= 32.0 && s.memory_gb >= 128.0, "{}", s.instance_type);
        }
        assert_eq!(default_host_for("V100", 8.0), (32.0, 128.0));
        assert_eq!(default_host_for("A10", 0.167), (1.0, 3.0));
    }

    #[test]
    fn the_default_host_applies_only_when_the_task_sizes_nothing() {
        let mut r = crate::config::Resources {
            accelerators: vec![crate::config::Accel { name: "V100".into(), count: 8.0 }],
            ..Default::default()
        };
        assert_eq!(default_host_note(&r).as_deref(), Some("cpus 32+, memory 128+ GiB (the default host for V100:8)"));
        r.accelerators.push(crate::config::Accel { name: "T4".into(), count: 1.0 });
        assert_eq!(
            default_host_note(&r).as_deref(),
            Some("cpus 32+, memory 128+ GiB (the default host for V100:8); cpus 4+, memory 16+ GiB (the default host for T4:1)")
        );
        for set in [
            |r: &mut crate::config::Resources| r.cpus = Some(crate::config::Quantity { value: 1.0, at_least: true }),
            |r: &mut crate::config::Resources| {
                r.memory_gb = Some(crate::config::Quantity { value: 8.0, at_least: true })
            },
            |r: &mut crate::config::Resources| r.instance_type = Some("p3.16xlarge".into()),
        ] {
            let mut x = r.clone();
            set(&mut x);
            assert!(!uses_default_host(&x) && default_host_note(&x).is_none());
        }
        assert!(!uses_default_host(&crate::config::Resources::default()));
    }

    #[test]
    fn residency_globs() {
        let r = Residency::new(&["aws:us-*".into(), "gcp:europe-west4".into()]);
        assert!(r.allows(&Location::new("aws", "us-east-1", "us-east-1a")));
        assert!(!r.allows(&Location::new("aws", "eu-west-1", "eu-west-1a")));
        assert!(r.allows(&Location::new("gcp", "europe-west4", "europe-west4-a")));
        assert!(
            !r.allows(&Location::new("local", "local", "zone-a")),
            "local must be allowed explicitly once regions are set"
        );
        assert!(Residency::new(&[]).allows(&Location::new("azure", "eastus", "eastus")));
    }
}
