//! `plan`: the reviewable result of planning — what will change, where each task runs,
//! and what it costs against what is there now.
//!
//! [`build`] takes the optimizer's [`Assignment`], the [`JobSpec`] and the [`State`] and
//! returns an immutable [`Plan`]: per task a [`Change`] (create, no-op, replace, migrate,
//! destroy) with its reason, the placement before and after, attribute diffs and costs.
//! Plans are saved with `-out` as JSON ([`Plan::encode`]) together with the state lineage
//! and serial, the config snapshot, the variables and the catalog/tracker ids; [`check_saved`]
//! refuses a saved plan that no longer matches the state. Money is a decimal
//! ([`money`]). [`compare`] compares a plan with a base plan (what a pull request
//! changes). Pure; its views (text, JSON, markdown, HTML) are the CLI's (`cli::views`).

pub mod compare;

use crate::catalog::egress::{EgressModel, Place};
use crate::config::{JobSpec, TaskAddr};
use crate::optimize::{Assignment, Placement, Report};
use crate::state::{PlacementRecord, State, TaskStatus};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use skyform_provider::Location;
use std::collections::{BTreeMap, BTreeSet};

/// The plan file format version.
pub const FORMAT_VERSION: &str = "1.0";

/// Rounds dollars to cents as a decimal (never f64 arithmetic on the final figure). A
/// figure that rounds to zero is a positive zero (never `-0.00`).
pub fn money(x: f64) -> Decimal {
    let mut d = Decimal::from_f64_retain(x).unwrap_or_default().round_dp(2);
    d.rescale(2);
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    d
}

/// What happens to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    NoOp,
    Replace,
    Migrate,
    Destroy,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::NoOp => " ",
            Action::Replace => "-/+",
            Action::Migrate => "~",
            Action::Destroy => "-",
        }
    }
    /// Terraform's `change.actions`.
    pub fn actions(self) -> Vec<&'static str> {
        match self {
            Action::Create => vec!["create"],
            Action::NoOp => vec!["no-op"],
            Action::Replace => vec!["delete", "create"],
            Action::Migrate => vec!["update"],
            Action::Destroy => vec!["delete"],
        }
    }
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "will be created",
            Action::NoOp => "is up to date",
            Action::Replace => "must be replaced",
            Action::Migrate => "will be migrated",
            Action::Destroy => "will be destroyed",
        }
    }
}

/// A planned placement with what the plan view shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub placement: PlacementRecord,
    pub accelerator: Option<String>,
    pub num_nodes: u32,
    pub start_hours: f64,
    pub finish_hours: f64,
    /// (what, GB, USD) moved in.
    pub egress_in: Vec<(String, f64, f64)>,
    pub egress_out: Vec<(String, f64, f64)>,
    pub storage_cost: f64,
    /// (location, instance label, cost delta)
    pub fallbacks: Vec<(String, String, f64)>,
    /// The same alternatives as placements, best first (failover walks them).
    #[serde(default)]
    pub alternatives: Vec<PlacementRecord>,
}

/// A displayed attribute change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrDiff {
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub sensitive: bool,
}

/// One task's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: TaskAddr,
    pub action: Action,
    /// Terraform-style `action_reason`.
    pub reason: Option<String>,
    pub before: Option<PlacementRecord>,
    pub after: Option<Planned>,
    pub diffs: Vec<AttrDiff>,
    pub cost_before: f64,
    pub cost_after: f64,
    /// Why a running task moves or stays (re-optimization): what moving saves of its
    /// remaining cost, net of transfers and lost work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A live run of an unfinished task, as re-optimization weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Hours the run has gone on.
    pub elapsed_hours: f64,
    /// The hourly price of its placement now (the tracker's latest spot price, else the
    /// catalog's).
    pub hourly_now: f64,
}

/// What moving a running task would save (USD): its remaining cost where it is against
/// starting over at the new placement (no checkpoint: from zero) plus the transfers of
/// its inputs there.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Move {
    remaining: f64,
    there: f64,
    transfers: f64,
}

