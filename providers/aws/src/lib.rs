//! # skyform-provider-aws — EC2 instances and S3 objects
//!
//! The AWS side of skyform's provider seam, through the AWS SDK for Rust (aws-config,
//! aws-sdk-ec2, aws-sdk-s3) on its own tokio runtime; the [`Provider`] calls block.
//!
//! - allocate = `RunInstances` in the chosen zone (spot through `InstanceMarketOptions`,
//!   `ClientToken` = the idempotency token, owner tags + `skyform:token` on the instance and
//!   its volumes, the image of the region and architecture, a user-data bootstrap; no SDK
//!   retries, so a capacity error fails over at once). Before the call, an instance that
//!   already carries the token is returned instead (idempotent even where `ClientToken` is
//!   not honoured). A type not offered in the zone (`DescribeInstanceTypeOfferings`) is
//!   `CapacityUnavailable` for that zone. A zone named by zone ID (`use1-az2`, as in
//!   SkyPilot's v6+ catalogs) is mapped to this account's zone name through
//!   `DescribeAvailabilityZones` first.
//! - run_task writes `task.sh` to the allocation's S3 run directory ([`bootstrap`]);
//!   task_status reads `status.json` there, else `DescribeInstances` (an instance gone or
//!   interrupted is `Preempted`); read finds instances by tags; release =
//!   `TerminateInstances`, then waits for `terminated`, and removes the run's data (its
//!   log and status stay for `skyform logs`).
//! - transfer moves trees between `s3://`, `file://` and the allocation's
//!   `sandbox://REGION/INSTANCE/{inputs,outputs}/NAME`, returning bytes and a content hash
//!   ([`storage`]: multipart uploads, server-side copies across regions; a user's bucket
//!   is addressed in its own region, found once with `HeadBucket`).
//! - [`market::AwsMarket`]: `DescribeSpotPriceHistory` per region for the tracker.
//! - [`backend`]: the `s3` state backend's object store ([`backend::S3Objects`], conditional
//!   puts through [`storage::put_conditional`]).
//! - [`AwsFactory`]: the provider in skyform's registry (checks `provider "aws"` and
//!   `backend "s3"` blocks, builds the provider, its market and the backend's store).
//!
//! Provider ids are `REGION/INSTANCE_ID`. Errors map by AWS code ([`errors::classify`]).
//! The `testing` feature adds the emulator harness used by skyform's tests (moto server,
//! an instance agent that plays the VM, a fault-injecting proxy).

pub mod backend;
pub mod bootstrap;
pub mod config;
pub mod errors;
pub mod market;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::AwsConfig;
pub use factory::AwsFactory;
mod factory;
// The SDK crates, for tests and tools that speak to the same endpoints.
pub use aws_sdk_ec2;
pub use aws_sdk_s3;

use aws_sdk_ec2::types as ec2t;
use bootstrap::RunDir;
use errors::from_sdk;
use skyform_provider::*;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The cloud name.
pub const CLOUD: &str = "aws";

/// The tag that carries the idempotency token.
pub const TOKEN_TAG: &str = "skyform:token";

/// SDK clients of one region.
#[derive(Clone)]
pub struct RegionClients {
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
}

/// What the provider knows about an allocation it made or found.
#[derive(Debug, Clone)]
struct Known {
    region: String,
    instance: String,
    token: String,
}

/// The AWS provider.
pub struct AwsProvider {
    cfg: AwsConfig,
    /// Taken on drop (shut down in the background: the provider may be dropped inside
    /// the engine's async context).
    rt: Option<tokio::runtime::Runtime>,
    clients: Mutex<HashMap<String, RegionClients>>,
    known: Mutex<HashMap<String, Known>>,
    /// (zone, type) → offered.
    offered: Mutex<HashMap<(String, String), bool>>,
    /// region → (zone ID → this account's zone name), from `DescribeAvailabilityZones`.
    zone_names: Mutex<HashMap<String, HashMap<String, String>>>,
    arch: Mutex<HashMap<String, String>>,
    buckets: Mutex<std::collections::HashSet<String>>,
    /// bucket → region, for buckets that are not skyform's own.
    bucket_regions: Mutex<HashMap<String, String>>,
}

