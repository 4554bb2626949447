//! The `azure` source: the Azure Retail Prices API (public, no credentials), joined with
//! the VM sizes of the previous snapshot and, when credentials are configured, of
//! Resource Manager's resource SKUs.
//!
//! `GET {base}/api/retail/prices?$filter=serviceName eq 'Virtual Machines' and priceType eq
//! 'Consumption'` answers pages of `{"Items": [...], "NextPageLink": URL | null}` (the shape
//! of <https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices>);
//! every page is followed (the tracker's refresh asks for the job's regions only: one such
//! query per region, `and armRegionName eq 'REGION'`). Of each item it reads `armSkuName`, `armRegionName`,
//! `retailPrice`, `unitOfMeasure`, `meterName`, `productName` and `type`, and keeps:
//! `type` "Consumption", `unitOfMeasure` "1 Hour", a `productName` without "Windows" or
//! "Cloud Services" (Linux VM meters), a `meterName` without "Low Priority". A meter whose
//! name contains "Spot" is the spot price, any other the on-demand price; when one SKU and
//! region has several, the lowest is kept. The API knows no vCPUs, memory or GPUs: those
//! come from the previous snapshot's offering of the same instance type (the embedded
//! catalog, an import or an earlier update), else from the subscription's resource SKUs
//! ([`FetchCtx::shapes`]: CPU sizes in the regions the subscription may use them); a SKU
//! known to neither is skipped (counted), as is one with a spot price but no on-demand
//! price.
//!
//! Bad items are reported as `PAGE-URL item N: why`. Does network I/O.

use super::download::{get_to_file, Fetched};
use super::{Fetch, FetchCtx, Locate, Source, TempFile, UpdateError};
use crate::catalog::import::Builder;
use crate::catalog::{Arch, Shape};
use serde::Deserialize;
use skyform_provider::InstanceShape;
use std::collections::{BTreeMap, HashMap};

/// The public API.
pub const DEFAULT_BASE: &str = "https://prices.azure.com";
/// The query: Linux and Windows VM meters of every region, pay-as-you-go and spot.
const QUERY: &str =
    "/api/retail/prices?$filter=serviceName%20eq%20%27Virtual%20Machines%27%20and%20priceType%20eq%20%27Consumption%27";
/// A guard against a server that pages forever.
const MAX_PAGES: usize = 100_000;

pub struct Azure {
    pub base: String,
    /// Only these regions (one query each, `... and armRegionName eq 'REGION'`); empty:
    /// every region in one query (what `catalog update` reads).
    pub regions: Vec<String>,
}