impl Move {
    fn saving(&self) -> f64 {
        self.remaining - self.there - self.transfers
    }
}

/// Whether a move keeps the run's progress: the task has a checkpoint (`apply` copies it
/// to the new placement's object store when that is another one).
fn continues(task: &crate::config::Task) -> bool {
    task.checkpoint.is_some()
}

/// What moving the checkpoint from `before` to `after` costs: its estimated size at the
/// egress price between them (nothing within a cloud's region, whose store it shares).
fn checkpoint_move(task: &crate::config::Task, before: &PlacementRecord, after: &PlacementRecord) -> f64 {
    let Some(c) = &task.checkpoint else { return 0.0 };
    if before.cloud == after.cloud && before.region == after.region {
        return 0.0;
    }
    let at = |p: &PlacementRecord| Place::from(&Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str()));
    EgressModel::default().egress(&at(before), &at(after), c.size_gb).0
}

fn assess(task: &crate::config::Task, before: &PlacementRecord, p: &Placement, prog: &Progress) -> Move {
    let nodes = task.resources.num_nodes.max(1) as f64;
    let remaining_hours = (before.hours - prog.elapsed_hours).max(0.0);
    // With its checkpoint the run goes on there for the share of the work left; else it
    // starts over.
    let share = if continues(task) && before.hours > 0.0 { remaining_hours / before.hours } else { 1.0 };
    // Resuming takes a while (start, setup, restore), paid at the new placement's price.
    let restart = match &task.checkpoint {
        Some(c) if p.choice.hours > 0.0 => p.choice.compute_cost / p.choice.hours * c.restart_hours,
        _ => 0.0,
    };
    Move {
        remaining: remaining_hours * prog.hourly_now * nodes,
        there: p.choice.compute_cost * share + restart,
        transfers: p.egress_in.iter().map(|t| t.cost).sum::<f64>()
            + p.choice.storage_cost
            + checkpoint_move(task, before, &record(p)),
    }
}

fn where_(p: &PlacementRecord) -> String {
    format!("{}/{}{}", p.cloud, p.zone, if p.spot { " (spot)" } else { "" })
}

/// The sentence a plan shows for a running task that moves or stays.
fn explain(
    task: &crate::config::Task,
    before: &PlacementRecord,
    after: &PlacementRecord,
    prog: &Progress,
    m: &Move,
    r: &crate::config::Reoptimize,
    go: bool,
) -> String {
    let usd = |x: f64| format!("${}", money(x));
    let price = if (prog.hourly_now - before.hourly).abs() > 1e-9 {
        let verb = if prog.hourly_now < before.hourly { "fell" } else { "rose" };
        format!("price in {} {verb} from {}/h to {}/h", where_(before), usd(before.hourly), usd(prog.hourly_now))
    } else {
        format!("{} costs {}/h", where_(before), usd(prog.hourly_now))
    };
    let there = format!("{} costs {}/h", where_(after), usd(after.hourly));
    let restart = if continues(task) {
        let left = (before.hours - prog.elapsed_hours).max(0.0) / before.hours.max(1e-9) * after.hours;
        let moved = checkpoint_move(task, before, after);
        let restart = task.checkpoint.as_ref().map(|c| c.restart_hours).unwrap_or(0.0);
        let restart = if restart > 0.0 { format!(" + {restart:.1} h to restart") } else { String::new() };
        if before.cloud == after.cloud && before.region == after.region {
            format!("from its checkpoint: {left:.1} h left there{restart}")
        } else {
            format!(
                "from its checkpoint, moved from {}/{} for {}: {left:.1} h left there{restart}",
                before.cloud,
                before.region,
                usd(moved)
            )
        }
    } else {
        format!("no checkpoint: it starts over there ({:.1} h)", after.hours)
    };
    if go {
        format!(
            "{price}, {there}; moving saves {} of the remaining {} after {} of transfers ({restart})",
            usd(m.saving()),
            usd(m.remaining),
            usd(m.transfers)
        )
    } else {
        format!(
            "{price}, {there}; moving would save {} of the remaining {} after {} of transfers ({restart}): under policy.reoptimize ({:.0}% and {}), it stays",
            usd(m.saving()),
            usd(m.remaining),
            usd(m.transfers),
            r.min_saving * 100.0,
            usd(r.min_saving_usd)
        )
    }
}

