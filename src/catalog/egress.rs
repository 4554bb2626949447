//! Egress: what moving data between two places costs and how long it takes.
//!
//! Prices are data (`data/egress.json`, with the public price pages they follow): per
//! cloud, the price per GB to another zone of the region, to another region of the same
//! continent or of another continent, and out to the internet or another cloud with the
//! public tiers applied marginally (the first N TB at one rate, the next at another).
//! Time comes from a bandwidth per link kind (configurable). [`EgressModel::egress`] is
//! the one function everything uses. Pure.

use serde::{Deserialize, Serialize};
use skyform_provider::Location;
use std::collections::BTreeMap;

static DATA: &str = include_str!("data/egress.json");

/// Where data is: a full location, or a storage URI's cloud with maybe its region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Place {
    pub cloud: String,
    pub region: Option<String>,
    pub zone: Option<String>,
}

impl Place {
    /// The place of an object-store URI (`s3://` → aws, `gs://` → gcp, `az://` → azure,
    /// `file://` and `local://` → local), with an optional known region.
    pub fn of_uri(uri: &str, region: Option<&str>) -> Place {
        let cloud = match uri.split_once("://").map(|x| x.0) {
            Some("s3") => "aws",
            Some("gs") => "gcp",
            Some("az") => "azure",
            _ => "local",
        };
        let region = region.map(str::to_string).or_else(|| (cloud == "local").then(|| "local".to_string()));
        Place { cloud: cloud.into(), region, zone: None }
    }
}

impl From<&Location> for Place {
    fn from(l: &Location) -> Place {
        Place { cloud: l.cloud.clone(), region: Some(l.region.clone()), zone: Some(l.zone.clone()) }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.cloud)?;
        if let Some(r) = &self.region {
            write!(f, "/{r}")?;
        }
        if let Some(z) = &self.zone {
            write!(f, "/{z}")?;
        }
        Ok(())
    }
}

/// The kind of link between two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    SameZone,
    InterZone,
    InterRegion { same_continent: bool },
    InterCloud,
}

/// A price tier: up to `up_to_gb` (cumulative; None = unbounded) at `price` per GB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier(pub Option<f64>, pub f64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEgress {
    pub inter_zone: f64,
    pub inter_region_same_continent: f64,
    pub inter_region_other_continent: f64,
    pub internet: Vec<Tier>,
}

/// Bandwidth per link kind, Gbit/s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    pub same_zone: f64,
    pub inter_zone: f64,
    pub inter_region: f64,
    pub inter_cloud: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EgressModel {
    pub clouds: BTreeMap<String, CloudEgress>,
    pub default_internet: Vec<Tier>,
    #[serde(rename = "bandwidth_gbps")]
    pub bandwidth: Bandwidth,
    pub note: String,
    pub sources: BTreeMap<String, String>,
}

impl Default for EgressModel {
    fn default() -> Self {
        serde_json::from_str(DATA).expect("the embedded egress table is valid")
    }
}

impl EgressModel {
    /// The table with the prices that provider blocks set for their clouds. A link never
    /// costs less than a shorter one (the optimizer's pruning relies on prices growing
    /// with distance): a lower inter-region or internet price is raised to it.
    pub fn with_overrides(mut self, prices: &BTreeMap<String, skyform_provider::EgressPrices>) -> EgressModel {
        for (cloud, p) in prices {
            let region = p.inter_region.max(p.inter_zone);
            self.clouds.insert(
                cloud.clone(),
                CloudEgress {
                    inter_zone: p.inter_zone,
                    inter_region_same_continent: region,
                    inter_region_other_continent: region,
                    internet: vec![Tier(None, p.internet.max(region))],
                },
            );
        }
        self
    }
}

/// Cost of `gb` under marginal tiers.
pub fn tiered(tiers: &[Tier], gb: f64) -> f64 {
    let mut cost = 0.0;
    let mut done = 0.0;
    for Tier(up_to, price) in tiers {
        let cap = up_to.unwrap_or(f64::INFINITY);
        if gb <= done {
            break;
        }
        let here = gb.min(cap) - done;
        if here > 0.0 {
            cost += here * price;
            done += here;
        }
    }
    cost
}

