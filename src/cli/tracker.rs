//! `skyform tracker show|refresh|block|unblock`: the observed market from the command
//! line. The tracker lives at `$SKYFORM_TRACKER`, `skyform { tracker_path }`, or
//! `.skyform/tracker` in the job directory. `refresh` records spot prices through
//! [`tracker::refresh`] (each enabled provider's market, else its price API) and says
//! where the others' prices come from; it exits 1 when a cloud could not be read (the
//! others are still recorded).

use super::{views, Ctx};
use crate::clock::format_time;
use crate::tracker::refresh::Outcome;
use crate::tracker::{self, Tracker};
use clap::{Args, Subcommand};
use skyform_provider::ErrorKind;

#[derive(Debug, Subcommand)]
pub enum TrackerCmd {
    /// Blocks in force, latest spot observations, preemptions
    Show(ShowArgs),
    /// Record current spot prices: each enabled provider's market (AWS), else its price API
    /// (Azure Retail Prices, GCP Cloud Billing Catalog with $SKYFORM_GCP_API_KEY), for the
    /// regions and instance types the job can use
    Refresh(RefreshArgs),
    /// Block a location: CLOUD, CLOUD:REGION or CLOUD:REGION:ZONE
    Block(BlockArgs),
    /// Remove a block
    Unblock(UnblockArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Base URL of the Azure Retail Prices API (default: https://prices.azure.com)
    #[arg(long = "azure-base-url", value_name = "URL", env = AZURE_URL_ENV)]
    pub azure_base_url: Option<String>,
    /// Base URL of the Cloud Billing Catalog API (default: https://cloudbilling.googleapis.com)
    #[arg(long = "gcp-base-url", value_name = "URL", env = GCP_URL_ENV)]
    pub gcp_base_url: Option<String>,
    /// How long each cloud may take, e.g. 30s, 2m
    #[arg(long, default_value = "60s", value_parser = humantime_secs)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub vars: super::VarArgs,
}

/// The variables that point the price APIs elsewhere (`tracker refresh` and `plan`).
pub const AZURE_URL_ENV: &str = "SKYFORM_AZURE_PRICES_URL";
pub const GCP_URL_ENV: &str = "SKYFORM_GCP_BILLING_URL";

fn humantime_secs(s: &str) -> Result<std::time::Duration, String> {
    let h = crate::config::parse_hours(s)?;
    Ok(std::time::Duration::from_secs_f64(h * 3600.0))
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    /// The location, e.g. aws:us-east-1:us-east-1a
    pub location: String,
    /// How long, e.g. 30m, 2h
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// The error kind to record
    #[arg(long, default_value = "capacity_unavailable")]
    pub kind: String,
    /// Why
    #[arg(long, default_value = "blocked by hand")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct UnblockArgs {
    /// The location, e.g. aws:us-east-1:us-east-1a
    pub location: String,
}

pub fn run(ctx: &Ctx, cmd: TrackerCmd) -> anyhow::Result<i32> {
    let path = ctx.tracker_path();
    let t = Tracker::open(&path)?;
    let now = ctx.clock.now();
    match cmd {
        TrackerCmd::Show(a) => {
            let v = t.view(now)?;
            if a.json {
                views::print_json(&serde_json::to_value(&v)?);
                return Ok(0);
            }
            outln!("Tracker: {}", path.display());
            outln!();
            if v.blocks.is_empty() {
                outln!("No blocked locations.");
            } else {
                let mut rows =
                    vec![["BLOCKED", "SCOPE", "KIND", "COUNT", "UNTIL", "REASON"].map(String::from).to_vec()];
                for b in &v.blocks {
                    rows.push(vec![
                        b.key(),
                        b.scope.to_string(),
                        b.kind.to_string(),
                        b.count.to_string(),
                        format_time(b.until),
                        b.reason.clone(),
                    ]);
                }
                out!("{}", views::table(&rows));
            }
            outln!();
            outln!("Spot observations: {} stored, {} (location, type) series", t.spot_observations(), v.spot.len());
            let mut rows = vec![["LOCATION", "INSTANCE TYPE", "SPOT $/h", "OBSERVED"].map(String::from).to_vec()];
            for ((l, it), (p, at)) in v.spot.iter().take(20) {
                rows.push(vec![l.to_string(), it.clone(), format!("${p:.5}"), format_time(*at)]);
            }
            if rows.len() > 1 {
                out!("{}", views::table(&rows));
            }
            if !v.preemptions.is_empty() {
                outln!();
                for (l, n) in &v.preemptions {
                    outln!("Preemptions at {l} (7 days): {n}");
                }
            }
            Ok(0)
        }
        TrackerCmd::Refresh(a) => {
            let empty = crate::config::JobSpec::empty("tracker");
            let spec = ctx.job_opt().map(|l| &l.spec).unwrap_or(&empty);
            let catalog = ctx.catalog(spec)?;
            let mut base_urls = std::collections::BTreeMap::new();
            base_urls.extend(a.azure_base_url.map(|u| ("azure".to_string(), u)));
            base_urls.extend(a.gcp_base_url.map(|u| ("gcp".to_string(), u)));
            let opts = refresh_options(ctx, now, a.timeout, base_urls, None);
            let reports = tracker::refresh::refresh(&t, &ctx.registry, spec, &catalog, &opts)?;
            let mut failed = false;
            for r in &reports {
                for b in &r.bad_rows {
                    errln!("Warning: {b}");
                }
                match &r.outcome {
                    Outcome::Recorded { observations, from } => {
                        errln!("{}: recorded {observations} spot price observations from {from}", r.cloud)
                    }
                    Outcome::NothingWanted => errln!("{}: the job has no candidate there; nothing to ask", r.cloud),
                    Outcome::Elsewhere { source } => {
                        errln!("{}: no market to ask; its spot prices come from {source}", r.cloud)
                    }
                    Outcome::Failed { error } => {
                        failed = true;
                        errln!("Warning: {}: no spot prices recorded: {error}", r.cloud);
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        TrackerCmd::Block(a) => {
            let (loc, scope) = tracker::parse_location(&a.location).map_err(|e| anyhow::anyhow!(e))?;
            let kind: ErrorKind = a.kind.parse().map_err(|e: String| anyhow::anyhow!("--kind: {e}"))?;
            let ttl = crate::config::parse_hours(&a.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let b = t.block_for(&loc, scope, kind, &a.reason, now, (ttl * 3600.0) as u64)?;
            outln!("Blocked {} ({}) until {}", b.key(), b.scope, format_time(b.until));
            Ok(0)
        }
        TrackerCmd::Unblock(a) => {
            let (loc, scope) = tracker::parse_location(&a.location).map_err(|e| anyhow::anyhow!(e))?;
            let key = crate::tracker::Block {
                scope,
                location: loc,
                kind: ErrorKind::Other,
                count: 0,
                since: 0,
                until: 0,
                reason: String::new(),
            }
            .key();
            if t.unblock(&key)? {
                outln!("Unblocked {key}");
                Ok(0)
            } else {
                errln!("No block on {key}");
                Ok(1)
            }
        }
    }
}

/// The options of a spot refresh from the command line: the price APIs' base URLs given
/// (else `$SKYFORM_AZURE_PRICES_URL` / `$SKYFORM_GCP_BILLING_URL`), the catalog cache for
/// temporary downloads.
pub fn refresh_options(
    ctx: &Ctx,
    now: u64,
    timeout: std::time::Duration,
    mut base_urls: std::collections::BTreeMap<String, String>,
    clouds: Option<std::collections::BTreeSet<String>>,
) -> tracker::refresh::Options {
    for (cloud, var) in [("azure", AZURE_URL_ENV), ("gcp", GCP_URL_ENV)] {
        if let Ok(u) = std::env::var(var) {
            base_urls.entry(cloud.to_string()).or_insert(u);
        }
    }
    tracker::refresh::Options {
        now,
        timeout,
        base_urls,
        clouds,
        dir: crate::catalog::cache::dir(),
        build: ctx.build_context(),
    }
}
