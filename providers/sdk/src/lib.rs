//! # skyform-provider — the provider seam
//!
//! The types every cloud provider of skyform speaks, and the plugin protocol that carries
//! them between processes. No I/O happens in this crate outside [`plugin`].
//!
//! - [`Location`]: a `(cloud, region, zone)` triple, the unit that prices, egress and
//!   failover reason about.
//! - [`ErrorKind`] + [`Scope`]: what went wrong in a provider call and which part of the
//!   location space it blocks. Failover branches on the kind, never on a cloud's text.
//! - [`Provider`]: the compute and storage side of a cloud, one request and one response
//!   struct per verb (`read`, `allocate`, `run_task`, `task_status`, `transfer`, `release`),
//!   plus `info()` with its [`Capabilities`]. Calls block; the engine runs them on a blocking
//!   pool with a timeout.
//! - [`Market`]: the read-only side of a provider (spot price observations), used by
//!   `skyform tracker refresh`.
//! - [`Factory`] ([`factory`]): how skyform finds a provider by name — check a `provider`
//!   block, build the [`Provider`] and its [`Market`], offer instance types from the
//!   configuration (clouds without a catalog), and open the object store of a state backend
//!   ([`objects::Objects`]). skyform's registry holds one factory per provider crate.
//! - [`conformance`]: the kit every provider's tests run against a real instance of it.
//! - [`plugin`]: the plugin protocol — a provider as a separate program over stdin/stdout
//!   ([`plugin::serve`] for the plugin, [`plugin::PluginFactory`] for skyform). The only
//!   module that does I/O (it starts processes and speaks over pipes).
//!
//! Requests and the public enums are `#[non_exhaustive]`: a field or a variant can be added
//! without breaking providers built against an older version of this crate. Build requests
//! with their `new` constructors and set the optional fields afterwards. New capabilities
//! arrive as optional traits with a flag, not as more methods on existing traits.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A place where compute can be bought: cloud, region and zone.
///
/// Clouds without zones in their data (Azure) use the region name as the zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Location {
    pub cloud: String,
    pub region: String,
    pub zone: String,
}

impl Location {
    pub fn new(cloud: impl Into<String>, region: impl Into<String>, zone: impl Into<String>) -> Self {
        Location { cloud: cloud.into(), region: region.into(), zone: zone.into() }
    }

    /// True when `self` lies inside the part of the location space that `scope` names
    /// around `other` (same zone, same region or same cloud).
    pub fn within(&self, scope: Scope, other: &Location) -> bool {
        match scope {
            Scope::Zone => self == other,
            Scope::Region => self.cloud == other.cloud && self.region == other.region,
            Scope::Cloud => self.cloud == other.cloud,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.zone == self.region {
            write!(f, "{}/{}", self.cloud, self.region)
        } else if self.region == self.cloud {
            write!(f, "{}/{}", self.cloud, self.zone)
        } else {
            write!(f, "{}/{}/{}", self.cloud, self.region, self.zone)
        }
    }
}

/// How much of the location space an error blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    Zone,
    Region,
    Cloud,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Zone => "zone",
            Scope::Region => "region",
            Scope::Cloud => "cloud",
        })
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zone" => Ok(Scope::Zone),
            "region" => Ok(Scope::Region),
            "cloud" => Ok(Scope::Cloud),
            other => Err(format!("unknown scope `{other}` (expected zone, region or cloud)")),
        }
    }
}

/// The typed kind of a provider error. Failover and retries branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    CapacityUnavailable,
    QuotaExceeded,
    Preempted,
    Unauthorized,
    Throttled,
    Transient,
    Unsupported,
    Other,
}

impl ErrorKind {
    /// The scope this kind blocks by default (a provider may say otherwise per error).
    pub fn default_scope(self) -> Scope {
        match self {
            ErrorKind::CapacityUnavailable | ErrorKind::Preempted => Scope::Zone,
            ErrorKind::QuotaExceeded => Scope::Region,
            ErrorKind::Unauthorized => Scope::Cloud,
            _ => Scope::Zone,
        }
    }

    /// True for kinds after which the location should be avoided (failover), as opposed to
    /// kinds that are retried in place.
    pub fn blocks_location(self) -> bool {
        matches!(
            self,
            ErrorKind::CapacityUnavailable | ErrorKind::QuotaExceeded | ErrorKind::Preempted | ErrorKind::Unauthorized
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::CapacityUnavailable => "capacity_unavailable",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::Preempted => "preempted",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        })
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "capacity_unavailable" | "capacity" => ErrorKind::CapacityUnavailable,
            "quota_exceeded" | "quota" => ErrorKind::QuotaExceeded,
            "preempted" => ErrorKind::Preempted,
            "unauthorized" => ErrorKind::Unauthorized,
            "throttled" => ErrorKind::Throttled,
            "transient" => ErrorKind::Transient,
            "unsupported" => ErrorKind::Unsupported,
            "other" => ErrorKind::Other,
            other => return Err(format!("unknown error kind `{other}`")),
        })
    }
}