/// A whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub job: String,
    pub lineage: String,
    pub serial: u64,
    pub destroy: bool,
    pub changes: Vec<Change>,
    pub cost_before: f64,
    pub cost_after: f64,
    pub makespan_hours: f64,
    pub config: JobSpec,
    pub catalog_id: String,
    pub tracker_id: String,
    pub report: Option<Report>,
    pub warnings: Vec<String>,
    /// The base plan this one is compared with (`plan -compare-to`), kept in a saved plan
    /// so that `show` and `comment` render the comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<compare::Base>,
    /// A refresh-only plan (`plan -refresh-only`): no task changes; applying it records
    /// `drift` in the state without touching any resource.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_only: bool,
    /// What a refresh found changed outside skyform, per task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drift: BTreeMap<TaskAddr, String>,
}

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub destroy: bool,
    pub replace: Vec<TaskAddr>,
    pub target: Vec<TaskAddr>,
    pub exclude: Vec<TaskAddr>,
    /// Unfinished tasks whose live allocation changed outside skyform (a refresh found it
    /// gone or interrupted): they are replaced.
    pub changed_outside: BTreeSet<TaskAddr>,
    /// Live runs of unfinished tasks (the caller reads them from the state with its clock
    /// and the tracker's prices): a running task moves only when that passes
    /// `policy.reoptimize`.
    pub progress: BTreeMap<TaskAddr, Progress>,
    pub catalog_id: String,
    pub tracker_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("Saved plan is stale: the job's configuration changed since it was made; run skyform plan again")]
    ConfigChanged,
    #[error("-{flag}={addr}: there is no such task in the job{}", .hint.as_ref().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default())]
    UnknownTask { flag: &'static str, addr: String, hint: Option<String> },
    #[error(
        "Saved plan does not match the given state: the plan was made for state lineage {plan}, the state's is {state}"
    )]
    LineageMismatch { plan: String, state: String },
    #[error(
        "Saved plan is stale: the state changed since it was made (serial {plan} → {state}); run skyform plan again"
    )]
    Stale { plan: u64, state: u64 },
    #[error("Saved plan refused: prices moved {drift:.1}% since it was made (${old} → ${new}), more than policy.max_cost_drift ({max:.1}%); run skyform plan again")]
    PriceDrift { old: Decimal, new: Decimal, drift: f64, max: f64 },
    #[error("cannot read the plan file: {0}")]
    Decode(String),
}

/// `V100:8` of a candidate with accelerators.
fn accelerator(c: &crate::resolve::Candidate) -> Option<String> {
    c.accelerator.as_ref().map(|a| format!("{a}:{}", crate::catalog::fmt_count(c.accelerator_count)))
}

fn record(p: &Placement) -> PlacementRecord {
    let c = &p.choice;
    PlacementRecord {
        cloud: c.location.cloud.clone(),
        region: c.location.region.clone(),
        zone: c.location.zone.clone(),
        instance_type: c.instance_type.clone(),
        accelerator: accelerator(c),
        spot: c.spot,
        hourly: c.hourly,
        hours: c.hours,
        cost: p.total_cost,
    }
}

