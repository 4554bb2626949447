//! `skyform catalog import --from DIR`: SkyPilot-format CSVs (schema v3 to v8) →
//! [`Snapshot`].
//!
//! Reads `DIR/{aws,gcp,azure}/vms.csv` by column name, so the column order and the
//! optional `Arch` / `AvailabilityZone` / `Generation` columns of the schema versions do
//! not matter. Azure has no zones: the region is the zone. GCP's attachable GPU rows
//! (empty instance type) are combined with their host VMs, as SkyPilot does: N1 hosts
//! within GCP's vCPU/memory limits for V100/T4/P100/P4, and the fixed A2/A3/A4/G2 hosts
//! for A100, A100-80GB, H100, H100-MEGA, H200, B200 and L4; the offering carries host + GPU
//! price. TPU rows are skipped (and counted). Every malformed row is reported as
//! `file:line: ...` and nothing is written when any is found.
//!
//! I/O: reads the CSV files.

use super::{Arch, CatalogError, Shape, Snapshot, ZoneOffer};
use std::collections::BTreeMap;
use std::path::Path;

/// One parsed CSV row.
#[derive(Debug, Clone)]
struct Row {
    instance_type: String,
    vcpus: Option<f64>,
    memory_gb: Option<f64>,
    accelerator: Option<String>,
    accelerator_count: Option<f64>,
    price: Option<f64>,
    spot_price: Option<f64>,
    region: String,
    zone: String,
    arch: Option<Arch>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone)]
struct ShapeKey {
    cloud: String,
    instance_type: String,
    accelerator: Option<String>,
    count_bits: u64,
    vcpus_bits: u64,
    mem_bits: u64,
    arch: Arch,
}

/// (region, zone) → (on-demand, spot) prices of one shape and the source line of the row
/// that gave them.
type ZoneOffers = BTreeMap<(String, String), (f64, Option<f64>, u64)>;

/// The importer's working state (also what `catalog update`'s sources fill).
#[derive(Default)]
pub struct Builder {
    shapes: BTreeMap<ShapeKey, ZoneOffers>,
    counts: BTreeMap<String, (u64, u64)>,
    /// The source line of the row being added (for the checks of `catalog update`).
    pub line: u64,
}

