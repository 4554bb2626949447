//! Views of a [`Plan`]: Terraform's text grammar with a cost clause, the `show -json`
//! document, the markdown pull-request comment, and the line-delimited JSON events of
//! `plan -json`. Pure: each returns a string.

use crate::plan::{money, Action, Change, Plan};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `$412.30`
pub fn usd(x: f64) -> String {
    format!("${}", money(x))
}

/// `$412.30 → $287.10 (−$125.20, −30.4%)`
pub fn cost_change(before: f64, after: f64) -> String {
    let (b, a) = (money(before), money(after));
    let delta = a - b;
    let sign = if delta < Decimal::ZERO { "−" } else { "+" };
    let pct = if before > 0.0 {
        let p = (after - before) / before * 100.0;
        format!(", {}{:.1}%", if p < 0.0 { "−" } else { "+" }, p.abs())
    } else {
        String::new()
    };
    format!("${b} → ${a} ({sign}${}{pct})", delta.abs())
}

/// How the optimizer found the placement: `Optimized in 12.3 ms (ilp: 420 variables, 310 constraints).`
pub fn solve_line(r: &crate::optimize::Report) -> String {
    format!(
        "Optimized in {:.1} ms ({}: {} variables, {} constraints).",
        r.solve_ms, r.method, r.variables, r.constraints
    )
}

/// The one-line summary, grep-compatible with Terraform's.
pub fn summary_line(plan: &Plan) -> String {
    if !plan.has_changes() {
        return "No changes. Your job matches the configuration.".into();
    }
    let (a, c, d) = plan.counts();
    format!(
        "Plan: {a} to add, {c} to change, {d} to destroy. Cost: {}.",
        cost_change(plan.cost_before, plan.cost_after)
    )
}

fn location(p: &crate::state::PlacementRecord) -> String {
    skyform_provider::Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str()).to_string()
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn symbol_colored(a: Action, color: bool) -> String {
    let code = match a {
        Action::Create => "32",
        Action::Destroy => "31",
        Action::Replace => "33",
        Action::Migrate => "33",
        Action::NoOp => "0",
    };
    paint(a.symbol(), code, color)
}

/// The human view.
pub fn text(plan: &Plan, color: bool) -> String {
    let mut s = String::new();
    if !plan.has_changes() {
        let _ = writeln!(s, "{}", summary_line(plan));
        let _ = writeln!(s, "Cost: {} (unchanged).", usd(plan.cost_after));
        return s;
    }
    let used: std::collections::BTreeSet<Action> =
        plan.changes.iter().map(|c| c.action).filter(|a| *a != Action::NoOp).collect();
    let _ = writeln!(s, "skyform used the catalog and the tracker to generate the following execution plan.");
    let _ = writeln!(s, "Resource actions are indicated with the following symbols:");
    for a in &used {
        let label = match a {
            Action::Create => "create",
            Action::Migrate => "migrate to another placement",
            Action::Replace => "destroy and then create replacement",
            Action::Destroy => "destroy",
            Action::NoOp => continue,
        };
        let _ = writeln!(s, "  {:>3} {label}", symbol_colored(*a, color));
    }
    // Summary table by action and cloud.
    let mut groups: BTreeMap<(Action, String), (usize, f64, f64)> = BTreeMap::new();
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let cloud = c
            .after
            .as_ref()
            .map(|a| a.placement.cloud.clone())
            .or_else(|| c.before.as_ref().map(|b| b.cloud.clone()))
            .unwrap_or_else(|| "-".into());
        let e = groups.entry((c.action, cloud)).or_default();
        e.0 += 1;
        e.1 += c.cost_before;
        e.2 += c.cost_after;
    }
    let _ = writeln!(s);
    let mut rows = vec![vec!["ACTION".to_string(), "CLOUD".into(), "TASKS".into(), "BEFORE".into(), "AFTER".into()]];
    for ((a, cloud), (n, b, af)) in &groups {
        rows.push(vec![format!("{:?}", a).to_lowercase(), cloud.clone(), n.to_string(), usd(*b), usd(*af)]);
    }
    for line in super::table(&rows).lines() {
        let _ = writeln!(s, "  {line}");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "skyform will perform the following actions:");
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let _ = writeln!(s);
        block(&mut s, c, color);
    }
    let _ = writeln!(s);
    if plan.makespan_hours > 0.0 {
        let _ = writeln!(s, "Makespan: {:.2} h.", plan.makespan_hours);
    }
    let _ = writeln!(s, "{}", paint(&summary_line(plan), "1", color));
    s
}

