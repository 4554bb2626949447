//! [`Ctx`]: what one command works with. It holds the job directory, colour, the argv (for
//! ordered `-var`/`-var-file`), the provider registry and the clock, and loads the job at
//! most once (`config::load` + the registry's check of its provider and backend blocks).
//! Every path a command needs — state, tracker — and every expensive thing — catalog,
//! tracker view, providers, the planning pipeline — is reached through it, so commands do
//! not repeat that work or decide it differently.

use super::backend::{self, Opened};
use super::views;
use super::StateArgs;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::{Diagnostics, JobSpec, LoadOptions, Loaded, TaskAddr};
use crate::pipeline::{self, PipelineError, Planned};
use crate::providers::{Providers, Registry};
use crate::state::StateStore;
use crate::tracker::{Tracker, TrackerView};
use skyform_provider::BuildContext;
use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a plan is asked for (the flags `plan`, `apply`, `destroy` and `graph` share).
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub destroy: bool,
    pub replace: Vec<String>,
    pub target: Vec<String>,
    pub exclude: Vec<String>,
    pub state: StateArgs,
    /// Read live allocations from their providers first (`-refresh=false`: plan from the
    /// state alone).
    pub refresh: bool,
}

/// The context of one command.
pub struct Ctx {
    /// The job directory (after -chdir).
    pub dir: PathBuf,
    pub color: bool,
    /// The normalized argv.
    pub argv: Vec<String>,
    pub registry: Registry,
    pub clock: Arc<dyn Clock>,
    /// `SKYFORM_IN_AUTOMATION` is set (like Terraform's `TF_IN_AUTOMATION`): no next-step
    /// hints meant for a person at a terminal.
    pub automation: bool,
    /// `-compact-warnings`: one line per kind of warning.
    compact_warnings: Cell<bool>,
    job: OnceCell<Result<Loaded, Diagnostics>>,
    reported: Cell<bool>,
}

impl Ctx {
    pub fn new(dir: PathBuf, color: bool, argv: Vec<String>, registry: Registry) -> Ctx {
        Ctx {
            dir,
            color,
            argv,
            registry,
            clock: crate::clock::system(),
            automation: std::env::var_os("SKYFORM_IN_AUTOMATION").is_some_and(|v| !v.is_empty()),
            compact_warnings: Cell::new(false),
            job: OnceCell::new(),
            reported: Cell::new(false),
        }
    }

    /// `-compact-warnings`: warnings printed from now on take one line per kind.
    pub fn set_compact_warnings(&self, on: bool) {
        self.compact_warnings.set(on);
    }

    /// A next-step hint for a person (stderr), left out under `SKYFORM_IN_AUTOMATION`.
    pub fn hint(&self, line: &str) {
        if !self.automation {
            errln!("{line}");
        }
    }

    /// Prints diagnostics (warnings compacted under `-compact-warnings`).
    fn print_diagnostics(&self, d: &Diagnostics) {
        if self.compact_warnings.get() {
            views::print_diagnostics_compact(d, self.color);
        } else {
            views::print_diagnostics(d, self.color);
        }
    }

    /// Prints the planner's warnings (one line per kind under `-compact-warnings`).
    fn print_warnings(&self, warnings: &[String]) {
        let lines = if self.compact_warnings.get() { views::compact_lines(warnings) } else { warnings.to_vec() };
        for w in lines {
            errln!("Warning: {w}");
        }
    }