/// What the plan shows (and failover walks) of one optimized placement.
pub fn planned(p: &Placement) -> Planned {
    let c = &p.choice;
    Planned {
        placement: record(p),
        accelerator: accelerator(c),
        num_nodes: p.num_nodes,
        start_hours: p.start_hours,
        finish_hours: p.finish_hours,
        egress_in: p
            .egress_in
            .iter()
            .filter_map(|t| t.output.as_ref().map(|o| (format!("{o} from {}", t.from), t.size_gb, t.cost)))
            .collect(),
        egress_out: p
            .egress_out
            .iter()
            .filter_map(|t| t.output.as_ref().map(|o| (format!("{o} to {}", t.to), t.size_gb, t.cost)))
            .collect(),
        storage_cost: c.storage_cost,
        fallbacks: p
            .fallbacks
            .iter()
            .map(|f| (f.candidate.location.to_string(), f.candidate.label(), f.delta))
            .collect(),
        alternatives: p
            .fallbacks
            .iter()
            .map(|f| PlacementRecord {
                cloud: f.candidate.location.cloud.clone(),
                region: f.candidate.location.region.clone(),
                zone: f.candidate.location.zone.clone(),
                instance_type: f.candidate.instance_type.clone(),
                accelerator: accelerator(&f.candidate),
                spot: f.candidate.spot,
                hourly: f.candidate.hourly,
                hours: f.candidate.hours,
                cost: f.cost,
            })
            .collect(),
    }
}

/// The planned view of a task that stays where it runs: its placement as recorded, the
/// rest (schedule, transfers) from the new plan.
fn kept(b: PlacementRecord, after: Option<Planned>) -> Planned {
    match after {
        Some(mut a) => {
            a.placement = b;
            a
        }
        None => Planned {
            placement: b,
            accelerator: None,
            num_nodes: 1,
            start_hours: 0.0,
            finish_hours: 0.0,
            egress_in: vec![],
            egress_out: vec![],
            storage_cost: 0.0,
            fallbacks: vec![],
            alternatives: vec![],
        },
    }
}

/// A task's displayed attributes, for attribute diffs: name → (value, sensitive).
pub fn task_attrs(task: &crate::config::Task, sensitive_values: &[String]) -> BTreeMap<String, (String, bool)> {
    let mut m = BTreeMap::new();
    let is_sensitive = |s: &str| sensitive_values.iter().any(|v| s.contains(v.as_str()));
    m.insert("run".into(), (task.run.clone(), is_sensitive(&task.run)));
    if let Some(s) = &task.setup {
        m.insert("setup".into(), (s.clone(), is_sensitive(s)));
    }
    for (k, v) in &task.env {
        m.insert(format!("env.{k}"), (v.clone(), is_sensitive(v)));
    }
    m.insert("resources".into(), (task.resources.describe(), false));
    if let Some(e) = &task.estimate {
        m.insert("estimate".into(), (e.source.clone(), false));
    }
    m
}

/// Values of sensitive variables (which attribute values must not show).
pub fn sensitive_values(spec: &JobSpec) -> Vec<String> {
    spec.sensitive_values()
}

