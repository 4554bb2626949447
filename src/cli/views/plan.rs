//! Views of a [`Plan`]: Terraform's text grammar with a cost clause, the `show -json`
//! document, the markdown pull-request comment, and the line-delimited JSON events of
//! `plan -json`. Pure: each returns a string.

use crate::plan::compare::{compare, Comparison};
use crate::plan::{money, Action, Change, Plan};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `$412.30`, `-$3.10`: the one money formatter of the views (cents, never `$-0.00`).
pub fn usd(x: f64) -> String {
    usd_decimal(money(x))
}

/// [`usd`] of a decimal already in cents.
pub fn usd_decimal(d: Decimal) -> String {
    if d < Decimal::ZERO {
        format!("-${}", d.abs())
    } else {
        format!("${d}")
    }
}

/// `$412.30 → $287.10 (−$125.20, −30.4%)`. Computed on the rounded figures, so the clause
/// agrees with what it shows; the percentage only when the base is above $0.00.
pub fn cost_change(before: f64, after: f64) -> String {
    let (b, a) = (money(before), money(after));
    let delta = a - b;
    let sign = if delta < Decimal::ZERO { "−" } else { "+" };
    let pct = if b > Decimal::ZERO {
        let mut p = (delta / b * Decimal::ONE_HUNDRED).round_dp(1);
        p.rescale(1);
        format!(", {}{}%", if p < Decimal::ZERO { "−" } else { "+" }, p.abs())
    } else {
        String::new()
    };
    format!("{} → {} ({sign}${}{pct})", usd_decimal(b), usd_decimal(a), delta.abs())
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
    if plan.refresh_only {
        return match plan.drift.len() {
            0 => "No changes. Your state matches the live allocations.".into(),
            n => format!(
                "Refresh-only plan: {n} task{} changed outside skyform; applying it records {} in the state and touches no resource.",
                if n == 1 { "" } else { "s" },
                if n == 1 { "this" } else { "these" }
            ),
        };
    }
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

/// What the refresh found changed outside skyform, as Terraform's note before the plan:
/// one `# ADDRESS has changed outside skyform: WHAT; ACTION` line per task, the action
/// being what this plan does about it. Empty when nothing changed.
pub fn drift_notes(drift: &BTreeMap<crate::config::TaskAddr, String>, plan: &Plan) -> String {
    if drift.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(s, "Note: Tasks have changed outside skyform");
    let _ = writeln!(s);
    let _ = writeln!(s, "skyform detected the following changes made outside skyform since the last apply:");
    let _ = writeln!(s);
    for (addr, what) in drift {
        let _ = writeln!(s, "  # {addr} has changed outside skyform: {what}; {}", drift_action(plan, addr));
    }
    let _ = writeln!(s);
    s
}

/// What the plan does about a task that changed outside skyform.
fn drift_action(plan: &Plan, addr: &crate::config::TaskAddr) -> &'static str {
    if plan.refresh_only {
        return "applying this refresh-only plan records it in the state (the next plan runs it again)";
    }
    match plan.changes.iter().find(|c| &c.address == addr).map(|c| c.action) {
        Some(Action::Replace) => "it will be released and run again",
        Some(Action::Destroy) => "it will be released and forgotten",
        Some(Action::Migrate) => "it will run again elsewhere",
        Some(Action::Create) | Some(Action::NoOp) => "it will run again",
        None => "this plan leaves it alone (-target/-exclude)",
    }
}

/// `plan -json`: one `resource_drift` event per task that changed outside skyform.
pub fn drift_events(
    drift: &BTreeMap<crate::config::TaskAddr, String>,
    plan: &Plan,
    timestamp: &str,
) -> Vec<serde_json::Value> {
    drift
        .iter()
        .map(|(addr, what)| {
            serde_json::json!({
                "@level": "info",
                "@message": format!("{addr}: changed outside skyform: {what}"),
                "@timestamp": timestamp,
                "type": "resource_drift",
                "change": {"resource": {"addr": addr, "name": addr.name()}, "detail": what, "implied": drift_action(plan, addr)},
            })
        })
        .collect()
}