fn block(s: &mut String, c: &Change, color: bool) {
    let reason = match c.reason.as_deref() {
        Some("replace_because_spec_changed") => " (its configuration changed)",
        Some("replace_because_tainted") => " (tainted after a failure)",
        Some("replace_by_request") => " (as requested with -replace)",
        Some("replace_because_an_input_changes") => " (an input changes)",
        Some("migrate_to_cheaper_placement") => " (a cheaper placement)",
        Some("delete_because_no_resource_config") => " (it is no longer in the configuration)",
        _ => "",
    };
    let _ = writeln!(s, "  # {} {}{reason}", c.address, c.action.verb());
    let name = c.address.name();
    let pad = " ".repeat(3usize.saturating_sub(c.action.symbol().len()));
    let _ = writeln!(s, "{pad}{} task \"{name}\" {{", symbol_colored(c.action, color));
    let mut rows: Vec<(String, String, Option<String>)> = Vec::new(); // (key, value, before)
    match (&c.before, &c.after) {
        (b, Some(a)) => {
            let p = &a.placement;
            let bl = b.as_ref().map(location);
            let here = location(p);
            rows.push((
                "placement".into(),
                format!("\"{here}\""),
                bl.filter(|x| *x != here).map(|x| format!("\"{x}\"")),
            ));
            let bt = b.as_ref().map(|b| b.instance_type.clone());
            rows.push((
                "instance_type".into(),
                format!("\"{}\"", p.instance_type),
                bt.filter(|x| *x != p.instance_type).map(|x| format!("\"{x}\"")),
            ));
            if let Some(acc) = &a.accelerator {
                rows.push(("accelerator".into(), format!("\"{acc}\""), None));
            }
            rows.push((
                "spot".into(),
                p.spot.to_string(),
                b.as_ref().filter(|b| b.spot != p.spot).map(|b| b.spot.to_string()),
            ));
            if a.num_nodes > 1 {
                rows.push(("num_nodes".into(), a.num_nodes.to_string(), None));
            }
            rows.push(("hours".into(), format!("{:.2}", p.hours), None));
            rows.push(("hourly".into(), format!("\"${:.4}/h\"", p.hourly), None));
            rows.push((
                "cost".into(),
                format!("\"{}\"", usd(c.cost_after)),
                b.as_ref()
                    .map(|_| format!("\"{}\"", usd(c.cost_before)))
                    .filter(|x| *x != format!("\"{}\"", usd(c.cost_after))),
            ));
            rows.push(("schedule".into(), format!("\"{:.2} h → {:.2} h\"", a.start_hours, a.finish_hours), None));
            if a.storage_cost > 0.0 {
                rows.push(("storage_egress".into(), format!("\"{}\"", usd(a.storage_cost)), None));
            }
            for (what, gb, cost) in &a.egress_in {
                rows.push(("egress_in".into(), format!("\"{what}: {gb} GB, {}\"", usd(*cost)), None));
            }
            for (what, gb, cost) in &a.egress_out {
                rows.push(("egress_out".into(), format!("\"{what}: {gb} GB, {}\"", usd(*cost)), None));
            }
        }
        (Some(b), None) => {
            rows.push(("placement".into(), format!("\"{}\"", location(b)), None));
            rows.push(("instance_type".into(), format!("\"{}\"", b.instance_type), None));
            rows.push(("cost".into(), format!("\"{}\"", usd(c.cost_before)), None));
        }
        _ => {}
    }
    let width = rows
        .iter()
        .map(|r| r.0.len())
        .chain(c.diffs.iter().filter(|d| !d.after.as_deref().unwrap_or("").contains('\n')).map(|d| d.name.len()))
        .max()
        .unwrap_or(0);
    let inner = match c.action {
        Action::Create | Action::Replace => "+",
        Action::Destroy => "-",
        _ => " ",
    };
    for (k, v, before) in &rows {
        match before {
            Some(b) => {
                let _ = writeln!(s, "      {} {k:<width$} = {b} -> {v}", paint("~", "33", color));
            }
            None => {
                let _ = writeln!(s, "      {inner} {k:<width$} = {v}");
            }
        }
    }
    for d in &c.diffs {
        attr_diff(s, d, width, color);
    }
    if let Some(a) = &c.after {
        if !a.fallbacks.is_empty() {
            let _ = writeln!(s, "        # fallbacks, in order:");
            for (loc, label, delta) in a.fallbacks.iter().take(3) {
                let _ = writeln!(s, "        #   {loc} {label} (+{})", usd(*delta));
            }
        }
    }
    let _ = writeln!(s, "    }}");
}

