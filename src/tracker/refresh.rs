//! Refreshing the tracker's spot prices: one function behind `skyform tracker refresh`
//! and the market refresh of `skyform plan`.
//!
//! ```text
//! JobSpec × Catalog × Registry × Options ──refresh──▶ observations recorded + per-cloud report
//! ```
//!
//! For each enabled cloud (or only those of [`Options::clouds`]): its provider's
//! [`Market`](skyform_provider::Market) when it has one (AWS: `DescribeSpotPriceHistory`;
//! local: its price trace), else its price API through the `catalog update` sources
//! ([`crate::catalog::update::spot`]: Azure's Retail Prices API, GCP's Cloud Billing
//! Catalog, when `$SKYFORM_GCP_API_KEY` is set), else nothing (its spot prices come from
//! the catalog, and the report says so). Only the regions and
//! instance types the job can use are asked for: those of its tasks' candidates
//! (resolved against the catalog); without a job, or when the job does not resolve, all.
//! Every cloud is asked on its own thread, all within [`Options::timeout`]; a cloud that
//! fails or does not answer in time is reported and the others are still recorded. Each
//! observation is dated `now`, so every refresh adds a point to each series.
//!
//! I/O: the markets' and price APIs' network calls, the tracker database; nothing prints.

use super::{Tracker, TrackerError};
use crate::catalog::update::spot::{self, Wanted};
use crate::catalog::Catalog;
use crate::config::JobSpec;
use crate::providers::Registry;
use skyform_provider::{BuildContext, SpotPrice, SpotPricesRequest};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// How long one cloud may take by default.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What a refresh is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The observation time (Unix seconds).
    pub now: u64,
    /// How long each cloud may take (all are asked in parallel).
    pub timeout: Duration,
    /// Base URL of a cloud's price API (`azure`, `gcp`); absent: the public API.
    pub base_urls: BTreeMap<String, String>,
    /// Only these clouds (None: every enabled cloud).
    pub clouds: Option<BTreeSet<String>>,
    /// Where the price APIs' temporary downloads go.
    pub dir: PathBuf,
    pub build: BuildContext,
}

/// How one cloud's refresh ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Observations recorded, read from `from` (the market, or a price API's URL).
    Recorded { observations: usize, from: String },
    /// The job has no candidate on this cloud: nothing to ask.
    NothingWanted,
    /// No market and no price API: its spot prices come from `source`.
    Elsewhere { source: String },
    /// Nothing recorded: why (a URL that could not be read, a timeout).
    Failed { error: String },
}

/// One cloud's refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudRefresh {
    pub cloud: String,
    pub outcome: Outcome,
    /// Bad rows of a price API, reported and left out.
    pub bad_rows: Vec<String>,
}

/// What a cloud's thread sends back.
enum Answer {
    /// Prices, where they were read, bad rows.
    Prices(Vec<SpotPrice>, String, Vec<String>),
    Elsewhere(String),
    Failed(String),
}

/// What the job can use, per cloud: the regions and instance types of its tasks'
/// candidates (on-demand or spot: a later plan may choose either).
/// None: everything (no job, or one that does not resolve).
pub fn wanted(spec: &JobSpec, catalog: &Catalog) -> Option<BTreeMap<String, Wanted>> {
    if spec.tasks.is_empty() {
        return None;
    }
    let resolved = crate::resolve::resolve(spec, catalog, &super::TrackerView::default()).ok()?;
    let mut by_cloud: BTreeMap<String, Wanted> = BTreeMap::new();
    for t in &resolved.tasks {
        for c in t.candidates.iter() {
            let w = by_cloud.entry(c.location.cloud.clone()).or_default();
            w.regions.insert(c.location.region.clone());
            w.instance_types.insert(c.instance_type.clone());
        }
    }
    Some(by_cloud)
}

/// Asks every cloud for its spot prices and records them in `tracker` (see the module doc).
pub fn refresh(
    tracker: &Tracker,
    registry: &Registry,
    spec: &JobSpec,
    catalog: &Catalog,
    opts: &Options,
) -> Result<Vec<CloudRefresh>, TrackerError> {
    let wanted = wanted(spec, catalog);
    let (tx, rx) = std::sync::mpsc::channel::<(String, Answer)>();
    let mut out: BTreeMap<String, CloudRefresh> = BTreeMap::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    for (cloud, body, factory) in registry.enabled_factories(spec) {
        if opts.clouds.as_ref().is_some_and(|c| !c.contains(&cloud)) {
            continue;
        }
        let report = |outcome| CloudRefresh { cloud: cloud.clone(), outcome, bad_rows: vec![] };
        let want = match &wanted {
            None => Wanted::default(),
            Some(w) => match w.get(&cloud) {
                Some(w) => w.clone(),
                None => {
                    out.insert(cloud.clone(), report(Outcome::NothingWanted));
                    continue;
                }
            },
        };
        let unavailable = spot::unavailable(&cloud);
        let api = spot::source_of(&cloud).filter(|_| unavailable.is_none());
        let elsewhere = match (&factory, unavailable) {
            (_, Some(why)) => why,
            (Ok(f), None) => f.price_source().to_string(),
            (Err(e), None) => format!("the catalog ({e})"),
        };
        if factory.is_err() && api.is_none() {
            out.insert(cloud.clone(), report(Outcome::Elsewhere { source: elsewhere }));
            continue;
        }
        let snapshot = if api.is_some() { catalog.cloud_snapshot(&cloud) } else { Default::default() };
        let (tx, opts, name) = (tx.clone(), opts.clone(), cloud.clone());
        pending.insert(cloud.clone());
        std::thread::spawn(move || {
            let market = match &factory {
                Ok(f) => f.market(&body, &opts.build).map_err(|e| e.to_string()),
                Err(_) => Ok(None),
            };
            let answer = match market {
                Err(e) => Answer::Failed(e),
                Ok(Some(m)) => {
                    let mut req = SpotPricesRequest::at(opts.now);
                    req.regions = want.regions.iter().cloned().collect();
                    req.instance_types = want.instance_types.iter().cloned().collect();
                    match m.spot_prices(&req) {
                        Ok(r) => Answer::Prices(r.prices, "its market".into(), vec![]),
                        Err(e) => Answer::Failed(e.to_string()),
                    }
                }
                Ok(None) if api.is_some() => {
                    let base = opts.base_urls.get(&name).map(String::as_str);
                    match spot::spot_prices(&name, base, &snapshot, &want, &opts.dir, opts.now) {
                        Ok(f) => Answer::Prices(f.prices, f.url, f.bad_rows),
                        Err(e) => Answer::Failed(e.to_string()),
                    }
                }
                Ok(None) => Answer::Elsewhere(elsewhere),
            };
            let _ = tx.send((name, answer));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + opts.timeout;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok((cloud, answer)) = rx.recv_timeout(left) else { break };
        pending.remove(&cloud);
        let (outcome, bad_rows) = match answer {
            Answer::Prices(prices, from, bad) => {
                let observations = tracker.record_spot(&prices)?;
                (Outcome::Recorded { observations, from }, bad)
            }
            Answer::Elsewhere(source) => (Outcome::Elsewhere { source }, vec![]),
            Answer::Failed(error) => (Outcome::Failed { error }, vec![]),
        };
        out.insert(cloud.clone(), CloudRefresh { cloud, outcome, bad_rows });
    }
    for cloud in pending {
        let error = format!("no answer within {} s", opts.timeout.as_secs_f64());
        out.insert(cloud.clone(), CloudRefresh { cloud, outcome: Outcome::Failed { error }, bad_rows: vec![] });
    }
    Ok(out.into_values().collect())
}
