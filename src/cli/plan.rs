//! `skyform plan`, `show`, `graph` and `output`: the planning pipeline from the command
//! line (load → catalog → tracker view → resolve → optimize → plan::build) and its views.

use super::{output, Env, VarArgs};
use crate::catalog::Catalog;
use crate::config::{Loaded, TaskAddr};
use crate::plan::{self, render, Plan};
use crate::state::StateStore;
use crate::tracker::{now_secs, Tracker, TrackerView};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args, Clone, Default)]
pub struct StateArgs {
    /// Path of the state (default: skyform { state_path } or .skyform/state)
    #[arg(long = "state", value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// How long to wait for the state lock, e.g. 30s
    #[arg(long = "lock-timeout", default_value = "0s")]
    pub lock_timeout: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Save the plan to FILE (apply it later with `skyform apply FILE`)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Line-delimited JSON events on stdout
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when nothing changes, 2 when something does, 1 on errors
    #[arg(long = "detailed-exitcode")]
    pub detailed_exitcode: bool,
    /// Plan to destroy everything the state holds
    #[arg(long)]
    pub destroy: bool,
    /// Replace this task even if nothing changed (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Only this task and what it depends on (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<String>,
    /// Leave this task and what depends on it out (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub exclude: Vec<String>,
    /// Accepted for Terraform compatibility: skyform never prompts during plan
    #[arg(long = "input", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub input: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A saved plan file (default: the current state)
    pub file: Option<PathBuf>,
    /// The JSON document
    #[arg(long)]
    pub json: bool,
    /// text, json or markdown (a pull-request comment)
    #[arg(long, default_value = "text")]
    pub format: String,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// dot or mermaid
    #[arg(long, default_value = "dot")]
    pub format: String,
    #[command(flatten)]
    pub vars: VarArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One output
    pub name: Option<String>,
    /// As JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

/// The state path of the job.
pub fn state_path(env: &Env, args: &StateArgs, loaded: Option<&Loaded>) -> PathBuf {
    if let Some(p) = &args.state {
        return env.dir.join(p);
    }
    if let Some(p) = loaded.and_then(|l| l.spec.settings.state_path.clone()) {
        return env.dir.join(p);
    }
    env.dir.join(".skyform").join("state")
}

/// Parses `-lock-timeout` (`30s`, `2m`, `0s`).
pub fn lock_timeout(s: &str) -> anyhow::Result<std::time::Duration> {
    let h = crate::config::parse_hours(s).map_err(|e| anyhow::anyhow!("-lock-timeout: {e}"))?;
    Ok(std::time::Duration::from_secs_f64(h * 3600.0))
}

/// Loads the job, printing diagnostics; None when it has errors.
pub fn load_job(env: &Env) -> Option<Loaded> {
    match crate::config::load(&env.dir, &env.load_options()) {
        Ok(l) => {
            output::print_diagnostics(&l.warnings, env.color);
            Some(l)
        }
        Err(d) => {
            output::print_diagnostics(&d, env.color);
            None
        }
    }
}

/// The tracker view for planning (read-only; an absent tracker is empty).
pub fn tracker_view(env: &Env) -> anyhow::Result<TrackerView> {
    let path = super::tracker::tracker_path(env);
    if !path.exists() {
        return Ok(TrackerView { now: now_secs(), ..Default::default() });
    }
    Ok(Tracker::open(&path)?.view(now_secs())?)
}

fn addrs(flag: &str, v: &[String]) -> anyhow::Result<Vec<TaskAddr>> {
    v.iter().map(|s| s.parse().map_err(|e: String| anyhow::anyhow!("-{flag}: {e}"))).collect()
}

/// The whole planning pipeline.
pub fn make_plan(env: &Env, loaded: &Loaded, args: &PlanArgs) -> anyhow::Result<Result<Plan, String>> {
    let spec = &loaded.spec;
    let catalog = Catalog::for_job(spec)?;
    let mut diags = crate::resolve::check_against_catalog(spec, &catalog);
    if diags.has_errors() {
        loaded.sources.fill_snippets(&mut diags);
        output::print_diagnostics(&diags, env.color);
        return Ok(Err("the job has errors".into()));
    }
    let view = tracker_view(env)?;
    let state = super::backend::open(env, &args.state, Some(loaded), None)?.store.read()?;
    let assignment = if args.destroy {
        None
    } else {
        let resolved = match crate::resolve::resolve(spec, &catalog, &view) {
            Ok(r) => r,
            Err(e) => return Ok(Err(format!("no placement exists for the job:\n{e}"))),
        };
        for w in &resolved.warnings {
            eprintln!("Warning: {w}");
        }
        match crate::optimize::optimize(&resolved) {
            Ok(a) => Some(a),
            Err(e) => return Ok(Err(format!("no placement satisfies the policy:\n{e}"))),
        }
    };
    let opts = plan::Options {
        destroy: args.destroy,
        replace: addrs("replace", &args.replace)?,
        target: addrs("target", &args.target)?,
        exclude: addrs("exclude", &args.exclude)?,
        now: now_secs(),
        catalog_id: format!("{} ({}, {})", catalog.origin, catalog.snap.source, catalog.snap.created),
        tracker_id: view.fingerprint(),
    };
    match plan::build(spec, assignment.as_ref(), &state, &opts) {
        Ok(p) => Ok(Ok(p)),
        Err(e) => Ok(Err(e.to_string())),
    }
}

pub fn run_plan(env: &Env, args: PlanArgs) -> anyhow::Result<i32> {
    let Some(loaded) = load_job(env) else { return Ok(1) };
    let plan = match make_plan(env, &loaded, &args)? {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("Error: {msg}");
            return Ok(1);
        }
    };
    if args.json {
        for e in render::events(&plan, &crate::tracker::format_time(plan.created)) {
            println!("{}", serde_json::to_string(&e)?);
        }
    } else {
        print!("{}", render::text(&plan, env.color));
    }
    if let Some(out) = &args.out {
        let path = env.dir.join(out);
        std::fs::write(&path, plan.encode()).map_err(|e| anyhow::anyhow!("-out={}: {e}", out.display()))?;
        if !args.json {
            println!();
            println!("Saved the plan to: {}", out.display());
            println!("To perform exactly these actions, run: skyform apply {}", out.display());
        }
    }
    let failures = plan.guardrail_failures();
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("Error: guardrail failed: {f}");
        }
        return Ok(1);
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { 2 } else { 0 })
}