fn attr_diff(s: &mut String, d: &crate::plan::AttrDiff, width: usize, color: bool) {
    let show =
        |v: &Option<String>| v.as_ref().map(|v| if d.sensitive { "(sensitive value)".to_string() } else { v.clone() });
    let (b, a) = (show(&d.before), show(&d.after));
    let multiline = a.as_deref().unwrap_or("").contains('\n') || b.as_deref().unwrap_or("").contains('\n');
    if multiline && !d.sensitive {
        let sym = if b.is_some() { "~" } else { "+" };
        let _ = writeln!(s, "      {} {} = <<-EOT", paint(sym, "33", color), d.name);
        let diff = similar::TextDiff::from_lines(b.as_deref().unwrap_or(""), a.as_deref().unwrap_or(""));
        for ch in diff.iter_all_changes() {
            let (tag, code) = match ch.tag() {
                similar::ChangeTag::Delete => ("-", "31"),
                similar::ChangeTag::Insert => ("+", "32"),
                similar::ChangeTag::Equal => (" ", "0"),
            };
            let _ = write!(s, "          {} {}", paint(tag, code, color), ch.value());
            if ch.missing_newline() {
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s, "        EOT");
        return;
    }
    let q = |v: &str| if d.sensitive { v.to_string() } else { serde_json::to_string(v).unwrap_or_default() };
    match (b, a) {
        (Some(b), Some(a)) => {
            let _ = writeln!(s, "      {} {:<width$} = {} -> {}", paint("~", "33", color), d.name, q(&b), q(&a));
        }
        (None, Some(a)) => {
            let _ = writeln!(s, "      + {:<width$} = {}", d.name, q(&a));
        }
        (Some(b), None) => {
            let _ = writeln!(s, "      {} {:<width$} = {} -> null", paint("-", "31", color), d.name, q(&b));
        }
        (None, None) => {}
    }
}

fn placement_json(p: &crate::state::PlacementRecord) -> serde_json::Value {
    serde_json::json!({
        "cloud": p.cloud, "region": p.region, "zone": p.zone, "instance_type": p.instance_type,
        "spot": p.spot, "hourly": money(p.hourly).to_string(), "hours": p.hours, "cost": money(p.cost).to_string(),
    })
}

/// The `show -json` document.
pub fn json(plan: &Plan) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|c| {
            let mut after = c.after.as_ref().map(|a| placement_json(&a.placement)).unwrap_or(serde_json::Value::Null);
            if let (Some(a), serde_json::Value::Object(m)) = (&c.after, &mut after) {
                m.insert("accelerator".into(), serde_json::json!(a.accelerator));
                m.insert("start_hours".into(), serde_json::json!(a.start_hours));
                m.insert("finish_hours".into(), serde_json::json!(a.finish_hours));
                // Data moved along the task's edges: what, GB and its egress price.
                let edges = |v: &[(String, f64, f64)]| {
                    v.iter()
                        .map(|(w, gb, c)| serde_json::json!({"what": w, "size_gb": gb, "cost": money(*c).to_string()}))
                        .collect::<Vec<_>>()
                };
                m.insert("egress_in".into(), serde_json::json!(edges(&a.egress_in)));
                m.insert("egress_out".into(), serde_json::json!(edges(&a.egress_out)));
                m.insert(
                    "fallbacks".into(),
                    serde_json::json!(a.fallbacks.iter().map(|(l, i, d)| serde_json::json!({"location": l, "instance": i, "delta": money(*d).to_string()})).collect::<Vec<_>>()),
                );
            }
            let mut v = serde_json::json!({
                "address": c.address,
                "name": c.address.name(),
                "type": "skyform_task",
                "change": {
                    "actions": c.action.actions(),
                    "before": c.before.as_ref().map(placement_json),
                    "after": after,
                },
                "cost": {"before": money(c.cost_before).to_string(), "after": money(c.cost_after).to_string(), "delta": (money(c.cost_after) - money(c.cost_before)).to_string()},
            });
            if let Some(r) = &c.reason {
                v["action_reason"] = serde_json::json!(r);
            }
            v
        })
        .collect();
    let (a, c, d) = plan.counts();
    serde_json::json!({
        "format_version": crate::plan::FORMAT_VERSION,
        "skyform_version": env!("CARGO_PKG_VERSION"),
        "job": plan.job,
        "lineage": plan.lineage,
        "serial": plan.serial,
        "resource_changes": changes,
        "summary": {"add": a, "change": c, "destroy": d},
        "cost": {
            "currency": "USD",
            "before": money(plan.cost_before).to_string(),
            "after": money(plan.cost_after).to_string(),
            "delta": (money(plan.cost_after) - money(plan.cost_before)).to_string(),
        },
        "makespan_hours": plan.makespan_hours,
        "catalog": plan.catalog_id,
        "tracker": plan.tracker_id,
        "optimizer": plan.report,
    })
}

