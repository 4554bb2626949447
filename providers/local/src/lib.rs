//! # skyform-provider-local — the embedded default "cloud"
//!
//! The local provider runs tasks as real processes on this host and keeps objects in
//! directories. This crate currently holds the parts the planner needs:
//!
//! - [`LocalConfig`]: the zones, slots and instance types of the `local` cloud, read from
//!   a job's `provider "local" { }` block (every field has a default), which the catalog
//!   turns into offerings;
//! - [`SyntheticMarket`]: a seeded, deterministic spot market for `skyform tracker
//!   refresh` (no I/O; the time is injected).
//!
//! - [`runtime::LocalProvider`]: the provider itself — real processes and a directory
//!   object store (does I/O under its root directory).
//! - [`LocalFactory`]: how skyform's registry checks a `provider "local"` block and builds
//!   the provider, its market and its offerings.

pub mod runtime;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use skyform_provider::{
    BuildContext, ConfigError, EgressPrices, ErrorKind, Factory, Location, Market, OfferingSpec, Provider,
    ProviderError, SpotPrice, SpotPricesRequest, SpotPricesResponse,
};
use std::sync::Arc;

/// The cloud name of the local provider.
pub const CLOUD: &str = "local";
/// The single region of the local provider.
pub const REGION: &str = "local";

/// One instance type of the local cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalInstanceType {
    pub name: String,
    pub vcpus: f64,
    pub memory_gb: f64,
    /// A fake accelerator such as `"LocalGPU:1"`, so GPU jobs can be planned and run here.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// Demo on-demand price, USD per hour.
    pub price: f64,
    /// Demo spot price, USD per hour (none: no spot offer).
    #[serde(default)]
    pub spot_price: Option<f64>,
}

/// The configuration of the local provider (`provider "local" { ... }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Zone names of the simulated region `local`.
    pub zones: Vec<String>,
    /// How many allocations a zone holds at once.
    pub slots: u32,
    /// Instance types offered in every zone.
    pub instance_types: Vec<LocalInstanceType>,
    /// Seed of the synthetic spot market.
    pub market_seed: u64,
    /// A spot price trace (CSV `at,zone,instance_type,price`; `at` in seconds since the
    /// epoch from which the price holds), relative to the job directory. When set, the
    /// market reports the trace's latest price at or before `now` per zone and type
    /// instead of the seeded prices; the file is read at each refresh, so editing it moves
    /// the prices.
    pub price_trace: Option<String>,
    /// Where sandboxes and the object store live (relative to the job directory).
    pub root: String,
    /// Injected faults, for tests and demos (`SKYFORM_LOCAL_FAULTS` overrides).
    pub faults: runtime::Faults,
    /// Simulated price of data leaving a zone (to another zone, or out of the local
    /// cloud), USD per GB (default 0: moving data on this host costs nothing). Lets a demo
    /// or a test give placement a reason to keep producers and consumers together.
    pub inter_zone_egress: f64,
    /// Each zone keeps its own object store (`local://ZONE/…`), as a cloud's regions do:
    /// outputs and checkpoints made in a zone are kept there, and copied when a task that
    /// uses them runs or moves elsewhere (default: one store for the host).
    pub zone_stores: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        let it = |name: &str, vcpus: f64, mem: f64, acc: Option<&str>, price: f64| LocalInstanceType {
            name: name.to_string(),
            vcpus,
            memory_gb: mem,
            accelerator: acc.map(str::to_string),
            price,
            spot_price: Some((price * 0.3 * 10_000.0).round() / 10_000.0),
        };
        LocalConfig {
            zones: vec!["zone-a".into(), "zone-b".into(), "zone-c".into()],
            slots: 8,
            instance_types: vec![
                it("local.small", 2.0, 4.0, None, 0.02),
                it("local.medium", 4.0, 16.0, None, 0.08),
                it("local.large", 8.0, 32.0, None, 0.16),
                it("local.gpu", 8.0, 64.0, Some("LocalGPU:1"), 0.40),
                it("local.gpu4", 32.0, 128.0, Some("LocalGPU:4"), 1.60),
            ],
            market_seed: 42,
            price_trace: None,
            root: ".skyform/local".into(),
            faults: runtime::Faults::default(),
            inter_zone_egress: 0.0,
            zone_stores: false,
        }
    }
}

