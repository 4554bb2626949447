//! The tracker: what skyform observed about the market, kept in sled.
//!
//! - spot price observations (a time series per zone and instance type);
//! - allocation failures, which block a location (zone, region or cloud) for a TTL that
//!   doubles on each repeat within a day (exponential backoff);
//! - preemption events, from which an observed preemption count per location is derived.
//!
//! [`refresh`] records fresh spot prices (markets and price APIs; `skyform tracker
//! refresh` and the refresh before a plan).
//!
//! [`Tracker::view`] takes a pure, in-memory [`TrackerView`] at a given time for the
//! resolver and optimizer: current spot price (the latest observation, unless the catalog's
//! data for that cloud is newer: then the catalog's), blocked locations, preemption counts.
//!
//! sled locks its database for one process. So that `plan` works while an `apply` holds the
//! tracker, every write also replaces `<path>.snapshot.json` (atomically) with what a view
//! is made of; [`Tracker::read_view`] reads the database when it can and that snapshot when
//! another process holds it. I/O: the database and its snapshot file; time is injected.

pub mod refresh;

use serde::{Deserialize, Serialize};
use skyform_provider::{ErrorKind, Location, Scope, SpotPrice};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Default TTL of a first block, seconds.
pub const BASE_TTL: u64 = 15 * 60;
/// Longest TTL a repeated failure reaches.
pub const MAX_TTL: u64 = 24 * 3600;
/// Failures further apart than this start the backoff again.
pub const BACKOFF_RESET: u64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("cannot open the tracker at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("tracker database error: {0}")]
    Db(#[from] sled::Error),
    #[error("tracker record is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot use the tracker snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
}

/// A blocked part of the location space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub scope: Scope,
    /// The location the failure happened at (only the scope's part of it matters).
    pub location: Location,
    pub kind: ErrorKind,
    /// How many failures in a row (within the backoff window).
    pub count: u32,
    pub since: u64,
    pub until: u64,
    pub reason: String,
}

impl Block {
    /// The blocked prefix: `cloud`, `cloud/region` or `cloud/region/zone`.
    pub fn key(&self) -> String {
        block_key(self.scope, &self.location)
    }

    pub fn covers(&self, loc: &Location) -> bool {
        loc.within(self.scope, &self.location)
    }
}

fn block_key(scope: Scope, l: &Location) -> String {
    match scope {
        Scope::Zone => format!("{}/{}/{}", l.cloud, l.region, l.zone),
        Scope::Region => format!("{}/{}", l.cloud, l.region),
        // Cloud, and any broader scope a newer seam may add.
        _ => l.cloud.clone(),
    }
}

/// A preemption event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preemption {
    pub location: Location,
    pub instance_type: String,
    pub at: u64,
}

/// The sled-backed tracker.
pub struct Tracker {
    path: PathBuf,
    db: sled::Db,
    spot: sled::Tree,
    blocks: sled::Tree,
    preemptions: sled::Tree,
}

fn spot_key(l: &Location, it: &str, at: u64) -> Vec<u8> {
    let mut k = format!("{}\0{}\0{}\0{}\0", l.cloud, l.region, l.zone, it).into_bytes();
    k.extend(at.to_be_bytes());
    k
}

impl Tracker {
    /// Opens (or creates) the tracker database at `path`.
    pub fn open(path: &Path) -> Result<Tracker, TrackerError> {
        // Another process (or a just-dropped handle's flusher) may hold the lock briefly.
        Tracker::open_waiting(path, 60)
    }

    /// Opens, waiting at most 200 ms for another process (an apply) to let go: for the
    /// refresh before a plan, which goes on without it.
    pub fn open_briefly(path: &Path) -> Result<Tracker, TrackerError> {
        Tracker::open_waiting(path, 4)
    }

