//! Reading reality: [`drift`] compares the state's live allocations with what their
//! providers report (the refresh behind `status`), [`sweep`] finds (and releases) what
//! carries this job's owner tags but is unknown to the state. Blocking provider calls.

use crate::config::TaskAddr;
use crate::providers::Providers;
use crate::state::State;
use skyform_provider::*;
use std::collections::{BTreeMap, BTreeSet};

/// Compares the state's live allocations (not released) with what their providers report,
/// by idempotency token. Returns, per task, what drifted: an allocation that is gone
/// (terminated outside skyform) or interrupted (stopped, shutting down).
pub fn drift(state: &State, providers: &Providers) -> BTreeMap<TaskAddr, String> {
    let mut out = BTreeMap::new();
    let tags: BTreeMap<String, String> = [("skyform:lineage".to_string(), state.lineage.clone())].into();
    let mut seen: BTreeMap<String, Option<Vec<ResourceInfo>>> = BTreeMap::new();
    for (addr, t) in &state.tasks {
        for a in t.allocations.iter().filter(|a| a.released.is_none() && a.provider_id.is_some()) {
            let found = seen.entry(a.placement.cloud.clone()).or_insert_with(|| {
                providers
                    .get(&a.placement.cloud)
                    .and_then(|p| p.read(&ReadRequest::tagged(tags.clone())).ok())
                    .map(|r| r.resources)
            });
            let Some(found) = found else { continue };
            let id = a.provider_id.clone().unwrap_or_default();
            match found.iter().find(|r| r.idempotency_token == a.idempotency_token) {
                None => {
                    out.insert(addr.clone(), format!("{id} is gone (terminated outside skyform)"));
                }
                Some(r) if r.state == RunState::Preempted => {
                    out.insert(addr.clone(), format!("{id} was interrupted (stopped or shutting down)"));
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// Lists what carries skyform's owner tags for this job — this state's lineage, or the
/// job's name (a state that was lost and made anew) — but is unknown to the state (or
/// already released in it), and releases it when `release` is set. Other jobs' resources
/// in the same account are never touched.
pub fn sweep(state: &State, job: &str, providers: &Providers, release: bool) -> Vec<(String, ResourceInfo)> {
    let live: BTreeSet<String> = state
        .tasks
        .values()
        .flat_map(|t| t.allocations.iter().filter(|a| a.released.is_none()).map(|a| a.idempotency_token.clone()))
        .collect();
    let ours = |r: &ResourceInfo| {
        r.owner_tags.get("skyform:lineage") == Some(&state.lineage)
            || (r.owner_tags.contains_key("skyform:lineage")
                && r.owner_tags.get("skyform:job").map(String::as_str) == Some(job))
    };
    let mut found = Vec::new();
    for (cloud, p) in providers {
        for r in p.read(&ReadRequest::all()).map(|r| r.resources).unwrap_or_default() {
            if ours(&r) && !live.contains(&r.idempotency_token) {
                if release {
                    let _ = p.release(&ReleaseRequest::new(r.provider_id.clone()));
                }
                found.push((cloud.clone(), r));
            }
        }
    }
    found
}
