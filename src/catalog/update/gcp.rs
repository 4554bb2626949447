//! The `gcp` source: the Cloud Billing Catalog API's Compute Engine SKUs (public prices;
//! the API wants an API key: `$SKYFORM_GCP_API_KEY`), combined with the machine types of
//! the previous snapshot.
//!
//! `GET {base}/v1/services/6F81-5844-456A/skus?currencyCode=USD&key=KEY[&pageToken=T]`
//! answers `{"skus": [...], "nextPageToken": "..."}` (the shape of
//! <https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list>); pages are
//! followed until the token is empty. Of each SKU it reads `description`,
//! `category.resourceFamily` ("Compute"), `category.resourceGroup`, `category.usageType`
//! ("OnDemand", or "Preemptible" for spot), `serviceRegions` and
//! `pricingInfo[0].pricingExpression.tieredRates[last].unitPrice` (`units` + `nanos`).
//! Understood descriptions: `[Spot Preemptible ]FAMILY [AMD |Arm ][Predefined ]Instance
//! Core|Ram running in ...` (a vCPU-hour or GiB-hour price per machine family) and, in
//! resource group "GPU", `Nvidia [Tesla ]NAME[ 80GB] GPU ...` (a GPU-hour price). Other SKUs
//! (commitments, sole tenancy, custom or extended memory, licences) are ignored.
//!
//! A machine type's price in a region is vCPUs × its family's core price + GiB × its RAM
//! price (as the price pages compute it), plus count × the GPU price for an offering with
//! GPUs (as `catalog import` combines GCP's GPUs with their hosts); spot likewise from the
//! Preemptible SKUs. Machine types, their sizes, GPUs and zones are the previous snapshot's;
//! a type whose family or GPU has no price in a region is skipped (counted). Bad SKUs are
//! reported as `PAGE-URL item N: why`. Does network I/O.

use super::download::{get_to_file, Fetched};
use super::{Fetch, FetchCtx, Locate, Source, TempFile, UpdateError};
use crate::catalog::import::Builder;
use serde::Deserialize;
use std::collections::HashMap;

/// The public API.
pub const DEFAULT_BASE: &str = "https://cloudbilling.googleapis.com";
/// Compute Engine's service id in the Cloud Billing Catalog.
const SERVICE: &str = "6F81-5844-456A";
const MAX_PAGES: usize = 10_000;