pub fn run_show(env: &Env, args: ShowArgs) -> anyhow::Result<i32> {
    let format = if args.json { "json".to_string() } else { args.format.clone() };
    match &args.file {
        Some(f) => {
            let text = std::fs::read_to_string(env.dir.join(f)).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let plan = Plan::decode(&text)?;
            match format.as_str() {
                "json" => output::print_json(&render::json(&plan)),
                "markdown" => print!("{}", render::markdown(&plan)),
                "text" => print!("{}", render::text(&plan, env.color)),
                other => anyhow::bail!("-format={other}: expected text, json or markdown"),
            }
        }
        None => {
            let loaded = crate::config::load(&env.dir, &env.load_options()).ok();
            let state = super::backend::open(env, &args.state, loaded.as_ref(), None)?.store.read()?;
            match format.as_str() {
                "json" => println!("{}", state.to_json()),
                "text" => {
                    if state.tasks.is_empty() {
                        println!("The state is empty. Run `skyform plan` and `skyform apply`.");
                    }
                    for (a, t) in &state.tasks {
                        let place = t
                            .placement
                            .as_ref()
                            .map(|p| format!("{}/{}/{} {}", p.cloud, p.region, p.zone, p.instance_type))
                            .unwrap_or_else(|| "-".into());
                        println!("{a}: {} at {place}, cost so far {}", t.status, render::usd(t.cost_so_far()));
                    }
                }
                other => anyhow::bail!("-format={other}: the state is shown as text or json"),
            }
        }
    }
    Ok(0)
}