/// The continent of a region name, per cloud naming conventions.
pub fn continent(cloud: &str, region: &str) -> &'static str {
    let r = region.to_ascii_lowercase();
    let starts = |p: &[&str]| p.iter().any(|x| r.starts_with(x));
    match cloud {
        "aws" | "gcp" => {
            if starts(&["us-", "ca-", "northamerica-", "mx-"]) {
                "na"
            } else if starts(&["sa-", "southamerica-"]) {
                "sa"
            } else if starts(&["eu-", "europe-"]) {
                "eu"
            } else if starts(&["me-", "il-"]) {
                "me"
            } else if starts(&["af-", "africa-"]) {
                "af"
            } else if starts(&["australia-", "ap-southeast-2", "ap-southeast-4"]) {
                "oc"
            } else if starts(&["ap-", "asia-"]) {
                "as"
            } else {
                "other"
            }
        }
        "azure" => {
            let has = |p: &[&str]| p.iter().any(|x| r.contains(x));
            if has(&["australia", "newzealand"]) {
                "oc"
            } else if has(&["brazil", "chile"]) {
                "sa"
            } else if has(&["southafrica"]) {
                "af"
            } else if has(&["uae", "qatar", "israel", "saudi"]) {
                "me"
            } else if has(&[
                "europe",
                "uk",
                "france",
                "germany",
                "norway",
                "switzerland",
                "sweden",
                "poland",
                "italy",
                "spain",
                "austria",
                "belgium",
                "denmark",
                "finland",
                "greece",
            ]) {
                "eu"
            } else if has(&["asia", "japan", "korea", "india", "taiwan", "indonesia", "malaysia", "china"]) {
                "as"
            } else if has(&["us", "canada", "mexico"]) {
                "na"
            } else {
                "other"
            }
        }
        _ => "local",
    }
}

impl EgressModel {
    /// The kind of link from `src` to `dst`. An unknown region or zone counts as
    /// different (conservative).
    pub fn link(&self, src: &Place, dst: &Place) -> LinkKind {
        if src.cloud != dst.cloud {
            return LinkKind::InterCloud;
        }
        match (&src.region, &dst.region) {
            (Some(a), Some(b)) if a == b => match (&src.zone, &dst.zone) {
                (Some(x), Some(y)) if x == y => LinkKind::SameZone,
                // Object stores are regional: reading a bucket from any zone of its region
                // is like reading it in-zone.
                (None, _) | (_, None) => LinkKind::SameZone,
                _ => LinkKind::InterZone,
            },
            (Some(a), Some(b)) => {
                LinkKind::InterRegion { same_continent: continent(&src.cloud, a) == continent(&dst.cloud, b) }
            }
            _ => LinkKind::InterRegion { same_continent: false },
        }
    }

    /// Cost (USD) and time (seconds) of moving `gb` from `src` to `dst`.
    pub fn egress(&self, src: &Place, dst: &Place, gb: f64) -> (f64, f64) {
        if gb <= 0.0 {
            return (0.0, 0.0);
        }
        let level = Level::of(self.link(src, dst));
        (self.level_cost(&src.cloud, level, gb), self.level_seconds(level, gb))
    }

    /// Cost of moving `gb` out of `src_cloud` over a link of `level`.
    pub fn level_cost(&self, src_cloud: &str, level: Level, gb: f64) -> f64 {
        if gb <= 0.0 {
            return 0.0;
        }
        match (level, self.clouds.get(src_cloud)) {
            (Level::SameZone, _) => 0.0,
            (Level::SameRegion, Some(t)) => gb * t.inter_zone,
            (Level::SameContinent, Some(t)) => gb * t.inter_region_same_continent,
            (Level::SameCloud, Some(t)) => gb * t.inter_region_other_continent,
            (Level::OtherCloud, Some(t)) => tiered(&t.internet, gb),
            (_, None) => tiered(&self.default_internet, gb),
        }
    }

    /// Seconds to move `gb` over a link of `level`.
    pub fn level_seconds(&self, level: Level, gb: f64) -> f64 {
        let gbps = match level {
            Level::SameZone => self.bandwidth.same_zone,
            Level::SameRegion => self.bandwidth.inter_zone,
            Level::SameContinent | Level::SameCloud => self.bandwidth.inter_region,
            Level::OtherCloud => self.bandwidth.inter_cloud,
        };
        gb.max(0.0) * 8.0 / gbps.max(1e-9)
    }
}

/// The lowest common level of two locations, from the closest to the farthest. Prices and
/// times never decrease along this order (a test pins it for the embedded tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    SameZone,
    SameRegion,
    SameContinent,
    SameCloud,
    OtherCloud,
}

impl Level {
    pub const ALL: [Level; 5] =
        [Level::SameZone, Level::SameRegion, Level::SameContinent, Level::SameCloud, Level::OtherCloud];

