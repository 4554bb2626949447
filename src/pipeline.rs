//! The planning pipeline as library functions: what `validate`, `plan`, `apply` (without a
//! saved plan) and `graph` run, without the command line.
//!
//! ```text
//! Loaded × Registry × Catalog ──validate──▶ Diagnostics
//! JobSpec × Catalog × TrackerView × State ──plan──▶ Planned { Plan, Assignment, warnings }
//! ```
//!
//! Pure: the caller loads the job, opens the catalog, reads the tracker view and the state,
//! and renders the result. Errors are typed ([`PipelineError`]).

use crate::catalog::Catalog;
use crate::config::{Diagnostics, JobSpec, Loaded, TaskAddr};
use crate::optimize::{Assignment, OptimizeError};
use crate::plan::{self, Plan, PlanError};
use crate::providers::Registry;
use crate::resolve::ResolveError;
use crate::resolve::ResolvedJob;
use crate::state::{State, TaskStatus};
use crate::tracker::TrackerView;
use skyform_provider::Location;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The job does not fit the catalog (unknown accelerators, instance types, ...).
    #[error("the job has errors")]
    Invalid(Diagnostics),
    #[error("no placement exists for the job:\n{0}")]
    NoPlacement(#[from] ResolveError),
    #[error("no placement satisfies the policy:\n{0}")]
    Infeasible(#[from] OptimizeError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// What the planner reads.
pub struct Inputs<'a> {
    pub spec: &'a JobSpec,
    pub catalog: &'a Catalog,
    pub tracker: &'a TrackerView,
    pub state: &'a State,
}

/// A plan and how it was found.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: Plan,
    /// The optimizer's answer (None for a destroy plan); its report carries the solve time,
    /// which the saved plan does not.
    pub assignment: Option<Assignment>,
    /// Resolver warnings (unusual choices the user should know of).
    pub warnings: Vec<String>,
    /// What a refresh found changed outside skyform, per task (the caller's refresh fills
    /// it; those tasks are in `plan::Options::changed_outside`).
    pub changed_outside: BTreeMap<TaskAddr, String>,
}

/// Every offline check of a loaded job: the provider and backend blocks (through the
/// registry) and the job against the catalog. Warnings of the load are included.
pub fn validate(loaded: &Loaded, registry: &Registry, catalog: &Catalog) -> Diagnostics {
    let mut d = loaded.warnings.clone();
    for x in registry.check(loaded).0 {
        d.push(x);
    }
    for x in crate::resolve::check_against_catalog(&loaded.spec, catalog).0 {
        d.push(x);
    }
    loaded.sources.fill_snippets(&mut d);
    d.sorted()
}

/// The catalog id a plan records: where the catalog came from and the data's date.
pub fn catalog_id(catalog: &Catalog) -> String {
    format!("{} ({}, {})", catalog.origin, catalog.snap.source, catalog.snap.created)
}

/// Resolve → optimize → diff against the state. `opts.catalog_id`/`tracker_id` are filled
/// from the inputs when empty.
pub fn plan(inputs: &Inputs, opts: &plan::Options) -> Result<Planned, PipelineError> {
    let spec = inputs.spec;
    let diags = crate::resolve::check_against_catalog(spec, inputs.catalog);
    if diags.has_errors() {
        return Err(PipelineError::Invalid(diags));
    }
    let mut opts = opts.clone();
    let (assignment, warnings) = if opts.destroy {
        (None, Vec::new())
    } else {
        let resolved = crate::resolve::resolve(spec, inputs.catalog, inputs.tracker)?;
        let a = crate::optimize::optimize(&resolved)?;
        opts.progress = progress(&resolved, inputs.state, inputs.tracker.now);
        (Some(a), resolved.warnings.clone())
    };
    if opts.catalog_id.is_empty() {
        opts.catalog_id = catalog_id(inputs.catalog);
    }
    if opts.tracker_id.is_empty() {
        opts.tracker_id = inputs.tracker.fingerprint();
    }
    let plan = plan::build(spec, assignment.as_ref(), inputs.state, &opts)?;
    Ok(Planned { plan, assignment, warnings, changed_outside: BTreeMap::new() })
}

/// The live runs of unfinished tasks at `now`: how long each has run and what its
/// placement costs now (its candidate's price in `resolved`, which carries the tracker's
/// latest spot prices; else the price at launch).
pub fn progress(resolved: &ResolvedJob, state: &State, now: u64) -> BTreeMap<TaskAddr, plan::Progress> {
    let mut out = BTreeMap::new();
    for (addr, t) in &state.tasks {
        if t.status != TaskStatus::Running {
            continue;
        }
        let (Some(p), Some(run)) = (&t.placement, t.runs.last()) else { continue };
        if run.end.is_some() {
            continue;
        }
        let at = Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str());
        let hourly_now = resolved
            .index
            .get(addr)
            .and_then(|&i| {
                resolved.tasks[i]
                    .candidates
                    .iter()
                    .find(|c| c.location == at && c.instance_type == p.instance_type && c.spot == p.spot)
            })
            .map(|c| c.hourly)
            .unwrap_or(p.hourly);
        let elapsed_hours = now.saturating_sub(run.start) as f64 / 3600.0;
        out.insert(addr.clone(), plan::Progress { elapsed_hours, hourly_now });
    }
    out
}