/// One offering as the builder holds it, for the checks of `catalog update`.
pub struct Candidate<'a> {
    pub instance_type: &'a str,
    pub accelerator: Option<&'a str>,
    pub accelerator_count: f64,
    pub region: &'a str,
    pub zone: &'a str,
    pub price: f64,
    pub spot_price: Option<f64>,
    /// The source line of the row that gave it.
    pub line: u64,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        cloud: &str,
        it: &str,
        vcpus: f64,
        mem: f64,
        acc: Option<String>,
        count: f64,
        arch: Arch,
        region: &str,
        zone: &str,
        price: f64,
        spot: Option<f64>,
    ) {
        let key = ShapeKey {
            cloud: cloud.to_string(),
            instance_type: it.to_string(),
            accelerator: acc,
            count_bits: count.to_bits(),
            vcpus_bits: vcpus.to_bits(),
            mem_bits: mem.to_bits(),
            arch,
        };
        let zones = self.shapes.entry(key).or_default();
        let c = self.counts.entry(cloud.to_string()).or_default();
        match zones.entry((region.to_string(), zone.to_string())) {
            std::collections::btree_map::Entry::Occupied(_) => c.1 += 1,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((price, spot, self.line));
                c.0 += 1;
            }
        }
    }

    pub fn skip(&mut self, cloud: &str) {
        self.counts.entry(cloud.to_string()).or_default().1 += 1;
    }

    /// Keeps the offerings `keep` accepts (the caller reports the others).
    pub fn retain(&mut self, mut keep: impl FnMut(&Candidate) -> bool) {
        for (k, zones) in self.shapes.iter_mut() {
            let before = zones.len();
            zones.retain(|(region, zone), (price, spot, line)| {
                keep(&Candidate {
                    instance_type: &k.instance_type,
                    accelerator: k.accelerator.as_deref(),
                    accelerator_count: f64::from_bits(k.count_bits),
                    region,
                    zone,
                    price: *price,
                    spot_price: *spot,
                    line: *line,
                })
            });
            let dropped = (before - zones.len()) as u64;
            if dropped > 0 {
                self.counts.entry(k.cloud.clone()).or_default().0 -= dropped;
            }
        }
        self.shapes.retain(|_, z| !z.is_empty());
    }

    pub fn finish(self, source: String, created: String) -> Snapshot {
        let mut names: Vec<String> = Vec::new();
        let mut index: BTreeMap<String, u16> = BTreeMap::new();
        let mut intern = |s: &str, names: &mut Vec<String>| -> u16 {
            *index.entry(s.to_string()).or_insert_with(|| {
                names.push(s.to_string());
                (names.len() - 1) as u16
            })
        };
        let mut shapes = Vec::new();
        let mut zones = Vec::new();
        for (k, offers) in self.shapes {
            let start = zones.len() as u32;
            for ((region, zone), (price, spot, _line)) in offers {
                let r = intern(&region, &mut names);
                let z = intern(&zone, &mut names);
                zones.push(ZoneOffer { region: r, zone: z, price, spot_price: spot });
            }
            shapes.push(Shape {
                cloud: k.cloud,
                instance_type: k.instance_type,
                vcpus: f64::from_bits(k.vcpus_bits),
                memory_gb: f64::from_bits(k.mem_bits),
                accelerator: k.accelerator,
                accelerator_count: f64::from_bits(k.count_bits),
                arch: k.arch,
                start,
                end: zones.len() as u32,
            });
        }
        Snapshot { source, created, names, shapes, zones, counts: self.counts }
    }
}

/// A region/zone check of `catalog update` (`Err(why)` leaves the row out).
pub(crate) type RowCheck<'a> = &'a dyn Fn(&str, &str, &str) -> Result<(), String>;

/// The most bad rows a file may have before it is refused whole.
pub const MAX_BAD_ROWS: usize = 50;