/// Builds the plan. `previous` is the config the state was applied from (for attribute
/// diffs), when known.
pub fn build(
    spec: &JobSpec,
    assignment: Option<&Assignment>,
    state: &State,
    opts: &Options,
) -> Result<Plan, PlanError> {
    let secrets = sensitive_values(spec);
    let known: Vec<&str> =
        spec.tasks.keys().map(|k| k.as_str()).chain(state.tasks.keys().map(|k| k.as_str())).collect();
    for (flag, list) in [("replace", &opts.replace), ("target", &opts.target), ("exclude", &opts.exclude)] {
        for a in list {
            if !spec.tasks.contains_key(a) && !state.tasks.contains_key(a) {
                return Err(PlanError::UnknownTask {
                    flag,
                    addr: a.to_string(),
                    hint: crate::config::diag::did_you_mean(a.as_str(), known.iter().copied()),
                });
            }
        }
    }
    let order = spec.topo_order();
    let mut changes: Vec<Change> = Vec::new();
    let mut rerun: BTreeSet<TaskAddr> = BTreeSet::new();
    if !opts.destroy {
        for addr in &order {
            let task = &spec.tasks[addr];
            let p = assignment.and_then(|a| a.get(addr));
            let after = p.map(planned);
            let cost_after = p.map(|p| p.total_cost).unwrap_or(0.0);
            let st = state.tasks.get(addr);
            let inputs_change = task.upstream().iter().any(|u| rerun.contains(u));
            let mut detail: Option<String> = None;
            let (action, reason) = match st {
                None => (Action::Create, None),
                Some(s) if s.placement.is_none() && s.runs.is_empty() => (Action::Create, None),
                Some(s) => {
                    let spec_changed = s.spec_hash != task.spec_hash;
                    if opts.replace.contains(addr) {
                        (Action::Replace, Some("replace_by_request"))
                    } else if s.tainted || s.status == TaskStatus::Failed {
                        (Action::Replace, Some("replace_because_tainted"))
                    } else if spec_changed {
                        (Action::Replace, Some("replace_because_spec_changed"))
                    } else if inputs_change {
                        (Action::Replace, Some("replace_because_an_input_changes"))
                    } else if s.status == TaskStatus::Succeeded {
                        (Action::NoOp, None)
                    } else if opts.changed_outside.contains(addr) {
                        (Action::Replace, Some("replace_because_changed_outside"))
                    } else {
                        let moved = match (&s.placement, &after) {
                            (Some(b), Some(a)) => {
                                b.cloud != a.placement.cloud
                                    || b.zone != a.placement.zone
                                    || b.instance_type != a.placement.instance_type
                                    || b.spot != a.placement.spot
                            }
                            _ => false,
                        };
                        let running = opts.progress.get(addr).zip(s.placement.as_ref()).zip(p);
                        match running {
                            // A live run: moving must pay for itself past the hysteresis.
                            Some(((prog, b), p)) if moved => {
                                let m = assess(task, b, p, prog);
                                let r = &spec.policy.reoptimize;
                                let go = m.saving() >= (r.min_saving * m.remaining).max(r.min_saving_usd) - 1e-9;
                                detail = Some(explain(task, b, &planned(p).placement, prog, &m, r, go));
                                if go {
                                    (Action::Migrate, Some("migrate_to_cheaper_placement"))
                                } else {
                                    (Action::NoOp, None)
                                }
                            }
                            _ if moved => {
                                let cheaper = s.placement.as_ref().is_some_and(|b| cost_after < b.cost);
                                (
                                    Action::Migrate,
                                    Some(if cheaper {
                                        "migrate_to_cheaper_placement"
                                    } else {
                                        "migrate_placement_changed"
                                    }),
                                )
                            }
                            // Not finished and nothing of it is left where it stays (an
                            // allocation a refresh-only apply recorded as gone): it runs
                            // again (from its checkpoint when it has one).
                            _ if !s.is_live() => (Action::Create, None),
                            _ => (Action::NoOp, None),
                        }
                    }
                }
            };
            if matches!(action, Action::Create | Action::Replace) {
                rerun.insert(addr.clone());
            }
            let before = st.and_then(|s| s.placement.clone());
            let cost_before = before.as_ref().map(|b| b.cost).unwrap_or(0.0);
            // A running task that stays keeps its placement.
            let (cost_after, after) = if action == Action::NoOp {
                match st.and_then(|s| s.placement.clone()).filter(|_| detail.is_some()) {
                    Some(b) => (cost_before, Some(kept(b, after))),
                    None => (cost_before, after),
                }
            } else {
                (cost_after, after)
            };
            let diffs = if action == Action::Replace || action == Action::Create {
                attr_diffs(st.and_then(|s| s.spec.as_ref()), task, action, &secrets)
            } else {
                vec![]
            };
            changes.push(Change {
                address: addr.clone(),
                action,
                reason: reason.map(str::to_string),
                before,
                after,
                diffs,
                cost_before,
                cost_after,
                detail,
            });
        }
    }
    for (addr, s) in &state.tasks {
        if opts.destroy || !spec.tasks.contains_key(addr) {
            let before = s.placement.clone();
            let cost_before = before.as_ref().map(|b| b.cost).unwrap_or(0.0);
            changes.push(Change {
                address: addr.clone(),
                action: Action::Destroy,
                reason: Some(
                    if opts.destroy { "delete_because_destroy_requested" } else { "delete_because_no_resource_config" }
                        .into(),
                ),
                before,
                after: None,
                diffs: vec![],
                cost_before,
                cost_after: 0.0,
                detail: None,
            });
        }
    }
    let changes = select(spec, changes, opts);
    let cost_before = changes.iter().map(|c| c.cost_before).sum();
    let cost_after = changes.iter().map(|c| c.cost_after).sum();
    Ok(Plan {
        format_version: FORMAT_VERSION.into(),
        job: spec.name.clone(),
        // A state never committed has no lineage yet (a fresh one is drawn for each read):
        // the plan records none, so plans of the same inputs are identical.
        lineage: if state.serial == 0 { String::new() } else { state.lineage.clone() },
        serial: state.serial,
        destroy: opts.destroy,
        changes,
        cost_before,
        cost_after,
        makespan_hours: assignment.map(|a| a.makespan_hours).unwrap_or(0.0),
        config: spec.clone(),
        catalog_id: opts.catalog_id.clone(),
        tracker_id: opts.tracker_id.clone(),
        report: assignment.map(|a| a.report.clone()),
        warnings: vec![],
        base: None,
        refresh_only: false,
        drift: BTreeMap::new(),
    })
}