/// An error returned by a provider call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}{} ({scope}): {message}", location.as_ref().map(|l| format!(" in {l}")).unwrap_or_default())]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// The scope this error blocks.
    pub scope: Scope,
    /// Where the call was made, when it was about a place.
    pub location: Option<Box<Location>>,
    /// The cloud's own code (e.g. `InsufficientInstanceCapacity`), kept for display.
    pub code: Option<String>,
    pub message: String,
    /// How long the cloud asked the caller to wait before trying again (its `Retry-After`),
    /// in seconds; the engine waits at least this long before retrying a `Throttled` call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// One observed spot price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotPrice {
    pub location: Location,
    pub instance_type: String,
    /// USD per hour.
    pub price: f64,
    /// Seconds since the Unix epoch at which the price was observed.
    pub at: u64,
}

/// Request of [`Market::spot_prices`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SpotPricesRequest {
    /// Restrict to these instance types (empty: all the market knows).
    pub instance_types: Vec<String>,
    /// Restrict to these regions (empty: all).
    pub regions: Vec<String>,
    /// The time of the observation (injected: markets are deterministic given it).
    pub now: u64,
}

impl SpotPricesRequest {
    /// Every price the market knows, observed at `now`.
    pub fn at(now: u64) -> Self {
        SpotPricesRequest { now, ..Default::default() }
    }
}

/// Response of [`Market::spot_prices`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpotPricesResponse {
    pub prices: Vec<SpotPrice>,
}

/// The read-only market side of a provider.
pub trait Market {
    /// The cloud this market speaks for (`aws`, `gcp`, `azure`, `local`).
    fn cloud(&self) -> &str;
    /// Current spot prices.
    fn spot_prices(&self, req: &SpotPricesRequest) -> Result<SpotPricesResponse, ProviderError>;
}

pub mod conformance;
pub mod factory;
pub mod objects;
pub mod plugin;
pub mod rundir;
pub mod vm_process;

pub use factory::{BuildContext, ConfigError, EgressPrices, Factory, InstanceShape, OfferingSpec};

/// What a provider can do. Flags are added over time (non-exhaustive): build it with
/// [`Capabilities::new`] and set flags on the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Capabilities {
    pub spot: bool,
    pub transfer: bool,
    /// URI schemes its object store speaks (`file`, `local`, `s3`, ...).
    pub schemes: Vec<String>,
}

impl Capabilities {
    /// A provider that can transfer data and whose object store speaks `schemes`.
    pub fn new(spot: bool, schemes: &[&str]) -> Self {
        Capabilities { spot, transfer: true, schemes: schemes.iter().map(|s| s.to_string()).collect() }
    }
}

/// `Provider::info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub name: String,
    pub version: String,
    pub capabilities: Capabilities,
}

/// Request of [`Provider::allocate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct AllocateRequest {
    pub task: String,
    pub location: Location,
    pub instance_type: String,
    pub spot: bool,
    pub num_nodes: u32,
    /// `skyform:lineage`, `skyform:job`, `skyform:task`, `skyform:attempt`.
    pub owner_tags: std::collections::BTreeMap<String, String>,
    /// Repeating a request with the same token returns the same allocation.
    pub idempotency_token: String,
    /// The offering's accelerators as `NAME:COUNT` (`V100:8`), for clouds that attach them
    /// to a host (GCP's N1 types); types with built-in GPUs carry them here too.
    pub accelerator: Option<String>,
    /// Boot disk size the task asked for (GB), when it did.
    pub disk_gb: Option<u32>,
}