/// The human view.
pub fn text(plan: &Plan, color: bool) -> String {
    let mut s = String::new();
    if !plan.has_changes() {
        stays(&mut s, plan);
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
    let _ = writeln!(s);
    s.push_str(&group_table(&plan.changes, ["ACTION", "CLOUD", "TASKS", "BEFORE", "AFTER"], action_word));
    let _ = writeln!(s);
    let _ = writeln!(s, "skyform will perform the following actions:");
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let _ = writeln!(s);
        let host = plan.config.tasks.get(&c.address).and_then(|t| crate::resolve::default_host_note(&t.resources));
        block(&mut s, c, color, &format!("{}{}", c.action.verb(), reason_text(c)), host.as_deref());
        if let Some(d) = &c.detail {
            let _ = writeln!(s, "    # {d}");
        }
    }
    stays(&mut s, plan);
    let _ = writeln!(s);
    if plan.makespan_hours > 0.0 {
        let _ = writeln!(s, "Makespan: {:.2} h.", plan.makespan_hours);
    }
    for st in plan.report.iter().flat_map(|r| &r.stopped) {
        let (value, bound) = if st.objective == "makespan" {
            (format!("{:.2} h", st.value), format!("{:.2} h", st.bound))
        } else {
            (usd(st.value), usd(st.bound))
        };
        let _ = writeln!(
            s,
            "Warning: {} stopped the optimizer before its proof; the best placement found has a {} of {value}, and the optimum is at least {bound}.",
            st.reason, st.objective
        );
    }
    let _ = writeln!(s, "{}", paint(&summary_line(plan), "1", color));
    s
}

/// The table of changes by action and cloud (before and after cost), indented.
fn group_table(changes: &[Change], header: [&str; 5], label: fn(Action) -> &'static str) -> String {
    let mut groups: BTreeMap<(Action, String), (usize, f64, f64)> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.action != Action::NoOp) {
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
    let mut rows = vec![header.map(String::from).to_vec()];
    for ((a, cloud), (n, b, af)) in &groups {
        rows.push(vec![label(*a).to_string(), cloud.clone(), n.to_string(), usd(*b), usd(*af)]);
    }
    super::table(&rows).lines().map(|l| format!("  {l}\n")).collect()
}

/// `create`, `replace`, …: an action in the plan's table.
fn action_word(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::NoOp => "noop",
        Action::Replace => "replace",
        Action::Migrate => "migrate",
        Action::Destroy => "destroy",
    }
}

/// `added`, `changed`, `removed`: a compared change in the comparison's table.
fn compare_word(a: Action) -> &'static str {
    match a {
        Action::Create => "added",
        Action::Destroy => "removed",
        Action::NoOp => "unchanged",
        _ => "changed",
    }
}

/// Running tasks that re-optimization leaves where they are, and why.
fn stays(s: &mut String, plan: &Plan) {
    for c in plan.changes.iter().filter(|c| c.action == Action::NoOp) {
        if let Some(d) = &c.detail {
            let _ = writeln!(s, "\n  # {} keeps running: {d}", c.address);
        }
    }
}

/// ` (its configuration changed)`: why a change happens, for its headline.
fn reason_text(c: &Change) -> &'static str {
    match c.reason.as_deref() {
        Some("replace_because_spec_changed") => " (its configuration changed)",
        Some("replace_because_tainted") => " (tainted after a failure)",
        Some("replace_because_changed_outside") => " (it changed outside skyform)",
        Some("replace_by_request") => " (as requested with -replace)",
        Some("replace_because_an_input_changes") => " (an input changes)",
        Some("migrate_to_cheaper_placement") => " (a cheaper placement)",
        Some("delete_because_no_resource_config") => " (it is no longer in the configuration)",
        _ => "",
    }
}

/// One task's block: `# ADDRESS HEADLINE`, then its attributes with `before -> after`.
/// One change's block; `host` is the note on a default GPU host, shown under `resources`.
fn block(s: &mut String, c: &Change, color: bool, headline: &str, host: Option<&str>) {
    let _ = writeln!(s, "  # {} {headline}", c.address);
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
        if let (Some(h), "resources", Some(_)) = (host, d.name.as_str(), &c.after) {
            let _ = writeln!(s, "        # {h}");
        }
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

/// A change's `after`: the placement with accelerator, schedule and fallbacks.
fn after_json(c: &Change) -> serde_json::Value {
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
            serde_json::json!(a
                .fallbacks
                .iter()
                .map(|(l, i, d)| serde_json::json!({"location": l, "instance": i, "delta": money(*d).to_string()}))
                .collect::<Vec<_>>()),
        );
    }
    after
}

/// `{"currency", "before", "after", "delta"}` in decimal strings.
fn cost_json(before: f64, after: f64) -> serde_json::Value {
    serde_json::json!({
        "currency": "USD",
        "before": money(before).to_string(),
        "after": money(after).to_string(),
        "delta": (money(after) - money(before)).to_string(),
    })
}