fn attr_diffs(
    previous: Option<&crate::config::Task>,
    task: &crate::config::Task,
    action: Action,
    secrets: &[String],
) -> Vec<AttrDiff> {
    let after = task_attrs(task, secrets);
    let before = match (previous, action) {
        (Some(p), Action::Replace) => task_attrs(p, secrets),
        _ => BTreeMap::new(),
    };
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let b = before.get(k);
            let a = after.get(k);
            // The state keeps tasks redacted: compare what would be shown.
            let shown = |x: Option<&(String, bool)>| x.map(|x| crate::config::redact_str(&x.0, secrets));
            if action == Action::Replace && shown(b) == shown(a) {
                return None;
            }
            let sensitive = b.is_some_and(|x| x.1) || a.is_some_and(|x| x.1);
            // A plan never carries a sensitive value, not even to show that it changed.
            let value = |x: Option<&(String, bool)>| {
                x.map(|x| if sensitive { crate::config::REDACTED.to_string() } else { x.0.clone() })
            };
            Some(AttrDiff { name: k.clone(), before: value(b), after: value(a), sensitive })
        })
        .collect()
}

/// `-target` keeps the targets and everything they depend on; `-exclude` drops the
/// excluded tasks and everything that depends on them.
fn select(spec: &JobSpec, changes: Vec<Change>, opts: &Options) -> Vec<Change> {
    let mut keep: Option<BTreeSet<TaskAddr>> = None;
    if !opts.target.is_empty() {
        let mut set = BTreeSet::new();
        let mut stack: Vec<TaskAddr> = opts.target.clone();
        while let Some(a) = stack.pop() {
            if set.insert(a.clone()) {
                if let Some(t) = spec.tasks.get(&a) {
                    stack.extend(t.upstream());
                }
            }
        }
        keep = Some(set);
    }
    let mut drop: BTreeSet<TaskAddr> = opts.exclude.iter().cloned().collect();
    loop {
        let before = drop.len();
        for t in spec.tasks.values() {
            if t.upstream().iter().any(|u| drop.contains(u)) {
                drop.insert(t.address.clone());
            }
        }
        if drop.len() == before {
            break;
        }
    }
    changes
        .into_iter()
        .filter(|c| keep.as_ref().is_none_or(|k| k.contains(&c.address)) && !drop.contains(&c.address))
        .collect()
}