/// Reads one SkyPilot CSV. A bad row is reported in `errors` as `SHOWN:LINE: why` and left
/// out; a problem with the whole file (unreadable, a missing column, more than
/// [`MAX_BAD_ROWS`] bad rows) is the `Err`.
fn read_csv(
    path: &Path,
    shown: &str,
    cloud: &str,
    check: RowCheck,
    errors: &mut Vec<String>,
) -> Result<Vec<(u64, Row)>, String> {
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(|e| format!("{shown}: {e}"))?;
    let headers = rdr.headers().map_err(|e| format!("{shown}:1: {e}"))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let required =
        ["InstanceType", "vCPUs", "MemoryGiB", "AcceleratorName", "AcceleratorCount", "Price", "SpotPrice", "Region"];
    let mut idx = BTreeMap::new();
    for r in required {
        match col(r) {
            Some(i) => {
                idx.insert(r, i);
            }
            None => return Err(format!("{shown}:1: missing column `{r}` (SkyPilot catalog schema v3 to v8 expected)")),
        }
    }
    let zone_col = col("AvailabilityZone");
    let arch_col = col("Arch");
    if cloud != "azure" && zone_col.is_none() {
        return Err(format!("{shown}:1: missing column `AvailabilityZone`"));
    }
    let first_error = errors.len();
    let too_many = |errors: &Vec<String>| {
        (errors.len() - first_error > MAX_BAD_ROWS)
            .then(|| format!("{shown}: more than {MAX_BAD_ROWS} bad rows; the file is refused"))
    };
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    return Err(format!("{shown}: {io}"));
                }
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(format!("{shown}:{line}: {e}"));
                if let Some(e) = too_many(errors) {
                    return Err(e);
                }
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let get = |name: &str| rec.get(idx[name]).unwrap_or("").trim();
        let mut bad = false;
        let mut num = |name: &str, errors: &mut Vec<String>| -> Option<f64> {
            let s = get(name);
            if s.is_empty() {
                return None;
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
                _ => {
                    errors.push(format!("{shown}:{line}: column {name}: `{s}` is not a non-negative number"));
                    bad = true;
                    None
                }
            }
        };
        let vcpus = num("vCPUs", errors);
        let memory_gb = num("MemoryGiB", errors);
        let accelerator_count = num("AcceleratorCount", errors);
        let price = num("Price", errors);
        let spot_price = num("SpotPrice", errors);
        let region = get("Region").to_string();
        let zone = match zone_col {
            Some(i) => rec.get(i).unwrap_or("").trim().to_string(),
            None => region.clone(),
        };
        let arch = match arch_col.map(|i| rec.get(i).unwrap_or("").trim()) {
            None | Some("") => None,
            Some("x86_64") | Some("amd64") => Some(Arch::X86_64),
            Some("arm64") | Some("aarch64") => Some(Arch::Arm64),
            Some(other) => {
                errors.push(format!("{shown}:{line}: column Arch: unknown architecture `{other}`"));
                bad = true;
                None
            }
        };
        if region.is_empty() || zone.is_empty() {
            errors.push(format!("{shown}:{line}: empty Region or AvailabilityZone"));
            bad = true;
        } else if let Err(why) = check(cloud, &region, &zone) {
            errors.push(format!("{shown}:{line}: {why}"));
            bad = true;
        }
        if bad {
            if let Some(e) = too_many(errors) {
                return Err(e);
            }
            continue;
        }
        let acc = get("AcceleratorName");
        rows.push((
            line,
            Row {
                instance_type: get("InstanceType").to_string(),
                vcpus,
                memory_gb,
                accelerator: (!acc.is_empty()).then(|| acc.to_string()),
                accelerator_count,
                price,
                spot_price,
                region,
                zone,
                arch,
            },
        ));
    }
    Ok(rows)
}

/// AWS (schema v3 has no Arch column): Graviton families end in `g` (m6g, c7gn, t4g) or
/// are `a1`.
pub(crate) fn aws_arch(instance_type: &str) -> Arch {
    let family = instance_type.split('.').next().unwrap_or("");
    let after_digits =
        family.find(|c: char| c.is_ascii_digit()).map(|d| family[d..].trim_start_matches(|c: char| c.is_ascii_digit()));
    if family == "a1" || after_digits.is_some_and(|a| a.starts_with('g')) {
        Arch::Arm64
    } else {
        Arch::X86_64
    }
}

/// GCP's N1 limits for attachable GPUs: (count → (max vCPUs, max memory GiB)).
fn n1_limits(gpu: &str, count: f64) -> Option<(f64, f64)> {
    let c = count as u32;
    Some(match (gpu, c) {
        ("V100", 1) => (12.0, 78.0),
        ("V100", 2) => (24.0, 156.0),
        ("V100", 4) => (48.0, 312.0),
        ("V100", 8) => (96.0, 624.0),
        ("T4", 1) | ("T4", 2) => (48.0, 312.0),
        ("T4", 4) => (96.0, 624.0),
        ("P100", 1) => (16.0, 104.0),
        ("P100", 2) => (32.0, 208.0),
        ("P100", 4) => (96.0, 624.0),
        ("P4", 1) => (24.0, 156.0),
        ("P4", 2) => (48.0, 312.0),
        ("P4", 4) => (96.0, 624.0),
        _ => return None,
    })
}