/// One compared task: `added`, `changed` (placement moves or cost changes), `removed` or
/// `unchanged`, with the base's and this plan's placement and cost.
fn compared_json(c: &Change) -> serde_json::Value {
    let change = match c.action {
        Action::Create => "added",
        Action::Destroy => "removed",
        Action::NoOp => "unchanged",
        _ => "changed",
    };
    serde_json::json!({
        "address": c.address,
        "change": change,
        "reason": c.reason,
        "before": c.before.as_ref().map(placement_json),
        "after": after_json(c),
        "cost": cost_json(c.cost_before, c.cost_after),
    })
}

/// The `comparison` section of `show -json` for a plan made with `-compare-to`.
pub fn compare_json(cmp: &Comparison) -> serde_json::Value {
    let (a, c, d) = cmp.counts();
    serde_json::json!({
        "base_job": cmp.base_job,
        "changes": cmp.changes.iter().map(compared_json).collect::<Vec<_>>(),
        "summary": {"add": a, "change": c, "remove": d},
        "cost": cost_json(cmp.cost_before, cmp.cost_after),
        "makespan_hours": {"before": cmp.makespan_before, "after": cmp.makespan_after},
    })
}

/// The `show -json` document.
pub fn json(plan: &Plan) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|c| {
            let after = after_json(c);
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
            if let Some(d) = &c.detail {
                v["reoptimize"] = serde_json::json!(d);
            }
            v
        })
        .collect();
    let (a, c, d) = plan.counts();
    let mut doc = serde_json::json!({
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
    });
    if let Some(base) = &plan.base {
        doc["comparison"] = compare_json(&compare(base, plan));
    }
    doc
}

/// The hidden tag that opens every pull-request comment of a job (`skyform comment` finds
/// its earlier comment by it).
pub fn comment_tag(job: &str) -> String {
    format!("<!-- skyform-plan-comment job={job} -->")
}

/// The markdown pull-request comment (hidden tag first, so a later run updates it): the
/// cost change and a table per task — against the base when the plan was made with
/// `-compare-to`, else against the state — then the cost by cloud, a mermaid `gantt` of
/// the schedule, and the text view folded in `<details>`.
pub fn markdown(plan: &Plan) -> String {
    const LIMIT: usize = 65_536;
    let mut head = String::new();
    let _ = writeln!(head, "{}", comment_tag(&plan.job));
    let _ = writeln!(head, "### skyform plan: `{}`", plan.job);
    let _ = writeln!(head);
    let cmp = plan.base.as_ref().map(|b| compare(b, plan));
    let details = match &cmp {
        Some(cmp) => {
            markdown_compared(&mut head, cmp, plan);
            format!("{}\nAgainst the current state: {}\n", compare_text(cmp, false), summary_line(plan))
        }
        None if !plan.has_changes() => {
            let _ = writeln!(head, "No changes. Cost stays at **{}**.", usd(plan.cost_after));
            let _ = writeln!(head);
            String::new()
        }
        None => {
            markdown_plan(&mut head, plan);
            text(plan, false)
        }
    };
    let by_cloud = cost_by_cloud_markdown(plan, cmp.as_ref());
    let gantt = gantt(plan);
    let pictures = format!("{by_cloud}{gantt}");
    if details.is_empty() {
        return format!("{head}{pictures}");
    }
    let open = "<details><summary>Details</summary>\n\n```\n";
    let close = "```\n</details>\n";
    // Pictures first to go when the comment would be too long; then the details are cut.
    let pictures =
        if head.len() + pictures.len() + open.len() + close.len() + 2048 < LIMIT { pictures } else { String::new() };
    let room = LIMIT.saturating_sub(head.len() + pictures.len() + open.len() + close.len() + 64);
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
    format!("{head}{pictures}{open}{body}{close}")
}

/// `cost will **increase** by **$X**: $a → $b (+$X, +p%)`.
fn cost_sentence(before: f64, after: f64) -> String {
    let delta = money(after) - money(before);
    let verb = if delta < Decimal::ZERO { "decrease" } else { "increase" };
    format!("will **{verb}** the job's cost by **${}**: {}", delta.abs(), cost_change(before, after))
}