    /// Opens, waiting up to `attempts` × 50 ms for another handle to let go.
    fn open_waiting(path: &Path, attempts: u32) -> Result<Tracker, TrackerError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
            crate::db::restrict_dir(parent);
        }
        let db = crate::db::open_sled(path, attempts)
            .map_err(|e| TrackerError::Open { path: path.display().to_string(), source: e })?;
        crate::db::restrict_permissions(path);
        let t = Tracker {
            path: path.to_path_buf(),
            spot: db.open_tree("spot")?,
            blocks: db.open_tree("blocks")?,
            preemptions: db.open_tree("preemptions")?,
            db,
        };
        // Readers use the snapshot while this handle holds the database: one must exist.
        if !snapshot_path(path).exists() {
            t.written()?;
        }
        Ok(t)
    }

    /// Records spot price observations.
    pub fn record_spot(&self, prices: &[SpotPrice]) -> Result<usize, TrackerError> {
        let mut batch = sled::Batch::default();
        for p in prices {
            batch.insert(spot_key(&p.location, &p.instance_type, p.at), &p.price.to_le_bytes());
        }
        self.spot.apply_batch(batch)?;
        self.written()?;
        Ok(prices.len())
    }

    /// Records an allocation failure and blocks its scope. A repeat within
    /// [`BACKOFF_RESET`] of the previous one doubles the TTL.
    pub fn record_failure(
        &self,
        loc: &Location,
        scope: Scope,
        kind: ErrorKind,
        reason: &str,
        now: u64,
    ) -> Result<Block, TrackerError> {
        let key = block_key(scope, loc);
        let prev: Option<Block> = match self.blocks.get(&key)? {
            Some(v) => Some(serde_json::from_slice(&v).map_err(|e| TrackerError::Corrupt(e.to_string()))?),
            None => None,
        };
        let count = match &prev {
            Some(b) if now.saturating_sub(b.since) <= BACKOFF_RESET.max(b.until.saturating_sub(b.since)) => b.count + 1,
            _ => 1,
        };
        let ttl = BASE_TTL.saturating_mul(1u64 << (count - 1).min(20)).min(MAX_TTL);
        self.put_block(Block {
            scope,
            location: loc.clone(),
            kind,
            count,
            since: now,
            until: now + ttl,
            reason: reason.to_string(),
        })
    }

    /// Blocks a location for an explicit TTL (`skyform tracker block`).
    pub fn block_for(
        &self,
        loc: &Location,
        scope: Scope,
        kind: ErrorKind,
        reason: &str,
        now: u64,
        ttl: u64,
    ) -> Result<Block, TrackerError> {
        self.put_block(Block {
            scope,
            location: loc.clone(),
            kind,
            count: 1,
            since: now,
            until: now + ttl,
            reason: reason.to_string(),
        })
    }

    fn put_block(&self, b: Block) -> Result<Block, TrackerError> {
        self.blocks.insert(b.key(), serde_json::to_vec(&b).expect("serializable"))?;
        self.written()?;
        Ok(b)
    }

    /// Removes the block with this key (`cloud`, `cloud/region` or `cloud/region/zone`).
    pub fn unblock(&self, key: &str) -> Result<bool, TrackerError> {
        let removed = self.blocks.remove(key)?.is_some();
        self.written()?;
        Ok(removed)
    }

    /// Records a preemption.
    pub fn record_preemption(&self, loc: &Location, instance_type: &str, at: u64) -> Result<(), TrackerError> {
        let p = Preemption { location: loc.clone(), instance_type: instance_type.to_string(), at };
        self.preemptions.insert(spot_key(loc, instance_type, at), serde_json::to_vec(&p).expect("serializable"))?;
        self.written()?;
        Ok(())
    }

    /// Every block ever recorded (including expired ones).
    pub fn blocks(&self) -> Result<Vec<Block>, TrackerError> {
        self.blocks
            .iter()
            .values()
            .map(|v| {
                v.map_err(TrackerError::from)
                    .and_then(|v| serde_json::from_slice(&v).map_err(|e| TrackerError::Corrupt(e.to_string())))
            })
            .collect()
    }

    /// Number of spot observations stored.
    pub fn spot_observations(&self) -> usize {
        self.spot.len()
    }

    /// A pure snapshot at time `now`.
    pub fn view(&self, now: u64) -> Result<TrackerView, TrackerError> {
        Ok(self.raw()?.view(now))
    }

    /// The view at `now` of the tracker at `path`, without waiting for a process that holds
    /// the database (an apply): its last snapshot is read then.
    pub fn read_view(path: &Path, now: u64) -> Result<TrackerView, TrackerError> {
        match Tracker::open_waiting(path, 4) {
            Ok(t) => t.view(now),
            Err(TrackerError::Open { source, .. }) if crate::db::is_busy(&source) => {
                let snap = snapshot_path(path);
                let text = match std::fs::read_to_string(&snap) {
                    Ok(t) => t,
                    // Its holder opened it and has recorded nothing since.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Raw::default().view(now)),
                    Err(e) => {
                        return Err(TrackerError::Snapshot { path: snap.display().to_string(), message: e.to_string() })
                    }
                };
                let raw: Raw = serde_json::from_str(&text)
                    .map_err(|e| TrackerError::Snapshot { path: snap.display().to_string(), message: e.to_string() })?;
                Ok(raw.view(now))
            }
            Err(e) => Err(e),
        }
    }

    /// Everything a view is made of: the latest spot price per series, every block and
    /// every preemption.
    fn raw(&self) -> Result<Raw, TrackerError> {
        let mut spot: Vec<Observation> = Vec::new();
        for kv in self.spot.iter() {
            let (k, v) = kv?;
            let (head, at) = k.split_at(k.len() - 8);
            let at = u64::from_be_bytes(at.try_into().map_err(|_| TrackerError::Corrupt("spot key".into()))?);
            let parts: Vec<&str> =
                std::str::from_utf8(head).map_err(|e| TrackerError::Corrupt(e.to_string()))?.split('\0').collect();
            if parts.len() < 4 {
                return Err(TrackerError::Corrupt("spot key".into()));
            }
            let price =
                f64::from_le_bytes(v.as_ref().try_into().map_err(|_| TrackerError::Corrupt("spot value".into()))?);
            spot.push(Observation {
                location: Location::new(parts[0], parts[1], parts[2]),
                instance_type: parts[3].to_string(),
                price,
                at,
            });
        }
        let mut preemptions = Vec::new();
        for v in self.preemptions.iter().values() {
            preemptions.push(serde_json::from_slice(&v?).map_err(|e| TrackerError::Corrupt(e.to_string()))?);
        }
        Ok(Raw { spot, blocks: self.blocks()?, preemptions })
    }

    /// Makes a write durable and refreshes the snapshot readers use meanwhile.
    fn written(&self) -> Result<(), TrackerError> {
        self.db.flush()?;
        crate::db::restrict_permissions(&self.path);
        let raw = self.raw()?;
        let snap = snapshot_path(&self.path);
        crate::db::write_private(&snap, &serde_json::to_vec(&raw).expect("serializable"))
            .map_err(|e| TrackerError::Snapshot { path: snap.display().to_string(), message: e.to_string() })
    }
}