/// The markdown pull-request comment (hidden tag first, so a later run updates it).
pub fn markdown(plan: &Plan) -> String {
    const LIMIT: usize = 65_536;
    let mut head = String::new();
    let _ = writeln!(head, "<!-- skyform-plan-comment job={} -->", plan.job);
    let _ = writeln!(head, "### skyform plan: `{}`", plan.job);
    let _ = writeln!(head);
    if !plan.has_changes() {
        let _ = writeln!(head, "No changes. Cost stays at **{}**.", usd(plan.cost_after));
        return head;
    }
    let (a, c, d) = plan.counts();
    let delta = money(plan.cost_after) - money(plan.cost_before);
    let verb = if delta < Decimal::ZERO { "decrease" } else { "increase" };
    let _ = writeln!(
        head,
        "This change will **{verb}** the job's cost by **${}**: {}.",
        delta.abs(),
        cost_change(plan.cost_before, plan.cost_after)
    );
    let _ = writeln!(head);
    let _ = writeln!(head, "| Task | Action | Placement | Before | After |");
    let _ = writeln!(head, "| --- | --- | --- | ---: | ---: |");
    for ch in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let place = ch
            .after
            .as_ref()
            .map(|a| format!("{} `{}`", location(&a.placement), a.placement.instance_type))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            head,
            "| `{}` | {} | {} | {} | {} |",
            ch.address,
            ch.action.actions().join("/"),
            place,
            usd(ch.cost_before),
            usd(ch.cost_after)
        );
    }
    let _ = writeln!(head);
    let _ = writeln!(head, "**Plan:** {a} to add, {c} to change, {d} to destroy.");
    let _ = writeln!(head);
    let details = text(plan, false);
    let open = "<details><summary>Details</summary>\n\n```\n";
    let close = "```\n</details>\n";
    let room = LIMIT.saturating_sub(head.len() + open.len() + close.len() + 64);
    let body = if details.len() > room {
        let mut cut = room;
        while !details.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = details[..cut].rfind('\n').unwrap_or(cut);
        format!("{}\n… (truncated: the full plan is {} bytes)\n", &details[..cut], details.len())
    } else {
        details
    };
    format!("{head}{open}{body}{close}")
}

/// `plan -json`: line-delimited events (`@level`, `@message`, `@timestamp`, `type`).
pub fn events(plan: &Plan, timestamp: &str) -> Vec<serde_json::Value> {
    let mut v = vec![serde_json::json!({
        "@level": "info", "@message": format!("skyform {}", env!("CARGO_PKG_VERSION")), "@timestamp": timestamp,
        "type": "version", "skyform": env!("CARGO_PKG_VERSION"), "ui": "1.0",
    })];
    for c in &plan.changes {
        if c.action == Action::NoOp {
            continue;
        }
        v.push(serde_json::json!({
            "@level": "info",
            "@message": format!("{}: Plan to {}", c.address, c.action.actions().join("/")),
            "@timestamp": timestamp,
            "type": "planned_change",
            "change": {
                "resource": {"addr": c.address, "name": c.address.name()},
                "action": format!("{:?}", c.action).to_lowercase(),
                "reason": c.reason,
                "cost": {"before": money(c.cost_before).to_string(), "after": money(c.cost_after).to_string()},
            },
        }));
    }
    let (a, ch, d) = plan.counts();
    v.push(serde_json::json!({
        "@level": "info", "@message": summary_line(plan), "@timestamp": timestamp, "type": "change_summary",
        "changes": {"add": a, "change": ch, "remove": d, "operation": if plan.destroy { "destroy" } else { "plan" }},
        "cost": {"before": money(plan.cost_before).to_string(), "after": money(plan.cost_after).to_string(), "currency": "USD"},
    }));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_clause() {
        assert_eq!(cost_change(412.30, 287.10), "$412.30 → $287.10 (−$125.20, −30.4%)");
        assert_eq!(cost_change(0.0, 1.5), "$0.00 → $1.50 (+$1.50)");
    }
}