fn markdown_plan(head: &mut String, plan: &Plan) {
    let (a, c, d) = plan.counts();
    let _ = writeln!(head, "This change {}.", cost_sentence(plan.cost_before, plan.cost_after));
    let _ = writeln!(head);
    let _ = writeln!(head, "| Task | Action | Placement | Before | After |");
    let _ = writeln!(head, "| --- | --- | --- | ---: | ---: |");
    for ch in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let place = ch.after.as_ref().map(|a| place_md(&a.placement)).unwrap_or_else(|| "—".into());
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
}

fn markdown_compared(head: &mut String, cmp: &Comparison, plan: &Plan) {
    if cmp.has_changes() {
        let _ =
            writeln!(head, "Compared with the base, this change {}.", cost_sentence(cmp.cost_before, cmp.cost_after));
    } else {
        let _ = writeln!(
            head,
            "Compared with the base, this change leaves every task where it was. Cost stays at **{}**.",
            usd(cmp.cost_after)
        );
    }
    let _ = writeln!(head);
    if cmp.has_changes() {
        let _ = writeln!(head, "| Task | Change | Base | This change | Cost |");
        let _ = writeln!(head, "| --- | --- | --- | --- | ---: |");
        for ch in cmp.changes.iter().filter(|c| c.action != Action::NoOp) {
            let word = match ch.reason.as_deref() {
                Some("added_by_change") => "added",
                Some("removed_by_change") => "removed",
                Some("placement_moves") => "moved",
                _ => "cost",
            };
            let before = ch.before.as_ref().map(place_md).unwrap_or_else(|| "—".into());
            let after = ch.after.as_ref().map(|a| place_md(&a.placement)).unwrap_or_else(|| "—".into());
            let _ = writeln!(
                head,
                "| `{}` | {word} | {before} | {after} | {} |",
                ch.address,
                cost_change(ch.cost_before, ch.cost_after)
            );
        }
        let _ = writeln!(head);
    }
    let (a, c, d) = cmp.counts();
    let (pa, pc, pd) = plan.counts();
    let _ = writeln!(
        head,
        "**Compared with the base:** {a} to add, {c} to change, {d} to remove. **Against the current state:** {pa} to add, {pc} to change, {pd} to destroy."
    );
    let _ = writeln!(head);
}

/// `local/zone-b `local.gpu4` (spot)` for a markdown table.
fn place_md(p: &crate::state::PlacementRecord) -> String {
    format!("{} `{}`{}", location(p), p.instance_type, if p.spot { " (spot)" } else { "" })
}

/// One task of a plan's end state: where it runs and when.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub address: crate::config::TaskAddr,
    pub placement: crate::state::PlacementRecord,
    pub accelerator: Option<String>,
    pub start_hours: f64,
    pub finish_hours: f64,
    pub cost: f64,
    pub action: Action,
}

/// The plan's end state as a schedule, ordered by start (then address): every task that
/// is not destroyed, on its placement (a no-op stays where the state has it).
pub fn schedule(plan: &Plan) -> Vec<Scheduled> {
    let mut v: Vec<Scheduled> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Destroy)
        .filter_map(|c| {
            let a = c.after.as_ref()?;
            let placement = if c.action == Action::NoOp {
                c.before.clone().unwrap_or_else(|| a.placement.clone())
            } else {
                a.placement.clone()
            };
            Some(Scheduled {
                address: c.address.clone(),
                placement,
                accelerator: a.accelerator.clone(),
                start_hours: a.start_hours,
                finish_hours: a.finish_hours.max(a.start_hours),
                cost: c.cost_after,
                action: c.action,
            })
        })
        .collect();
    v.sort_by(|a, b| a.start_hours.total_cmp(&b.start_hours).then_with(|| a.address.cmp(&b.address)));
    v
}

/// Cost of the end state per cloud: (cloud, tasks, USD).
pub fn cost_by_cloud(plan: &Plan) -> Vec<(String, usize, f64)> {
    let mut m: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for t in schedule(plan) {
        let e = m.entry(t.placement.cloud.clone()).or_default();
        e.0 += 1;
        e.1 += t.cost;
    }
    m.into_iter().map(|(k, (n, c))| (k, n, c)).collect()
}