/// Fixed GCP hosts of GPUs that come built into the machine type.
fn fixed_hosts(gpu: &str, count: f64) -> Vec<String> {
    let c = count as u32;
    match (gpu, c) {
        ("A100", 16) => vec!["a2-megagpu-16g".into()],
        ("A100", n) => vec![format!("a2-highgpu-{n}g")],
        ("A100-80GB", n) => vec![format!("a2-ultragpu-{n}g")],
        ("H100", n) => vec![format!("a3-highgpu-{n}g")],
        ("H100-MEGA", 8) => vec!["a3-megagpu-8g".into()],
        ("H200", 8) => vec!["a3-ultragpu-8g".into()],
        ("B200", 8) => vec!["a4-highgpu-8g".into()],
        ("L4", 1) => ["g2-standard-4", "g2-standard-8", "g2-standard-12", "g2-standard-16", "g2-standard-32"]
            .map(String::from)
            .to_vec(),
        ("L4", 2) => vec!["g2-standard-24".into()],
        ("L4", 4) => vec!["g2-standard-48".into()],
        ("L4", 8) => vec!["g2-standard-96".into()],
        _ => vec![],
    }
}

fn is_gpu_host(it: &str) -> bool {
    ["a2-", "a3-", "a4-", "g2-"].iter().any(|p| it.starts_with(p))
}

fn add_price(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(((a? + b?) * 1e6).round() / 1e6)
}

/// No region/zone check (what `catalog import` uses).
pub(crate) fn no_check(_: &str, _: &str, _: &str) -> Result<(), String> {
    Ok(())
}

/// Imports every cloud found under `dir` (`aws/vms.csv`, `gcp/vms.csv`, `azure/vms.csv`).
pub fn import_dir(dir: &Path) -> Result<Snapshot, CatalogError> {
    let mut errors = Vec::new();
    let mut b = Builder::default();
    let mut found = Vec::new();
    for cloud in ["aws", "gcp", "azure"] {
        let path = dir.join(cloud).join("vms.csv");
        if !path.is_file() {
            continue;
        }
        found.push(cloud);
        if let Err(e) = import_cloud(&mut b, cloud, &path, &path.display().to_string(), &no_check, &mut errors) {
            errors.push(e);
        }
    }
    if found.is_empty() {
        errors.push(format!("{}: no aws/vms.csv, gcp/vms.csv or azure/vms.csv found", dir.display()));
    }
    if !errors.is_empty() {
        return Err(CatalogError::Import(errors));
    }
    let created = std::fs::metadata(dir.join(found[0]).join("vms.csv"))
        .and_then(|m| m.modified())
        .ok()
        .map(|t| {
            let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            crate::clock::format_date(secs)
        })
        .unwrap_or_default();
    Ok(b.finish(format!("SkyPilot-format CSVs ({})", found.join(", ")), created))
}

/// Adds one cloud's SkyPilot CSV at `path` (named `shown` in messages: a path or a URL) to
/// `b`. Bad rows go to `errors` and are left out; the `Err` is a problem with the whole
/// file.
pub(crate) fn import_cloud(
    b: &mut Builder,
    cloud: &str,
    path: &Path,
    shown: &str,
    check: RowCheck,
    errors: &mut Vec<String>,
) -> Result<(), String> {
    let rows = read_csv(path, shown, cloud, check, errors)?;
    match cloud {
        "gcp" => import_gcp(b, rows, shown, errors),
        _ => {
            for (line, r) in rows {
                let (Some(vcpus), Some(mem)) = (r.vcpus, r.memory_gb) else {
                    errors.push(format!("{shown}:{line}: vCPUs and MemoryGiB are required for a VM row"));
                    continue;
                };
                if r.instance_type.is_empty() {
                    errors.push(format!("{shown}:{line}: empty InstanceType"));
                    continue;
                }
                let Some(price) = r.price else {
                    b.skip(cloud); // e.g. mac1.metal: no on-demand price listed
                    continue;
                };
                let arch =
                    r.arch.unwrap_or_else(|| if cloud == "aws" { aws_arch(&r.instance_type) } else { Arch::X86_64 });
                let count = if r.accelerator.is_some() { r.accelerator_count.unwrap_or(1.0) } else { 0.0 };
                b.line = line;
                b.add(
                    cloud,
                    &r.instance_type,
                    vcpus,
                    mem,
                    r.accelerator,
                    count,
                    arch,
                    &r.region,
                    &r.zone,
                    price,
                    r.spot_price,
                );
            }
        }
    }
    Ok(())
}

