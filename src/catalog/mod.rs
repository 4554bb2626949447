//! The catalog: what can be bought where, at what list price.
//!
//! One [`Offering`] per (cloud, region, zone, instance type, accelerator) with vCPUs,
//! memory, accelerator, on-demand and spot $/h and architecture. Offerings of the same
//! machine shape are stored contiguously and indexed by [`Shape`], so a search filters a
//! few thousand shapes and then expands their zones.
//!
//! Sources, in order: `skyform { catalog = PATH }`, `$SKYFORM_CATALOG`,
//! `$SKYFORM_HOME/catalog.bin` (what `skyform catalog import` installs), and the embedded
//! snapshot in `data/catalog.bin` (built from the SkyPilot CSVs of `../shared/catalog`).
//! Unless the job or `$SKYFORM_CATALOG` names a file, the per-cloud snapshots of
//! `skyform catalog update` ([`cache`], written by [`update`]) replace their clouds in it
//! (a cloud imported after its update keeps its import). [`Catalog::clouds`] says where
//! each cloud's data comes from and how old it is.
//! Clouds the snapshot does not hold (the `local` provider, a cluster behind a plugin) are
//! added at load time from the offerings their providers make of their configuration
//! ([`Catalog::for_job`], through the provider registry).
//!
//! [`egress`] prices data movement between locations. I/O: reading snapshot files.

pub mod cache;
pub mod egress;
pub mod import;
pub mod update;

use crate::config::JobSpec;
use serde::{Deserialize, Serialize};
use skyform_provider::Location;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SKYCAT\x00\x02";
static EMBEDDED: &[u8] = include_bytes!("data/catalog.bin");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "{path} is not a skyform catalog snapshot (or of another version); rebuild it with `skyform catalog import`"
    )]
    Format { path: String },
    #[error("catalog import failed with {} problem(s):\n{}", .0.len(), .0.join("\n"))]
    Import(Vec<String>),
    #[error(transparent)]
    Provider(#[from] crate::providers::RegistryError),
}

/// CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86_64,
    Arm64,
}

/// One machine shape: a cloud's instance type with a given accelerator attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    pub cloud: String,
    pub instance_type: String,
    pub vcpus: f64,
    pub memory_gb: f64,
    /// Accelerator name (None: CPU only).
    pub accelerator: Option<String>,
    pub accelerator_count: f64,
    pub arch: Arch,
    /// Index range into [`Catalog::zones`] of the places this shape is offered.
    pub start: u32,
    pub end: u32,
}

/// Where and at what price a shape is offered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneOffer {
    pub region: u16,
    pub zone: u16,
    /// On-demand USD/h.
    pub price: f64,
    /// Spot USD/h (None: no spot offer).
    pub spot_price: Option<f64>,
}

/// The persisted snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub source: String,
    /// Date of the data, as the import found it.
    pub created: String,
    pub names: Vec<String>,
    pub shapes: Vec<Shape>,
    pub zones: Vec<ZoneOffer>,
    /// rows imported and skipped, per cloud.
    pub counts: BTreeMap<String, (u64, u64)>,
}

/// A whole catalog in memory.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub snap: Snapshot,
    /// Where it came from (path or "embedded", with the clouds a `catalog update` replaced).
    pub origin: String,
    /// Where each cloud's data comes from and its date.
    pub clouds: BTreeMap<String, CloudInfo>,
    /// Egress prices set by the job's provider blocks, per cloud (over the public table).
    pub egress: BTreeMap<String, skyform_provider::EgressPrices>,
}

/// Where one cloud's data comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudInfo {
    /// "embedded", a snapshot's path, or "update" (the cache of `catalog update`).
    pub origin: String,
    /// What the data was made from (`skypilot https://.../aws/vms.csv`, ...).
    pub source: String,
    /// The data's date: an update's fetch time (RFC 3339), else the snapshot's date.
    pub date: String,
    /// When an update last fetched or confirmed the data (Unix seconds).
    pub checked: Option<u64>,
}

impl CloudInfo {
    /// How old the data is at `now` (seconds): since the update last confirmed it, else
    /// since the snapshot's date. None when the date is unknown.
    pub fn age(&self, now: u64) -> Option<u64> {
        let t = match self.checked {
            Some(t) => t,
            None => parse_date(&self.date)?,
        };
        Some(now.saturating_sub(t))
    }