impl AllocateRequest {
    /// One on-demand node of `instance_type` at `location` for `task`, with no tags yet.
    pub fn new(
        task: impl Into<String>,
        location: Location,
        instance_type: impl Into<String>,
        idempotency_token: impl Into<String>,
    ) -> Self {
        AllocateRequest {
            task: task.into(),
            location,
            instance_type: instance_type.into(),
            spot: false,
            num_nodes: 1,
            owner_tags: Default::default(),
            idempotency_token: idempotency_token.into(),
            accelerator: None,
            disk_gb: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocateResponse {
    pub provider_id: String,
}

/// Request of [`Provider::run_task`]: run `setup` then `run` with bash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct RunTaskRequest {
    pub provider_id: String,
    pub task: String,
    pub setup: Option<String>,
    pub run: String,
    pub env: std::collections::BTreeMap<String, String>,
    /// Input names (their directories are filled by `transfer` before the run).
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub workdir: Option<String>,
    /// Where the task's checkpoint is kept (a URI in an object store the provider reaches):
    /// the provider restores it into the directory `$SKYFORM_CHECKPOINT` before the run
    /// and syncs that directory back every `checkpoint_every_secs` and when the run stops
    /// (ends, is preempted or released). None: no checkpoint.
    pub checkpoint: Option<String>,
    pub checkpoint_every_secs: u64,
}

impl RunTaskRequest {
    /// Runs `run` on the allocation `provider_id` for `task`; set the other fields after.
    pub fn new(provider_id: impl Into<String>, task: impl Into<String>, run: impl Into<String>) -> Self {
        RunTaskRequest { provider_id: provider_id.into(), task: task.into(), run: run.into(), ..Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTaskResponse {
    /// Where the task's log is.
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct TaskStatusRequest {
    pub provider_id: String,
}

impl TaskStatusRequest {
    pub fn new(provider_id: impl Into<String>) -> Self {
        TaskStatusRequest { provider_id: provider_id.into() }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
#[non_exhaustive]
pub enum RunState {
    Running,
    Succeeded,
    Failed { exit_code: Option<i32> },
    Preempted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatusResponse {
    pub state: RunState,
    pub log: String,
}

/// Request of [`Provider::transfer`]: copy a directory tree between URIs. The allocation's
/// own directories are `sandbox://PROVIDER_ID/inputs/NAME` and `.../outputs/NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct TransferRequest {
    pub from: String,
    pub to: String,
}

impl TransferRequest {
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        TransferRequest { from: from.into(), to: to.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferResponse {
    pub bytes: u64,
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct ReleaseRequest {
    pub provider_id: String,
}

impl ReleaseRequest {
    pub fn new(provider_id: impl Into<String>) -> Self {
        ReleaseRequest { provider_id: provider_id.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// False when there was nothing to release.
    pub released: bool,
}

/// Request of [`Provider::read`]: what exists that carries these tags (all of them; no tags:
/// everything skyform created that the provider can see).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct ReadRequest {
    pub owner_tags: std::collections::BTreeMap<String, String>,
}

impl ReadRequest {
    /// Everything carrying skyform's owner tags.
    pub fn all() -> Self {
        ReadRequest::default()
    }

    /// What carries every one of `owner_tags`.
    pub fn tagged(owner_tags: std::collections::BTreeMap<String, String>) -> Self {
        ReadRequest { owner_tags }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceInfo {
    pub provider_id: String,
    pub location: Location,
    pub instance_type: String,
    pub owner_tags: std::collections::BTreeMap<String, String>,
    pub idempotency_token: String,
    pub state: RunState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReadResponse {
    pub resources: Vec<ResourceInfo>,
}

/// The compute and storage side of a cloud. Calls block; the engine runs them on a
/// blocking pool with timeouts. Errors carry an [`ErrorKind`] and the scope they block.
pub trait Provider: Send + Sync {
    fn info(&self) -> ProviderInfo;
    fn read(&self, req: &ReadRequest) -> Result<ReadResponse, ProviderError>;
    fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError>;
    fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError>;
    fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError>;
    fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError>;
    fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError>;
    /// The URI prefix of the object store that keeps data produced at `location` (task
    /// outputs), e.g. `s3://bucket` for an AWS region; `None`: the engine's local store.
    fn object_store(&self, location: &Location) -> Option<String> {
        let _ = location;
        None
    }
}

impl ProviderError {
    /// An error of `kind` at `location`, blocking the kind's default scope.
    pub fn new(kind: ErrorKind, location: Option<&Location>, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            scope: kind.default_scope(),
            location: location.map(|l| Box::new(l.clone())),
            code: None,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The same error, saying the cloud asked to wait `secs` seconds before a retry.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_scopes() {
        let a = Location::new("aws", "us-east-1", "us-east-1a");
        let b = Location::new("aws", "us-east-1", "us-east-1b");
        let c = Location::new("aws", "us-west-2", "us-west-2a");
        assert!(a.within(Scope::Zone, &a));
        assert!(!b.within(Scope::Zone, &a));
        assert!(b.within(Scope::Region, &a));
        assert!(!c.within(Scope::Region, &a));
        assert!(c.within(Scope::Cloud, &a));
    }

    #[test]
    fn errors_read_as_a_sentence() {
        let loc = Location::new("gcp", "us-central1", "us-central1-a");
        let e = ProviderError::new(ErrorKind::CapacityUnavailable, Some(&loc), "ZONE_RESOURCE_POOL_EXHAUSTED: full");
        assert_eq!(
            e.to_string(),
            "capacity_unavailable in gcp/us-central1/us-central1-a (zone): ZONE_RESOURCE_POOL_EXHAUSTED: full"
        );
        let e = ProviderError::new(ErrorKind::Unauthorized, None, "no subscription");
        assert_eq!(e.to_string(), "unauthorized (cloud): no subscription");
    }

    #[test]
    fn retry_after_is_optional_on_the_wire() {
        let e = ProviderError::new(ErrorKind::Throttled, None, "slow down");
        let v = serde_json::to_value(&e).unwrap();
        assert!(v.get("retry_after_secs").is_none(), "{v}");
        // An error from a plugin built before the field existed still reads.
        assert_eq!(serde_json::from_value::<ProviderError>(v).unwrap(), e);
        let e = e.with_retry_after(7);
        let back: ProviderError = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back.retry_after_secs, Some(7));
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            ErrorKind::CapacityUnavailable,
            ErrorKind::QuotaExceeded,
            ErrorKind::Preempted,
            ErrorKind::Unauthorized,
            ErrorKind::Throttled,
            ErrorKind::Transient,
            ErrorKind::Unsupported,
            ErrorKind::Other,
        ] {
            assert_eq!(k.to_string().parse::<ErrorKind>().unwrap(), k);
        }
    }
}
