//! `skyform tracker show|refresh|block|unblock`: the observed market from the command
//! line. The tracker lives at `$SKYFORM_TRACKER`, `skyform { tracker_path }`, or
//! `.skyform/tracker` in the job directory. `refresh` asks the market of every enabled
//! provider (through the registry) and says where the others' prices come from.

use super::{views, Ctx};
use crate::clock::format_time;
use crate::providers::MarketEntry;
use crate::tracker::{self, Tracker};
use clap::{Args, Subcommand};
use skyform_provider::{ErrorKind, SpotPricesRequest};

#[derive(Debug, Subcommand)]
pub enum TrackerCmd {
    /// Blocks in force, latest spot observations, preemptions
    Show(ShowArgs),
    /// Ask each enabled provider's market for current spot prices
    Refresh(super::VarArgs),
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
        TrackerCmd::Refresh(_) => {
            let empty = crate::config::JobSpec::empty("tracker");
            let spec = ctx.job_opt().map(|l| &l.spec).unwrap_or(&empty);
            for m in ctx.registry.markets(spec, &ctx.build_context()) {
                match m {
                    MarketEntry::Market(m) => {
                        let r = m
                            .spot_prices(&SpotPricesRequest::at(now))
                            .map_err(|e| anyhow::anyhow!("{}: {e}", m.cloud()))?;
                        let n = t.record_spot(&r.prices)?;
                        errln!("{}: recorded {n} spot price observations", m.cloud());
                    }
                    MarketEntry::Elsewhere { cloud, source } => {
                        errln!("{cloud}: no market to ask; its spot prices come from {source}");
                    }
                    MarketEntry::Failed { cloud, error } => {
                        errln!("{cloud}: no market in this build ({error}); its spot prices come from the catalog");
                    }
                }
            }
            Ok(0)
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