/// `<tracker>.snapshot.json`.
fn snapshot_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".snapshot.json");
    PathBuf::from(s)
}

/// One spot observation (series keys in time order).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Observation {
    location: Location,
    instance_type: String,
    price: f64,
    at: u64,
}

/// What views are made of (also the snapshot file's content).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Raw {
    /// Every observation, in key order (time order within a series).
    spot: Vec<Observation>,
    blocks: Vec<Block>,
    preemptions: Vec<Preemption>,
}

impl Raw {
    fn view(self, now: u64) -> TrackerView {
        let mut spot: BTreeMap<(Location, String), (f64, u64)> = BTreeMap::new();
        for o in self.spot {
            if o.at <= now {
                // Keys sort by time within a (location, type), so the last one wins.
                spot.insert((o.location, o.instance_type), (o.price, o.at));
            }
        }
        let blocks = self.blocks.into_iter().filter(|b| b.until > now && b.since <= now).collect();
        let mut preemptions: BTreeMap<Location, u32> = BTreeMap::new();
        for p in self.preemptions {
            if p.at <= now && now - p.at <= 7 * 24 * 3600 {
                *preemptions.entry(p.location).or_default() += 1;
            }
        }
        TrackerView { now, spot, blocks, preemptions }
    }
}

/// What the optimizer sees of the tracker at one moment. Pure data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackerView {
    pub now: u64,
    /// Latest observed spot price per (location, instance type): (price, time).
    #[serde(with = "spot_map")]
    pub spot: BTreeMap<(Location, String), (f64, u64)>,
    /// Blocks in force at `now`.
    pub blocks: Vec<Block>,
    /// Preemptions per location in the last 7 days.
    #[serde(with = "loc_map")]
    pub preemptions: BTreeMap<Location, u32>,
}

impl TrackerView {
    /// The current spot price of an offering whose catalog spot price is `catalog` (None:
    /// the catalog offers no spot there, and neither does this) from catalog data of time
    /// `catalog_at` (Unix seconds; [`crate::catalog::Catalog::data_time`]): the newer of the
    /// two wins. The latest observation is used when it is at least as recent as the
    /// catalog's data (or the catalog's time is unknown); an observation older than a
    /// freshly updated catalog does not override it.
    ///
    /// The optimizer uses this latest price for every task, short or long: no average over
    /// the series is taken (spot prices move in steps, and the latest step is the best
    /// estimate of the next hours that the tracker holds).
    pub fn spot_price(
        &self,
        loc: &Location,
        instance_type: &str,
        catalog: Option<f64>,
        catalog_at: Option<u64>,
    ) -> Option<f64> {
        match self.spot.get(&(loc.clone(), instance_type.to_string())) {
            Some((p, at)) if catalog.is_some() && catalog_at.is_none_or(|c| *at >= c) => Some(*p),
            _ => catalog,
        }
    }

