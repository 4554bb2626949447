//! The `aws` source: the AWS Price List bulk files (public, no credentials).
//!
//! `{base}/offers/v1.0/aws/AmazonEC2/current/region_index.json` names each region's offer
//! file (`regions.REGION.currentVersionUrl`, an `index.json`); its CSV form (`index.csv`,
//! same path) is downloaded to a temporary file and streamed through the `csv` crate one
//! record at a time — never held in memory (a region's file is hundreds of MB). The file
//! opens with metadata lines (`"FormatVersion","v1.0"`, ..., `"OfferCode","AmazonEC2"`),
//! then the header (`"SKU","OfferTermCode",...`) and one row per price. Kept: `TermType`
//! "OnDemand", `Unit` "Hrs", `Product Family` "Compute Instance", `Tenancy` "Shared",
//! `Operating System` "Linux", `Pre Installed S/W` "NA", `CapacityStatus` "Used",
//! `License Model` "No License required" and `MarketOption` "OnDemand" (when those
//! columns exist), `Currency` USD; read: `Instance Type`, `vCPU`, `Memory` ("8 GiB"), `GPU`
//! (a count) and `PricePerUnit` ($/h).
//!
//! The price list is per region; zones come from the previous snapshot (the zones where it
//! offered the type in the region, else every zone it knows there), with its spot price
//! in that zone (the price list has no spot prices). A type in a region the previous
//! snapshot has no zones for, or a GPU type whose accelerator it does not name (and that
//! no built-in family names), is skipped and counted. An unchanged region index (ETag /
//! Last-Modified) means nothing changed. Bad rows are reported as `URL:LINE: why`. Does
//! network I/O.

use super::download::{get_to_file, Fetched};
use super::{Fetch, FetchCtx, Locate, Source, TempFile, UpdateError};
use crate::catalog::import::{aws_arch, Builder};
use crate::catalog::{Arch, Snapshot};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The public Price List bulk API.
pub const DEFAULT_BASE: &str = "https://pricing.us-east-1.amazonaws.com";
const INDEX: &str = "/offers/v1.0/aws/AmazonEC2/current/region_index.json";

pub struct Aws {
    pub base: String,
}

#[derive(Deserialize)]
struct RegionIndex {
    regions: BTreeMap<String, RegionEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegionEntry {
    current_version_url: String,
}

/// GPU families and their accelerator, for types the previous snapshot does not know.
fn family_gpu(instance_type: &str) -> Option<&'static str> {
    Some(match instance_type.split('.').next()? {
        "p2" => "K80",
        "p3" => "V100",
        "p3dn" => "V100-32GB",
        "p4d" => "A100",
        "p4de" => "A100-80GB",
        "p5" | "p5e" | "p5en" => "H100",
        "g3" | "g3s" => "M60",
        "g4dn" => "T4",
        "g4ad" => "Radeon Pro V520",
        "g5" => "A10G",
        "g5g" => "T4g",
        "g6" => "L4",
        "g6e" => "L40S",
        _ => return None,
    })
}

/// The zones of one type in one region, with their spot prices.
type Zones = Vec<(String, Option<f64>)>;

/// What the previous snapshot says about AWS.
#[derive(Default)]
struct Known {
    /// (type, region) → zones
    zones: HashMap<(String, String), Zones>,
    /// region → every zone
    region_zones: HashMap<String, Vec<String>>,
    /// type → (accelerator, arch)
    types: HashMap<String, (Option<String>, Arch)>,
}

impl Known {
    fn new(prev: Option<&Snapshot>) -> Known {
        let mut k = Known::default();
        let Some(p) = prev else { return k };
        for s in p.shapes.iter().filter(|s| s.cloud == "aws") {
            k.types.entry(s.instance_type.clone()).or_insert((s.accelerator.clone(), s.arch));
            for z in &p.zones[s.start as usize..s.end as usize] {
                let (region, zone) = (&p.names[z.region as usize], &p.names[z.zone as usize]);
                k.zones
                    .entry((s.instance_type.clone(), region.clone()))
                    .or_default()
                    .push((zone.clone(), z.spot_price));
                let all = k.region_zones.entry(region.clone()).or_default();
                if !all.contains(zone) {
                    all.push(zone.clone());
                }
            }
        }
        for v in k.region_zones.values_mut() {
            v.sort();
        }
        k
    }
}

impl Source for Aws {
    fn url(&self, _cloud: &str) -> String {
        format!("{}{INDEX}", self.base)
    }