pub fn run_graph(env: &Env, args: GraphArgs) -> anyhow::Result<i32> {
    let Some(loaded) = load_job(env) else { return Ok(1) };
    let pa = PlanArgs {
        out: None,
        json: false,
        detailed_exitcode: false,
        destroy: false,
        replace: vec![],
        target: vec![],
        exclude: vec![],
        input: false,
        state: StateArgs::default(),
        vars: args.vars.clone(),
    };
    let plan = match make_plan(env, &loaded, &pa)? {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("Error: {msg}");
            return Ok(1);
        }
    };
    let place = |a: &TaskAddr| {
        plan.changes
            .iter()
            .find(|c| &c.address == a)
            .and_then(|c| c.after.as_ref())
            .map(|p| {
                format!(
                    "{}/{}/{}\\n{}",
                    p.placement.cloud, p.placement.region, p.placement.zone, p.placement.instance_type
                )
            })
            .unwrap_or_default()
    };
    let spec = &loaded.spec;
    let id = |a: &TaskAddr| a.as_str().replace(['.', '-'], "_");
    match args.format.as_str() {
        "dot" => {
            println!("digraph \"{}\" {{", spec.name);
            println!("  rankdir = LR;");
            println!("  node [shape = box];");
            for a in spec.tasks.keys() {
                println!("  \"{a}\" [label = \"{a}\\n{}\"];", place(a));
            }
            for e in &spec.edges {
                let label =
                    e.output.as_ref().map(|o| format!("{o}: {} GB", e.size_gb)).unwrap_or_else(|| "depends_on".into());
                println!("  \"{}\" -> \"{}\" [label = \"{label}\"];", e.from, e.to);
            }
            println!("}}");
        }
        "mermaid" => {
            println!("flowchart LR");
            for a in spec.tasks.keys() {
                println!("  {}[\"{a}<br/>{}\"]", id(a), place(a).replace("\\n", "<br/>"));
            }
            for e in &spec.edges {
                let label =
                    e.output.as_ref().map(|o| format!("{o}: {} GB", e.size_gb)).unwrap_or_else(|| "depends_on".into());
                println!("  {} -->|{label}| {}", id(&e.from), id(&e.to));
            }
        }
        other => anyhow::bail!("-format={other}: expected dot or mermaid"),
    }
    Ok(0)
}

pub fn run_output(env: &Env, args: OutputArgs) -> anyhow::Result<i32> {
    let Some(loaded) = load_job(env) else { return Ok(1) };
    let state = super::backend::open(env, &args.state, Some(&loaded), None)?.store.read()?;
    // Applied outputs win; otherwise the configuration's values (references shown as such).
    let mut values: std::collections::BTreeMap<String, (serde_json::Value, bool)> =
        loaded.spec.outputs.iter().map(|(k, o)| (k.clone(), (o.value.clone(), o.sensitive))).collect();
    for (k, v) in &state.outputs {
        let sensitive = values.get(k).is_some_and(|x| x.1);
        values.insert(k.clone(), (v.clone(), sensitive));
    }
    if let Some(name) = &args.name {
        let Some((v, _)) = values.get(name) else {
            let hint = crate::config::diag::did_you_mean(name, values.keys().map(String::as_str))
                .map(|h| format!(" Did you mean \"{h}\"?"))
                .unwrap_or_default();
            eprintln!("Error: the job has no output named \"{name}\".{hint}");
            return Ok(1);
        };
        println!(
            "{}",
            if args.json {
                serde_json::to_string(v)?
            } else {
                v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
            }
        );
        return Ok(0);
    }
    if args.json {
        let m: serde_json::Map<String, serde_json::Value> =
            values.iter().map(|(k, (v, s))| (k.clone(), serde_json::json!({"value": v, "sensitive": s}))).collect();
        output::print_json(&serde_json::Value::Object(m));
    } else {
        if values.is_empty() {
            eprintln!("The job has no outputs.");
        }
        for (k, (v, s)) in &values {
            println!("{k} = {}", if *s { "(sensitive value)".to_string() } else { v.to_string() });
        }
    }
    Ok(0)
}