    pub fn of(kind: LinkKind) -> Level {
        match kind {
            LinkKind::SameZone => Level::SameZone,
            LinkKind::InterZone => Level::SameRegion,
            LinkKind::InterRegion { same_continent: true } => Level::SameContinent,
            LinkKind::InterRegion { same_continent: false } => Level::SameCloud,
            LinkKind::InterCloud => Level::OtherCloud,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(c: &str, r: &str, z: &str) -> Place {
        Place { cloud: c.into(), region: Some(r.into()), zone: Some(z.into()) }
    }

    #[test]
    fn ordering_per_cloud() {
        let m = EgressModel::default();
        let cases = [
            ("aws", "us-east-1", "us-east-1a", "us-east-1b", "us-west-2"),
            ("gcp", "us-central1", "us-central1-a", "us-central1-b", "europe-west4"),
            ("azure", "eastus", "eastus", "eastus-2", "westeurope"),
        ];
        for (cloud, region, za, zb, other_region) in cases {
            let a = p(cloud, region, za);
            let same = m.egress(&a, &a, 100.0).0;
            let zone = m.egress(&a, &p(cloud, region, zb), 100.0).0;
            let reg = m.egress(&a, &p(cloud, other_region, &format!("{other_region}-a")), 100.0).0;
            let other_cloud = if cloud == "aws" { "gcp" } else { "aws" };
            let xc = m.egress(&a, &p(other_cloud, "r", "z"), 100.0).0;
            assert_eq!(same, 0.0, "{cloud}");
            assert!(same < zone && zone < reg && reg < xc, "{cloud}: {same} {zone} {reg} {xc}");
        }
    }

    #[test]
    fn levels_are_monotone() {
        let m = EgressModel::default();
        for cloud in ["aws", "gcp", "azure", "local", "unknown"] {
            for gb in [0.5, 100.0, 20_000.0, 500_000.0] {
                let costs: Vec<f64> = Level::ALL.iter().map(|l| m.level_cost(cloud, *l, gb)).collect();
                let secs: Vec<f64> = Level::ALL.iter().map(|l| m.level_seconds(*l, gb)).collect();
                assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{cloud} {gb}: {costs:?}");
                assert!(secs.windows(2).all(|w| w[0] <= w[1]), "{secs:?}");
            }
        }
    }

    #[test]
    fn tiers_are_marginal() {
        let m = EgressModel::default();
        let aws = &m.clouds["aws"].internet;
        let tb = 1024.0;
        let twenty = tiered(aws, 20.0 * tb);
        assert!((twenty - (10.0 * tb * 0.09 + 10.0 * tb * 0.085)).abs() < 1e-6, "{twenty}");
        // Monotonic across a tier edge (SkyPilot's formula is not).
        assert!(tiered(aws, 10.0 * tb + 1.0) > tiered(aws, 10.0 * tb));
        let gcp = &m.clouds["gcp"].internet;
        assert!((tiered(gcp, 2048.0) - (1024.0 * 0.12 + 1024.0 * 0.11)).abs() < 1e-6);
    }

    #[test]
    fn continents_and_time() {
        assert_eq!(continent("aws", "us-east-1"), "na");
        assert_eq!(continent("gcp", "europe-west4"), "eu");
        assert_eq!(continent("azure", "australiaeast"), "oc");
        assert_eq!(continent("azure", "eastus2"), "na");
        let m = EgressModel::default();
        let (_, secs) = m.egress(&p("aws", "us-east-1", "a"), &p("gcp", "us-central1", "b"), 10.0);
        assert!((secs - 80.0).abs() < 1e-9, "10 GB at 1 Gbit/s is 80 s");
        let s3 = Place::of_uri("s3://bucket/x", Some("us-east-1"));
        assert_eq!(
            m.egress(&s3, &p("aws", "us-east-1", "us-east-1c"), 100.0).0,
            0.0,
            "regional bucket read in-region is free"
        );
    }

    #[test]
    fn overridden_prices_never_fall_with_distance() {
        let prices = BTreeMap::from([("local".to_string(), skyform_provider::EgressPrices::new(0.02, 0.0, 0.0))]);
        let m = EgressModel::default().with_overrides(&prices);
        assert_eq!(m.level_cost("local", Level::SameRegion, 10.0), 0.2);
        assert_eq!(m.level_cost("local", Level::SameContinent, 10.0), 0.2);
        assert_eq!(m.level_cost("local", Level::OtherCloud, 10.0), 0.2);
        assert_eq!(m.level_cost("aws", Level::SameRegion, 10.0), 0.1, "other clouds keep the table");
    }
}
