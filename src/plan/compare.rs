//! Comparing a plan with a base plan — what a pull request changes in a job, whether or not
//! anything is applied (`skyform plan -compare-to=BASE.json`, Infracost's `--compare-to`).
//!
//! [`Base::parse`] reads the base branch's plan as `skyform show -json` printed it, or as
//! `skyform plan -json`'s event lines. Each side is reduced to its *end state*: where every
//! task runs once the plan is applied and what it costs (a task the plan destroys is gone;
//! a task it leaves alone stays where the state has it). [`compare`] then gives, per task,
//! a [`Change`] from the base's end state to the plan's — created (added by the change),
//! destroyed (removed), migrated (placement moves, or its cost changes) or no-op — so that
//! the views render it in the plan's own grammar. Pure.

use super::{money, Action, Change, Plan, Planned};
use crate::config::TaskAddr;
use crate::state::PlacementRecord;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a base file could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompareError {
    #[error("the base is neither `skyform show -json` output nor `skyform plan -json` lines: {0}")]
    Format(String),
    #[error("the base's {what} is not valid: {detail}")]
    Field { what: String, detail: String },
}

/// One task of the base's end state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseTask {
    pub placement: PlacementRecord,
    pub start_hours: f64,
    pub finish_hours: f64,
    /// USD, what the task costs in the base's end state.
    pub cost: f64,
}

/// The base plan's end state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Base {
    /// The job name the base was planned for.
    pub job: String,
    pub tasks: BTreeMap<TaskAddr, BaseTask>,
    pub makespan_hours: f64,
}

/// A plan compared with its base: per-task changes in the plan's grammar and the totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub base_job: String,
    /// Head's tasks in plan order, then the tasks only the base has.
    pub changes: Vec<Change>,
    pub cost_before: f64,
    pub cost_after: f64,
    pub makespan_before: f64,
    pub makespan_after: f64,
}

impl Comparison {
    /// (added, changed, removed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |a: Action| self.changes.iter().filter(|c| c.action == a).count();
        (n(Action::Create), n(Action::Migrate), n(Action::Destroy))
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }
}

fn decimal(v: &serde_json::Value, what: &str) -> Result<f64, CompareError> {
    let bad = |d: String| CompareError::Field { what: what.to_string(), detail: d };
    match v {
        serde_json::Value::String(s) => {
            s.parse::<Decimal>().map_err(|e| bad(format!("{s:?}: {e}")))?.to_f64().ok_or_else(|| bad(s.clone()))
        }
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| bad(n.to_string())),
        serde_json::Value::Null => Ok(0.0),
        other => Err(bad(other.to_string())),
    }
}

/// A placement as the JSON views write it (`cloud`, `region`, `zone`, `instance_type`,
/// `spot`, `hourly`, `hours`, `cost`, `accelerator`).
fn placement(v: &serde_json::Value, what: &str) -> Result<Option<PlacementRecord>, CompareError> {
    if v.is_null() {
        return Ok(None);
    }
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    if v["cloud"].as_str().is_none() || v["instance_type"].as_str().is_none() {
        return Err(CompareError::Field {
            what: what.to_string(),
            detail: "a placement without cloud or instance_type".into(),
        });
    }
    Ok(Some(PlacementRecord {
        cloud: s("cloud"),
        region: s("region"),
        zone: s("zone"),
        instance_type: s("instance_type"),
        accelerator: v["accelerator"].as_str().map(str::to_string),
        spot: v["spot"].as_bool().unwrap_or(false),
        hourly: decimal(&v["hourly"], what)?,
        hours: v["hours"].as_f64().unwrap_or(0.0),
        cost: decimal(&v["cost"], what)?,
    }))
}