    /// The time of the data (Unix seconds): an update's fetch time, else the snapshot's
    /// date. None when the date is unknown.
    pub fn data_time(&self) -> Option<u64> {
        parse_date(&self.date)
    }
}

/// Unix seconds of `YYYY-MM-DD` or an RFC 3339 time.
fn parse_date(s: &str) -> Option<u64> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return u64::try_from(t.as_second()).ok();
    }
    let d: jiff::civil::Date = s.parse().ok()?;
    let t = d.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    u64::try_from(t.as_second()).ok()
}

/// A flattened offering (for display and the resolver).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offering<'a> {
    pub cloud: &'a str,
    pub region: &'a str,
    pub zone: &'a str,
    pub instance_type: &'a str,
    pub vcpus: f64,
    pub memory_gb: f64,
    pub accelerator: Option<&'a str>,
    pub accelerator_count: f64,
    pub arch: Arch,
    pub price: f64,
    pub spot_price: Option<f64>,
}

impl Offering<'_> {
    pub fn location(&self) -> Location {
        Location::new(self.cloud, self.region, self.zone)
    }
    pub fn accelerator_label(&self) -> String {
        match self.accelerator {
            Some(a) => format!("{a}:{}", fmt_count(self.accelerator_count)),
            None => "-".into(),
        }
    }
}

pub use crate::config::fmt_count;

/// Search filters (all optional).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Accelerator name and optional exact count.
    pub gpu: Option<(String, Option<f64>)>,
    pub cpus: Option<crate::config::Quantity>,
    pub memory: Option<crate::config::Quantity>,
    pub cloud: Option<String>,
    pub region_glob: Option<globset::GlobMatcher>,
    pub instance_type: Option<String>,
    /// Only offerings with a spot price (and sort by it).
    pub spot: bool,
    pub max_price: Option<f64>,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("serializable");
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &body).expect("in memory");
        let mut out = MAGIC.to_vec();
        out.extend(enc.finish().expect("in memory"));
        out
    }

    pub fn decode(bytes: &[u8], path: &str) -> Result<Snapshot, CatalogError> {
        let fmt = || CatalogError::Format { path: path.to_string() };
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(fmt)?;
        let mut body = Vec::with_capacity(rest.len() * 4);
        flate2::read::DeflateDecoder::new(rest).read_to_end(&mut body).map_err(|_| fmt())?;
        postcard::from_bytes(&body).map_err(|_| fmt())
    }
}

/// The age past which a cloud's data is stale: `$SKYFORM_CATALOG_MAX_AGE` (a duration such
/// as `30d`), default 30 days; in seconds.
pub fn max_age() -> Result<u64, String> {
    let s = std::env::var("SKYFORM_CATALOG_MAX_AGE").unwrap_or_else(|_| "30d".into());
    crate::config::parse_hours(&s).map(|h| (h * 3600.0) as u64).map_err(|e| format!("SKYFORM_CATALOG_MAX_AGE: {e}"))
}

/// `3 days`, `5 hours`: an age for messages.
pub fn fmt_age(secs: u64) -> String {
    let days = secs / 86_400;
    match days {
        0 => format!("{} hours", secs / 3600),
        1 => "1 day".into(),
        d => format!("{d} days"),
    }
}

/// `$SKYFORM_HOME` (default `~/.skyform`).
pub fn skyform_home() -> PathBuf {
    if let Some(h) = std::env::var_os("SKYFORM_HOME") {
        return PathBuf::from(h);
    }
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".skyform")
}

/// The default install path of an imported catalog.
pub fn installed_path() -> PathBuf {
    skyform_home().join("catalog.bin")
}

impl Catalog {
    /// The embedded snapshot.
    pub fn embedded() -> Catalog {
        Catalog::new(Snapshot::decode(EMBEDDED, "embedded").expect("the embedded catalog is valid"), "embedded".into())
    }