    fn fetch(&self, ctx: &mut FetchCtx) -> Result<Fetch, UpdateError> {
        let index_url = self.url(ctx.cloud);
        let tmp = TempFile::new(ctx.dir, "aws-offer.csv");
        let validators =
            match get_to_file(ctx.http, &index_url, (ctx.known)(&index_url).as_ref(), &tmp.0, ctx.progress)? {
                Fetched::NotModified => return Ok(Fetch::Unchanged),
                Fetched::Body(v) => v,
            };
        let file = std::fs::File::open(&tmp.0)
            .map_err(|e| UpdateError::Io { path: tmp.0.display().to_string(), source: e })?;
        let index: RegionIndex = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| UpdateError::Data(format!("{index_url}: not a Price List region index: {e}")))?;
        let known = Known::new(ctx.previous);
        let mut b = Builder::default();
        // Line numbers are global across the region files (a file's rows follow the previous
        // file's): `files` maps them back.
        let mut files: Vec<(u64, String)> = Vec::new();
        let mut offset: u64 = 0;
        for (region, entry) in &index.regions {
            let path = entry.current_version_url.strip_suffix(".json").unwrap_or(&entry.current_version_url);
            let url = format!("{}{path}.csv", self.base);
            get_to_file(ctx.http, &url, None, &tmp.0, ctx.progress)?;
            ctx.progress.step(&format!("reading the {region} offer file"));
            files.push((offset + 1, url.clone()));
            let lines = read_offer_file(&tmp.0, &url, region, offset, &known, &mut b, ctx)?;
            offset += lines;
        }
        Ok(Fetch::Data {
            builder: b,
            url: index_url.clone(),
            validators: vec![(index_url, validators)],
            locate: Locate::Files(files),
        })
    }
}

/// Streams one region's offer CSV into `b`; returns its number of lines.
fn read_offer_file(
    path: &std::path::Path,
    url: &str,
    region: &str,
    offset: u64,
    known: &Known,
    b: &mut Builder,
    ctx: &mut FetchCtx,
) -> Result<u64, UpdateError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| UpdateError::Data(format!("{url}: {e}")))?;
    let mut rec = csv::StringRecord::new();
    let mut cols: Option<HashMap<String, usize>> = None;
    let mut last_line = 0;
    let first_bad = ctx.bad.len();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    return Err(UpdateError::Data(format!("{url}: {io}")));
                }
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                ctx.bad.push(format!("{url}:{line}: {e}"));
                continue;
            }
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        last_line = line;
        let Some(c) = &cols else {
            if rec.get(0) == Some("SKU") {
                cols = Some(rec.iter().enumerate().map(|(i, h)| (h.to_string(), i)).collect());
            }
            continue;
        };
        if ctx.bad.len() - first_bad > super::super::import::MAX_BAD_ROWS {
            return Err(UpdateError::Data(format!(
                "{url}: more than {} bad rows; the file is refused",
                super::super::import::MAX_BAD_ROWS
            )));
        }
        let get = |name: &str| c.get(name).and_then(|&i| rec.get(i)).unwrap_or("");
        let is = |name: &str, want: &str| !c.contains_key(name) || get(name) == want;
        if !(get("TermType") == "OnDemand"
            && get("Unit") == "Hrs"
            && is("Product Family", "Compute Instance")
            && get("Tenancy") == "Shared"
            && get("Operating System") == "Linux"
            && get("Pre Installed S/W") == "NA"
            && get("CapacityStatus") == "Used"
            && is("License Model", "No License required")
            && is("MarketOption", "OnDemand")
            && is("Currency", "USD"))
        {
            continue;
        }
        let it = get("Instance Type");
        let bad = |why: String| format!("{url}:{line}: {why}");
        if it.is_empty() {
            ctx.bad.push(bad("empty Instance Type".into()));
            continue;
        }
        let num = |name: &str, s: &str| -> Result<f64, String> {
            s.replace(',', "")
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("column {name}: `{s}` is not a non-negative number"))
        };
        let mem = get("Memory");
        let parsed = (|| {
            let price = num("PricePerUnit", get("PricePerUnit"))?;
            let vcpus = num("vCPU", get("vCPU"))?;
            let memory = num("Memory", mem.strip_suffix("GiB").unwrap_or(mem).trim())?;
            let gpus = match get("GPU") {
                "" | "NA" | "0" => 0.0,
                g => num("GPU", g)?,
            };
            Ok::<_, String>((price, vcpus, memory, gpus))
        })();
        let (price, vcpus, memory, gpus) = match parsed {
            Ok(v) => v,
            Err(why) => {
                ctx.bad.push(bad(why));
                continue;
            }
        };
        let (prev_acc, arch) = known.types.get(it).cloned().unwrap_or((None, aws_arch(it)));
        let accelerator = match (gpus > 0.0, prev_acc) {
            (false, a) => a, // Inferentia, Trainium and FPGA types as the previous snapshot names them
            (true, Some(a)) => Some(a),
            (true, None) => match family_gpu(it) {
                Some(a) => Some(a.to_string()),
                None => {
                    b.skip("aws");
                    continue;
                }
            },
        };
        let count = if accelerator.is_some() { gpus.max(1.0) } else { 0.0 };
        let zones: Zones = match known.zones.get(&(it.to_string(), region.to_string())) {
            Some(z) => z.clone(),
            None => match known.region_zones.get(region) {
                Some(all) => all.iter().map(|z| (z.clone(), None)).collect(),
                None => {
                    b.skip("aws");
                    continue;
                }
            },
        };
        b.line = offset + line;
        for (zone, spot) in zones {
            b.add("aws", it, vcpus, memory, accelerator.clone(), count, arch, region, &zone, price, spot);
        }
    }
    if cols.is_none() {
        return Err(UpdateError::Data(format!(
            "{url}: no header line starting with \"SKU\" (not a Price List offer file)"
        )));
    }
    Ok(last_line)
}