/// The end state of one task from its action, placements and cost after the plan.
fn end_state(
    action: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
    cost_after: &serde_json::Value,
    what: &str,
) -> Result<Option<BaseTask>, CompareError> {
    if matches!(action, "delete" | "destroy") {
        return Ok(None);
    }
    let p = match (action, placement(before, what)?, placement(after, what)?) {
        ("no-op" | "noop", Some(b), _) => b,
        (_, _, Some(a)) => a,
        (_, Some(b), None) => b,
        (_, None, None) => return Ok(None),
    };
    Ok(Some(BaseTask {
        placement: p,
        start_hours: after["start_hours"].as_f64().unwrap_or(0.0),
        finish_hours: after["finish_hours"].as_f64().unwrap_or(0.0),
        cost: decimal(cost_after, what)?,
    }))
}

impl Base {
    /// Reads `skyform show -json` output (one JSON document with `resource_changes`) or
    /// `skyform plan -json` output (event lines with `planned_change` / `planned_noop`).
    pub fn parse(text: &str) -> Result<Base, CompareError> {
        let text = text.trim_start_matches('\u{feff}');
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) {
            if let Some(rc) = doc["resource_changes"].as_array() {
                let mut base = Base {
                    job: doc["job"].as_str().unwrap_or_default().to_string(),
                    makespan_hours: doc["makespan_hours"].as_f64().unwrap_or(0.0),
                    ..Default::default()
                };
                for c in rc {
                    let addr = address(&c["address"])?;
                    let actions: Vec<&str> =
                        c["change"]["actions"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
                    // Terraform's lists: ["create"], ["no-op"], ["update"], ["delete"], and a
                    // replacement as ["delete", "create"] (it ends created).
                    let action = match actions.as_slice() {
                        ["delete"] => "delete",
                        ["no-op"] => "no-op",
                        _ => "create",
                    };
                    let what = format!("change of {addr}");
                    if let Some(t) =
                        end_state(action, &c["change"]["before"], &c["change"]["after"], &c["cost"]["after"], &what)?
                    {
                        base.tasks.insert(addr, t);
                    }
                }
                return Ok(base);
            }
        }
        let mut base = Base::default();
        let mut events = 0;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let e: serde_json::Value =
                serde_json::from_str(line).map_err(|err| CompareError::Format(format!("line {}: {err}", i + 1)))?;
            match e["type"].as_str() {
                Some("planned_change" | "planned_noop") => {
                    let ch = &e["change"];
                    let addr = address(&ch["resource"]["addr"])?;
                    let what = format!("event of {addr}");
                    let action = ch["action"].as_str().unwrap_or_default();
                    if let Some(t) = end_state(action, &ch["before"], &ch["after"], &ch["cost"]["after"], &what)? {
                        base.tasks.insert(addr, t);
                    }
                }
                Some("change_summary") => base.makespan_hours = e["makespan_hours"].as_f64().unwrap_or(0.0),
                Some("version") => base.job = e["job"].as_str().unwrap_or_default().to_string(),
                _ => continue,
            }
            events += 1;
        }
        if events == 0 {
            return Err(CompareError::Format("no plan events in it".into()));
        }
        Ok(base)
    }

    /// What the base costs once applied.
    pub fn cost(&self) -> f64 {
        self.tasks.values().map(|t| t.cost).sum()
    }
}

fn address(v: &serde_json::Value) -> Result<TaskAddr, CompareError> {
    let s = v.as_str().ok_or_else(|| CompareError::Format("a change without an address".into()))?;
    s.parse().map_err(|e: String| CompareError::Field { what: "address".into(), detail: e })
}

/// Where a plan leaves a task: (placement, what the views show of it, cost). A no-op
/// keeps the state's placement; a destroyed task is gone.
fn head_end(c: &Change) -> Option<(PlacementRecord, Planned, f64)> {
    match c.action {
        Action::Destroy => None,
        Action::NoOp => {
            let after = c.after.clone()?;
            let p = c.before.clone().unwrap_or_else(|| after.placement.clone());
            Some((p.clone(), Planned { placement: p, ..after }, c.cost_after))
        }
        _ => c.after.clone().map(|a| (a.placement.clone(), a, c.cost_after)),
    }
}

fn moved(a: &PlacementRecord, b: &PlacementRecord) -> bool {
    a.cloud != b.cloud
        || a.region != b.region
        || a.zone != b.zone
        || a.instance_type != b.instance_type
        || a.spot != b.spot
}