    /// The block covering `loc`, if any.
    pub fn blocked(&self, loc: &Location) -> Option<&Block> {
        self.blocks.iter().find(|b| b.covers(loc))
    }

    /// Preemptions observed at `loc` in the last 7 days.
    pub fn preemptions_at(&self, loc: &Location) -> u32 {
        self.preemptions.get(loc).copied().unwrap_or(0)
    }

    /// A stable id of this view's content (for saved plans): a hash of what the planner sees (observations, blocks, preemptions), not of the
    /// moment it was read: two plans against the same tracker name the same view.
    pub fn fingerprint(&self) -> String {
        let s = serde_json::to_string(&TrackerView { now: 0, ..self.clone() }).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

mod spot_map {
    use super::*;
    use serde::{Deserializer, Serializer};
    #[derive(Serialize, Deserialize)]
    struct Row {
        location: Location,
        instance_type: String,
        price: f64,
        at: u64,
    }
    type Series = BTreeMap<(Location, String), (f64, u64)>;
    pub fn serialize<S: Serializer>(m: &Series, s: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<Row> = m
            .iter()
            .map(|((l, t), (p, a))| Row { location: l.clone(), instance_type: t.clone(), price: *p, at: *a })
            .collect();
        rows.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Series, D::Error> {
        let rows: Vec<Row> = Vec::deserialize(d)?;
        Ok(rows.into_iter().map(|r| ((r.location, r.instance_type), (r.price, r.at))).collect())
    }
}

mod loc_map {
    use super::*;
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(m: &BTreeMap<Location, u32>, s: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<(&Location, &u32)> = m.iter().collect();
        rows.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Location, u32>, D::Error> {
        let rows: Vec<(Location, u32)> = Vec::deserialize(d)?;
        Ok(rows.into_iter().collect())
    }
}

/// The instance type a spot series of an offering is kept under: its instance type, except
/// on GCP, which attaches GPUs to a host type (`n1-standard-8` with or without a V100):
/// there an offering with accelerators is `TYPE+NAME:COUNT` (`n1-standard-8+V100:1`).
pub fn series_type<'a>(
    cloud: &str,
    instance_type: &'a str,
    accelerator: Option<&str>,
    count: f64,
) -> std::borrow::Cow<'a, str> {
    match accelerator {
        Some(a) if cloud == "gcp" => format!("{instance_type}+{a}:{}", crate::catalog::fmt_count(count)).into(),
        _ => instance_type.into(),
    }
}

/// Parses `cloud`, `cloud:region` or `cloud:region:zone` into a location and the scope
/// it names.
pub fn parse_location(s: &str) -> Result<(Location, Scope), String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [c] if !c.is_empty() => Ok((Location::new(*c, "", ""), Scope::Cloud)),
        [c, r] if !c.is_empty() && !r.is_empty() => Ok((Location::new(*c, *r, ""), Scope::Region)),
        [c, r, z] if !c.is_empty() && !r.is_empty() && !z.is_empty() => Ok((Location::new(*c, *r, *z), Scope::Zone)),
        _ => Err(format!("`{s}` is not a location; expected CLOUD, CLOUD:REGION or CLOUD:REGION:ZONE, as in aws:us-east-1:us-east-1a")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(z: &str) -> Location {
        Location::new("aws", "us-east-1", z)
    }

    #[test]
    fn blocks_expire_and_back_off() {
        let d = tempfile::tempdir().unwrap();
        let t = Tracker::open(&d.path().join("tracker")).unwrap();
        let b1 =
            t.record_failure(&loc("us-east-1a"), Scope::Zone, ErrorKind::CapacityUnavailable, "ICE", 1000).unwrap();
        assert_eq!(b1.until - b1.since, BASE_TTL);
        let v = t.view(1000 + BASE_TTL - 1).unwrap();
        assert!(v.blocked(&loc("us-east-1a")).is_some());
        assert!(v.blocked(&loc("us-east-1b")).is_none(), "a zone block does not cover its neighbour");
        assert!(t.view(1000 + BASE_TTL).unwrap().blocked(&loc("us-east-1a")).is_none(), "expired at its TTL");
        let b2 = t
            .record_failure(&loc("us-east-1a"), Scope::Zone, ErrorKind::CapacityUnavailable, "ICE", 1000 + BASE_TTL + 5)
            .unwrap();
        assert_eq!(b2.count, 2);
        assert_eq!(b2.until - b2.since, 2 * BASE_TTL, "a second failure doubles the TTL");
        let far = 1000 + 10 * BACKOFF_RESET;
        assert_eq!(
            t.record_failure(&loc("us-east-1a"), Scope::Zone, ErrorKind::CapacityUnavailable, "ICE", far)
                .unwrap()
                .count,
            1
        );
    }

    #[test]
    fn region_blocks_cover_zones() {
        let d = tempfile::tempdir().unwrap();
        let t = Tracker::open(&d.path().join("tracker")).unwrap();
        t.record_failure(&loc("us-east-1a"), Scope::Region, ErrorKind::QuotaExceeded, "vCPU limit", 0).unwrap();
        let v = t.view(1).unwrap();
        assert!(v.blocked(&loc("us-east-1f")).is_some());
        assert!(v.blocked(&Location::new("aws", "us-west-2", "us-west-2a")).is_none());
        assert!(t.unblock("aws/us-east-1").unwrap());
        assert!(t.view(2).unwrap().blocked(&loc("us-east-1f")).is_none());
    }

    #[test]
    fn observations_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("tracker");
        {
            let t = Tracker::open(&path).unwrap();
            let sp =
                |price, at| SpotPrice { location: loc("us-east-1a"), instance_type: "p3.2xlarge".into(), price, at };
            t.record_spot(&[sp(1.0, 100), sp(0.9, 200), sp(5.0, 10_000)]).unwrap();
            t.record_preemption(&loc("us-east-1a"), "p3.2xlarge", 150).unwrap();
        }
        let t = Tracker::open(&path).unwrap();
        let v = t.view(300).unwrap();
        assert_eq!(
            v.spot_price(&loc("us-east-1a"), "p3.2xlarge", Some(3.0), None),
            Some(0.9),
            "latest observation not after now"
        );
        assert_eq!(v.spot_price(&loc("us-east-1b"), "p3.2xlarge", Some(3.0), None), Some(3.0), "else the catalog");
        assert_eq!(v.spot_price(&loc("us-east-1a"), "p3.2xlarge", None, None), None, "no spot offer stays none");
        assert_eq!(v.preemptions_at(&loc("us-east-1a")), 1);
    }

    #[test]
    fn the_newer_of_observation_and_catalog_wins() {
        let d = tempfile::tempdir().unwrap();
        let t = Tracker::open(&d.path().join("tracker")).unwrap();
        let sp = |price, at| SpotPrice { location: loc("us-east-1a"), instance_type: "m5.large".into(), price, at };
        t.record_spot(&[sp(0.05, 1_000), sp(0.04, 2_000)]).unwrap();
        let v = t.view(5_000).unwrap();
        let price = |catalog_at| v.spot_price(&loc("us-east-1a"), "m5.large", Some(0.03), catalog_at);
        assert_eq!(price(None), Some(0.04), "a catalog of unknown date: the latest observation");
        assert_eq!(price(Some(1_500)), Some(0.04), "an older catalog: the latest observation");
        assert_eq!(price(Some(2_000)), Some(0.04), "as recent: the observation");
        assert_eq!(price(Some(2_001)), Some(0.03), "a catalog updated after the latest observation wins");
        assert_eq!(
            v.spot_price(&loc("us-east-1a"), "m5.large", None, Some(1)),
            None,
            "no spot in the catalog: none, however recent the observation"
        );
        // A later observation wins over that catalog again.
        t.record_spot(&[sp(0.06, 3_000)]).unwrap();
        let v = t.view(5_000).unwrap();
        assert_eq!(v.spot_price(&loc("us-east-1a"), "m5.large", Some(0.03), Some(2_001)), Some(0.06));
    }

    #[test]
    fn gcp_gpu_offerings_have_series_of_their_own() {
        assert_eq!(series_type("gcp", "n1-standard-8", Some("V100"), 1.0), "n1-standard-8+V100:1");
        assert_eq!(series_type("gcp", "n1-standard-8", None, 0.0), "n1-standard-8");
        assert_eq!(series_type("aws", "p3.2xlarge", Some("V100"), 1.0), "p3.2xlarge");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_location("aws:us-east-1").unwrap().1, Scope::Region);
        assert!(parse_location("aws::x").is_err());
    }
}