    /// A catalog of one snapshot (every cloud's data comes from it).
    pub fn new(snap: Snapshot, origin: String) -> Catalog {
        let clouds = snap
            .counts
            .keys()
            .map(|c| {
                let info = CloudInfo {
                    origin: origin.clone(),
                    source: snap.source.clone(),
                    date: snap.created.clone(),
                    checked: None,
                };
                (c.clone(), info)
            })
            .collect();
        Catalog { snap, origin, clouds, egress: BTreeMap::new() }
    }

    /// Source and counts of the embedded snapshot (for `version -json`).
    pub fn embedded_info() -> serde_json::Value {
        let c = Catalog::embedded();
        serde_json::json!({"source": c.snap.source, "created": c.snap.created})
    }

    /// Loads a snapshot file.
    pub fn from_file(path: &Path) -> Result<Catalog, CatalogError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| CatalogError::Io { path: p.clone(), source: e })?;
        Ok(Catalog::new(Snapshot::decode(&bytes, &p)?, p))
    }

    /// The catalog of the clouds (without `local`), from the first source that exists.
    pub fn default_source(job_setting: Option<&Path>) -> Result<Catalog, CatalogError> {
        if let Some(p) = job_setting {
            return Catalog::from_file(p);
        }
        if let Some(p) = std::env::var_os("SKYFORM_CATALOG") {
            return Catalog::from_file(Path::new(&p));
        }
        let inst = installed_path();
        let mut c = if inst.is_file() { Catalog::from_file(&inst)? } else { Catalog::embedded() };
        let installed_at = std::fs::metadata(&inst)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        c.overlay_cache(&cache::dir(), installed_at)?;
        Ok(c)
    }

    /// Replaces each cloud the cache in `dir` holds with its snapshot, unless the base was
    /// imported (at `installed_at`) after that cloud's update.
    pub fn overlay_cache(&mut self, dir: &Path, installed_at: Option<u64>) -> Result<(), CatalogError> {
        let state = cache::CacheState::load(dir);
        let mut replaced = Vec::new();
        let mut unreadable = Vec::new();
        for (cloud, st) in &state.clouds {
            if installed_at.is_some_and(|t| t > st.fetched) {
                continue;
            }
            // A snapshot this version cannot read (another format version, a damaged file)
            // is passed over: the base data stays in use and the origin says so.
            let snap = match cache::read_snapshot(dir, cloud) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(_) => {
                    unreadable.push(cloud.as_str());
                    continue;
                }
            };
            self.replace_cloud(cloud, &snap);
            self.clouds.insert(
                cloud.clone(),
                CloudInfo {
                    origin: "update".into(),
                    source: snap.source.clone(),
                    date: snap.created.clone(),
                    checked: Some(st.checked),
                },
            );
            replaced.push(format!("{cloud} {}", snap.created));
        }
        if !replaced.is_empty() {
            self.origin = format!("{} + catalog update ({})", self.origin, replaced.join(", "));
        }
        if !unreadable.is_empty() {
            self.origin = format!(
                "{} (the cached update of {} is unreadable: run `skyform catalog update`)",
                self.origin,
                unreadable.join(", ")
            );
        }
        Ok(())
    }

    /// The time of `cloud`'s data (Unix seconds; see [`CloudInfo::data_time`]): a tracker
    /// observation older than it does not override its spot prices. None for a cloud the
    /// catalog holds no dated data of (such as `local`).
    pub fn data_time(&self, cloud: &str) -> Option<u64> {
        self.clouds.get(cloud).and_then(CloudInfo::data_time)
    }

    /// The clouds whose data is older than `max_age` seconds at `now`, with their ages.
    /// With `updated_only`, only clouds a `catalog update` brought (what plans warn of).
    pub fn stale(&self, now: u64, max_age: u64, updated_only: bool) -> Vec<(String, u64)> {
        self.clouds
            .iter()
            .filter(|(_, i)| !updated_only || i.checked.is_some())
            .filter_map(|(c, i)| i.age(now).filter(|&a| a > max_age).map(|a| (c.clone(), a)))
            .collect()
    }

    /// The offerings of one cloud, as a snapshot of that cloud alone.
    pub fn cloud_snapshot(&self, cloud: &str) -> Snapshot {
        let mut out = Snapshot {
            source: self.clouds.get(cloud).map(|i| i.source.clone()).unwrap_or_default(),
            created: self.clouds.get(cloud).map(|i| i.date.clone()).unwrap_or_default(),
            ..Default::default()
        };
        let mut c = Catalog::new(Snapshot::default(), String::new());
        c.replace_cloud_from(cloud, self);
        out.names = c.snap.names;
        out.shapes = c.snap.shapes;
        out.zones = c.snap.zones;
        if let Some(n) = self.snap.counts.get(cloud) {
            out.counts.insert(cloud.to_string(), *n);
        }
        out
    }

    /// Replaces `cloud`'s shapes and counts with those of `snap` (which may hold other
    /// clouds: only `cloud`'s shapes are taken).
    pub fn replace_cloud(&mut self, cloud: &str, snap: &Snapshot) {
        let other =
            Catalog { snap: snap.clone(), origin: String::new(), clouds: BTreeMap::new(), egress: BTreeMap::new() };
        self.replace_cloud_from(cloud, &other);
        match snap.counts.get(cloud) {
            Some(n) => self.snap.counts.insert(cloud.to_string(), *n),
            None => self.snap.counts.remove(cloud),
        };
    }

    fn replace_cloud_from(&mut self, cloud: &str, other: &Catalog) {
        // Keep the other clouds' shapes with their zones compacted.
        let old_zones = std::mem::take(&mut self.snap.zones);
        let old_shapes = std::mem::take(&mut self.snap.shapes);
        for mut s in old_shapes.into_iter().filter(|s| s.cloud != cloud) {
            let start = self.snap.zones.len() as u32;
            self.snap.zones.extend_from_slice(&old_zones[s.start as usize..s.end as usize]);
            s.start = start;
            s.end = self.snap.zones.len() as u32;
            self.snap.shapes.push(s);
        }
        let mut names: std::collections::HashMap<u16, u16> = std::collections::HashMap::new();
        for s in other.snap.shapes.iter().filter(|s| s.cloud == cloud) {
            let start = self.snap.zones.len() as u32;
            for z in &other.snap.zones[s.start as usize..s.end as usize] {
                let mut name = |i: u16| *names.entry(i).or_insert_with(|| self.intern(other.name(i)));
                let (region, zone) = (name(z.region), name(z.zone));
                self.snap.zones.push(ZoneOffer { region, zone, ..z.clone() });
            }
            self.snap.shapes.push(Shape { start, end: self.snap.zones.len() as u32, ..s.clone() });
        }
    }

    /// The catalog a job plans against: its catalog source plus the offerings of the
    /// enabled clouds whose providers make them from their configuration (`local`).
    pub fn for_job(spec: &JobSpec, registry: &crate::providers::Registry) -> Result<Catalog, CatalogError> {
        let setting = spec.settings.catalog_path.as_deref().map(Path::new);
        let mut c = Catalog::default_source(setting)?;
        for (cloud, offerings) in registry.offerings(spec)? {
            c.add_offerings(&cloud, &offerings);
        }
        c.egress = registry.egress(spec)?;
        Ok(c)
    }

    /// Replaces `cloud`'s offerings with `offerings` (one shape per instance type and
    /// accelerator, its zones contiguous).
    pub fn add_offerings(&mut self, cloud: &str, offerings: &[skyform_provider::OfferingSpec]) {
        self.replace_cloud_from(cloud, &Catalog::new(Snapshot::default(), String::new()));
        let mut groups: Vec<(&skyform_provider::OfferingSpec, Vec<&skyform_provider::OfferingSpec>)> = Vec::new();
        for o in offerings {
            let same = |g: &&skyform_provider::OfferingSpec| {
                g.instance_type == o.instance_type
                    && g.vcpus == o.vcpus
                    && g.memory_gb == o.memory_gb
                    && g.accelerator == o.accelerator
                    && g.accelerator_count == o.accelerator_count
            };
            match groups.iter_mut().find(|(g, _)| same(g)) {
                Some((_, v)) => v.push(o),
                None => groups.push((o, vec![o])),
            }
        }
        for (first, places) in groups {
            let start = self.snap.zones.len() as u32;
            for p in places {
                let (region, zone) = (self.intern(&p.region), self.intern(&p.zone));
                self.snap.zones.push(ZoneOffer { region, zone, price: p.price, spot_price: p.spot_price });
            }
            let arch = match first.arch.as_deref() {
                Some("aarch64" | "arm64") => Arch::Arm64,
                _ => Arch::X86_64,
            };
            self.snap.shapes.push(Shape {
                cloud: cloud.to_string(),
                instance_type: first.instance_type.clone(),
                vcpus: first.vcpus,
                memory_gb: first.memory_gb,
                accelerator: first.accelerator.clone(),
                accelerator_count: if first.accelerator.is_some() { first.accelerator_count } else { 0.0 },
                arch,
                start,
                end: self.snap.zones.len() as u32,
            });
        }
        self.snap.counts.insert(cloud.to_string(), (offerings.len() as u64, 0));
        self.clouds.insert(
            cloud.to_string(),
            CloudInfo {
                origin: "provider".into(),
                source: "the provider's configuration".into(),
                date: String::new(),
                checked: None,
            },
        );
    }

    fn intern(&mut self, s: &str) -> u16 {
        if let Some(i) = self.snap.names.iter().position(|n| n == s) {
            return i as u16;
        }
        self.snap.names.push(s.to_string());
        (self.snap.names.len() - 1) as u16
    }

    pub fn name(&self, i: u16) -> &str {
        &self.snap.names[i as usize]
    }

    /// The offering of a shape in one of its zones.
    pub fn offering<'a>(&'a self, s: &'a Shape, z: &ZoneOffer) -> Offering<'a> {
        Offering {
            cloud: &s.cloud,
            region: self.name(z.region),
            zone: self.name(z.zone),
            instance_type: &s.instance_type,
            vcpus: s.vcpus,
            memory_gb: s.memory_gb,
            accelerator: s.accelerator.as_deref(),
            accelerator_count: s.accelerator_count,
            arch: s.arch,
            price: z.price,
            spot_price: z.spot_price,
        }
    }

    /// Every offering of a shape.
    pub fn offerings_of<'a>(&'a self, s: &'a Shape) -> impl Iterator<Item = Offering<'a>> + 'a {
        self.snap.zones[s.start as usize..s.end as usize].iter().map(move |z| self.offering(s, z))
    }

    /// Every offering.
    pub fn offerings(&self) -> impl Iterator<Item = Offering<'_>> + '_ {
        self.snap.shapes.iter().flat_map(move |s| self.offerings_of(s))
    }

    pub fn len(&self) -> usize {
        self.snap.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snap.zones.is_empty()
    }

    /// Every accelerator name, sorted.
    pub fn accelerator_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.snap.shapes.iter().filter_map(|s| s.accelerator.clone()).collect();
        v.sort_by_key(|a| a.to_lowercase());
        v.dedup();
        v
    }

    /// The canonical spelling of an accelerator name (case-insensitive), if known.
    pub fn canonical_accelerator(&self, name: &str) -> Option<String> {
        self.snap
            .shapes
            .iter()
            .filter_map(|s| s.accelerator.as_deref())
            .find(|a| a.eq_ignore_ascii_case(name))
            .map(str::to_string)
    }

    /// "did you mean" for an unknown accelerator name.
    pub fn suggest_accelerator(&self, name: &str) -> Option<String> {
        let names = self.accelerator_names();
        crate::config::diag::did_you_mean(name, names.iter().map(String::as_str))
    }

    /// Offerings matching `f`, sorted by price (spot price with `f.spot`), then by cloud,
    /// region, zone and type for a stable order.
    pub fn search(&self, f: &Filter) -> Vec<Offering<'_>> {
        let mut out: Vec<Offering<'_>> = Vec::new();
        for s in &self.snap.shapes {
            if let Some((g, count)) = &f.gpu {
                match &s.accelerator {
                    Some(a) if a.eq_ignore_ascii_case(g) => {}
                    _ => continue,
                }
                if count.is_some_and(|c| (c - s.accelerator_count).abs() > 1e-9) {
                    continue;
                }
            }
            if f.cpus.is_some_and(|q| !q.admits(s.vcpus)) || f.memory.is_some_and(|q| !q.admits(s.memory_gb)) {
                continue;
            }
            if f.cloud.as_deref().is_some_and(|c| c != s.cloud) {
                continue;
            }
            if f.instance_type.as_deref().is_some_and(|t| t != s.instance_type) {
                continue;
            }
            for o in self.offerings_of(s) {
                if f.spot && o.spot_price.is_none() {
                    continue;
                }
                let p = if f.spot { o.spot_price.unwrap_or(o.price) } else { o.price };
                if f.max_price.is_some_and(|m| p > m) {
                    continue;
                }
                if let Some(g) = &f.region_glob {
                    if !g.is_match(o.region) && !g.is_match(format!("{}:{}", o.cloud, o.region)) {
                        continue;
                    }
                }
                out.push(o);
            }
        }
        let key = |o: &Offering| if f.spot { o.spot_price.unwrap_or(o.price) } else { o.price };
        out.sort_by(|a, b| {
            key(a).total_cmp(&key(b)).then_with(|| {
                (a.cloud, a.region, a.zone, a.instance_type).cmp(&(b.cloud, b.region, b.zone, b.instance_type))
            })
        });
        out
    }

    /// Regions per cloud with their zones.
    pub fn regions(&self) -> BTreeMap<String, BTreeMap<String, std::collections::BTreeSet<String>>> {
        let mut m: BTreeMap<String, BTreeMap<String, std::collections::BTreeSet<String>>> = BTreeMap::new();
        for s in &self.snap.shapes {
            for z in &self.snap.zones[s.start as usize..s.end as usize] {
                m.entry(s.cloud.clone())
                    .or_default()
                    .entry(self.name(z.region).to_string())
                    .or_default()
                    .insert(self.name(z.zone).to_string());
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyform_provider::Factory;

    #[test]
    fn embedded_snapshot_loads_all_clouds() {
        let c = Catalog::embedded();
        for cloud in ["aws", "gcp", "azure"] {
            assert!(c.snap.shapes.iter().any(|s| s.cloud == cloud), "{cloud} missing");
        }
        assert!(c.len() > 50_000, "{} offerings", c.len());
    }

    #[test]
    fn snapshot_round_trips() {
        let c = Catalog::embedded();
        let bytes = c.snap.encode();
        assert_eq!(Snapshot::decode(&bytes, "x").unwrap(), c.snap);
        assert!(matches!(Snapshot::decode(b"nope", "x"), Err(CatalogError::Format { .. })));
    }

    #[test]
    fn replacing_a_cloud_keeps_the_others_and_compacts_the_zones() {
        let mut c = Catalog::embedded();
        let before: Vec<_> = c.offerings().filter(|o| o.cloud != "gcp").map(|o| format!("{o:?}")).collect();
        let gcp = c.cloud_snapshot("gcp");
        assert_eq!(gcp.counts.len(), 1);
        assert!(gcp.shapes.iter().all(|s| s.cloud == "gcp"));
        let mut one = Catalog::new(Snapshot::default(), String::new());
        let o = skyform_provider::OfferingSpec::new("us-central1", "us-central1-a", "n2-standard-2", 2.0, 8.0, 0.1);
        one.add_offerings("gcp", &[o]);
        c.replace_cloud("gcp", &one.snap);
        assert_eq!(c.offerings().filter(|o| o.cloud == "gcp").count(), 1);
        let after: Vec<_> = c.offerings().filter(|o| o.cloud != "gcp").map(|o| format!("{o:?}")).collect();
        assert_eq!(after, before);
        assert_eq!(c.len() as u64, c.snap.counts.values().map(|n| n.0).sum::<u64>() - c.snap.counts["gcp"].0 + 1);
        // And back: the cloud's own snapshot restores it.
        c.replace_cloud("gcp", &gcp);
        assert_eq!(c.offerings().count(), Catalog::embedded().len());
    }

    #[test]
    fn local_cloud_comes_from_config() {
        let mut c = Catalog::embedded();
        let offered = skyform_provider_local::LocalFactory.offerings(&serde_json::json!({})).unwrap().unwrap();
        c.add_offerings("local", &offered);
        let f = Filter { cloud: Some("local".into()), ..Default::default() };
        let found = c.search(&f);
        assert_eq!(found.len(), 5 * 3);
        assert_eq!(found[0].instance_type, "local.small");
        assert!(c.canonical_accelerator("localgpu").is_some());
    }
}