impl Plan {
    /// Counts in Terraform's sense: replace is one add and one destroy.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut add = 0;
        let mut change = 0;
        let mut destroy = 0;
        for c in &self.changes {
            match c.action {
                Action::Create => add += 1,
                Action::Replace => {
                    add += 1;
                    destroy += 1
                }
                Action::Migrate => change += 1,
                Action::Destroy => destroy += 1,
                Action::NoOp => {}
            }
        }
        (add, change, destroy)
    }

    /// The refresh-only form of this plan: what drifted, and no task change.
    pub fn refresh_only(self, drift: BTreeMap<TaskAddr, String>) -> Plan {
        let cost = self.cost_before;
        Plan { changes: vec![], cost_after: cost, refresh_only: true, drift, report: None, ..self }
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }

    /// The saved-plan file: JSON, with every sensitive value of the configuration redacted
    /// (`apply FILE` takes them from the job's files again; [`Plan::with_config`]).
    pub fn encode(&self) -> String {
        let saved = Plan { config: self.config.redacted(), ..self.clone() };
        serde_json::to_string_pretty(&serde_json::json!({"skyform_plan": saved})).expect("serializable")
    }

    /// A decoded (redacted) plan with the configuration it was made from, loaded again
    /// from the job's files: refused when the configuration changed since (any task's hash,
    /// the set of tasks, or what the plan shows of it).
    pub fn with_config(mut self, current: &JobSpec) -> Result<Plan, PlanError> {
        // What the plan depends on, positions aside (a `fmt` does not make a plan stale).
        let essence = |j: &JobSpec| {
            let tasks: Vec<(TaskAddr, String)> =
                j.tasks.iter().map(|(k, t)| (k.clone(), t.spec_hash.clone())).collect();
            let outputs: Vec<(String, serde_json::Value)> =
                j.outputs.iter().map(|(k, o)| (k.clone(), o.value.clone())).collect();
            (tasks, j.variables.clone(), outputs)
        };
        if essence(&self.config) != essence(&current.redacted()) {
            return Err(PlanError::ConfigChanged);
        }
        self.config = current.clone();
        Ok(self)
    }

    pub fn decode(s: &str) -> Result<Plan, PlanError> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| PlanError::Decode(e.to_string()))?;
        let p = v.get("skyform_plan").ok_or_else(|| PlanError::Decode("not a skyform plan file".into()))?;
        serde_json::from_value(p.clone()).map_err(|e| PlanError::Decode(e.to_string()))
    }

    /// Guardrails of `policy.fail_if` that this plan breaks, named.
    pub fn guardrail_failures(&self) -> Vec<String> {
        let f = &self.config.policy.fail_if;
        let mut out = Vec::new();
        if let Some(max) = f.total_cost_over {
            if self.cost_after > max {
                out.push(format!(
                    "policy.fail_if.total_cost_over: the planned cost ${} is over ${}",
                    money(self.cost_after),
                    money(max)
                ));
            }
        }
        if let Some(frac) = f.increase_over {
            if self.cost_before > 0.0 && (self.cost_after - self.cost_before) / self.cost_before > frac {
                out.push(format!(
                    "policy.fail_if.increase_over: the cost rises {:.1}% (${} → ${}), more than {:.1}%",
                    (self.cost_after - self.cost_before) / self.cost_before * 100.0,
                    money(self.cost_before),
                    money(self.cost_after),
                    frac * 100.0
                ));
            }
        }
        out
    }
}

