//! Spot prices for the tracker from the price APIs of the `azure` and `gcp` sources: the
//! same [`Source`](super::Source) fetch and the same [`checks`](super::checks) as
//! `catalog update`, kept in memory instead of written to the cache.
//!
//! ```text
//! cloud × base URL × the cloud's current snapshot × Wanted ──spot_prices──▶ SpotFetch
//! ```
//!
//! The source turns its pages into offerings (Azure: the Retail Prices API's Spot meters,
//! asked only for the wanted regions; GCP: the Cloud Billing Catalog's Preemptible SKUs
//! combined with the snapshot's machine types); the offerings of the wanted regions and
//! instance types that have a spot price become [`SpotPrice`] observations at `now`, keyed
//! by [`crate::tracker::series_type`]. Rows the checks refuse (an absurd price, one moved
//! more than `max_change` since the snapshot) are reported and left out. Does network I/O
//! (and writes its temporary download file in `dir`).

use super::{checks, FetchCtx, SourceKind, UpdateError};
use crate::catalog::Snapshot;
use crate::forge::http::Http;
use skyform_provider::{Location, SpotPrice};
use std::collections::BTreeSet;
use std::path::Path;

/// The offerings whose spot prices are wanted (what a job can use). Empty sets: all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wanted {
    pub regions: BTreeSet<String>,
    pub instance_types: BTreeSet<String>,
}

impl Wanted {
    fn admits(&self, region: &str, instance_type: &str) -> bool {
        (self.regions.is_empty() || self.regions.contains(region))
            && (self.instance_types.is_empty() || self.instance_types.contains(instance_type))
    }
}

/// What one cloud's price API answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotFetch {
    /// What was read (the first page's URL; the API key is never part of it).
    pub url: String,
    pub prices: Vec<SpotPrice>,
    /// Bad rows, reported and left out (`PAGE-URL item N: why`).
    pub bad_rows: Vec<String>,
}

/// The source that has spot prices of `cloud` (None: no price API for it here; AWS's come
/// from its market, `DescribeSpotPriceHistory`).
pub fn source_of(cloud: &str) -> Option<SourceKind> {
    match cloud {
        "azure" => Some(SourceKind::Azure),
        "gcp" => Some(SourceKind::Gcp),
        _ => None,
    }
}

/// Why `cloud`'s price API cannot be asked here, found without I/O: GCP's wants an API key
/// (`$SKYFORM_GCP_API_KEY`). A refresh then says where its prices come from instead.
pub fn unavailable(cloud: &str) -> Option<String> {
    (cloud == "gcp" && std::env::var_os("SKYFORM_GCP_API_KEY").is_none())
        .then(|| "the catalog (the Cloud Billing Catalog API needs an API key: set SKYFORM_GCP_API_KEY)".to_string())
}

/// The spot prices of `cloud` from its price API at `base_url` (None: the public API).
/// `current` is the cloud's snapshot in use (sizes and machine types; the price-move check).
pub fn spot_prices(
    cloud: &str,
    base_url: Option<&str>,
    current: &Snapshot,
    wanted: &Wanted,
    dir: &Path,
    now: u64,
) -> Result<SpotFetch, UpdateError> {
    let kind = source_of(cloud).ok_or_else(|| UpdateError::NoSuchCloud { from: "spot".into(), cloud: cloud.into() })?;
    let source: Box<dyn super::Source> = match kind {
        SourceKind::Azure => Box::new(super::azure::Azure {
            base: base_url.unwrap_or(super::azure::DEFAULT_BASE).trim_end_matches('/').to_string(),
            regions: wanted.regions.iter().cloned().collect(),
        }),
        other => other.source(base_url),
    };
    let url = source.url(cloud);
    std::fs::create_dir_all(dir).map_err(|e| UpdateError::Io { path: dir.display().to_string(), source: e })?;
    let http = Http::new(&url).map_err(|e| UpdateError::Download { url: url.clone(), detail: e.to_string() })?;
    let mut bad = Vec::new();
    let previous = (!current.shapes.is_empty()).then_some(current);
    let mut ctx = FetchCtx {
        http: &http,
        cloud,
        dir,
        known: &|_| None,
        previous,
        shapes: &[],
        bad: &mut bad,
        progress: &super::Quiet,
    };
    let super::Fetch::Data { mut builder, url, locate, .. } = source.fetch(&mut ctx)? else {
        return Err(UpdateError::Data(format!("{url}: answered 304 to an unconditional request")));
    };
    let checks = checks::Offerings::new(cloud, previous, checks::DEFAULT_MAX_CHANGE);
    let mut prices = Vec::new();
    builder.retain(|c| {
        if !wanted.admits(c.region, c.instance_type) {
            return false;
        }
        if let Some(why) = checks.check(c) {
            bad.push(format!("{}: {why}", locate.at(c.line)));
            return false;
        }
        if let Some(price) = c.spot_price {
            prices.push(SpotPrice {
                location: Location::new(cloud, c.region, c.zone),
                instance_type: crate::tracker::series_type(cloud, c.instance_type, c.accelerator, c.accelerator_count)
                    .into_owned(),
                price,
                at: now,
            });
        }
        false
    });
    Ok(SpotFetch { url, prices, bad_rows: bad })
}