    /// Variables (`-var`, `-var-file`, `SKYFORM_VAR_*`) and the cloud names of the registry.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            var_args: super::ordered_var_args(&self.argv),
            env_vars: std::env::vars()
                .filter_map(|(k, v)| k.strip_prefix("SKYFORM_VAR_").map(|n| (n.to_string(), v)))
                .collect(),
            clouds: self.registry.names(),
        }
    }

    /// The job, loaded and checked once: its diagnostics (errors, or the warnings of a
    /// valid job) are kept with it.
    pub fn job(&self) -> Result<&Loaded, &Diagnostics> {
        self.job
            .get_or_init(|| {
                // A block's `plugin = "path"` makes its name a cloud of the job (the loader
                // reads the provider blocks first).
                let mut loaded = crate::config::load(&self.dir, &self.load_options())?;
                let checked = self.registry.check(&loaded);
                if checked.has_errors() {
                    let mut all = loaded.warnings.clone();
                    all.0.extend(checked.0);
                    return Err(all.sorted());
                }
                loaded.warnings.0.extend(checked.0);
                Ok(loaded)
            })
            .as_ref()
    }

    /// The job when it loads, printing its diagnostics (once per command) either way.
    pub fn job_or_report(&self) -> Option<&Loaded> {
        let r = self.job();
        if !self.reported.replace(true) {
            match &r {
                Ok(l) => self.print_diagnostics(&l.warnings),
                Err(d) => self.print_diagnostics(d),
            }
        }
        r.ok()
    }

    /// The job when it loads (silently: for commands that also work without one).
    pub fn job_opt(&self) -> Option<&Loaded> {
        self.job().ok()
    }

    /// True when the directory holds `*.sky.hcl` files.
    pub fn has_job_files(&self) -> bool {
        std::fs::read_dir(&self.dir)
            .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().ends_with(".sky.hcl")))
            .unwrap_or(false)
    }

    /// The local state path: `-state`, else `skyform { state_path }`, else `.skyform/state`.
    pub fn state_path(&self, args: &StateArgs) -> PathBuf {
        if let Some(p) = &args.state {
            return self.dir.join(p);
        }
        if let Some(p) = self.job_opt().and_then(|l| l.spec.settings.state_path.clone()) {
            return self.dir.join(p);
        }
        self.dir.join(".skyform").join("state")
    }

    /// The tracker: `$SKYFORM_TRACKER`, else `skyform { tracker_path }`, else
    /// `.skyform/tracker`.
    pub fn tracker_path(&self) -> PathBuf {
        if let Some(p) = std::env::var_os("SKYFORM_TRACKER") {
            return PathBuf::from(p);
        }
        if let Some(p) = self.job_opt().and_then(|l| l.spec.settings.tracker_path.clone()) {
            return self.dir.join(p);
        }
        self.dir.join(".skyform").join("tracker")
    }

    /// The tracker view for planning (read-only; an absent tracker is empty).
    pub fn tracker_view(&self) -> anyhow::Result<TrackerView> {
        let path = self.tracker_path();
        let now = self.clock.now();
        if !path.exists() {
            return Ok(TrackerView { now, ..Default::default() });
        }
        Ok(Tracker::read_view(&path, now)?)
    }

    /// The catalog a job plans against (its source plus the offerings of its providers).
    pub fn catalog(&self, spec: &JobSpec) -> anyhow::Result<Catalog> {
        Ok(Catalog::for_job(spec, &self.registry)?)
    }

    /// What providers are built with.
    pub fn build_context(&self) -> BuildContext {
        BuildContext::new(self.dir.clone())
    }

    /// The providers of the job's enabled clouds compiled into this build.
    pub fn providers(&self, spec: &JobSpec) -> anyhow::Result<Providers> {
        Ok(self.registry.providers(spec, &self.build_context())?)
    }

    /// Opens the job's state; with `lock`, takes the lock for that operation first.
    pub fn open_state(&self, args: &StateArgs, lock: Option<&str>) -> anyhow::Result<Opened> {
        backend::open(self, args, lock)
    }

    /// The refresh before a plan: asks the providers of the state's live allocations
    /// (all in parallel, each within [`crate::apply::refresh::REFRESH_TIMEOUT`]) what still
    /// exists; returns what changed outside skyform per unfinished task. A state with
    /// nothing live needs no provider (and no credentials). A cloud that cannot be read is a warning:
    /// its tasks are planned from the state.
    pub fn refresh(&self, spec: &JobSpec, state: &crate::state::State) -> anyhow::Result<BTreeMap<TaskAddr, String>> {
        let live = state.tasks.values().any(|t| {
            t.status != crate::state::TaskStatus::Succeeded
                && t.allocations.iter().any(|a| a.released.is_none() && a.provider_id.is_some())
        });
        if !live {
            return Ok(BTreeMap::new());
        }
        let providers = self.providers(spec).map_err(|e| {
            anyhow::anyhow!("refreshing live allocations: {e:#} (-refresh=false plans from the state alone)")
        })?;
        let r = crate::apply::refresh(state, &providers, crate::apply::refresh::REFRESH_TIMEOUT);
        for (cloud, why) in &r.unread {
            errln!("Warning: could not refresh what runs on {cloud} ({why}); its tasks are planned from the state.");
        }
        Ok(r.drift)
    }

    /// The market refresh before a plan: records fresh spot prices of the clouds the
    /// state's live (running) tasks are on, through [`crate::tracker::refresh`] (the code of
    /// `skyform tracker refresh`), each cloud within [`crate::tracker::refresh::TIMEOUT`],
    /// so that re-optimization weighs today's prices. A state with nothing live asks
    /// nothing. Never fails the plan: a cloud that cannot be read (or a tracker held by
    /// another process) is a warning, and the plan uses the tracker's last observations.
    fn refresh_market(&self, spec: &JobSpec, catalog: &Catalog, state: &crate::state::State) {
        let clouds: std::collections::BTreeSet<String> = state
            .tasks
            .values()
            .filter(|t| t.status != crate::state::TaskStatus::Succeeded)
            .flat_map(|t| t.allocations.iter())
            .filter(|a| a.released.is_none() && a.provider_id.is_some())
            .map(|a| a.placement.cloud.clone())
            .collect();
        if clouds.is_empty() {
            return;
        }
        let names = clouds.iter().cloned().collect::<Vec<_>>().join(", ");
        let path = self.tracker_path();
        let t = match Tracker::open_briefly(&path) {
            Ok(t) => t,
            Err(crate::tracker::TrackerError::Open { source, .. }) if crate::db::is_busy(&source) => {
                errln!("Warning: the spot prices of {names} were not refreshed: another skyform process (an apply) holds the tracker; the plan uses its last observations.");
                return;
            }
            Err(e) => {
                errln!("Warning: could not refresh the spot prices of {names} ({e}); the plan uses the tracker's last observations.");
                return;
            }
        };
        let opts = super::tracker::refresh_options(
            self,
            self.clock.now(),
            crate::tracker::refresh::TIMEOUT,
            BTreeMap::new(),
            Some(clouds),
        );
        match crate::tracker::refresh::refresh(&t, &self.registry, spec, catalog, &opts) {
            Ok(reports) => {
                for r in reports {
                    if let crate::tracker::refresh::Outcome::Failed { error } = r.outcome {
                        errln!("Warning: could not refresh the spot prices of {} ({error}); the plan uses the tracker's last observations.", r.cloud);
                    }
                }
            }
            Err(e) => {
                errln!("Warning: could not refresh the spot prices of {names} ({e}); the plan uses the tracker's last observations.")
            }
        }
    }

    /// Runs the planning pipeline for the loaded job; prints what went wrong (diagnostics,
    /// an infeasible policy) and returns None then.
    pub fn plan(&self, loaded: &Loaded, req: &PlanRequest) -> anyhow::Result<Option<Planned>> {
        let spec = &loaded.spec;
        let catalog = self.catalog(spec)?;
        let state = self.open_state(&req.state, None)?.store.read()?;
        let changed_outside = if req.refresh { self.refresh(spec, &state)? } else { Default::default() };
        if req.refresh {
            self.refresh_market(spec, &catalog, &state);
        }
        let view = self.tracker_view()?;
        let addrs = |flag: &str, v: &[String]| -> anyhow::Result<Vec<TaskAddr>> {
            v.iter().map(|s| s.parse().map_err(|e: String| anyhow::anyhow!("-{flag}: {e}"))).collect()
        };
        let opts = crate::plan::Options {
            destroy: req.destroy,
            replace: addrs("replace", &req.replace)?,
            target: addrs("target", &req.target)?,
            exclude: addrs("exclude", &req.exclude)?,
            changed_outside: changed_outside.keys().cloned().collect(),
            ..Default::default()
        };
        let inputs = pipeline::Inputs { spec, catalog: &catalog, tracker: &view, state: &state };
        match pipeline::plan(&inputs, &opts) {
            Ok(mut p) => {
                p.warnings.extend(stale_warnings(&catalog, &p.plan, self.clock.now())?);
                self.print_warnings(&p.warnings);
                if let Some(note) = zone_id_note(&p.plan) {
                    errln!("Note: {note}");
                }
                p.changed_outside = changed_outside;
                Ok(Some(p))
            }
            Err(PipelineError::Invalid(mut d)) => {
                loaded.sources.fill_snippets(&mut d);
                self.print_diagnostics(&d);
                errln!("Error: the job has errors");
                Ok(None)
            }
            Err(e) => {
                errln!("Error: {e}");
                Ok(None)
            }
        }
    }
}