/// Refuses a saved plan that does not match the state, or whose total moved more than
/// `policy.max_cost_drift` when re-priced at `repriced_total`.
pub fn check_saved(plan: &Plan, state: &State, repriced_total: Option<f64>) -> Result<(), PlanError> {
    let empty = state.serial == 0 && state.tasks.is_empty();
    if plan.serial == 0 {
        // Made against an empty state: valid only while the state is still empty.
        if !empty {
            return Err(PlanError::Stale { plan: 0, state: state.serial });
        }
    } else {
        if plan.lineage != state.lineage {
            return Err(PlanError::LineageMismatch { plan: plan.lineage.clone(), state: state.lineage.clone() });
        }
        if plan.serial != state.serial {
            return Err(PlanError::Stale { plan: plan.serial, state: state.serial });
        }
    }
    if let Some(new) = repriced_total {
        let old = plan.cost_after;
        let max = plan.config.policy.max_cost_drift;
        if old > 0.0 && ((new - old) / old).abs() > max {
            return Err(PlanError::PriceDrift {
                old: money(old),
                new: money(new),
                drift: (new - old) / old * 100.0,
                max: max * 100.0,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_decimal_cents() {
        assert_eq!(money(412.304).to_string(), "412.30");
        assert_eq!(money(0.1 + 0.2).to_string(), "0.30");
        assert_eq!(money(-0.0).to_string(), "0.00");
        assert_eq!(money(-0.004).to_string(), "0.00");
        assert_eq!(money(-1.5).to_string(), "-1.50");
    }

    #[test]
    fn saved_plan_checks() {
        let mut state = State::new();
        state.serial = 3;
        state.tasks.insert(TaskAddr("task.a".into()), Default::default());
        let spec = crate::bench::generate(crate::bench::Shape::Chain, 2, crate::config::Objective::Cost, 1);
        let mut plan = build(&spec, None, &state, &Options::default()).unwrap();
        assert!(check_saved(&plan, &state, None).is_ok());
        let mut later = state.clone();
        later.serial = 4;
        assert!(matches!(check_saved(&plan, &later, None), Err(PlanError::Stale { .. })));
        let mut other = state.clone();
        other.lineage = "other".into();
        assert!(check_saved(&plan, &other, None)
            .unwrap_err()
            .to_string()
            .starts_with("Saved plan does not match the given state"));
        plan.cost_after = 100.0;
        let e = check_saved(&plan, &state, Some(115.0)).unwrap_err();
        assert!(e.to_string().contains("prices moved 15.0%"), "{e}");
        assert!(check_saved(&plan, &state, Some(105.0)).is_ok());
        let back = Plan::decode(&plan.encode()).unwrap();
        assert_eq!(back, plan);
    }

    /// A checkpointed task keeps its progress wherever it moves; moving its checkpoint out
    /// of its region costs its size at the egress price (AWS between US regions: $0.02/GB).
    #[test]
    fn a_checkpoint_moves_with_its_task_at_the_egress_price() {
        let spec = crate::bench::generate(crate::bench::Shape::Chain, 1, crate::config::Objective::Cost, 1);
        let mut task = spec.tasks.values().next().unwrap().clone();
        let at = |region: &str| PlacementRecord {
            cloud: "aws".into(),
            region: region.into(),
            zone: format!("{region}a"),
            instance_type: "m5.large".into(),
            accelerator: None,
            spot: true,
            hourly: 1.0,
            hours: 10.0,
            cost: 10.0,
        };
        let (east, west, east_b) =
            (at("us-east-1"), at("us-west-2"), PlacementRecord { zone: "us-east-1b".into(), ..at("us-east-1") });
        assert_eq!(checkpoint_move(&task, &east, &west), 0.0, "no checkpoint, nothing to move");
        assert!(!continues(&task));
        task.checkpoint = Some(crate::config::Checkpoint {
            path: "ckpt".into(),
            every_hours: 0.5,
            size_gb: 100.0,
            restart_hours: 0.0,
        });
        assert!(continues(&task));
        assert!((checkpoint_move(&task, &east, &west) - 2.0).abs() < 1e-9);
        assert_eq!(checkpoint_move(&task, &east, &east_b), 0.0, "the region's store is shared by its zones");
    }
}
