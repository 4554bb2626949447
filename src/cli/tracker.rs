//! `skyform tracker show|refresh|block|unblock`: the observed market from the command
//! line. The tracker lives at `skyform { tracker_path }`, `$SKYFORM_TRACKER`, or
//! `.skyform/tracker` in the job directory.

use super::{output, Env};
use crate::tracker::{self, format_time, now_secs, Tracker};
use clap::{Args, Subcommand};
use skyform_provider::{ErrorKind, Market, SpotPricesRequest};
use std::path::PathBuf;

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

/// The tracker path of the job in `env.dir`.
pub fn tracker_path(env: &Env) -> PathBuf {
    if let Some(p) = std::env::var_os("SKYFORM_TRACKER") {
        return PathBuf::from(p);
    }
    if let Ok(l) = crate::config::load(&env.dir, &env.load_options()) {
        if let Some(p) = l.spec.settings.tracker_path {
            return env.dir.join(p);
        }
    }
    env.dir.join(".skyform").join("tracker")
}

pub fn run(env: &Env, cmd: TrackerCmd) -> anyhow::Result<i32> {
    let path = tracker_path(env);
    let t = Tracker::open(&path)?;
    let now = now_secs();
    match cmd {
        TrackerCmd::Show(a) => {
            let v = t.view(now)?;
            if a.json {
                output::print_json(&serde_json::to_value(&v)?);
                return Ok(0);
            }
            println!("Tracker: {}", path.display());
            println!();
            if v.blocks.is_empty() {
                println!("No blocked locations.");
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
                print!("{}", output::table(&rows));
            }
            println!();
            println!("Spot observations: {} stored, {} (location, type) series", t.spot_observations(), v.spot.len());
            let mut rows = vec![["LOCATION", "INSTANCE TYPE", "SPOT $/h", "OBSERVED"].map(String::from).to_vec()];
            for ((l, it), (p, at)) in v.spot.iter().take(20) {
                rows.push(vec![l.to_string(), it.clone(), format!("${p:.5}"), format_time(*at)]);
            }
            if rows.len() > 1 {
                print!("{}", output::table(&rows));
            }
            if !v.preemptions.is_empty() {
                println!();
                for (l, n) in &v.preemptions {
                    println!("Preemptions at {l} (7 days): {n}");
                }
            }
            Ok(0)
        }
        TrackerCmd::Refresh(_) => {
            let loaded = crate::config::load(&env.dir, &env.load_options()).ok();
            let local = match loaded.as_ref().and_then(|l| l.spec.providers.get("local")) {
                Some(v) => skyform_provider_local::LocalConfig::from_json(v).map_err(|e| anyhow::anyhow!(e))?,
                None => skyform_provider_local::LocalConfig::default(),
            };
            #[allow(unused_mut)]
            let mut markets: Vec<Box<dyn Market>> = vec![Box::new(skyform_provider_local::SyntheticMarket::new(local))];
            #[cfg(feature = "aws")]
            if let Some(v) = loaded.as_ref().and_then(|l| l.spec.providers.get("aws")) {
                let p = std::sync::Arc::new(super::apply::aws_provider(v)?);
                markets.push(Box::new(skyform_provider_aws::market::AwsMarket::new(p)));
            }
            let clouds = loaded.map(|l| l.spec.enabled_clouds()).unwrap_or_else(|| vec!["local".into()]);
            for cloud in clouds.iter().filter(|c| !markets.iter().any(|m| m.cloud() == c.as_str())) {
                eprintln!("{cloud}: no market client in this build; its spot prices come from the catalog");
            }
            for m in &markets {
                let r = m
                    .spot_prices(&SpotPricesRequest { now, ..Default::default() })
                    .map_err(|e| anyhow::anyhow!("{}: {e}", m.cloud()))?;
                let n = t.record_spot(&r.prices)?;
                eprintln!("{}: recorded {n} spot price observations", m.cloud());
            }
            Ok(0)
        }
        TrackerCmd::Block(a) => {
            let (loc, scope) = tracker::parse_location(&a.location).map_err(|e| anyhow::anyhow!(e))?;
            let kind: ErrorKind = a.kind.parse().map_err(|e: String| anyhow::anyhow!("--kind: {e}"))?;
            let ttl = crate::config::parse_hours(&a.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let b = t.block_for(&loc, scope, kind, &a.reason, now, (ttl * 3600.0) as u64)?;
            println!("Blocked {} ({}) until {}", b.key(), b.scope, format_time(b.until));
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
                println!("Unblocked {key}");
                Ok(0)
            } else {
                eprintln!("No block on {key}");
                Ok(1)
            }
        }
    }
}