impl LocalConfig {
    /// Parses the body of a `provider "local"` block (as JSON), with defaults for absent
    /// fields.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let cfg: LocalConfig = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Validates the configuration.
    pub fn check(&self) -> Result<(), String> {
        if self.zones.is_empty() {
            return Err("provider \"local\": `zones` must name at least one zone".into());
        }
        if !(self.inter_zone_egress >= 0.0 && self.inter_zone_egress.is_finite()) {
            return Err("provider \"local\": `inter_zone_egress` must be a non-negative number (USD per GB)".into());
        }
        if self.slots == 0 {
            return Err("provider \"local\": `slots` must be at least 1".into());
        }
        for t in &self.instance_types {
            if t.vcpus <= 0.0 || t.memory_gb <= 0.0 || t.price < 0.0 {
                return Err(format!(
                    "provider \"local\": instance type `{}` needs positive vcpus and memory_gb and a non-negative price",
                    t.name
                ));
            }
            if let Some(acc) = &t.accelerator {
                let ok = acc
                    .split_once(':')
                    .map(|(n, c)| !n.is_empty() && c.parse::<f64>().is_ok_and(|c| c > 0.0))
                    .unwrap_or(!acc.is_empty());
                if !ok {
                    return Err(format!(
                        "provider \"local\": instance type `{}` has accelerator `{acc}`; expected NAME or NAME:COUNT",
                        t.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The locations of the local cloud.
    pub fn locations(&self) -> Vec<Location> {
        self.zones.iter().map(|z| Location::new(CLOUD, REGION, z.clone())).collect()
    }
}

/// A seeded synthetic spot market: each (zone, type) price moves around 30% of on-demand,
/// changing once an hour, deterministic for a given seed and time — or, with
/// `price_trace`, the prices of a trace file.
#[derive(Debug, Clone)]
pub struct SyntheticMarket {
    config: LocalConfig,
    /// The trace file, resolved against the job directory.
    trace: Option<std::path::PathBuf>,
}

impl SyntheticMarket {
    pub fn new(config: LocalConfig) -> Self {
        SyntheticMarket { config, trace: None }
    }

    /// The market of a job in `job_dir` (its `price_trace` is relative to it).
    pub fn in_dir(config: LocalConfig, job_dir: &std::path::Path) -> Self {
        let trace = config.price_trace.as_ref().map(|t| job_dir.join(t));
        SyntheticMarket { config, trace }
    }

    /// The trace's prices in effect at `now`: per (zone, type), the row with the latest
    /// `at` not after `now`.
    fn traced(&self, path: &std::path::Path, req: &SpotPricesRequest) -> Result<SpotPricesResponse, ProviderError> {
        let bad =
            |e: String| ProviderError::new(ErrorKind::Other, None, format!("price_trace {}: {e}", path.display()));
        let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(path).map_err(|e| bad(e.to_string()))?;
        let mut latest: std::collections::BTreeMap<(String, String), (u64, f64)> = Default::default();
        for (i, row) in rd.deserialize::<(u64, String, String, f64)>().enumerate() {
            let (at, zone, it, price) = row.map_err(|e| bad(format!("row {}: {e}", i + 2)))?;
            if at > req.now || price.is_nan() || price < 0.0 {
                continue;
            }
            if !req.instance_types.is_empty() && !req.instance_types.contains(&it) {
                continue;
            }
            let e = latest.entry((zone, it)).or_insert((at, price));
            if at >= e.0 {
                *e = (at, price);
            }
        }
        let prices = latest
            .into_iter()
            .filter(|((zone, _), _)| self.config.zones.contains(zone))
            .map(|((zone, instance_type), (_, price))| SpotPrice {
                location: Location::new(CLOUD, REGION, zone),
                instance_type,
                price,
                at: req.now,
            })
            .collect();
        Ok(SpotPricesResponse { prices })
    }
}

fn mix(seed: u64, s: &str, hour: u64) -> u64 {
    // FNV-1a over the key, folded with seed and hour.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in s.bytes().chain(hour.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Market for SyntheticMarket {
    fn cloud(&self) -> &str {
        CLOUD
    }

    fn spot_prices(&self, req: &SpotPricesRequest) -> Result<SpotPricesResponse, ProviderError> {
        let hour = req.now / 3600;
        let mut prices = Vec::new();
        if !req.regions.is_empty() && !req.regions.iter().any(|r| r == REGION) {
            return Ok(SpotPricesResponse { prices });
        }
        if let Some(path) = &self.trace {
            return self.traced(path, req);
        }
        for zone in &self.config.zones {
            for t in &self.config.instance_types {
                if !req.instance_types.is_empty() && !req.instance_types.contains(&t.name) {
                    continue;
                }
                let Some(base) = t.spot_price else { continue };
                let key = format!("{zone}/{}", t.name);
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix(self.config.market_seed, &key, hour));
                let factor: f64 = rng.gen_range(0.75..1.35);
                let price = ((base * factor) * 1e5).round() / 1e5;
                prices.push(SpotPrice {
                    location: Location::new(CLOUD, REGION, zone.clone()),
                    instance_type: t.name.clone(),
                    price,
                    at: hour * 3600,
                });
            }
        }
        Ok(SpotPricesResponse { prices })
    }
}

/// The local provider in skyform's registry. It is always enabled: a job without a
/// `provider "local"` block gets the defaults (the body is then `{}`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFactory;

impl Factory for LocalFactory {
    fn name(&self) -> &str {
        CLOUD
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
        LocalConfig::from_json(body).map(|_| ()).map_err(ConfigError::block)
    }

    fn provider(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let cfg = LocalConfig::from_json(body).map_err(|e| ProviderError::new(ErrorKind::Other, None, e))?;
        let p = runtime::LocalProvider::new(cfg, &ctx.job_dir)
            .map_err(|e| ProviderError::new(ErrorKind::Other, None, e))?;
        Ok(Arc::new(p))
    }

    fn market(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Option<Box<dyn Market>>, ProviderError> {
        let cfg = LocalConfig::from_json(body).map_err(|e| ProviderError::new(ErrorKind::Other, None, e))?;
        Ok(Some(Box::new(SyntheticMarket::in_dir(cfg, &ctx.job_dir))))
    }

    fn egress(&self, body: &serde_json::Value) -> Result<Option<EgressPrices>, ConfigError> {
        let cfg = LocalConfig::from_json(body).map_err(ConfigError::block)?;
        Ok((cfg.inter_zone_egress > 0.0)
            .then(|| EgressPrices::new(cfg.inter_zone_egress, cfg.inter_zone_egress, cfg.inter_zone_egress)))
    }

    fn offerings(&self, body: &serde_json::Value) -> Result<Option<Vec<OfferingSpec>>, ConfigError> {
        let cfg = LocalConfig::from_json(body).map_err(ConfigError::block)?;
        let mut out = Vec::new();
        for t in &cfg.instance_types {
            let (acc, count) = match &t.accelerator {
                Some(a) => match a.split_once(':') {
                    Some((n, c)) => (Some(n.to_string()), c.parse().unwrap_or(1.0)),
                    None => (Some(a.clone()), 1.0),
                },
                None => (None, 0.0),
            };
            for z in &cfg.zones {
                let mut o = OfferingSpec::new(REGION, z.clone(), t.name.clone(), t.vcpus, t.memory_gb, t.price);
                o.accelerator = acc.clone();
                o.accelerator_count = count;
                o.spot_price = t.spot_price;
                // The runs are processes on this host.
                o.arch = Some(std::env::consts::ARCH.to_string());
                out.push(o);
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_checks_and_offers_every_type_in_every_zone() {
        let f = LocalFactory;
        assert!(f.check(&serde_json::json!({})).is_ok());
        let e = f.check(&serde_json::json!({"slots": 0})).unwrap_err();
        assert!(e.message.contains("slots"), "{e}");
        let o = f.offerings(&serde_json::json!({"zones": ["a", "b"]})).unwrap().unwrap();
        assert_eq!(o.len(), 2 * LocalConfig::default().instance_types.len());
        let gpu = o.iter().find(|x| x.instance_type == "local.gpu4").unwrap();
        assert_eq!((gpu.accelerator.as_deref(), gpu.accelerator_count), (Some("LocalGPU"), 4.0));
    }

    #[test]
    fn defaults_are_valid() {
        LocalConfig::default().check().unwrap();
    }

    #[test]
    fn partial_config_keeps_defaults() {
        let cfg = LocalConfig::from_json(&serde_json::json!({"zones": ["a", "b"], "slots": 2})).unwrap();
        assert_eq!(cfg.zones, vec!["a", "b"]);
        assert_eq!(cfg.instance_types, LocalConfig::default().instance_types);
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = LocalConfig::from_json(&serde_json::json!({"zonez": ["a"]})).unwrap_err();
        assert!(err.contains("zonez"), "{err}");
    }

    #[test]
    fn market_is_deterministic_and_moves_hourly() {
        let m = SyntheticMarket::new(LocalConfig::default());
        let req = SpotPricesRequest::at;
        let a = m.spot_prices(&req(7200)).unwrap();
        let b = m.spot_prices(&req(7200 + 1800)).unwrap();
        let c = m.spot_prices(&req(7200 + 3600)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.prices[0].price, c.prices[0].price);
        assert_eq!(a.prices.len(), 3 * 5);
        for p in &a.prices {
            assert!(p.price > 0.0);
        }
    }

    #[test]
    fn a_price_trace_gives_the_latest_price_at_or_before_now() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prices.csv"),
            "at,zone,instance_type,price\n0,zone-a,local.small,0.5\n100,zone-a,local.small,0.7\n200,zone-a,local.small,0.9\n0,elsewhere,local.small,1\n",
        )
        .unwrap();
        let cfg = LocalConfig { price_trace: Some("prices.csv".into()), ..Default::default() };
        let m = SyntheticMarket::in_dir(cfg, dir.path());
        let at = |now: u64| {
            let mut r = SpotPricesRequest::at(now);
            r.instance_types = vec!["local.small".into()];
            let p = m.spot_prices(&r).unwrap().prices;
            assert_eq!(p.len(), 1, "only the traced zone of this provider");
            p[0].price
        };
        assert_eq!(at(50), 0.5);
        assert_eq!(at(150), 0.7);
        assert_eq!(at(10_000), 0.9);
    }
}
