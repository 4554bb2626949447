//! # skyform-provider-gcp — Compute Engine instances and Cloud Storage objects
//!
//! The GCP side of skyform's provider seam, through the googleapis Rust clients
//! (`google-cloud-compute-v1` with only its `instances` resource, `google-cloud-storage`) on
//! a tokio runtime of its own; the [`Provider`] calls block.
//!
//! - allocate = `instances.insert` in the planned zone with the planned machine type
//!   ([`instance`]: GPUs attached to N1 hosts, built into A2/A3/G2 types; spot as
//!   `provisioningModel = SPOT` + `instanceTerminationAction = DELETE`; labels and metadata
//!   from the owner tags and token; a startup-script, [`bootstrap`]). The instance is named
//!   after the token ([`naming::instance_name`]): an instance of that name carrying the token
//!   is adopted instead of launched again. The zone operation is waited for and its `error`
//!   checked ([`errors::from_operation`]: the client's poller reports a failed operation as
//!   done).
//! - run_task writes `task.sh` to the allocation's run directory in the region's bucket;
//!   task_status reads `status.json` there, else `instances.get` (an instance gone, or
//!   stopping/terminated, is `Preempted`); read lists instances by label filter
//!   (`aggregatedList`, every zone of the configured regions) and returns the exact owner
//!   tags and token kept in their metadata; release = `instances.delete`, waits for its
//!   operation, then removes the run's data (its log and status stay for `skyform logs`).
//! - transfer moves trees between `gs://`, `file://` and the allocation's
//!   `sandbox://ZONE/NAME/{inputs,outputs}/NAME` with bytes and a content hash
//!   ([`storage`]: CRC32C-checked and resumable uploads, streamed downloads, server-side
//!   rewrites across buckets and regions).
//! - [`backend`]: the `gcs` state backend's object store (generation-conditional writes).
//! - [`GcpFactory`]: the provider in skyform's registry. GCP spot prices are not in the
//!   Compute API: the tracker takes them from the catalog.
//!
//! Provider ids are `ZONE/INSTANCE_NAME`. Errors map by GCP code ([`errors::classify`]). The
//! `testing` feature adds the harness of skyform's tests: fake-gcs-server, a loopback fake of
//! the Compute Engine REST API, and an agent that plays the VMs.

pub mod auth;
pub mod backend;
pub mod blocking;
pub mod bootstrap;
pub mod config;
pub mod errors;
pub mod instance;
pub mod naming;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

mod factory;
pub use config::GcpConfig;
pub use factory::GcpFactory;
// The client crates, for tests and tools that speak to the same endpoints.
pub use google_cloud_compute_v1;
pub use google_cloud_storage;

use blocking::Blocking;
use bootstrap::RunDir;
use errors::{chain, from_gax, from_operation};
use google_cloud_compute_v1::client::Instances;
use google_cloud_compute_v1::model;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use naming::{region_of, short};
use skyform_provider::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use storage::Gcs;

/// The cloud name.
pub const CLOUD: &str = "gcp";

/// What the provider knows about an allocation it made or found.
#[derive(Debug, Clone)]
struct Known {
    zone: String,
    name: String,
    token: String,
}

/// The GCP provider.
pub struct GcpProvider {
    cfg: GcpConfig,
    project: String,
    compute: Instances,
    gcs: Gcs,
    known: Mutex<HashMap<String, Known>>,
    buckets: Mutex<HashSet<String>>,
    /// Last: the clients above are dropped before their runtime.
    rt: Blocking,
}

pub(crate) fn other(msg: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, msg)
}

/// The Compute Engine client of a configuration: no retries beyond three attempts of
/// idempotent calls within 20 s (the engine retries and fails over itself).
pub async fn compute_client(
    endpoint: Option<&str>,
    creds: google_cloud_auth::credentials::Credentials,
    request_timeout: Duration,
) -> Result<Instances, ProviderError> {
    let mut b = Instances::builder()
        .with_credentials(creds)
        .with_retry_policy(Aip194Strict.with_attempt_limit(3).with_time_limit(Duration::from_secs(20)))
        .with_attempt_timeout(request_timeout);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e.trim_end_matches('/'));
    }
    b.build().await.map_err(|e| other(format!("compute client: {}", chain(&e))))
}