fn cost_by_cloud_markdown(plan: &Plan, cmp: Option<&Comparison>) -> String {
    let rows = cost_by_cloud(plan);
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(s, "#### Cost by cloud");
    let _ = writeln!(s);
    match cmp {
        Some(cmp) => {
            let mut base: BTreeMap<String, f64> = BTreeMap::new();
            for c in &cmp.changes {
                if let Some(b) = &c.before {
                    *base.entry(b.cloud.clone()).or_default() += c.cost_before;
                }
            }
            let clouds: std::collections::BTreeSet<String> =
                rows.iter().map(|r| r.0.clone()).chain(base.keys().cloned()).collect();
            let _ = writeln!(s, "| Cloud | Base | This change |");
            let _ = writeln!(s, "| --- | ---: | ---: |");
            for cloud in clouds {
                let after = rows.iter().find(|r| r.0 == cloud).map(|r| r.2).unwrap_or(0.0);
                let before = base.get(&cloud).copied().unwrap_or(0.0);
                let _ = writeln!(s, "| {cloud} | {} | {} |", usd(before), cost_change(before, after));
            }
        }
        None => {
            let total: Decimal = rows.iter().map(|r| money(r.2)).sum();
            let _ = writeln!(s, "| Cloud | Tasks | Cost | Share |");
            let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
            for (cloud, n, c) in &rows {
                let share = if total > Decimal::ZERO {
                    let mut p = (money(*c) / total * Decimal::ONE_HUNDRED).round_dp(1);
                    p.rescale(1);
                    format!("{p}%")
                } else {
                    "—".into()
                };
                let _ = writeln!(s, "| {cloud} | {n} | {} | {share} |", usd(*c));
            }
        }
    }
    let _ = writeln!(s);
    s
}

/// The schedule as a mermaid `gantt` (GitHub and GitLab render it): one section per
/// location, one bar per task from its start to its finish (seconds from the start).
pub fn gantt(plan: &Plan) -> String {
    let tasks = schedule(plan);
    if tasks.is_empty() {
        return String::new();
    }
    let clean = |x: &str| x.replace([':', ';', '#'], " ");
    let mut sections: BTreeMap<String, Vec<&Scheduled>> = BTreeMap::new();
    for t in &tasks {
        sections.entry(location(&t.placement)).or_default().push(t);
    }
    let mut s = String::new();
    let _ = writeln!(s, "#### Schedule");
    let _ = writeln!(s);
    let _ = writeln!(s, "```mermaid");
    let _ = writeln!(s, "gantt");
    let _ = writeln!(s, "    title Schedule (hours from the start, makespan {:.2} h)", plan.makespan_hours);
    let _ = writeln!(s, "    dateFormat X");
    let _ = writeln!(s, "    axisFormat %H:%M");
    for (loc, ts) in sections {
        let _ = writeln!(s, "    section {}", clean(&loc));
        for t in ts {
            let start = (t.start_hours * 3600.0).round() as i64;
            let end = ((t.finish_hours * 3600.0).round() as i64).max(start + 1);
            let _ = writeln!(
                s,
                "    {} ({}) : {start}, {end}",
                clean(t.address.as_str()),
                clean(&t.placement.instance_type)
            );
        }
    }
    let _ = writeln!(s, "```");
    let _ = writeln!(s);
    s
}

/// The headline of a compared change.
fn compare_verb(c: &Change) -> &'static str {
    match c.reason.as_deref() {
        Some("added_by_change") => "is added by this change",
        Some("removed_by_change") => "is removed by this change",
        Some("placement_moves") => "moves to another placement",
        Some("cost_changes") => "changes cost",
        _ => "is unchanged",
    }
}

/// `Compared with the base: 1 to add, 1 to change, 1 to remove. Cost: $a → $b (…).`
pub fn compare_summary_line(cmp: &Comparison) -> String {
    if !cmp.has_changes() {
        return format!("No changes compared with the base. Cost: {} (unchanged).", usd(cmp.cost_after));
    }
    let (a, c, d) = cmp.counts();
    format!(
        "Compared with the base: {a} to add, {c} to change, {d} to remove. Cost: {}.",
        cost_change(cmp.cost_before, cmp.cost_after)
    )
}