pub(crate) fn other(msg: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, msg)
}

impl AwsProvider {
    /// A provider with its own runtime. No network call is made until a verb is called.
    pub fn new(cfg: AwsConfig) -> Result<AwsProvider, String> {
        cfg.check()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("skyform-aws")
            .enable_all()
            .build()
            .map_err(|e| format!("aws: runtime: {e}"))?;
        Ok(AwsProvider {
            cfg,
            rt: Some(rt),
            clients: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            offered: Mutex::new(HashMap::new()),
            zone_names: Mutex::new(HashMap::new()),
            arch: Mutex::new(HashMap::new()),
            buckets: Mutex::new(Default::default()),
            bucket_regions: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &AwsConfig {
        &self.cfg
    }

    /// Runs a future on the provider's runtime and waits for it; callable from any thread,
    /// including tokio's blocking pool.
    pub fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.as_ref().expect("runtime").spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the provider's runtime is alive")
    }

    /// The clients of a region (built once).
    pub fn clients(&self, region: &str) -> RegionClients {
        if let Some(c) = self.clients.lock().expect("lock").get(region) {
            return c.clone();
        }
        let cfg = self.cfg.clone();
        let r = region.to_string();
        let c = self.block(async move { build_clients(&cfg, &r).await });
        self.clients.lock().expect("lock").insert(region.to_string(), c.clone());
        c
    }

    /// The region whose clients serve a bucket that is not one of skyform's run buckets.
    fn default_region(&self) -> String {
        self.cfg.regions.first().cloned().unwrap_or_else(|| "us-east-1".into())
    }

    fn parse_id(&self, id: &str) -> Result<(String, String), ProviderError> {
        id.split_once('/')
            .map(|(r, i)| (r.to_string(), i.to_string()))
            .ok_or_else(|| other(format!("`{id}` is not an aws provider id (REGION/INSTANCE)")))
    }

    /// Finds the allocation behind a provider id (its token comes from the instance tags).
    fn known(&self, id: &str) -> Result<Known, ProviderError> {
        if let Some(k) = self.known.lock().expect("lock").get(id) {
            return Ok(k.clone());
        }
        let (region, instance) = self.parse_id(id)?;
        let ec2 = self.clients(&region).ec2;
        let inst = instance.clone();
        let found = self.block(async move {
            ec2.describe_instances().instance_ids(inst).send().await.map_err(|e| from_sdk("DescribeInstances", None, e))
        });
        let r = match found {
            Ok(r) => r,
            Err(e) if e.code.as_deref() == Some("InvalidInstanceID.NotFound") => {
                return Err(other(format!("no instance {id}")));
            }
            Err(e) => return Err(e),
        };
        let token = r
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.tags())
            .find(|t| t.key() == Some(TOKEN_TAG))
            .and_then(|t| t.value())
            .map(str::to_string)
            .ok_or_else(|| other(format!("instance {id} carries no {TOKEN_TAG} tag: not skyform's")))?;
        let k = Known { region, instance, token };
        self.known.lock().expect("lock").insert(id.to_string(), k.clone());
        Ok(k)
    }

    fn run_dir(&self, k: &Known) -> RunDir {
        RunDir::new(&self.cfg.bucket_for(&k.region), &k.token)
    }

    /// The region of a bucket that is not skyform's (asked once, then cached); the first
    /// configured region when S3 does not say.
    pub fn bucket_region(&self, bucket: &str) -> String {
        if let Some(r) = self.bucket_regions.lock().expect("lock").get(bucket) {
            return r.clone();
        }
        let s3 = self.clients(&self.default_region()).s3;
        let b = bucket.to_string();
        let found = self.block(async move { storage::bucket_region(&s3, &b).await });
        let r = found.unwrap_or_else(|| self.default_region());
        self.bucket_regions.lock().expect("lock").insert(bucket.to_string(), r.clone());
        r
    }

    fn ensure_bucket(&self, region: &str) -> Result<String, ProviderError> {
        let bucket = self.cfg.bucket_for(region);
        if self.buckets.lock().expect("lock").contains(&bucket) {
            return Ok(bucket);
        }
        let s3 = self.clients(region).s3;
        let (b, r) = (bucket.clone(), region.to_string());
        self.block(async move { storage::ensure_bucket(&s3, &b, &r).await })?;
        self.buckets.lock().expect("lock").insert(bucket.clone());
        Ok(bucket)
    }

    /// The account's name of `zone` in `region`. SkyPilot's catalogs (v6+) name AWS zones
    /// by zone ID (`use1-az2`), the same physical zone in every account; `RunInstances`
    /// wants this account's zone name (`us-east-1c`), which `DescribeAvailabilityZones`
    /// maps to (once per region, cached). A zone that starts with its region's name is a
    /// zone name already and is returned as it is. An ID the region does not have is a
    /// capacity error for that zone (failover moves on).
    fn zone_name(&self, region: &str, zone: &str) -> Result<String, ProviderError> {
        if zone.starts_with(region) {
            return Ok(zone.to_string());
        }
        if let Some(n) = self.zone_names.lock().expect("lock").get(region).and_then(|m| m.get(zone)) {
            return Ok(n.clone());
        }
        let ec2 = self.clients(region).ec2;
        let loc = Location::new(CLOUD, region, zone);
        let l2 = loc.clone();
        let r = self.block(async move {
            ec2.describe_availability_zones()
                .send()
                .await
                .map_err(|e| from_sdk("DescribeAvailabilityZones", Some(&l2), e))
        })?;
        let map: HashMap<String, String> = r
            .availability_zones()
            .iter()
            .filter_map(|z| Some((z.zone_id()?.to_string(), z.zone_name()?.to_string())))
            .collect();
        let name = map.get(zone).cloned();
        self.zone_names.lock().expect("lock").insert(region.to_string(), map);
        name.ok_or_else(|| {
            let mut e = ProviderError::new(
                ErrorKind::CapacityUnavailable,
                Some(&loc),
                format!("zone ID {zone} is not one of this account's zones in {region}"),
            );
            e.code = Some("UnknownZoneId".into());
            e
        })
    }

    /// Whether the zone offers the type (cached; an error counts as offered).
    fn offered(&self, zone: &str, region: &str, itype: &str) -> bool {
        let key = (zone.to_string(), itype.to_string());
        if let Some(v) = self.offered.lock().expect("lock").get(&key) {
            return *v;
        }
        let ec2 = self.clients(region).ec2;
        let (z, t) = key.clone();
        let r = self.block(async move {
            ec2.describe_instance_type_offerings()
                .location_type(ec2t::LocationType::AvailabilityZone)
                .filters(ec2t::Filter::builder().name("location").values(z).build())
                .filters(ec2t::Filter::builder().name("instance-type").values(t).build())
                .send()
                .await
        });
        match r {
            Ok(o) => {
                let v = !o.instance_type_offerings().is_empty();
                self.offered.lock().expect("lock").insert(key, v);
                v
            }
            Err(_) => true,
        }
    }

    /// `x86_64` or `arm64` (from `DescribeInstanceTypes`; x86_64 when unknown).
    fn arch(&self, region: &str, itype: &str) -> String {
        if let Some(a) = self.arch.lock().expect("lock").get(itype) {
            return a.clone();
        }
        let ec2 = self.clients(region).ec2;
        let t = itype.to_string();
        let a = self
            .block(async move {
                ec2.describe_instance_types().instance_types(ec2t::InstanceType::from(t.as_str())).send().await
            })
            .ok()
            .and_then(|r| {
                r.instance_types().first().and_then(|i| i.processor_info()).map(|p| {
                    let archs = p.supported_architectures();
                    if archs.contains(&ec2t::ArchitectureType::X8664) || archs.is_empty() {
                        "x86_64".to_string()
                    } else {
                        "arm64".to_string()
                    }
                })
            })
            .unwrap_or_else(|| "x86_64".into());
        self.arch.lock().expect("lock").insert(itype.to_string(), a.clone());
        a
    }

    /// Instances carrying all these tags, in every configured region (not terminated).
    fn find(&self, tags: &BTreeMap<String, String>, regions: &[String]) -> Result<Vec<ResourceInfo>, ProviderError> {
        let mut out = Vec::new();
        for region in regions {
            let ec2 = self.clients(region).ec2;
            let tags = tags.clone();
            let r = region.clone();
            let found = self.block(async move {
                let mut res = Vec::new();
                let mut next: Option<String> = None;
                loop {
                    let mut q = ec2.describe_instances().set_next_token(next.take()).filters(
                        ec2t::Filter::builder()
                            .name("instance-state-name")
                            .set_values(Some(
                                ["pending", "running", "stopping", "stopped", "shutting-down"]
                                    .iter()
                                    .map(|s| s.to_string())
                                    .collect(),
                            ))
                            .build(),
                    );
                    if tags.is_empty() {
                        q = q.filters(ec2t::Filter::builder().name("tag-key").values("skyform:lineage").build());
                    }
                    for (k, v) in &tags {
                        q = q.filters(ec2t::Filter::builder().name(format!("tag:{k}")).values(v).build());
                    }
                    let page = q.send().await.map_err(|e| from_sdk("DescribeInstances", None, e))?;
                    for i in page.reservations().iter().flat_map(|r| r.instances()) {
                        res.push(i.clone());
                    }
                    match page.next_token() {
                        Some(t) if !t.is_empty() => next = Some(t.to_string()),
                        _ => break,
                    }
                }
                Ok::<_, ProviderError>(res)
            })?;
            for i in found {
                let tags: BTreeMap<String, String> =
                    i.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
                let id = format!("{r}/{}", i.instance_id().unwrap_or_default());
                let zone = i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_string();
                let token = tags.get(TOKEN_TAG).cloned().unwrap_or_default();
                if !token.is_empty() {
                    self.known.lock().expect("lock").insert(
                        id.clone(),
                        Known {
                            region: r.clone(),
                            instance: i.instance_id().unwrap_or_default().into(),
                            token: token.clone(),
                        },
                    );
                }
                let state = match i.state().and_then(|s| s.name()) {
                    Some(ec2t::InstanceStateName::Pending) | Some(ec2t::InstanceStateName::Running) => {
                        RunState::Running
                    }
                    _ => RunState::Preempted,
                };
                out.push(ResourceInfo {
                    provider_id: id,
                    location: Location::new(CLOUD, r.as_str(), zone),
                    instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    owner_tags: tags.into_iter().filter(|(k, _)| k != TOKEN_TAG && k != "Name").collect(),
                    idempotency_token: token,
                    state,
                });
            }
        }
        Ok(out)
    }

    /// The regions `read` looks in: the configured ones plus those of known allocations.
    fn regions(&self) -> Vec<String> {
        let mut r: Vec<String> = self.cfg.regions.clone();
        for k in self.known.lock().expect("lock").values() {
            if !r.contains(&k.region) {
                r.push(k.region.clone());
            }
        }
        if r.is_empty() {
            r.push(self.default_region());
        }
        r
    }

    /// A URI as (clients, bucket, key) for S3, or a local path, or a sandbox directory.
    fn endpoint_of(&self, uri: &str) -> Result<End, ProviderError> {
        if let Some(rest) = uri.strip_prefix("sandbox://") {
            // REGION/INSTANCE/{inputs,outputs}/NAME
            let mut parts = rest.splitn(3, '/');
            let (region, instance, tail) = (parts.next(), parts.next(), parts.next());
            let (Some(region), Some(instance), Some(tail)) = (region, instance, tail) else {
                return Err(other(format!("`{uri}` is not a sandbox URI of this provider")));
            };
            let k = self.known(&format!("{region}/{instance}"))?;
            let rd = self.run_dir(&k);
            return Ok(End::S3 {
                region: k.region,
                bucket: rd.bucket.clone(),
                key: rd.key(tail.trim_end_matches('/')),
            });
        }
        if uri.starts_with("s3://") {
            let (bucket, key) = storage::parse_s3(uri)?;
            let own = self.cfg.regions.iter().find(|r| self.cfg.bucket_for(r) == bucket).cloned();
            let region = match own {
                Some(r) => r,
                None => self.bucket_region(&bucket),
            };
            return Ok(End::S3 { region, bucket, key });
        }
        if let Some(p) = uri.strip_prefix("file://") {
            return Ok(End::File(PathBuf::from(p)));
        }
        Err(ProviderError::new(ErrorKind::Unsupported, None, format!("aws cannot reach `{uri}`")))
    }
}

impl Drop for AwsProvider {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

enum End {
    S3 { region: String, bucket: String, key: String },
    File(PathBuf),
}

/// The SDK clients of a region: the standard chain (or `profile`), the configured endpoint
/// (or `AWS_ENDPOINT_URL`), path-style S3 addressing with an endpoint.
pub async fn build_clients(cfg: &AwsConfig, region: &str) -> RegionClients {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(region.to_string()));
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &cfg.endpoint {
        loader = loader.endpoint_url(e);
    }
    let shared = loader.load().await;
    // Uploads carry CRC checksums that S3 verifies. Downloads are not checked against a
    // stored full-object checksum: for multipart objects it is a checksum of checksums,
    // which emulators report as if it were the object's.
    let s3conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(cfg.effective_endpoint().is_some())
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    RegionClients { ec2: aws_sdk_ec2::Client::new(&shared), s3: aws_sdk_s3::Client::from_conf(s3conf) }
}

impl Provider for AwsProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: CLOUD.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities::new(true, &["s3", "file"]),
        }
    }

    fn object_store(&self, location: &Location) -> Option<String> {
        Some(format!("s3://{}", self.cfg.bucket_for(&location.region)))
    }

    fn read(&self, req: &ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse { resources: self.find(&req.owner_tags, &self.regions())? })
    }

    fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
        let loc = &req.location;
        if req.num_nodes > 1 {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                Some(loc),
                "multi-node tasks are not supported on aws yet (num_nodes > 1)",
            ));
        }
        let region = loc.region.clone();
        // Idempotent by our own tag: an instance with this token is the allocation.
        let tok: BTreeMap<String, String> = [(TOKEN_TAG.to_string(), req.idempotency_token.clone())].into();
        if let Some(r) = self.find(&tok, std::slice::from_ref(&region))?.into_iter().next() {
            return Ok(AllocateResponse { provider_id: r.provider_id });
        }
        // A zone ID of the catalog (`use1-az2`) becomes this account's zone name.
        let zone = self.zone_name(&region, &loc.zone)?;
        if !self.offered(&zone, &region, &req.instance_type) {
            let mut e = ProviderError::new(
                ErrorKind::CapacityUnavailable,
                Some(loc),
                format!("{} is not offered in {zone}", req.instance_type),
            );
            e.code = Some("Unsupported".into());
            return Err(e);
        }
        let bucket = self.ensure_bucket(&region)?;
        let rd = RunDir::new(&bucket, &req.idempotency_token);
        let ud = bootstrap::user_data(
            &rd,
            &req.idempotency_token,
            &region,
            self.cfg.effective_endpoint().as_deref(),
            self.cfg.poll_seconds,
            self.cfg.idle_shutdown_minutes,
        );
        let image = self.cfg.image_for(&region, &self.arch(&region, &req.instance_type));
        let ec2 = self.clients(&region).ec2;
        let mut tags: Vec<ec2t::Tag> =
            req.owner_tags.iter().map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build()).collect();
        tags.push(ec2t::Tag::builder().key(TOKEN_TAG).value(&req.idempotency_token).build());
        tags.push(ec2t::Tag::builder().key("Name").value(format!("skyform {}", req.task)).build());
        let spec = |rt: ec2t::ResourceType| {
            ec2t::TagSpecification::builder().resource_type(rt).set_tags(Some(tags.clone())).build()
        };
        let mut call = ec2
            .run_instances()
            .image_id(image)
            .instance_type(ec2t::InstanceType::from(req.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .placement(ec2t::Placement::builder().availability_zone(&zone).build())
            .client_token(&req.idempotency_token)
            .tag_specifications(spec(ec2t::ResourceType::Instance))
            .tag_specifications(spec(ec2t::ResourceType::Volume))
            .user_data(base64_encode(ud.as_bytes()))
            .instance_initiated_shutdown_behavior(ec2t::ShutdownBehavior::Terminate);
        if req.spot {
            call = call.instance_market_options(
                ec2t::InstanceMarketOptionsRequest::builder()
                    .market_type(ec2t::MarketType::Spot)
                    .spot_options(
                        ec2t::SpotMarketOptions::builder()
                            .spot_instance_type(ec2t::SpotInstanceType::OneTime)
                            .instance_interruption_behavior(ec2t::InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(p) = &self.cfg.instance_profile {
            call = call.iam_instance_profile(ec2t::IamInstanceProfileSpecification::builder().name(p).build());
        }
        let loc2 = loc.clone();
        let r = self.block(async move {
            call.customize()
                .config_override(
                    aws_sdk_ec2::config::Builder::default()
                        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(1)),
                )
                .send()
                .await
                .map_err(|e| from_sdk("RunInstances", Some(&loc2), e))
        })?;
        let instance = r
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| other("RunInstances returned no instance"))?
            .to_string();
        let id = format!("{region}/{instance}");
        self.known
            .lock()
            .expect("lock")
            .insert(id.clone(), Known { region, instance, token: req.idempotency_token.clone() });
        Ok(AllocateResponse { provider_id: id })
    }

    fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
        let k = self.known(&req.provider_id)?;
        let rd = self.run_dir(&k);
        let script = skyform_provider::rundir::task_script(req, &bootstrap::S3Commands);
        let s3 = self.clients(&k.region).s3;
        let (b, key, status) = (rd.bucket.clone(), rd.key("task.sh"), rd.key("status.json"));
        self.block(async move {
            // A rerun on the same allocation starts from a clean slate.
            let _ = storage::delete(&s3, &b, &status).await;
            storage::put(&s3, &b, &key, script.into_bytes()).await
        })?;
        Ok(RunTaskResponse { log: format!("{}/log.txt", rd.uri()) })
    }

    fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
        let k = self.known(&req.provider_id)?;
        let rd = self.run_dir(&k);
        let log = format!("{}/log.txt", rd.uri());
        let c = self.clients(&k.region);
        let (b, key, inst) = (rd.bucket.clone(), rd.key("status.json"), k.instance.clone());
        let (status, inst_state) = self.block(async move {
            let status = storage::get(&c.s3, &b, &key).await?;
            if status.is_some() {
                return Ok::<_, ProviderError>((status, None));
            }
            let d = c
                .ec2
                .describe_instances()
                .instance_ids(inst)
                .send()
                .await
                .map_err(|e| from_sdk("DescribeInstances", None, e))?;
            let i = d.reservations().iter().flat_map(|r| r.instances()).next().cloned();
            Ok((None, Some(i)))
        })?;
        if let Some((data, _)) = status {
            let v: serde_json::Value =
                serde_json::from_slice(&data).map_err(|e| other(format!("{}: bad status.json: {e}", rd.uri())))?;
            let code = v.get("exit_code").and_then(|c| c.as_i64()).map(|c| c as i32);
            let state = if code == Some(0) { RunState::Succeeded } else { RunState::Failed { exit_code: code } };
            return Ok(TaskStatusResponse { state, log });
        }
        let state = match inst_state.flatten() {
            None => RunState::Preempted,
            Some(i) => {
                let spot_gone = i.state_reason().and_then(|r| r.code()).is_some_and(|c| c.starts_with("Server.Spot"));
                match i.state().and_then(|s| s.name()) {
                    Some(ec2t::InstanceStateName::Pending) | Some(ec2t::InstanceStateName::Running) if !spot_gone => {
                        RunState::Running
                    }
                    _ => RunState::Preempted,
                }
            }
        };
        Ok(TaskStatusResponse { state, log })
    }

    fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
        let from = self.endpoint_of(&req.from)?;
        let to = self.endpoint_of(&req.to)?;
        let (bytes, checksum) = match (from, to) {
            (End::File(src), End::S3 { region, bucket, key }) => {
                let s3 = self.clients(&region).s3;
                let (b, k) = (bucket, key);
                let r = self.block(async move {
                    storage::delete_tree(&s3, &b, &k).await?;
                    storage::upload_tree(&s3, &src, &b, &k).await
                })?;
                (r.0, Some(r.1))
            }
            (End::S3 { region, bucket, key }, End::File(dst)) => {
                let s3 = self.clients(&region).s3;
                if dst.is_dir() {
                    let _ = std::fs::remove_dir_all(&dst);
                }
                let r = self.block(async move { storage::download_tree(&s3, &bucket, &key, &dst).await })?;
                (r.0, Some(r.1))
            }
            (End::S3 { region: _, bucket: b1, key: k1 }, End::S3 { region: r2, bucket: b2, key: k2 }) => {
                // Server-side copy, issued in the destination's region.
                let s3 = self.clients(&r2).s3;
                self.block(async move { storage::copy_tree(&s3, (&b1, &k1), (&b2, &k2)).await })?
            }
            (End::File(_), End::File(_)) => {
                return Err(ProviderError::new(
                    ErrorKind::Unsupported,
                    None,
                    "aws does not copy between local paths (the local provider does)",
                ))
            }
        };
        Ok(TransferResponse { bytes, checksum })
    }

    fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
        let (region, instance) = self.parse_id(&req.provider_id)?;
        let ec2 = self.clients(&region).ec2;
        let wait = Duration::from_secs(self.cfg.terminate_wait_seconds as u64);
        let inst = instance.clone();
        let released = self.block(async move {
            let d = match ec2.describe_instances().instance_ids(&inst).send().await {
                Ok(d) => d,
                Err(e) => {
                    let pe = from_sdk("DescribeInstances", None, e);
                    if pe.code.as_deref() == Some("InvalidInstanceID.NotFound") {
                        return Ok(false);
                    }
                    return Err(pe);
                }
            };
            let state =
                d.reservations().iter().flat_map(|r| r.instances()).next().and_then(|i| i.state()?.name().cloned());
            if matches!(state, None | Some(ec2t::InstanceStateName::Terminated)) {
                return Ok(false);
            }
            ec2.terminate_instances()
                .instance_ids(&inst)
                .send()
                .await
                .map_err(|e| from_sdk("TerminateInstances", None, e))?;
            let deadline = tokio::time::Instant::now() + wait;
            let mut delay = Duration::from_millis(100);
            loop {
                let d = ec2
                    .describe_instances()
                    .instance_ids(&inst)
                    .send()
                    .await
                    .map_err(|e| from_sdk("DescribeInstances", None, e))?;
                let s =
                    d.reservations().iter().flat_map(|r| r.instances()).next().and_then(|i| i.state()?.name().cloned());
                if matches!(s, None | Some(ec2t::InstanceStateName::Terminated)) {
                    return Ok(true);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        None,
                        format!("{inst} is still {s:?} after {wait:?}; terminate was requested"),
                    ));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        })?;
        if released {
            // The run's data goes with the allocation (outputs were copied out); its log
            // and status stay for `skyform logs`.
            if let Ok(k) = self.known(&req.provider_id) {
                let rd = self.run_dir(&k);
                let s3 = self.clients(&k.region).s3;
                let _ = self.block(async move {
                    for sub in ["inputs", "outputs"] {
                        storage::delete_tree(&s3, &rd.bucket, &rd.key(sub)).await?;
                    }
                    storage::delete(&s3, &rd.bucket, &rd.key("task.sh")).await
                });
            }
        }
        Ok(ReleaseResponse { released })
    }
}

/// Standard base64 (user data must be encoded).
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(all(test, feature = "testing"))]
mod emulator_tests;