async fn get_instance(
    c: &Instances,
    project: &str,
    zone: &str,
    name: &str,
) -> Result<Option<model::Instance>, ProviderError> {
    match c.get().set_project(project).set_zone(zone).set_instance(name).send().await {
        Ok(i) => Ok(Some(i)),
        Err(e) if e.http_status_code() == Some(404) => Ok(None),
        Err(e) => Err(from_gax("instances.get", None, &e)),
    }
}

/// Polls a zone operation until it is DONE (the caller checks its `error`).
async fn wait_operation(
    c: &Instances,
    project: &str,
    zone: &str,
    mut op: model::Operation,
    wait: Duration,
) -> Result<model::Operation, ProviderError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(100);
    loop {
        if op.status == Some(model::operation::Status::Done) {
            return Ok(op);
        }
        let name = op.name.clone().unwrap_or_default();
        if tokio::time::Instant::now() >= deadline {
            return Err(ProviderError::new(
                ErrorKind::Transient,
                None,
                format!("operation {name} in {zone} is still running after {wait:?}"),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        op = c
            .get_operation()
            .set_project(project)
            .set_zone(zone)
            .set_operation(name)
            .send()
            .await
            .map_err(|e| from_gax("zoneOperations.get", None, &e))?;
    }
}

/// Whether an instance in this status is (about to be) running.
fn alive(i: &model::Instance) -> bool {
    use model::instance::Status as S;
    matches!(i.status, Some(S::Provisioning | S::Staging | S::Running | S::Pending | S::Repairing) | None)
}

impl GcpProvider {
    /// A provider with its own runtime and clients: credentials and the project are resolved
    /// here (`job_dir` anchors a relative credentials path). No network call is made until a
    /// verb is called.
    pub fn new(cfg: GcpConfig, job_dir: &Path) -> Result<GcpProvider, ProviderError> {
        cfg.check().map_err(|e| other(e.message))?;
        let (creds, key_project) = auth::credentials(cfg.credentials.as_deref(), job_dir)?;
        let project = auth::project(cfg.project.as_deref(), key_project)?;
        let rt = Blocking::new("skyform-gcp")?;
        let timeout = Duration::from_secs(cfg.request_timeout_seconds as u64);
        let (ep, sep, p) = (cfg.endpoint.clone(), cfg.storage_endpoint.clone(), project.clone());
        let (compute, gcs) = rt.block(async move {
            let compute = compute_client(ep.as_deref(), creds.clone(), timeout).await?;
            let gcs = Gcs::new(sep.as_deref(), creds, Some(p), timeout).await?;
            Ok::<_, ProviderError>((compute, gcs))
        })?;
        Ok(GcpProvider {
            cfg,
            project,
            compute,
            gcs,
            known: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashSet::new()),
            rt,
        })
    }

    pub fn config(&self) -> &GcpConfig {
        &self.cfg
    }

    /// The project instances and buckets belong to.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The Cloud Storage client.
    pub fn gcs(&self) -> &Gcs {
        &self.gcs
    }

    /// The Compute Engine client.
    pub fn compute(&self) -> &Instances {
        &self.compute
    }

    /// Runs a future on the provider's runtime and waits for it; callable from any thread.
    pub fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        self.rt.block(f)
    }

    /// The data bucket of a region.
    pub fn bucket_for(&self, region: &str) -> String {
        self.cfg.bucket_for(&self.project, region)
    }

    fn wait(&self) -> Duration {
        Duration::from_secs(self.cfg.operation_wait_seconds as u64)
    }

    fn parse_id(&self, id: &str) -> Result<(String, String), ProviderError> {
        id.split_once('/')
            .filter(|(z, n)| !z.is_empty() && !n.is_empty() && !n.contains('/'))
            .map(|(z, n)| (z.to_string(), n.to_string()))
            .ok_or_else(|| other(format!("`{id}` is not a gcp provider id (ZONE/INSTANCE)")))
    }

    fn get(&self, zone: &str, name: &str) -> Result<Option<model::Instance>, ProviderError> {
        let (c, p, z, n) = (self.compute.clone(), self.project.clone(), zone.to_string(), name.to_string());
        self.block(async move { get_instance(&c, &p, &z, &n).await })
    }

    fn remember(&self, id: &str, zone: &str, name: &str, token: &str) {
        self.known
            .lock()
            .expect("lock")
            .insert(id.to_string(), Known { zone: zone.to_string(), name: name.to_string(), token: token.to_string() });
    }

    /// Finds the allocation behind a provider id: its token comes from the instance's
    /// metadata, or from its name once the instance is gone.
    fn known(&self, id: &str) -> Result<Known, ProviderError> {
        if let Some(k) = self.known.lock().expect("lock").get(id) {
            return Ok(k.clone());
        }
        let (zone, name) = self.parse_id(id)?;
        let token = match self.get(&zone, &name)? {
            Some(i) => instance::metadata(&i, naming::TOKEN_KEY)
                .map(str::to_string)
                .or_else(|| naming::token_from_name(&name))
                .ok_or_else(|| {
                    other(format!("instance {id} carries no {} metadata: not skyform's", naming::TOKEN_KEY))
                })?,
            None => naming::token_from_name(&name).ok_or_else(|| other(format!("no instance {id}")))?,
        };
        self.remember(id, &zone, &name, &token);
        Ok(Known { zone, name, token })
    }

    fn run_dir(&self, k: &Known) -> RunDir {
        RunDir::new(&self.bucket_for(region_of(&k.zone)), &k.token)
    }

    fn ensure_bucket(&self, region: &str) -> Result<String, ProviderError> {
        let bucket = self.bucket_for(region);
        if self.buckets.lock().expect("lock").contains(&bucket) {
            return Ok(bucket);
        }
        let (g, b, r) = (self.gcs.clone(), bucket.clone(), region.to_string());
        self.block(async move { g.ensure_bucket(&b, &r).await })?;
        self.buckets.lock().expect("lock").insert(bucket.clone());
        Ok(bucket)
    }

    /// The regions `read` looks in: the configured ones plus those of known allocations;
    /// `None` (every region) when none is configured.
    fn regions(&self) -> Option<Vec<String>> {
        if self.cfg.regions.is_empty() {
            return None;
        }
        let mut r = self.cfg.regions.clone();
        for k in self.known.lock().expect("lock").values() {
            let kr = region_of(&k.zone).to_string();
            if !r.contains(&kr) {
                r.push(kr);
            }
        }
        Some(r)
    }

    /// Instances carrying all these owner tags (by label filter, then by the exact tags in
    /// their metadata), in the regions `read` looks in.
    fn find(&self, tags: &BTreeMap<String, String>) -> Result<Vec<ResourceInfo>, ProviderError> {
        let filter = naming::filter(tags);
        let (c, p) = (self.compute.clone(), self.project.clone());
        let found = self.block(async move {
            let mut out = Vec::new();
            let mut page: Option<String> = None;
            loop {
                let mut q = c.aggregated_list().set_project(&p).set_filter(filter.clone());
                if let Some(t) = page.take() {
                    q = q.set_page_token(t);
                }
                let r = q.send().await.map_err(|e| from_gax("instances.aggregatedList", None, &e))?;
                for (_, scoped) in r.items {
                    out.extend(scoped.instances);
                }
                match r.next_page_token {
                    Some(t) if !t.is_empty() => page = Some(t),
                    _ => break,
                }
            }
            Ok::<_, ProviderError>(out)
        })?;
        let regions = self.regions();
        let mut out = Vec::new();
        for i in found {
            let zone = short(i.zone.as_deref().unwrap_or_default()).to_string();
            let region = region_of(&zone).to_string();
            if regions.as_ref().is_some_and(|r| !r.contains(&region)) {
                continue;
            }
            let Some(token) = instance::metadata(&i, naming::TOKEN_KEY).map(str::to_string) else { continue };
            let owner_tags: BTreeMap<String, String> =
                instance::metadata(&i, naming::TAGS_KEY).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
            if !tags.iter().all(|(k, v)| owner_tags.get(k) == Some(v)) {
                continue;
            }
            let name = i.name.clone().unwrap_or_default();
            let id = format!("{zone}/{name}");
            self.remember(&id, &zone, &name, &token);
            out.push(ResourceInfo {
                provider_id: id,
                location: Location::new(CLOUD, region, zone),
                instance_type: short(i.machine_type.as_deref().unwrap_or_default()).to_string(),
                owner_tags,
                idempotency_token: token,
                state: if alive(&i) { RunState::Running } else { RunState::Preempted },
            });
        }
        out.sort_by(|a, b| a.provider_id.cmp(&b.provider_id));
        Ok(out)
    }

    /// A URI as a (bucket, key) in Cloud Storage, or a local path. `sandbox://ZONE/NAME/...`
    /// is the allocation's run directory.
    fn endpoint_of(&self, uri: &str) -> Result<End, ProviderError> {
        if let Some(rest) = uri.strip_prefix("sandbox://") {
            let mut parts = rest.splitn(3, '/');
            let (Some(zone), Some(name), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(other(format!("`{uri}` is not a sandbox URI of this provider")));
            };
            let k = self.known(&format!("{zone}/{name}"))?;
            let rd = self.run_dir(&k);
            return Ok(End::Gcs { bucket: rd.bucket.clone(), key: rd.key(tail.trim_end_matches('/')) });
        }
        if uri.starts_with("gs://") {
            let (bucket, key) = storage::parse_gs(uri)?;
            return Ok(End::Gcs { bucket, key });
        }
        if let Some(p) = uri.strip_prefix("file://") {
            return Ok(End::File(PathBuf::from(p)));
        }
        Err(ProviderError::new(ErrorKind::Unsupported, None, format!("gcp cannot reach `{uri}`")))
    }

    /// The insert body of an allocation.
    fn instance_spec(&self, req: &AllocateRequest, name: &str, script: String) -> instance::InstanceSpec {
        let zone = req.location.zone.clone();
        let region = region_of(&zone).to_string();
        let gpu = req.accelerator.is_some() || instance::has_builtin_gpus(&req.instance_type);
        let mut labels = self.cfg.labels.clone();
        labels.extend(naming::labels(&req.owner_tags, &req.idempotency_token));
        let tags_json = serde_json::to_string(&req.owner_tags).unwrap_or_else(|_| "{}".into());
        instance::InstanceSpec {
            project: self.project.clone(),
            zone,
            name: name.to_string(),
            machine_type: req.instance_type.clone(),
            spot: req.spot,
            accelerator: req.accelerator.clone(),
            image: self.cfg.image_for(&region, gpu, instance::is_arm(&req.instance_type)),
            disk_gb: req.disk_gb.unwrap_or(self.cfg.disk_gb).max(10),
            disk_type: self.cfg.disk_type.clone(),
            network: self.cfg.network.clone(),
            subnetwork: self.cfg.subnetwork.clone(),
            external_ip: self.cfg.external_ip,
            service_account: self.cfg.service_account.clone(),
            labels,
            metadata: vec![
                ("startup-script".into(), script),
                (naming::TOKEN_KEY.into(), req.idempotency_token.clone()),
                (naming::TAGS_KEY.into(), tags_json),
                ("skyform-task".into(), req.task.clone()),
            ],
        }
    }
}

