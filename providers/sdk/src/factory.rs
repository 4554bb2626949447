//! How skyform finds and builds a provider: one [`Factory`] per provider crate.
//!
//! skyform's registry (`src/providers.rs`) holds a factory per provider name; every part
//! of skyform that needs a provider — `validate` checking a `provider` block, the catalog
//! adding a cloud's instance types, `tracker refresh` asking for spot prices, `apply`
//! allocating, a state backend storing JSON — asks the registry, which asks the factory.
//! Adding a cloud is therefore: a crate with a factory, one line in the registry, and
//! catalog data. An out-of-process plugin is one more kind of factory.
//!
//! Nothing here does I/O; a factory's `provider`/`market`/`backend` may (they resolve
//! credentials and endpoints), which is why `validate` and `plan` only call `check` and
//! `offerings`.

use crate::objects::Objects;
use crate::{Market, Provider, ProviderError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// A problem in a `provider` or `backend` block, found without contacting anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The attribute it is about (`regions`, or a nested `faults.capacity_zones`), when one
    /// is to blame; diagnostics then point at that attribute instead of the block.
    pub attribute: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// A problem with the block as a whole.
    pub fn block(message: impl Into<String>) -> Self {
        ConfigError { attribute: None, message: message.into() }
    }

    /// A problem with one attribute of the block.
    pub fn attribute(attribute: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { attribute: Some(attribute.into()), message: message.into() }
    }
}

/// What a factory builds with (injected, so tests can point it elsewhere).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildContext {
    /// The job directory: relative paths in a block are resolved against it.
    pub job_dir: PathBuf,
}

impl BuildContext {
    pub fn new(job_dir: impl Into<PathBuf>) -> Self {
        BuildContext { job_dir: job_dir.into() }
    }
}

/// An instance type that a provider offers from its own configuration, for a cloud that the
/// catalog does not hold (the local provider, a Ray cluster, a plugin's cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct OfferingSpec {
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    pub vcpus: f64,
    pub memory_gb: f64,
    /// Accelerator name (`V100`, `LocalGPU`) and count.
    pub accelerator: Option<String>,
    pub accelerator_count: f64,
    /// USD per hour, on demand.
    pub price: f64,
    /// USD per hour as spot, when the provider offers spot.
    pub spot_price: Option<f64>,
    /// CPU architecture (`x86_64`, `aarch64`/`arm64`); None: x86_64.
    pub arch: Option<String>,
}

impl OfferingSpec {
    pub fn new(
        region: impl Into<String>,
        zone: impl Into<String>,
        instance_type: impl Into<String>,
        vcpus: f64,
        memory_gb: f64,
        price: f64,
    ) -> Self {
        OfferingSpec {
            region: region.into(),
            zone: zone.into(),
            instance_type: instance_type.into(),
            vcpus,
            memory_gb,
            price,
            ..Default::default()
        }
    }
}

/// Egress prices (USD per GB, sender side) a provider block sets for its own cloud, in
/// place of skyform's table: a simulated cloud (the local provider's zones) or a negotiated
/// rate. Only for links that leave a zone of this cloud.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct EgressPrices {
    /// To another zone of the same region.
    pub inter_zone: f64,
    /// To another region of the same cloud.
    pub inter_region: f64,
    /// To another cloud.
    pub internet: f64,
}

impl EgressPrices {
    pub fn new(inter_zone: f64, inter_region: f64, internet: f64) -> Self {
        EgressPrices { inter_zone, inter_region, internet }
    }
}

/// The object store behind a remote state backend, and where in it the state lives.
#[derive(Clone)]
pub struct BackendStore {
    pub objects: Arc<dyn Objects>,
    /// The key of the state object (the lock is `KEY.lock`).
    pub key: String,
    /// A short name, unique per backend location, for the local working copy's directory.
    pub id: String,
}

/// A VM size as a cloud's API describes it (Azure's resource SKUs): what `catalog update`
/// needs for the sizes a price list names but the previous snapshot does not know.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct InstanceShape {
    pub name: String,
    pub vcpus: f64,
    pub memory_gb: f64,
    /// GPUs (the API does not name their model).
    pub gpus: f64,
    pub arm64: bool,
    /// Regions where the subscription may create it.
    pub regions: Vec<String>,
}

impl InstanceShape {
    pub fn new(name: impl Into<String>, vcpus: f64, memory_gb: f64) -> Self {
        InstanceShape { name: name.into(), vcpus, memory_gb, ..Default::default() }
    }
}

/// One provider as skyform's registry knows it.
pub trait Factory: Send + Sync {
    /// The name in `provider "NAME" { }` and the cloud of its offerings and locations.
    fn name(&self) -> &str;

    /// The version of the provider (shown by `skyform version -json`).
    fn version(&self) -> String {
        String::new()
    }

    /// Checks the body of a `provider` block (as JSON). Contacts nothing and needs no
    /// credentials: `validate` and `plan` call it.
    fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError>;

    /// Builds the provider for a job (at apply, refresh, sweep): credentials and endpoints
    /// are resolved here.
    fn provider(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError>;

    /// The provider's market (spot prices for `tracker refresh`); `None` when prices come
    /// from elsewhere (the catalog).
    fn market(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Option<Box<dyn Market>>, ProviderError> {
        let _ = (body, ctx);
        Ok(None)
    }

    /// The cloud's VM sizes from its API, for `catalog update`; `Ok(None)` when the
    /// provider has none to offer or no credentials are configured (the update then keeps
    /// to the sizes it knows). Does network I/O.
    fn instance_shapes(
        &self,
        body: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Option<Vec<InstanceShape>>, ProviderError> {
        let _ = (body, ctx);
        Ok(None)
    }

    /// Where this provider's spot prices come from when [`Factory::market`] has none (said
    /// by `tracker refresh`).
    fn price_source(&self) -> &str {
        "the catalog"
    }

    /// Instance types offered by the configuration, for a cloud the catalog does not hold;
    /// `None` (the default) when the catalog has the cloud's offerings.
    fn offerings(&self, body: &serde_json::Value) -> Result<Option<Vec<OfferingSpec>>, ConfigError> {
        let _ = body;
        Ok(None)
    }

    /// Egress prices the configuration sets for this cloud (`None`, the default: skyform's
    /// table of public list prices applies).
    fn egress(&self, body: &serde_json::Value) -> Result<Option<EgressPrices>, ConfigError> {
        let _ = body;
        Ok(None)
    }

    /// The state backends (`backend "NAME"` in the `skyform` block) this provider serves.
    fn backends(&self) -> &[&str] {
        &[]
    }

    /// Checks a `backend` block of one of [`Factory::backends`].
    fn check_backend(&self, kind: &str, body: &serde_json::Value) -> Result<(), ConfigError> {
        let _ = body;
        Err(ConfigError::block(format!("provider {} serves no backend \"{kind}\"", self.name())))
    }

    /// Opens the object store of a state backend.
    fn backend(&self, kind: &str, body: &serde_json::Value) -> Result<BackendStore, ProviderError> {
        let _ = body;
        Err(ProviderError::new(
            crate::ErrorKind::Unsupported,
            None,
            format!("provider {} serves no backend \"{kind}\"", self.name()),
        ))
    }
}