/// The note of a plan that places a task in an AWS zone named by zone ID (`use1-az2`, as
/// SkyPilot's v6+ catalogs name them): a zone name starts with its region's name, an ID
/// does not.
fn zone_id_note(plan: &crate::plan::Plan) -> Option<String> {
    let p = plan
        .changes
        .iter()
        .filter_map(|c| c.after.as_ref())
        .map(|a| &a.placement)
        .find(|p| p.cloud == "aws" && !p.zone.is_empty() && !p.zone.starts_with(&p.region))?;
    Some(format!(
        "AWS zones are named by zone ID ({}); apply maps them to this account's zone names (DescribeAvailabilityZones).",
        p.zone
    ))
}

/// A warning per cloud the plan places tasks on whose data (brought by `catalog update`) is
/// older than [`crate::catalog::max_age`].
fn stale_warnings(catalog: &Catalog, plan: &crate::plan::Plan, now: u64) -> anyhow::Result<Vec<String>> {
    let max_age = crate::catalog::max_age().map_err(|e| anyhow::anyhow!(e))?;
    let used: std::collections::BTreeSet<&str> =
        plan.changes.iter().filter_map(|c| c.after.as_ref()).map(|a| a.placement.cloud.as_str()).collect();
    Ok(catalog
        .stale(now, max_age, true)
        .into_iter()
        .filter(|(cloud, _)| used.contains(cloud.as_str()))
        .map(|(cloud, age)| {
            format!(
                "the catalog's {cloud} prices are {} old (fetched {}); run `skyform catalog update --cloud {cloud}`",
                crate::catalog::fmt_age(age),
                catalog.clouds[&cloud].date
            )
        })
        .collect())
}
