//! The HTML view: one self-contained page (inline CSS and SVG; no script, no font, no
//! request to anywhere) for `skyform show -format=html PLAN` and `skyform status
//! -format=html`. Pure: each function returns the page as a string.
//!
//! A plan's page holds an SVG timeline of every task on its placement from its planned
//! start to its finish (bars ordered by start), the DAG with its data edges and their
//! egress cost, and the cost by cloud, region and task. A state's page holds the timeline
//! of the runs so far, coloured by status (done, running, pending, failed), and the cost
//! so far per task. Elements carry `data-*` attributes (`data-task`, `data-start`, ...) so
//! that tests and scripts can read the rendered page.

use super::plan::{cost_change, schedule, usd, Scheduled};
use crate::config::TaskAddr;
use crate::plan::Plan;
use crate::state::{State, TaskStatus};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; }
.summary { font-size: 15px; margin: 8px 0 16px; } .muted { color: #656d76; }
table { border-collapse: collapse; margin: 6px 0 12px; } th, td { padding: 3px 10px; border-bottom: 1px solid #eaeef2; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.meter { display: inline-block; height: 10px; background: #0969da; vertical-align: middle; border-radius: 2px; }
svg { display: block; max-width: 100%; height: auto; background: #fff; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2328; } svg .axis { stroke: #d0d7de; } svg .tick { fill: #656d76; font-size: 11px; }
svg .edge { stroke: #8c959f; stroke-width: 1.5; fill: none; } svg .edge-label { fill: #57606a; font-size: 11px; }
svg .node rect { fill: #ddf4ff; stroke: #0969da; } .legend span { display: inline-block; margin-right: 14px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
";

/// A bar colour per cloud (stable: by the cloud's name).
fn cloud_colour(cloud: &str) -> &'static str {
    match cloud {
        "aws" => "#d4a72c",
        "gcp" => "#1a7f37",
        "azure" => "#0969da",
        "local" => "#8250df",
        _ => "#bf3989",
    }
}

/// Done, running, pending, failed: the status colours of the state's page.
fn status_colour(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Succeeded => "#2da44e",
        TaskStatus::Running => "#0969da",
        TaskStatus::Pending => "#afb8c1",
        TaskStatus::Failed => "#cf222e",
        TaskStatus::Preempted => "#bc4c00",
        TaskStatus::Migrated => "#8250df",
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        esc(title)
    )
}

/// A tick step (hours) that gives at most ~12 ticks over `span` hours.
fn tick_step(span: f64) -> f64 {
    for step in [0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 12.0, 24.0, 48.0, 168.0] {
        if span / step <= 12.0 {
            return step;
        }
    }
    (span / 12.0).ceil()
}

/// One row of a timeline.
struct Bar {
    address: String,
    label: String,
    start: f64,
    finish: f64,
    colour: &'static str,
    status: String,
    tooltip: String,
}

/// An SVG timeline: one row per bar (in the given order), hours on the x axis.
fn timeline(id: &str, bars: &[Bar], unit: &str) -> String {
    const LABEL_W: f64 = 330.0;
    const PLOT_W: f64 = 620.0;
    const ROW: f64 = 26.0;
    let span = bars.iter().map(|b| b.finish).fold(0.0_f64, f64::max).max(1e-9);
    let h = 30.0 + ROW * bars.len() as f64 + 10.0;
    let x = |t: f64| LABEL_W + t / span * PLOT_W;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"timeline\">",
        w = LABEL_W + PLOT_W + 20.0
    );
    let step = tick_step(span);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let _ = writeln!(
            s,
            "<line class=\"axis\" x1=\"{0:.1}\" y1=\"20\" x2=\"{0:.1}\" y2=\"{1:.1}\"/><text class=\"tick\" x=\"{0:.1}\" y=\"14\" text-anchor=\"middle\">{2}{unit}</text>",
            x(t),
            h - 10.0,
            fmt_hours(t)
        );
        t += step;
    }
    for (i, b) in bars.iter().enumerate() {
        let y = 26.0 + ROW * i as f64;
        let (x0, x1) = (x(b.start), x(b.finish));
        let _ = writeln!(
            s,
            "<g class=\"bar\" data-task=\"{a}\" data-start=\"{st}\" data-finish=\"{fi}\" data-status=\"{stat}\"><title>{tip}</title><text x=\"4\" y=\"{ty:.1}\">{label}</text><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bh}\" rx=\"3\" fill=\"{c}\"/></g>",
            a = esc(&b.address),
            st = b.start,
            fi = b.finish,
            stat = esc(&b.status),
            tip = esc(&b.tooltip),
            ty = y + 14.0,
            label = esc(&b.label),
            w = (x1 - x0).max(2.0),
            bh = ROW - 8.0,
            c = b.colour,
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_hours(h: f64) -> String {
    let s = format!("{h:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn location(p: &crate::state::PlacementRecord) -> String {
    skyform_provider::Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str()).to_string()
}

/// The DAG as layered SVG: a task's layer is the length of the longest path to it; data
/// edges carry `OUTPUT: GB, $egress`.
fn dag(plan: &Plan, tasks: &[Scheduled]) -> String {
    let spec = &plan.config;
    let order = spec.topo_order();
    let shown: std::collections::BTreeSet<&TaskAddr> = tasks.iter().map(|t| &t.address).collect();
    let mut layer: BTreeMap<&TaskAddr, usize> = BTreeMap::new();
    for a in order.iter().filter(|a| shown.contains(a)) {
        let l = spec.tasks[a].upstream().iter().filter_map(|u| layer.get(u)).map(|l| l + 1).max().unwrap_or(0);
        layer.insert(a, l);
    }
    let mut rows: BTreeMap<usize, Vec<&TaskAddr>> = BTreeMap::new();
    for (a, l) in &layer {
        rows.entry(*l).or_default().push(a);
    }
    const COL: f64 = 250.0;
    const NODE_W: f64 = 200.0;
    const NODE_H: f64 = 44.0;
    const ROW: f64 = 90.0;
    let width = rows.values().map(Vec::len).max().unwrap_or(1) as f64 * COL + 20.0;
    let height = rows.len() as f64 * ROW + 20.0;
    let mut at: BTreeMap<&TaskAddr, (f64, f64)> = BTreeMap::new();
    for (l, v) in &rows {
        for (i, a) in v.iter().enumerate() {
            at.insert(a, (10.0 + i as f64 * COL, 10.0 + *l as f64 * ROW));
        }
    }
    let egress = |to: &TaskAddr, label: &str| -> Option<f64> {
        let c = plan.changes.iter().find(|c| &c.address == to)?;
        c.after.as_ref()?.egress_in.iter().find(|(w, _, _)| w == label).map(|(_, _, cost)| *cost)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg id=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"task graph\">"
    );
    s.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#8c959f\"/></marker></defs>\n");
    for e in &spec.edges {
        let (Some(&(fx, fy)), Some(&(tx, ty))) = (at.get(&e.from), at.get(&e.to)) else { continue };
        let (x1, y1, x2, y2) = (fx + NODE_W / 2.0, fy + NODE_H, tx + NODE_W / 2.0, ty);
        let label = match &e.output {
            Some(o) => {
                let cost = egress(&e.to, &format!("{o} from {}", e.from)).unwrap_or(0.0);
                format!("{o}: {} GB, {}", fmt_hours(e.size_gb), usd(cost))
            }
            None => "depends_on".to_string(),
        };
        let _ = writeln!(
            s,
            "<g class=\"edge-group\" data-from=\"{f}\" data-to=\"{t}\"><path class=\"edge\" d=\"M{x1:.1},{y1:.1} C{x1:.1},{my:.1} {x2:.1},{my:.1} {x2:.1},{y2:.1}\" marker-end=\"url(#arrow)\"/><text class=\"edge-label\" x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{l}</text></g>",
            f = esc(e.from.as_str()),
            t = esc(e.to.as_str()),
            my = (y1 + y2) / 2.0,
            lx = (x1 + x2) / 2.0,
            ly = (y1 + y2) / 2.0 + 4.0,
            l = esc(&label),
        );
    }
    for t in tasks {
        let Some(&(x, y)) = at.get(&t.address) else { continue };
        let _ = writeln!(
            s,
            "<g class=\"node\" data-task=\"{a}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\"/><text x=\"{tx:.1}\" y=\"{y1:.1}\">{name}</text><text class=\"tick\" x=\"{tx:.1}\" y=\"{y2:.1}\">{place}</text></g>",
            a = esc(t.address.as_str()),
            tx = x + 8.0,
            y1 = y + 18.0,
            y2 = y + 35.0,
            name = esc(&shorten(t.address.as_str(), 30)),
            place = esc(&shorten(&format!("{} {}", location(&t.placement), t.placement.instance_type), 32)),
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A cost table with a meter per row: (name, tasks, USD).
fn cost_table(id: &str, first: &str, rows: &[(String, usize, f64)]) -> String {
    let max = rows.iter().map(|r| r.2).fold(0.0_f64, f64::max);
    let mut s = format!("<table id=\"{id}\"><tr><th>{first}</th><th class=\"num\">Tasks</th><th class=\"num\">Cost</th><th></th></tr>\n");
    for (name, n, c) in rows {
        let w = if max > 0.0 { (c / max * 160.0).round() } else { 0.0 };
        let _ = writeln!(
            s,
            "<tr data-name=\"{e}\"><td>{e}</td><td class=\"num\">{n}</td><td class=\"num\">{}</td><td><span class=\"meter\" style=\"width:{w}px\"></span></td></tr>",
            usd(*c),
            e = esc(name)
        );
    }
    s.push_str("</table>\n");
    s
}

fn group<F: Fn(&Scheduled) -> String>(tasks: &[Scheduled], key: F) -> Vec<(String, usize, f64)> {
    let mut m: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for t in tasks {
        let e = m.entry(key(t)).or_default();
        e.0 += 1;
        e.1 += t.cost;
    }
    m.into_iter().map(|(k, (n, c))| (k, n, c)).collect()
}

/// `skyform show -format=html PLAN`.
pub fn plan_page(plan: &Plan) -> String {
    let tasks = schedule(plan);
    let mut b = String::new();
    let _ = writeln!(b, "<h1>skyform plan: {}</h1>", esc(&plan.job));
    let total: f64 = tasks.iter().map(|t| t.cost).sum();
    let _ = writeln!(
        b,
        "<p class=\"summary\" id=\"summary\">{} · {} task(s) · makespan {:.2} h · cost {}</p>",
        esc(&super::plan::summary_line(plan)),
        tasks.len(),
        plan.makespan_hours,
        usd(total)
    );
    if let Some(base) = &plan.base {
        let cmp = crate::plan::compare::compare(base, plan);
        let _ =
            writeln!(b, "<p class=\"summary\" id=\"compare\">{}</p>", esc(&super::plan::compare_summary_line(&cmp)));
    }
    let _ = writeln!(b, "<h2>Timeline</h2>");
    let clouds: std::collections::BTreeSet<&str> = tasks.iter().map(|t| t.placement.cloud.as_str()).collect();
    b.push_str("<p class=\"legend\">");
    for c in clouds {
        let _ = write!(b, "<span><i class=\"swatch\" style=\"background:{}\"></i>{}</span>", cloud_colour(c), esc(c));
    }
    b.push_str("</p>\n");
    let bars: Vec<Bar> = tasks
        .iter()
        .map(|t| Bar {
            address: t.address.to_string(),
            label: shorten(&format!("{} · {} {}", t.address, location(&t.placement), t.placement.instance_type), 52),
            start: t.start_hours,
            finish: t.finish_hours,
            colour: cloud_colour(&t.placement.cloud),
            status: format!("{:?}", t.action).to_lowercase(),
            tooltip: format!(
                "{}: {} {}{}{} — {:.2} h → {:.2} h, {}",
                t.address,
                location(&t.placement),
                t.placement.instance_type,
                t.accelerator.as_deref().map(|a| format!(" ({a})")).unwrap_or_default(),
                if t.placement.spot { ", spot" } else { "" },
                t.start_hours,
                t.finish_hours,
                usd(t.cost)
            ),
        })
        .collect();
    b.push_str(&timeline("timeline", &bars, " h"));
    let _ = writeln!(b, "<h2>Task graph</h2>");
    b.push_str(&dag(plan, &tasks));
    let _ = writeln!(b, "<h2>Cost</h2>");
    let _ = writeln!(b, "<h3>By cloud</h3>");
    b.push_str(&cost_table("cost-by-cloud", "Cloud", &group(&tasks, |t| t.placement.cloud.clone())));
    let _ = writeln!(b, "<h3>By region</h3>");
    b.push_str(&cost_table(
        "cost-by-region",
        "Region",
        &group(&tasks, |t| format!("{}/{}", t.placement.cloud, t.placement.region)),
    ));
    let _ = writeln!(b, "<h3>By task</h3>");
    b.push_str(&cost_table("cost-by-task", "Task", &group(&tasks, |t| t.address.to_string())));
    if plan.cost_before > 0.0 {
        let _ = writeln!(
            b,
            "<p class=\"muted\">Against the current state: {}.</p>",
            esc(&cost_change(plan.cost_before, plan.cost_after))
        );
    }
    let _ = writeln!(b, "<p class=\"muted\">catalog: {}</p>", esc(&plan.catalog_id));
    page(&format!("skyform plan: {}", plan.job), &b)
}

/// `skyform status -format=html`: the runs so far on a timeline (hours from the first
/// start), coloured by status; tasks without a run yet are pending bars at the end.
pub fn status_page(job: &str, state: &State, now: u64) -> String {
    let t0 = state.tasks.values().flat_map(|t| t.runs.iter().map(|r| r.start)).min().unwrap_or(now);
    let hours = |secs: u64| secs.saturating_sub(t0) as f64 / 3600.0;
    let mut rows: Vec<(f64, Bar)> = Vec::new();
    let pending_at =
        state.tasks.values().flat_map(|t| t.runs.iter().map(|r| hours(r.end.unwrap_or(now)))).fold(0.0_f64, f64::max);
    for (addr, t) in &state.tasks {
        let place =
            t.placement.as_ref().map(|p| format!("{} {}", location(p), p.instance_type)).unwrap_or_else(|| "-".into());
        let (start, finish) = match (t.runs.first(), t.runs.last()) {
            (Some(f), Some(l)) => (hours(f.start), hours(l.end.unwrap_or(now))),
            _ => {
                // Not started: a short pending bar after everything that ran.
                let est = t.placement.as_ref().map(|p| p.hours).unwrap_or(0.0).max(0.05);
                (pending_at, pending_at + est)
            }
        };
        rows.push((
            start,
            Bar {
                address: addr.to_string(),
                label: shorten(&format!("{addr} · {place}"), 52),
                start,
                finish: finish.max(start),
                colour: status_colour(t.status),
                status: t.status.to_string(),
                tooltip: format!(
                    "{addr}: {} on {place}, {} run(s), cost so far {}",
                    t.status,
                    t.runs.len(),
                    usd(t.cost_so_far())
                ),
            },
        ));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.address.cmp(&b.1.address)));
    let bars: Vec<Bar> = rows.into_iter().map(|r| r.1).collect();
    let mut b = String::new();
    let _ = writeln!(b, "<h1>skyform status: {}</h1>", esc(job));
    let total: f64 = state.tasks.values().map(|t| t.cost_so_far()).sum();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in state.tasks.values() {
        *counts.entry(t.status.to_string()).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        b,
        "<p class=\"summary\" id=\"summary\">{} task(s): {} · cost so far {} · state serial {}</p>",
        state.tasks.len(),
        esc(&counts.join(", ")),
        usd(total),
        state.serial
    );
    b.push_str("<p class=\"legend\">");
    for (name, st) in [
        ("done", TaskStatus::Succeeded),
        ("running", TaskStatus::Running),
        ("pending", TaskStatus::Pending),
        ("failed", TaskStatus::Failed),
        ("preempted", TaskStatus::Preempted),
    ] {
        let _ = write!(b, "<span><i class=\"swatch\" style=\"background:{}\"></i>{name}</span>", status_colour(st));
    }
    b.push_str("</p>\n<h2>Timeline</h2>\n");
    b.push_str(&timeline("timeline", &bars, " h"));
    let _ = writeln!(b, "<h2>Cost so far</h2>");
    let rows: Vec<(String, usize, f64)> =
        state.tasks.iter().map(|(a, t)| (a.to_string(), 1, t.cost_so_far())).collect();
    b.push_str(&cost_table("cost-by-task", "Task", &rows));
    page(&format!("skyform status: {job}"), &b)
}