impl Azure {
    /// The first page of each query.
    fn firsts(&self) -> Vec<String> {
        if self.regions.is_empty() {
            return vec![format!("{}{QUERY}", self.base)];
        }
        self.regions.iter().map(|r| format!("{}{QUERY}%20and%20armRegionName%20eq%20%27{r}%27", self.base)).collect()
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(rename = "Items", default)]
    items: Vec<Item>,
    #[serde(rename = "NextPageLink", default)]
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Item {
    arm_sku_name: String,
    arm_region_name: String,
    retail_price: Option<f64>,
    unit_of_measure: String,
    meter_name: String,
    product_name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// (on-demand, spot) per (SKU, region), with the item sequence number of the on-demand
/// price (for reports).
type Prices = BTreeMap<(String, String), (Option<(f64, u64)>, Option<f64>)>;

impl Source for Azure {
    fn url(&self, _cloud: &str) -> String {
        format!("{}{QUERY}", self.base)
    }

    fn fetch(&self, ctx: &mut FetchCtx) -> Result<Fetch, UpdateError> {
        let first = self.url(ctx.cloud);
        let tmp = TempFile::new(ctx.dir, "azure-page.json");
        let mut pages: Vec<(u64, String)> = Vec::new();
        let mut prices: Prices = BTreeMap::new();
        let mut seq: u64 = 0;
        let mut next = None;
        let mut queries = self.firsts().into_iter();
        while let Some(url) = next.take().or_else(|| queries.next()) {
            if pages.len() >= MAX_PAGES {
                return Err(UpdateError::Data(format!("{first}: more than {MAX_PAGES} pages")));
            }
            pages.push((seq + 1, url.clone()));
            let Fetched::Body(_) = get_to_file(ctx.http, &url, None, &tmp.0, ctx.progress)? else {
                return Err(UpdateError::Data(format!("{url}: answered 304 to an unconditional request")));
            };
            let file = std::fs::File::open(&tmp.0)
                .map_err(|e| UpdateError::Io { path: tmp.0.display().to_string(), source: e })?;
            let page: Page = serde_json::from_reader(std::io::BufReader::new(file))
                .map_err(|e| UpdateError::Data(format!("{url}: not a Retail Prices page: {e}")))?;
            for (i, it) in page.items.iter().enumerate() {
                seq += 1;
                let at = || format!("{url} item {}", i + 1);
                if it.kind != "Consumption"
                    || it.unit_of_measure != "1 Hour"
                    || it.product_name.contains("Windows")
                    || it.product_name.contains("Cloud Services")
                    || it.meter_name.contains("Low Priority")
                {
                    continue;
                }
                if it.arm_sku_name.is_empty() {
                    ctx.bad.push(format!("{}: no armSkuName", at()));
                    continue;
                }
                let Some(price) = it.retail_price.filter(|p| p.is_finite() && *p >= 0.0) else {
                    ctx.bad.push(format!("{}: retailPrice {:?} is not a non-negative number", at(), it.retail_price));
                    continue;
                };
                if let Err(why) = super::checks::region_zone("azure", &it.arm_region_name, &it.arm_region_name) {
                    ctx.bad.push(format!("{}: {why}", at()));
                    continue;
                }
                let e = prices.entry((it.arm_sku_name.clone(), it.arm_region_name.clone())).or_default();
                if it.meter_name.contains("Spot") {
                    e.1 = Some(e.1.map_or(price, |p: f64| p.min(price)));
                } else if e.0.is_none_or(|(p, _)| price < p) {
                    e.0 = Some((price, seq));
                }
            }
            next = page.next.filter(|n| !n.is_empty() && *n != url);
            ctx.progress.step(&format!("azure: {} prices from {} pages", prices.len(), pages.len()));
        }
        // The sizes of the previous snapshot, per instance type.
        let mut sizes: HashMap<&str, &Shape> = HashMap::new();
        if let Some(p) = ctx.previous {
            for s in p.shapes.iter().filter(|s| s.cloud == "azure") {
                sizes.entry(s.instance_type.as_str()).or_insert(s);
            }
        }
        // Sizes the snapshot does not know, from Resource Manager's SKUs when given: CPU
        // sizes only (the SKUs do not name GPU models).
        let listed: HashMap<&str, &InstanceShape> =
            ctx.shapes.iter().filter(|s| s.gpus == 0.0).map(|s| (s.name.as_str(), s)).collect();
        let mut b = Builder::default();
        for ((sku, region), (od, spot)) in prices {
            let Some((price, seq)) = od else {
                b.skip("azure");
                continue;
            };
            let (vcpus, memory_gb, accelerator, count, arch) = match (sizes.get(sku.as_str()), listed.get(sku.as_str()))
            {
                (Some(size), _) => {
                    let arch = if size.arch == Arch::Arm64 { Arch::Arm64 } else { Arch::X86_64 };
                    (size.vcpus, size.memory_gb, size.accelerator.clone(), size.accelerator_count, arch)
                }
                (None, Some(l)) if l.regions.is_empty() || l.regions.contains(&region) => {
                    (l.vcpus, l.memory_gb, None, 0.0, if l.arm64 { Arch::Arm64 } else { Arch::X86_64 })
                }
                _ => {
                    b.skip("azure");
                    continue;
                }
            };
            b.line = seq;
            b.add("azure", &sku, vcpus, memory_gb, accelerator, count, arch, &region, &region, price, spot);
        }
        Ok(Fetch::Data { builder: b, url: first, validators: vec![], locate: Locate::Pages(pages) })
    }
}