enum End {
    Gcs { bucket: String, key: String },
    File(PathBuf),
}

impl Provider for GcpProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: CLOUD.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities::new(true, &["gs", "file"]),
        }
    }

    fn object_store(&self, location: &Location) -> Option<String> {
        let region = if location.region.is_empty() { region_of(&location.zone) } else { &location.region };
        Some(format!("gs://{}", self.bucket_for(region)))
    }

    fn read(&self, req: &ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse { resources: self.find(&req.owner_tags)? })
    }

    fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
        let loc = &req.location;
        if req.num_nodes > 1 {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                Some(loc),
                "multi-node tasks are not supported on gcp yet (num_nodes > 1)",
            ));
        }
        let zone = loc.zone.clone();
        let name = naming::instance_name(&req.idempotency_token);
        let id = format!("{zone}/{name}");
        // Idempotent by name: an instance of this name carrying the token is the allocation.
        let adopt = |i: &model::Instance| -> Result<AllocateResponse, ProviderError> {
            match instance::metadata(i, naming::TOKEN_KEY) {
                Some(t) if t == req.idempotency_token => {
                    self.remember(&id, &zone, &name, t);
                    Ok(AllocateResponse { provider_id: id.clone() })
                }
                other_token => Err(ProviderError::new(
                    ErrorKind::Other,
                    Some(loc),
                    format!("instance {id} exists with another token ({other_token:?}); not skyform's allocation"),
                )),
            }
        };
        if let Some(i) = self.get(&zone, &name)? {
            return adopt(&i);
        }
        let region = region_of(&zone).to_string();
        let bucket = self.ensure_bucket(&region)?;
        let rd = RunDir::new(&bucket, &req.idempotency_token);
        let script = bootstrap::startup_script(
            &rd,
            &req.idempotency_token,
            self.cfg.storage_endpoint.as_deref(),
            self.cfg.poll_seconds,
            self.cfg.idle_shutdown_minutes,
        );
        let body = instance::build(&self.instance_spec(req, &name, script));
        let (c, p, z, loc2, wait) =
            (self.compute.clone(), self.project.clone(), zone.clone(), loc.clone(), self.wait());
        // GCE deduplicates inserts by request id (a UUID) for a while: skyform's tokens are.
        let request_id = Some(req.idempotency_token.clone()).filter(|t| t.len() == 36 && t.matches('-').count() == 4);
        let inserted = self.block(async move {
            let mut call = c.insert().set_project(&p).set_zone(&z).set_body(body);
            if let Some(r) = request_id {
                call = call.set_request_id(r);
            }
            let op = match call.send().await {
                Ok(op) => op,
                Err(e) if e.http_status_code() == Some(409) => return Ok(false),
                Err(e) => return Err(from_gax("instances.insert", Some(&loc2), &e)),
            };
            let op = wait_operation(&c, &p, &z, op, wait).await.map_err(|mut e| {
                e.location = Some(Box::new(loc2.clone()));
                e
            })?;
            match from_operation("instances.insert", Some(&loc2), &op) {
                Some(e) if matches!(e.code.as_deref(), Some("RESOURCE_ALREADY_EXISTS" | "alreadyExists")) => Ok(false),
                Some(e) => Err(e),
                None => Ok(true),
            }
        })?;
        if !inserted {
            // Inserted meanwhile under this name (a concurrent or earlier call).
            let i = self.get(&zone, &name)?.ok_or_else(|| other(format!("{id} exists and is gone again")))?;
            return adopt(&i);
        }
        self.remember(&id, &zone, &name, &req.idempotency_token);
        Ok(AllocateResponse { provider_id: id })
    }

    fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
        let k = self.known(&req.provider_id)?;
        let rd = self.run_dir(&k);
        let script = skyform_provider::rundir::task_script(req, &bootstrap::GcsCommands);
        let g = self.gcs.clone();
        let (b, key, status) = (rd.bucket.clone(), rd.key("task.sh"), rd.key("status.json"));
        self.block(async move {
            // A rerun on the same allocation starts from a clean slate.
            g.delete(&b, &status).await?;
            g.put(&b, &key, script.into_bytes()).await
        })?;
        Ok(RunTaskResponse { log: format!("{}/log.txt", rd.uri()) })
    }

    fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
        let k = self.known(&req.provider_id)?;
        let rd = self.run_dir(&k);
        let log = format!("{}/log.txt", rd.uri());
        let (g, c, p) = (self.gcs.clone(), self.compute.clone(), self.project.clone());
        let (b, key, zone, name) = (rd.bucket.clone(), rd.key("status.json"), k.zone.clone(), k.name.clone());
        let (status, inst) = self.block(async move {
            if let Some(s) = g.get(&b, &key).await? {
                return Ok::<_, ProviderError>((Some(s.0), None));
            }
            Ok((None, Some(get_instance(&c, &p, &zone, &name).await?)))
        })?;
        if let Some(data) = status {
            let v: serde_json::Value =
                serde_json::from_slice(&data).map_err(|e| other(format!("{}: bad status.json: {e}", rd.uri())))?;
            let code = v.get("exit_code").and_then(|c| c.as_i64()).map(|c| c as i32);
            let state = if code == Some(0) { RunState::Succeeded } else { RunState::Failed { exit_code: code } };
            return Ok(TaskStatusResponse { state, log });
        }
        // No status: a running instance is still at it; one that is gone or stopping (spot
        // preemption deletes or stops it) will not finish.
        let state = match inst.flatten() {
            Some(i) if alive(&i) => RunState::Running,
            _ => RunState::Preempted,
        };
        Ok(TaskStatusResponse { state, log })
    }

    fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
        let from = self.endpoint_of(&req.from)?;
        let to = self.endpoint_of(&req.to)?;
        let g = self.gcs.clone();
        let (bytes, checksum) = match (from, to) {
            (End::File(src), End::Gcs { bucket, key }) => {
                let r = self.block(async move {
                    g.delete_tree(&bucket, &key).await?;
                    g.upload_tree(&src, &bucket, &key).await
                })?;
                (r.0, Some(r.1))
            }
            (End::Gcs { bucket, key }, End::File(dst)) => {
                if dst.is_dir() {
                    let _ = std::fs::remove_dir_all(&dst);
                }
                let r = self.block(async move { g.download_tree(&bucket, &key, &dst).await })?;
                (r.0, Some(r.1))
            }
            (End::Gcs { bucket: b1, key: k1 }, End::Gcs { bucket: b2, key: k2 }) => {
                // Server-side rewrites (no bytes through this host; no content hash either).
                (self.block(async move { g.copy_tree((&b1, &k1), (&b2, &k2)).await })?, None)
            }
            (End::File(_), End::File(_)) => {
                return Err(ProviderError::new(
                    ErrorKind::Unsupported,
                    None,
                    "gcp does not copy between local paths (the local provider does)",
                ))
            }
        };
        Ok(TransferResponse { bytes, checksum })
    }

    fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
        let (zone, name) = self.parse_id(&req.provider_id)?;
        // The token (for the run directory) while the instance can still tell it.
        let k = self.known(&req.provider_id).ok();
        let (c, p, wait) = (self.compute.clone(), self.project.clone(), self.wait());
        let released = self.block(async move {
            if get_instance(&c, &p, &zone, &name).await?.is_none() {
                return Ok(false);
            }
            let op = match c.delete().set_project(&p).set_zone(&zone).set_instance(&name).send().await {
                Ok(op) => op,
                Err(e) if e.http_status_code() == Some(404) => return Ok(false),
                Err(e) => return Err(from_gax("instances.delete", None, &e)),
            };
            let op = wait_operation(&c, &p, &zone, op, wait).await?;
            match from_operation("instances.delete", None, &op) {
                Some(e) if matches!(e.code.as_deref(), Some("RESOURCE_NOT_FOUND" | "notFound")) => Ok(false),
                Some(e) => Err(e),
                None => Ok(true),
            }
        })?;
        if released {
            // The run's data goes with the allocation (outputs were copied out); its log
            // and status stay for `skyform logs`.
            if let Some(k) = k {
                let rd = self.run_dir(&k);
                let g = self.gcs.clone();
                let _ = self.block(async move {
                    for sub in ["inputs", "outputs"] {
                        g.delete_tree(&rd.bucket, &rd.key(sub)).await?;
                    }
                    g.delete(&rd.bucket, &rd.key("task.sh")).await
                });
            }
        }
        Ok(ReleaseResponse { released })
    }
}

#[cfg(all(test, feature = "testing"))]
mod emulator_tests;