fn import_gcp(b: &mut Builder, rows: Vec<(u64, Row)>, shown: &str, errors: &mut Vec<String>) {
    // zone → host rows
    let mut hosts: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    let mut gpus: Vec<(u64, &Row)> = Vec::new();
    for (line, r) in &rows {
        if r.instance_type.is_empty() {
            if r.accelerator.is_none() {
                errors.push(format!("{shown}:{line}: a row needs an InstanceType or an AcceleratorName"));
            } else {
                gpus.push((*line, r));
            }
            continue;
        }
        let (Some(_), Some(_), Some(_)) = (r.vcpus, r.memory_gb, r.price) else {
            errors.push(format!("{shown}:{line}: vCPUs, MemoryGiB and Price are required for a VM row"));
            continue;
        };
        hosts.entry(r.zone.clone()).or_default().push(r);
        if is_gpu_host(&r.instance_type) || r.instance_type.ends_with("-tpu") {
            continue; // only sold with their GPUs (or as TPU hosts)
        }
        let arch = r.arch.unwrap_or(if r.instance_type.starts_with("t2a") || r.instance_type.starts_with("c4a") {
            Arch::Arm64
        } else {
            Arch::X86_64
        });
        b.line = *line;
        b.add(
            "gcp",
            &r.instance_type,
            r.vcpus.unwrap_or(0.0),
            r.memory_gb.unwrap_or(0.0),
            None,
            0.0,
            arch,
            &r.region,
            &r.zone,
            r.price.unwrap_or(0.0),
            r.spot_price,
        );
    }
    for (line, g) in gpus {
        b.line = line;
        let name = g.accelerator.as_deref().unwrap_or("");
        let count = g.accelerator_count.unwrap_or(1.0);
        let (Some(gprice), gspot) = (g.price, g.spot_price) else {
            b.skip("gcp");
            continue;
        };
        if name.starts_with("tpu-") {
            b.skip("gcp");
            continue;
        }
        let zone_hosts = hosts.get(&g.zone).map(Vec::as_slice).unwrap_or(&[]);
        let mut combos: Vec<&Row> = Vec::new();
        if let Some((max_cpu, max_mem)) = n1_limits(name, count) {
            combos.extend(zone_hosts.iter().copied().filter(|h| {
                h.instance_type.starts_with("n1-")
                    && !h.instance_type.ends_with("-tpu")
                    && h.vcpus.unwrap_or(f64::MAX) <= max_cpu
                    && h.memory_gb.unwrap_or(f64::MAX) <= max_mem
            }));
        } else {
            let fixed = fixed_hosts(name, count);
            combos.extend(zone_hosts.iter().copied().filter(|h| fixed.contains(&h.instance_type)));
        }
        if combos.is_empty() {
            b.skip("gcp");
            continue;
        }
        for h in combos {
            let price = add_price(h.price, Some(gprice)).unwrap_or(gprice);
            let spot = add_price(h.spot_price, gspot);
            b.add(
                "gcp",
                &h.instance_type,
                h.vcpus.unwrap_or(0.0),
                h.memory_gb.unwrap_or(0.0),
                Some(name.to_string()),
                count,
                Arch::X86_64,
                &h.region,
                &h.zone,
                price,
                spot,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, cloud: &str, text: &str) {
        std::fs::create_dir_all(dir.join(cloud)).unwrap();
        std::fs::write(dir.join(cloud).join("vms.csv"), text).unwrap();
    }

    #[test]
    fn arch_inference() {
        assert_eq!(aws_arch("m6g.large"), Arch::Arm64);
        assert_eq!(aws_arch("c7gn.large"), Arch::Arm64);
        assert_eq!(aws_arch("t4g.nano"), Arch::Arm64);
        assert_eq!(aws_arch("a1.large"), Arch::Arm64);
        assert_eq!(aws_arch("g5.xlarge"), Arch::X86_64);
        assert_eq!(aws_arch("g4dn.xlarge"), Arch::X86_64);
        assert_eq!(aws_arch("m5.large"), Arch::X86_64);
        assert_eq!(aws_arch("p3.16xlarge"), Arch::X86_64);
    }

    #[test]
    fn gcp_gpus_are_combined_with_hosts() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "gcp",
            "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n\
             n1-highmem-64,64.0,416.0,,,,r1,r1-a,4.0,1.0\n\
             n1-highmem-96,96.0,624.0,,,,r1,r1-a,6.0,1.5\n\
             n1-standard-96,96.0,360.0,,,,r1,r1-a,5.0,\n\
             a2-highgpu-1g,12.0,85.0,,,,r1,r1-a,0.9,0.4\n\
             ,,,V100,8,{},r1,r1-a,20.0,6.0\n\
             ,,,V100,1,{},r1,r1-a,2.5,0.75\n\
             ,,,A100,1,{},r1,r1-a,1.7,1.3\n\
             ,,,tpu-v2-8,1,{},r1,r1-a,4.5,1.35\n",
        );
        let s = import_dir(d.path()).unwrap();
        let find = |it: &str, acc: Option<&str>, n: f64| {
            s.shapes
                .iter()
                .find(|x| x.instance_type == it && x.accelerator.as_deref() == acc && x.accelerator_count == n)
                .map(|x| &s.zones[x.start as usize])
        };
        assert_eq!(find("n1-highmem-64", Some("V100"), 8.0).unwrap().price, 24.0);
        assert_eq!(find("n1-highmem-64", Some("V100"), 8.0).unwrap().spot_price, Some(7.0));
        assert!(
            find("n1-standard-96", Some("V100"), 8.0).unwrap().spot_price.is_none(),
            "no host spot price → no spot offer"
        );
        assert!(find("n1-highmem-64", Some("V100"), 1.0).is_none(), "64 vCPUs exceed the V100:1 limit");
        assert!((find("a2-highgpu-1g", Some("A100"), 1.0).unwrap().price - 2.6).abs() < 1e-9);
        assert!(find("a2-highgpu-1g", None, 0.0).is_none(), "A2 hosts are not sold without their GPUs");
        assert_eq!(s.counts["gcp"].1, 2, "the TPU row and V100:1 (no N1 host within its limits here) are skipped");
    }

    #[test]
    fn malformed_rows_are_reported_with_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "aws",
            "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n\
             m5.large,,,2.0,8.0,,0.096,0.03,us-east-1,us-east-1a\n\
             m5.xlarge,,,four,16.0,,0.192,0.06,us-east-1,us-east-1a\n\
             m5.2xlarge,,,8.0,32.0,,0.384\n",
        );
        let err = import_dir(d.path()).unwrap_err().to_string();
        assert!(err.contains("aws/vms.csv:3: column vCPUs: `four`"), "{err}");
        assert!(err.contains("aws/vms.csv:4:"), "{err}");
    }

    #[test]
    fn azure_regions_are_zones_and_v8_arch_is_read() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "azure",
            "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,Generation,Arch\n\
             Standard_NC24s_v3,V100,4,24,448,V100,12.24,2.4,eastus,\"V1,V2\",x86_64\n\
             Standard_D2ps_v5,,,2,8,,0.077,,eastus,V2,arm64\n",
        );
        let s = import_dir(d.path()).unwrap();
        let v = s.shapes.iter().find(|x| x.accelerator.as_deref() == Some("V100")).unwrap();
        let z = &s.zones[v.start as usize];
        assert_eq!(s.names[z.region as usize], "eastus");
        assert_eq!(s.names[z.zone as usize], "eastus");
        assert_eq!(s.shapes.iter().find(|x| x.instance_type == "Standard_D2ps_v5").unwrap().arch, Arch::Arm64);
    }
}