/// The text view of a comparison, in the plan's grammar: symbols, a table by change and
/// cloud, one block per task the change adds, moves, re-prices or removes, and a summary.
pub fn compare_text(cmp: &Comparison, color: bool) -> String {
    let mut s = String::new();
    let name = if cmp.base_job.is_empty() { String::new() } else { format!(" (job \"{}\")", cmp.base_job) };
    if !cmp.has_changes() {
        let _ = writeln!(s, "Compared with the base plan{name}, this change leaves every task where it was.");
        let _ = writeln!(s, "{}", compare_summary_line(cmp));
        return s;
    }
    let _ = writeln!(s, "Compared with the base plan{name}, this change does the following.");
    let _ = writeln!(s, "Task changes are indicated with the following symbols:");
    let used: std::collections::BTreeSet<Action> =
        cmp.changes.iter().map(|c| c.action).filter(|a| *a != Action::NoOp).collect();
    for a in &used {
        let label = match a {
            Action::Create => "added by this change",
            Action::Migrate => "moves to another placement or changes cost",
            Action::Destroy => "removed by this change",
            _ => continue,
        };
        let _ = writeln!(s, "  {:>3} {label}", symbol_colored(*a, color));
    }
    let _ = writeln!(s);
    s.push_str(&group_table(&cmp.changes, ["CHANGE", "CLOUD", "TASKS", "BASE", "THIS CHANGE"], compare_word));
    for c in cmp.changes.iter().filter(|c| c.action != Action::NoOp) {
        let _ = writeln!(s);
        block(&mut s, c, color, compare_verb(c), None);
    }
    let _ = writeln!(s);
    if cmp.makespan_before > 0.0 || cmp.makespan_after > 0.0 {
        let _ = writeln!(s, "Makespan: {:.2} h → {:.2} h.", cmp.makespan_before, cmp.makespan_after);
    }
    let _ = writeln!(s, "{}", paint(&compare_summary_line(cmp), "1", color));
    s
}

/// `plan -json`: line-delimited events (`@level`, `@message`, `@timestamp`, `type`).
pub fn events(plan: &Plan, timestamp: &str) -> Vec<serde_json::Value> {
    let mut v = vec![serde_json::json!({
        "@level": "info", "@message": format!("skyform {}", env!("CARGO_PKG_VERSION")), "@timestamp": timestamp,
        "type": "version", "skyform": env!("CARGO_PKG_VERSION"), "ui": "1.0", "job": plan.job,
    })];
    // Every task: `planned_change` for a change, `planned_noop` for one left as it is (so the
    // stream holds the plan's whole end state, e.g. as a `-compare-to` base).
    for c in &plan.changes {
        let (kind, message) = if c.action == Action::NoOp {
            ("planned_noop", format!("{}: No changes", c.address))
        } else {
            ("planned_change", format!("{}: Plan to {}", c.address, c.action.actions().join("/")))
        };
        v.push(serde_json::json!({
            "@level": "info",
            "@message": message,
            "@timestamp": timestamp,
            "type": kind,
            "change": {
                "resource": {"addr": c.address, "name": c.address.name()},
                "action": format!("{:?}", c.action).to_lowercase(),
                "reason": c.reason,
                "before": c.before.as_ref().map(placement_json),
                "after": after_json(c),
                "cost": {"before": money(c.cost_before).to_string(), "after": money(c.cost_after).to_string()},
            },
        }));
    }
    let (a, ch, d) = plan.counts();
    v.push(serde_json::json!({
        "@level": "info", "@message": summary_line(plan), "@timestamp": timestamp, "type": "change_summary",
        "changes": {"add": a, "change": ch, "remove": d, "operation": if plan.destroy { "destroy" } else { "plan" }},
        "cost": {"before": money(plan.cost_before).to_string(), "after": money(plan.cost_after).to_string(), "currency": "USD"},
        "makespan_hours": plan.makespan_hours,
    }));
    v
}

/// `plan -compare-to -json`: one `compared_change` event per task that the change adds,
/// moves, re-prices or removes, then a `compare_summary` (before the `change_summary`).
pub fn compare_events(cmp: &Comparison, timestamp: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = cmp
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| {
            serde_json::json!({
                "@level": "info",
                "@message": format!("{}: {}", c.address, compare_verb(c)),
                "@timestamp": timestamp,
                "type": "compared_change",
                "change": compared_json(c),
            })
        })
        .collect();
    let (a, ch, d) = cmp.counts();
    v.push(serde_json::json!({
        "@level": "info", "@message": compare_summary_line(cmp), "@timestamp": timestamp, "type": "compare_summary",
        "changes": {"add": a, "change": ch, "remove": d},
        "cost": cost_json(cmp.cost_before, cmp.cost_after),
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
        // A base that rounds to zero has no percentage; nothing shows a negative zero.
        assert_eq!(cost_change(0.004, 0.0), "$0.00 → $0.00 (+$0.00)");
        assert_eq!(cost_change(0.3322, 0.3301), "$0.33 → $0.33 (+$0.00, +0.0%)");
        assert_eq!(cost_change(2.0, 0.0), "$2.00 → $0.00 (−$2.00, −100.0%)");
        assert_eq!(usd(-0.001), "$0.00");
        assert_eq!(usd(-2.5), "-$2.50");
    }
}