pub struct Gcp {
    pub base: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    skus: Vec<Sku>,
    #[serde(default)]
    next_page_token: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Sku {
    description: String,
    category: Category,
    service_regions: Vec<String>,
    pricing_info: Vec<PricingInfo>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Category {
    resource_family: String,
    resource_group: String,
    usage_type: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PricingInfo {
    pricing_expression: PricingExpression,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PricingExpression {
    usage_unit: String,
    tiered_rates: Vec<TieredRate>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TieredRate {
    unit_price: Money,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Money {
    units: String,
    nanos: i64,
}

/// What a SKU prices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Core(String),
    Ram(String),
    Gpu(String),
}

/// The part a SKU description prices (None: not one skyform combines).
fn part(description: &str, group: &str) -> Option<Part> {
    let d = description
        .strip_prefix("Spot Preemptible ")
        .or(description.strip_prefix("Preemptible "))
        .unwrap_or(description);
    if group == "GPU" {
        let name = d.split(" GPU").next()?.strip_prefix("Nvidia ")?;
        let name = name.strip_prefix("Tesla ").unwrap_or(name);
        return Some(Part::Gpu(match name {
            "A100 80GB" => "A100-80GB".into(),
            "H100 80GB" => "H100".into(),
            "H100 80GB Mega" => "H100-MEGA".into(),
            n if n.contains(' ') => return None,
            n => n.to_string(),
        }));
    }
    let (family, rest) = d.split_once(' ')?;
    if !family.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
        return None;
    }
    let rest = rest.strip_prefix("AMD ").or(rest.strip_prefix("Arm ")).unwrap_or(rest);
    let rest = rest.strip_prefix("Predefined ").unwrap_or(rest);
    let family = family.to_ascii_lowercase();
    if rest.starts_with("Instance Core running in ") {
        Some(Part::Core(family))
    } else if rest.starts_with("Instance Ram running in ") {
        Some(Part::Ram(family))
    } else {
        None
    }
}

/// (part, region, spot) → (USD per unit-hour, SKU sequence number)
type Prices = HashMap<(Part, String, bool), (f64, u64)>;

impl Source for Gcp {
    fn url(&self, _cloud: &str) -> String {
        format!("{}/v1/services/{SERVICE}/skus?currencyCode=USD", self.base)
    }

    fn fetch(&self, ctx: &mut FetchCtx) -> Result<Fetch, UpdateError> {
        let key = std::env::var("SKYFORM_GCP_API_KEY").map_err(|_| {
            UpdateError::Data(
                "the Cloud Billing Catalog API needs an API key: set SKYFORM_GCP_API_KEY (or use --source skypilot)"
                    .into(),
            )
        })?;
        let first = self.url(ctx.cloud);
        let tmp = TempFile::new(ctx.dir, "gcp-skus.json");
        let mut pages: Vec<(u64, String)> = Vec::new();
        let mut prices: Prices = HashMap::new();
        let mut seq: u64 = 0;
        let mut token = String::new();
        loop {
            if pages.len() >= MAX_PAGES {
                return Err(UpdateError::Data(format!("{first}: more than {MAX_PAGES} pages")));
            }
            let shown = if token.is_empty() { first.clone() } else { format!("{first}&pageToken={token}") };
            let url = format!("{shown}&key={key}");
            pages.push((seq + 1, shown.clone()));
            let Fetched::Body(_) = get_to_file(ctx.http, &url, None, &tmp.0, ctx.progress)
                .map_err(|e| UpdateError::Data(e.to_string().replace(&key, "KEY")))?
            else {
                return Err(UpdateError::Data(format!("{shown}: answered 304 to an unconditional request")));
            };
            let file = std::fs::File::open(&tmp.0)
                .map_err(|e| UpdateError::Io { path: tmp.0.display().to_string(), source: e })?;
            let page: Page = serde_json::from_reader(std::io::BufReader::new(file))
                .map_err(|e| UpdateError::Data(format!("{shown}: not a Cloud Billing SKUs page: {e}")))?;
            for (i, sku) in page.skus.iter().enumerate() {
                seq += 1;
                let c = &sku.category;
                let spot = match c.usage_type.as_str() {
                    "OnDemand" => false,
                    "Preemptible" => true,
                    _ => continue,
                };
                if c.resource_family != "Compute" {
                    continue;
                }
                let Some(part) = part(&sku.description, &c.resource_group) else { continue };
                let at = || format!("{shown} item {}", i + 1);
                let Some(expr) = sku.pricing_info.first().map(|p| &p.pricing_expression) else {
                    ctx.bad.push(format!("{}: `{}` has no pricingInfo", at(), sku.description));
                    continue;
                };
                let unit_ok = match part {
                    Part::Ram(_) => expr.usage_unit == "GiBy.h",
                    _ => expr.usage_unit == "h",
                };
                let price = expr.tiered_rates.last().and_then(|r| {
                    let units: f64 = r.unit_price.units.parse().ok()?;
                    Some(units + r.unit_price.nanos as f64 / 1e9)
                });
                let Some(price) = price.filter(|p| unit_ok && p.is_finite() && *p >= 0.0) else {
                    ctx.bad.push(format!(
                        "{}: `{}`: no price per {} (usageUnit `{}`)",
                        at(),
                        sku.description,
                        if matches!(part, Part::Ram(_)) { "GiBy.h" } else { "h" },
                        expr.usage_unit
                    ));
                    continue;
                };
                for region in &sku.service_regions {
                    if let Err(why) = super::checks::region_zone("gcp", region, &format!("{region}-a")) {
                        ctx.bad.push(format!("{}: {why}", at()));
                        continue;
                    }
                    prices.insert((part.clone(), region.clone(), spot), (price, seq));
                }
            }
            ctx.progress.step(&format!("gcp: {} prices from {} pages", prices.len(), pages.len()));
            if page.next_page_token.is_empty() || page.next_page_token == token {
                break;
            }
            token = page.next_page_token;
        }
        let mut b = Builder::default();
        let Some(prev) = ctx.previous else {
            return Err(UpdateError::Data("the gcp source needs the previous snapshot's machine types".into()));
        };
        let round = |x: f64| (x * 1e6).round() / 1e6;
        for s in prev.shapes.iter().filter(|s| s.cloud == "gcp") {
            let family = s.instance_type.split('-').next().unwrap_or("").to_string();
            for z in &prev.zones[s.start as usize..s.end as usize] {
                let (region, zone) = (&prev.names[z.region as usize], &prev.names[z.zone as usize]);
                let get = |p: Part, spot: bool| prices.get(&(p, region.clone(), spot)).copied();
                let price = |spot: bool| -> Option<(f64, u64)> {
                    let (core, line) = get(Part::Core(family.clone()), spot)?;
                    let (ram, _) = get(Part::Ram(family.clone()), spot)?;
                    let gpu = match &s.accelerator {
                        Some(a) => get(Part::Gpu(a.clone()), spot)?.0 * s.accelerator_count,
                        None => 0.0,
                    };
                    Some((round(s.vcpus * core + s.memory_gb * ram + gpu), line))
                };
                let Some((od, line)) = price(false) else {
                    b.skip("gcp");
                    continue;
                };
                b.line = line;
                b.add(
                    "gcp",
                    &s.instance_type,
                    s.vcpus,
                    s.memory_gb,
                    s.accelerator.clone(),
                    s.accelerator_count,
                    s.arch,
                    region,
                    zone,
                    od,
                    price(true).map(|p| p.0),
                );
            }
        }
        Ok(Fetch::Data { builder: b, url: first, validators: vec![], locate: Locate::Pages(pages) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_descriptions() {
        assert_eq!(
            part("N1 Predefined Instance Core running in Americas", "N1Standard"),
            Some(Part::Core("n1".into()))
        );
        assert_eq!(part("N2 Instance Ram running in Americas", "RAM"), Some(Part::Ram("n2".into())));
        assert_eq!(
            part("Spot Preemptible N2D AMD Instance Core running in EMEA", "CPU"),
            Some(Part::Core("n2d".into()))
        );
        assert_eq!(part("Nvidia Tesla V100 GPU running in Americas", "GPU"), Some(Part::Gpu("V100".into())));
        assert_eq!(
            part("Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas", "GPU"),
            Some(Part::Gpu("T4".into()))
        );
        assert_eq!(part("Nvidia Tesla A100 80GB GPU running in Americas", "GPU"), Some(Part::Gpu("A100-80GB".into())));
        assert_eq!(part("Commitment v1: N2 Cpu in Americas for 1 Year", "CPU"), None);
        assert_eq!(part("N2 Sole Tenancy Instance Core running in Americas", "CPU"), None);
    }
}
