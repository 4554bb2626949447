//! The `skypilot` source: SkyPilot's published catalog CSVs, `BASE/CLOUD/vms.csv` (schema
//! v3 to v8), read by `catalog import`'s own reader ([`crate::catalog::import`]) so an
//! update and an import of the same files give the same rows and prices.

use super::download::{get_to_file, Fetched};
use super::{Fetch, FetchCtx, Locate, Source, TempFile, UpdateError};
use crate::catalog::import::{self, Builder};

/// SkyPilot's catalog repository (raw files of schema v8).
pub const DEFAULT_BASE: &str = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v8";

pub struct Skypilot {
    /// The base URL without a trailing slash.
    pub base: String,
}

impl Source for Skypilot {
    fn url(&self, cloud: &str) -> String {
        format!("{}/{cloud}/vms.csv", self.base)
    }

    fn fetch(&self, ctx: &mut FetchCtx) -> Result<Fetch, UpdateError> {
        let url = self.url(ctx.cloud);
        let tmp = TempFile::new(ctx.dir, &format!("{}-vms.csv", ctx.cloud));
        let validators = match get_to_file(ctx.http, &url, (ctx.known)(&url).as_ref(), &tmp.0, ctx.progress)? {
            Fetched::NotModified => return Ok(Fetch::Unchanged),
            Fetched::Body(v) => v,
        };
        ctx.progress.step(&format!("importing {}", ctx.cloud));
        let mut builder = Builder::default();
        import::import_cloud(&mut builder, ctx.cloud, &tmp.0, &url, &super::checks::region_zone, ctx.bad)
            .map_err(UpdateError::Data)?;
        Ok(Fetch::Data {
            builder,
            url: url.clone(),
            validators: vec![(url.clone(), validators)],
            locate: Locate::Lines(url),
        })
    }
}