/// The plan compared with its base, task by task (reasons: `added_by_change`,
/// `removed_by_change`, `placement_moves`, `cost_changes`).
pub fn compare(base: &Base, plan: &Plan) -> Comparison {
    let mut changes = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in &plan.changes {
        let Some((p, planned, cost)) = head_end(c) else { continue };
        seen.insert(c.address.clone());
        let b = base.tasks.get(&c.address);
        let (action, reason) = match b {
            None => (Action::Create, Some("added_by_change")),
            Some(b) if moved(&b.placement, &p) => (Action::Migrate, Some("placement_moves")),
            Some(b) if money(b.cost) != money(cost) => (Action::Migrate, Some("cost_changes")),
            Some(_) => (Action::NoOp, None),
        };
        changes.push(Change {
            address: c.address.clone(),
            action,
            reason: reason.map(str::to_string),
            before: b.map(|b| b.placement.clone()),
            after: Some(planned),
            diffs: vec![],
            cost_before: b.map(|b| b.cost).unwrap_or(0.0),
            cost_after: cost,
            detail: None,
        });
    }
    for (addr, b) in &base.tasks {
        if !seen.contains(addr) {
            changes.push(Change {
                address: addr.clone(),
                action: Action::Destroy,
                reason: Some("removed_by_change".into()),
                before: Some(b.placement.clone()),
                after: None,
                diffs: vec![],
                cost_before: b.cost,
                cost_after: 0.0,
                detail: None,
            });
        }
    }
    Comparison {
        base_job: base.job.clone(),
        cost_before: changes.iter().map(|c| c.cost_before).sum(),
        cost_after: changes.iter().map(|c| c.cost_after).sum(),
        changes,
        makespan_before: base.makespan_hours,
        makespan_after: plan.makespan_hours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_that_is_not_a_plan_is_refused() {
        assert!(matches!(Base::parse("{\"x\": 1}"), Err(CompareError::Format(_))));
        assert!(matches!(Base::parse(""), Err(CompareError::Format(_))));
        let bad = r#"{"resource_changes": [{"address": "task.a", "change": {"actions": ["create"], "before": null, "after": {"cloud": "local", "instance_type": "x", "hourly": "abc"}}, "cost": {"after": "1.00"}}]}"#;
        assert!(matches!(Base::parse(bad), Err(CompareError::Field { .. })), "{:?}", Base::parse(bad));
    }

    #[test]
    fn destroyed_tasks_are_not_in_the_end_state() {
        let doc = r#"{"job": "j", "makespan_hours": 2.0, "resource_changes": [
          {"address": "task.a", "change": {"actions": ["delete"], "before": {"cloud": "local", "region": "local", "zone": "z", "instance_type": "t", "spot": false, "hourly": "1.00", "hours": 1.0, "cost": "1.00"}, "after": null}, "cost": {"after": "0.00"}},
          {"address": "task.b", "change": {"actions": ["no-op"], "before": {"cloud": "local", "region": "local", "zone": "z", "instance_type": "t", "spot": false, "hourly": "1.00", "hours": 2.0, "cost": "2.00"}, "after": {"cloud": "local", "region": "local", "zone": "y", "instance_type": "t", "spot": false, "hourly": "0.50", "hours": 2.0, "cost": "1.00", "start_hours": 0.0, "finish_hours": 2.0}}, "cost": {"after": "2.00"}}
        ]}"#;
        let b = Base::parse(doc).unwrap();
        assert_eq!(b.tasks.len(), 1);
        let t = &b.tasks[&TaskAddr("task.b".into())];
        assert_eq!(
            (t.placement.zone.as_str(), t.cost, t.finish_hours),
            ("z", 2.0, 2.0),
            "a no-op stays where the state has it"
        );
        let replaced = doc.replace(r#"["no-op"]"#, r#"["delete", "create"]"#);
        let b = Base::parse(&replaced).unwrap();
        assert_eq!(b.tasks[&TaskAddr("task.b".into())].placement.zone, "y", "a replacement ends where it is created");
    }
}
