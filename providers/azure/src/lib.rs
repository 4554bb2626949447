//! # skyform-provider-azure — virtual machines and Blob storage
//!
//! The Azure side of skyform's provider seam, through the legacy Azure SDK crates (0.21:
//! azure_mgmt_compute, azure_mgmt_network, azure_storage_blobs, azure_identity on one
//! azure_core) on a tokio runtime of its own; the [`Provider`] calls block.
//!
//! - allocate = a VM named after the idempotency token (`skyform-TOKEN`, [`arm::vm_name`])
//!   in the planned region with the planned size, its NIC (`NAME-nic`, in the region's
//!   VNet, created when missing; no public address) and OS disk (`NAME-osdisk`); spot as
//!   `priority = Spot`, `evictionPolicy = Delete`, `billingProfile.maxPrice` (-1 by
//!   default); tags `skyform-lineage`/`-job`/`-task`/`-attempt` (the seam's `skyform:X`
//!   owner tags) and `skyform-token`; custom data running the run-directory contract
//!   ([`bootstrap`]). A VM that already has the name is adopted (GET first). The PUT is
//!   sent and `provisioningState` followed with GET (the legacy LRO poller stalls); a
//!   provisioning failure is read from the instance view and cleaned up.
//! - run_task writes `task.sh` to the run directory; task_status reads `status.json`,
//!   else the VM's instance view (gone, evicted, deallocated or failed is `Preempted`);
//!   read lists the resource group's VMs (and NICs left without their VM) by tags;
//!   release deletes the VM, its NIC and disk, waits until they are gone, and removes the
//!   run's data (log and status stay for `skyform logs`).
//! - transfer moves trees between `az://ACCOUNT/CONTAINER/path`, `file://` and the
//!   allocation's `sandbox://REGION/VM/{inputs,outputs}/NAME` ([`storage`]).
//! - [`backend`]: the `azurerm` state backend's object store; [`AzureFactory`] puts it all
//!   in skyform's registry. Spot prices come from the catalog (no market).
//!
//! Provider ids are `REGION/VM_NAME`. The catalog has no Azure zones: a location's zone
//! is its region and placement is by region (a zone other than the region, `eastus-2`,
//! becomes the VM's availability zone; [`errors`] explains the scopes). Errors map by
//! Azure code ([`errors::classify`]); no SDK retries, so a capacity error fails over at
//! once; throttling keeps Azure's `Retry-After` ([`errors::retry_after`]).
//!
//! Allocations with accelerators boot `gpu_image` when one is configured (the default
//! Ubuntu image has no NVIDIA driver). VMs reach Blob storage with a container SAS made by
//! the provider (account key, or a user-delegation key under Entra ID) through a
//! Python-standard-library client in their custom data; no managed identity or CLI is
//! needed on the VM. The `testing` feature adds the harness: Azurite, a loopback fake of
//! Resource Manager, and an agent that plays the VMs.

pub mod arm;
pub mod backend;
pub mod bootstrap;
pub mod config;
pub mod errors;
pub mod skus;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

mod factory;
pub use config::AzureConfig;
pub use factory::AzureFactory;
// The SDK crates, for tests and tools that speak to the same endpoints.
pub use azure_core;
pub use azure_mgmt_compute;
pub use azure_storage_blobs;

use arm::{Arm, TOKEN_TAG};
use bootstrap::RunDir;
use config::Resolved;
use errors::{from_azure, from_failure, CloudFailure};
use skyform_provider::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use storage::{AzUri, Blobs};

/// The cloud name.
pub const CLOUD: &str = "azure";

pub(crate) fn other(msg: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, msg)
}

/// Standard base64 (custom data must be encoded).
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A tokio runtime of its own, so the blocking [`Provider`] calls can run async SDK calls
/// from any thread (including tokio's blocking pool).
pub struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    pub fn new(name: &str) -> Result<Rt, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| format!("azure: runtime: {e}"))?;
        Ok(Rt(Some(rt)))
    }

    /// Runs a future on the runtime and waits for it.
    pub fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.0.as_ref().expect("runtime").spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the provider's runtime is alive")
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // Shut down in the background: the owner may be dropped inside an async context.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What the provider knows about an allocation it made or found.
#[derive(Debug, Clone)]
struct Known {
    region: String,
    vm: String,
    token: String,
}

/// The Azure provider.
pub struct AzureProvider {
    cfg: AzureConfig,
    resolved: Resolved,
    rt: Rt,
    arm: Arm,
    blobs: Blobs,
    known: Mutex<HashMap<String, Known>>,
    containers: Mutex<HashSet<(String, String)>>,
    subnets: Mutex<HashMap<String, String>>,
    /// Held while a region's VNet is looked up or created (one PUT, not one per thread).
    network: Mutex<()>,
}

/// A provider error of the missing-configuration or missing-credential kind: nothing on
/// Azure can work, so it blocks the cloud.
fn unusable(msg: impl Into<String>) -> ProviderError {
    let mut e = ProviderError::new(ErrorKind::Unauthorized, None, msg);
    e.scope = Scope::Cloud;
    e
}

impl AzureProvider {
    /// A provider with its own runtime. Resolves the subscription, storage account and
    /// credential chain; no network call is made until a verb is called.
    pub fn new(cfg: AzureConfig) -> Result<AzureProvider, ProviderError> {
        cfg.check().map_err(|e| other(e.message))?;
        let resolved = cfg.resolve().map_err(unusable)?;
        let credential = arm::credential(&cfg).map_err(unusable)?;
        let http = arm::http_client(Duration::from_secs(cfg.request_timeout_seconds as u64)).map_err(other)?;
        let arm = Arm::new(
            &cfg.arm_endpoint(),
            credential.clone(),
            arm::options(http.clone()),
            &resolved.subscription_id,
            &cfg.resource_group,
        )
        .map_err(other)?;
        let endpoint = cfg.storage_endpoint.clone().unwrap_or_else(|| config::DEFAULT_STORAGE_ENDPOINT.into());
        let blobs = Blobs::new(&endpoint, resolved.access_key.clone(), credential, http);
        Ok(AzureProvider {
            rt: Rt::new("skyform-azure").map_err(other)?,
            cfg,
            resolved,
            arm,
            blobs,
            known: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashSet::new()),
            subnets: Mutex::new(HashMap::new()),
            network: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &AzureConfig {
        &self.cfg
    }

    /// Runs a future on the provider's runtime and waits for it.
    pub fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        self.rt.block(f)
    }

    /// The Blob clients (tests and tools use the same ones).
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The storage account and container of a region.
    pub fn store_of(&self, region: &str) -> (String, String) {
        (AzureConfig::account_for(&self.resolved.storage_account, region), self.cfg.container_for(region))
    }

    fn parse_id(&self, id: &str) -> Result<(String, String), ProviderError> {
        id.split_once('/')
            .filter(|(r, v)| !r.is_empty() && !v.is_empty() && !v.contains('/'))
            .map(|(r, v)| (r.to_string(), v.to_string()))
            .ok_or_else(|| other(format!("`{id}` is not an azure provider id (REGION/VM_NAME)")))
    }

    fn remember(&self, id: &str, region: &str, vm: &str, token: &str) {
        self.known
            .lock()
            .expect("lock")
            .insert(id.to_string(), Known { region: region.into(), vm: vm.into(), token: token.into() });
    }

    /// The allocation behind a provider id: its token from the VM's tags, else from the
    /// VM's name (`skyform-TOKEN`), else from its NIC's tags.
    fn known(&self, id: &str) -> Result<Known, ProviderError> {
        if let Some(k) = self.known.lock().expect("lock").get(id) {
            return Ok(k.clone());
        }
        let (region, vm) = self.parse_id(id)?;
        let (a, v) = (self.arm.clone(), vm.clone());
        let found =
            self.block(async move { a.vm(&v).await }).map_err(|e| from_azure("GET virtualMachine", None, &e))?;
        let mut token = found.and_then(|vm| arm::tags_of(&vm.resource.tags).get(TOKEN_TAG).cloned());
        if token.is_none() {
            token = arm::token_of(&vm);
        }
        if token.is_none() {
            let (a, n) = (self.arm.clone(), arm::nic_name(&vm));
            let nic =
                self.block(async move { a.nic(&n).await }).map_err(|e| from_azure("GET networkInterface", None, &e))?;
            token = nic.and_then(|n| arm::tags_of(&n.resource.tags).get(TOKEN_TAG).cloned());
        }
        let token =
            token.ok_or_else(|| other(format!("no allocation {id}: no VM or NIC of it carries {TOKEN_TAG}")))?;
        self.remember(id, &region, &vm, &token);
        Ok(Known { region, vm, token })
    }

    fn run_dir(&self, k: &Known) -> RunDir {
        let (account, container) = self.store_of(&k.region);
        RunDir::new(&account, &container, &k.token)
    }

    fn ensure_container(&self, account: &str, container: &str) -> Result<(), ProviderError> {
        let key = (account.to_string(), container.to_string());
        if self.containers.lock().expect("lock").contains(&key) {
            return Ok(());
        }
        let c = self.blobs.container(account, container);
        self.block(async move { storage::ensure_container(&c).await })?;
        self.containers.lock().expect("lock").insert(key);
        Ok(())
    }

    fn subnet(&self, loc: &Location) -> Result<String, ProviderError> {
        let _one = self.network.lock().expect("lock");
        if let Some(s) = self.subnets.lock().expect("lock").get(&loc.region) {
            return Ok(s.clone());
        }
        let (a, cfg, r) = (self.arm.clone(), self.cfg.clone(), loc.region.clone());
        let id = self
            .block(async move { a.subnet_id(&cfg, &r).await })
            .map_err(|e| from_azure(&format!("virtual network of {}", loc.region), Some(loc), &e))?;
        self.subnets.lock().expect("lock").insert(loc.region.clone(), id.clone());
        Ok(id)
    }

    /// The tags of an allocation's resources.
    fn tags(&self, req: &AllocateRequest) -> BTreeMap<String, String> {
        let mut t: BTreeMap<String, String> = self.cfg.tags.clone();
        for (k, v) in &req.owner_tags {
            t.insert(arm::azure_tag(k), v.clone());
        }
        t.insert(TOKEN_TAG.into(), req.idempotency_token.clone());
        t
    }

    /// Deletes a VM (waiting for it to be gone, within `budget`), then its NIC and disk.
    /// Returns whether anything existed; errors when something is still there.
    fn delete_all(&self, vm: &str, budget: Duration) -> Result<bool, ProviderError> {
        let (a, vm) = (self.arm.clone(), vm.to_string());
        self.block(async move {
            let e = |what: &str, x: azure_core::Error| from_azure(what, None, &x);
            let deadline = tokio::time::Instant::now() + budget;
            let mut any = false;
            let mut delay = Duration::from_millis(100);
            if a.vm(&vm).await.map_err(|x| e("GET virtualMachine", x))?.is_some() {
                any = true;
                a.delete_vm(&vm).await.map_err(|x| e("DELETE virtualMachine", x))?;
                while let Some(v) = a.vm(&vm).await.map_err(|x| e("GET virtualMachine", x))? {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ProviderError::new(
                            ErrorKind::Transient,
                            None,
                            format!(
                                "VM {vm} is still {} after {budget:?}; its deletion was requested",
                                arm::provisioning(&v)
                            ),
                        ));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
            // The VM's deleteOption removes them on Azure; a VM created otherwise, or an
            // allocation that never got its VM, leaves them to us.
            let nic = arm::nic_name(&vm);
            any |= a.delete_nic(&nic).await.map_err(|x| e("DELETE networkInterface", x))?;
            let disk = arm::disk_name(&vm);
            any |= a.delete_disk(&disk).await.map_err(|x| e("DELETE disk", x))?;
            delay = Duration::from_millis(100);
            loop {
                let nic_left = a.nic(&nic).await.map_err(|x| e("GET networkInterface", x))?.is_some();
                let disk_left = a.disk_exists(&disk).await.map_err(|x| e("GET disk", x))?;
                if !nic_left && !disk_left {
                    return Ok(any);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        None,
                        format!("{vm}: NIC or disk still deleting after {budget:?}"),
                    ));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
        })
    }

    /// Follows a VM's `provisioningState` until it leaves `Creating` or the wait ends.
    fn await_provisioned(&self, id: &str, vm: &str, loc: &Location) -> Result<AllocateResponse, ProviderError> {
        let deadline = Instant::now() + Duration::from_secs(self.cfg.create_wait_seconds as u64);
        let mut delay = Duration::from_millis(100);
        loop {
            let (a, v) = (self.arm.clone(), vm.to_string());
            let got = self
                .block(async move { a.vm(&v).await })
                .map_err(|e| from_azure("GET virtualMachine", Some(loc), &e))?;
            let Some(got) = got else {
                return Err(ProviderError::new(
                    ErrorKind::Transient,
                    Some(loc),
                    format!("VM {vm} vanished while it was being created"),
                ));
            };
            match arm::provisioning(&got).as_str() {
                "Succeeded" => return Ok(AllocateResponse { provider_id: id.to_string() }),
                // Released meanwhile (or deleted outside skyform): try again once it is gone.
                "Deleting" => {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        Some(loc),
                        format!("VM {vm} is being deleted; allocate again once it is gone"),
                    ))
                }
                "Failed" => {
                    let iv = got.properties.as_ref().and_then(|p| p.instance_view.as_ref());
                    let (code, message) = arm::power_and_failure(iv)
                        .1
                        .unwrap_or_else(|| ("ProvisioningFailed".into(), "provisioning failed".into()));
                    // Nothing of a failed allocation is kept (best effort: read finds leftovers).
                    let _ = self.delete_all(vm, Duration::from_secs(self.cfg.delete_wait_seconds as u64 / 2));
                    self.known.lock().expect("lock").remove(id);
                    let f = CloudFailure { status: 0, code, message, retry_after: None };
                    return Err(from_failure(&format!("create VM {vm}"), Some(loc), &f));
                }
                _ if Instant::now() >= deadline => {
                    // Still creating: the allocation stands; a later failure shows as preempted.
                    return Ok(AllocateResponse { provider_id: id.to_string() });
                }
                _ => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
        }
    }

    /// A URI as a Blob tree or a local path.
    fn endpoint_of(&self, uri: &str) -> Result<End, ProviderError> {
        if let Some(rest) = uri.strip_prefix("sandbox://") {
            // REGION/VM/{inputs,outputs}/NAME
            let mut parts = rest.splitn(3, '/');
            let (Some(region), Some(vm), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(other(format!("`{uri}` is not a sandbox URI of this provider")));
            };
            let k = self.known(&format!("{region}/{vm}"))?;
            let rd = self.run_dir(&k);
            return Ok(End::Blob(AzUri {
                account: rd.account.clone(),
                container: rd.container.clone(),
                path: rd.key(tail.trim_matches('/')),
            }));
        }
        if uri.starts_with("az://") {
            return Ok(End::Blob(AzUri::parse(uri)?));
        }
        if let Some(p) = uri.strip_prefix("file://") {
            return Ok(End::File(PathBuf::from(p)));
        }
        Err(ProviderError::new(ErrorKind::Unsupported, None, format!("azure cannot reach `{uri}`")))
    }
}

enum End {
    Blob(AzUri),
    File(PathBuf),
}

/// The run state a VM's model and instance view show (its run's status aside).
fn vm_state(vm: &azure_mgmt_compute::models::VirtualMachine) -> RunState {
    let p = arm::provisioning(vm);
    let iv = vm.properties.as_ref().and_then(|p| p.instance_view.as_ref());
    let (power, failure) = arm::power_and_failure(iv);
    let stopped = matches!(power.as_deref(), Some("deallocated" | "deallocating" | "stopped" | "stopping"));
    if p == "Failed" || p == "Deleting" || failure.is_some() || stopped {
        RunState::Preempted
    } else {
        RunState::Running
    }
}

impl Provider for AzureProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: CLOUD.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities::new(true, &["az", "file"]),
        }
    }

    fn object_store(&self, location: &Location) -> Option<String> {
        let (account, container) = self.store_of(&location.region);
        Some(format!("az://{account}/{container}"))
    }

    fn read(&self, req: &ReadRequest) -> Result<ReadResponse, ProviderError> {
        let a = self.arm.clone();
        let (vms, nics) = self.block(async move {
            let vms = a.vms().await.map_err(|e| from_azure("list virtualMachines", None, &e))?;
            let nics = a.nics().await.map_err(|e| from_azure("list networkInterfaces", None, &e))?;
            Ok::<_, ProviderError>((vms, nics))
        })?;
        let wanted: BTreeMap<String, String> =
            req.owner_tags.iter().map(|(k, v)| (arm::azure_tag(k), v.clone())).collect();
        let matches = |tags: &BTreeMap<String, String>| {
            if wanted.is_empty() {
                tags.contains_key("skyform-lineage")
            } else {
                wanted.iter().all(|(k, v)| tags.get(k) == Some(v))
            }
        };
        let seam = |tags: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            tags.iter().filter_map(|(k, v)| Some((arm::seam_tag(k)?, v.clone()))).collect()
        };
        let mut out = Vec::new();
        let mut names = HashSet::new();
        for vm in &vms {
            let name = vm.resource.name.clone().unwrap_or_default();
            names.insert(name.to_lowercase());
            let tags = arm::tags_of(&vm.resource.tags);
            if !matches(&tags) {
                continue;
            }
            let region = vm.resource.location.clone();
            let zone = match vm.zones.first() {
                Some(z) => format!("{region}-{z}"),
                None => region.clone(),
            };
            let size = vm
                .properties
                .as_ref()
                .and_then(|p| p.hardware_profile.as_ref())
                .and_then(|h| h.vm_size.as_ref())
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let token = tags.get(TOKEN_TAG).cloned().unwrap_or_default();
            let id = format!("{region}/{name}");
            if !token.is_empty() {
                self.remember(&id, &region, &name, &token);
            }
            out.push(ResourceInfo {
                provider_id: id,
                location: Location::new(CLOUD, region.as_str(), zone),
                instance_type: size,
                owner_tags: seam(&tags),
                idempotency_token: token,
                state: vm_state(vm),
            });
        }
        // A NIC whose VM is gone (an allocation interrupted between the two PUTs, or a
        // VM deleted outside skyform) is listed as a preempted allocation, so sweep and
        // release remove it.
        for nic in &nics {
            let name = nic.resource.name.clone().unwrap_or_default();
            let Some(vm) = name.strip_suffix("-nic") else { continue };
            let tags = arm::tags_of(&nic.resource.tags);
            if names.contains(&vm.to_lowercase()) || !matches(&tags) {
                continue;
            }
            let region = nic.resource.location.clone().unwrap_or_default();
            out.push(ResourceInfo {
                provider_id: format!("{region}/{vm}"),
                location: Location::new(CLOUD, region.as_str(), region.as_str()),
                instance_type: String::new(),
                owner_tags: seam(&tags),
                idempotency_token: tags.get(TOKEN_TAG).cloned().unwrap_or_default(),
                state: RunState::Preempted,
            });
        }
        Ok(ReadResponse { resources: out })
    }

    fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
        let loc = &req.location;
        if req.num_nodes > 1 {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                Some(loc),
                "multi-node tasks are not supported on azure yet (num_nodes > 1)",
            ));
        }
        let region = loc.region.clone();
        let token = req.idempotency_token.clone();
        let name = arm::vm_name(&token);
        let id = format!("{region}/{name}");
        // Idempotent by name: a VM with this name is this allocation.
        let (a, n) = (self.arm.clone(), name.clone());
        let existing =
            self.block(async move { a.vm(&n).await }).map_err(|e| from_azure("GET virtualMachine", Some(loc), &e))?;
        if let Some(vm) = existing {
            let theirs = arm::tags_of(&vm.resource.tags).get(TOKEN_TAG).cloned();
            if theirs.as_deref() != Some(token.as_str()) {
                return Err(other(format!("VM {name} exists but is not this allocation's (its token: {theirs:?})")));
            }
            self.remember(&id, &region, &name, &token);
            return self.await_provisioned(&id, &name, loc);
        }
        // The run directory, and a SAS for the VM to reach it.
        let (account, container) = self.store_of(&region);
        self.ensure_container(&account, &container)?;
        let c = self.blobs.container(&account, &container);
        let url = c.url().map_err(|e| other(format!("container URL: {e}")))?.to_string();
        let (blobs, valid) = (self.blobs.clone(), Duration::from_secs(self.cfg.sas_hours as u64 * 3600));
        let sas = self
            .block(async move { blobs.sas(&c, true, valid).await })
            .map_err(|e| from_azure("SAS for the VM", Some(loc), &e))?;
        let rd = RunDir::new(&account, &container, &token);
        let custom_data = bootstrap::custom_data(&rd, &url, &sas, &token, self.cfg.poll_seconds);
        // The NIC, in the region's subnet.
        let subnet = self.subnet(loc)?;
        let tags = self.tags(req);
        let nic = arm::nic_name(&name);
        let (a, n, body) = (self.arm.clone(), nic.clone(), arm::nic_body(&region, &subnet, &tags));
        self.block(async move { a.put_nic(&n, body).await })
            .map_err(|e| from_azure(&format!("PUT networkInterface {nic}"), Some(loc), &e))?;
        // The VM.
        let spec = arm::VmSpec {
            name: name.clone(),
            region: region.clone(),
            zone: arm::zone_of(&region, &loc.zone),
            size: req.instance_type.clone(),
            spot: req.spot,
            image: match (&req.accelerator, &self.cfg.gpu_image) {
                (Some(_), Some(gpu)) => gpu.clone(),
                _ => self.cfg.image.clone(),
            },
            nic_id: self.arm.nic_id(&nic),
            tags,
            custom_data,
            disk_gb: req.disk_gb,
        };
        let (a, n, body) = (self.arm.clone(), name.clone(), arm::vm_body(&self.cfg, &spec));
        if let Err(e) = self.block(async move { a.put_vm(&n, body).await }) {
            let pe = from_azure(&format!("PUT virtualMachine {name} ({})", req.instance_type), Some(loc), &e);
            if !matches!(pe.kind, ErrorKind::Throttled | ErrorKind::Transient) {
                // Failing over elsewhere: the NIC has no use (a retry in place reuses it).
                let (a, n) = (self.arm.clone(), nic.clone());
                let _ = self.block(async move { a.delete_nic(&n).await });
            }
            return Err(pe);
        }
        self.remember(&id, &region, &name, &token);
        self.await_provisioned(&id, &name, loc)
    }

    fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
        let k = self.known(&req.provider_id)?;
        let rd = self.run_dir(&k);
        let cmds = bootstrap::BlobCommands { container_uri: format!("az://{}/{}", rd.account, rd.container) };
        if let Some(uri) = req.checkpoint.as_deref().filter(|u| cmds.reaches(u).is_none()) {
            // The VM's SAS reaches its run's container only.
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                None,
                format!("the checkpoint {uri} is outside {}, the only container the VM reaches", cmds.container_uri),
            ));
        }
        let script = skyform_provider::rundir::task_script(req, &cmds);
        self.ensure_container(&rd.account, &rd.container)?;
        let c = self.blobs.container(&rd.account, &rd.container);
        let (key, status) = (rd.key("task.sh"), rd.key("status.json"));
        self.block(async move {
            // A rerun on the same allocation starts from a clean slate.
            storage::delete(&c, &status).await?;
            storage::put(&c, &key, script.into_bytes()).await
        })?;
        Ok(RunTaskResponse { log: format!("{}/log.txt", rd.uri()) })
    }

    fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
        let k = self.known(&req.provider_id)?;
        let rd = self.run_dir(&k);
        let log = format!("{}/log.txt", rd.uri());
        let c = self.blobs.container(&rd.account, &rd.container);
        let (a, key, vm) = (self.arm.clone(), rd.key("status.json"), k.vm.clone());
        let (status, vm) = self.block(async move {
            if let Some(s) = storage::get(&c, &key).await? {
                return Ok::<_, ProviderError>((Some(s), None));
            }
            let vm = a.vm(&vm).await.map_err(|e| from_azure("GET virtualMachine", None, &e))?;
            Ok((None, Some(vm)))
        })?;
        if let Some((data, _)) = status {
            let v: serde_json::Value =
                serde_json::from_slice(&data).map_err(|e| other(format!("{}: bad status.json: {e}", rd.uri())))?;
            let code = v.get("exit_code").and_then(|c| c.as_i64()).map(|c| c as i32);
            let state = if code == Some(0) { RunState::Succeeded } else { RunState::Failed { exit_code: code } };
            return Ok(TaskStatusResponse { state, log });
        }
        let state = match vm.flatten() {
            // Gone: evicted (spot with evictionPolicy Delete) or deleted outside skyform.
            None => RunState::Preempted,
            Some(vm) => vm_state(&vm),
        };
        Ok(TaskStatusResponse { state, log })
    }

    fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
        let from = self.endpoint_of(&req.from)?;
        let to = self.endpoint_of(&req.to)?;
        let (bytes, checksum) = match (from, to) {
            (End::File(src), End::Blob(dst)) => {
                let c = self.blobs.container(&dst.account, &dst.container);
                let r = self.block(async move {
                    storage::ensure_container(&c).await?;
                    storage::delete_tree(&c, &dst.path).await?;
                    storage::upload_tree(&c, &src, &dst.path).await
                })?;
                (r.0, Some(r.1))
            }
            (End::Blob(src), End::File(dst)) => {
                let c = self.blobs.container(&src.account, &src.container);
                if dst.is_dir() {
                    let _ = std::fs::remove_dir_all(&dst);
                }
                let r = self.block(async move { storage::download_tree(&c, &src.path, &dst).await })?;
                (r.0, Some(r.1))
            }
            (End::Blob(src), End::Blob(dst)) => {
                let (s, d) = (
                    self.blobs.container(&src.account, &src.container),
                    self.blobs.container(&dst.account, &dst.container),
                );
                let blobs = self.blobs.clone();
                self.block(async move {
                    let sas = blobs
                        .sas(&s, false, Duration::from_secs(3600))
                        .await
                        .map_err(|e| from_azure("SAS for the copy's source", None, &e))?;
                    storage::ensure_container(&d).await?;
                    storage::copy_tree(&s, &src.path, &sas, &d, &dst.path).await
                })?
            }
            (End::File(_), End::File(_)) => {
                return Err(ProviderError::new(
                    ErrorKind::Unsupported,
                    None,
                    "azure does not copy between local paths (the local provider does)",
                ))
            }
        };
        Ok(TransferResponse { bytes, checksum })
    }

    fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
        let (_, vm) = self.parse_id(&req.provider_id)?;
        // The run directory needs the token, which the VM's tags carry: read it first.
        let known = self.known(&req.provider_id).ok();
        let released = self.delete_all(&vm, Duration::from_secs(self.cfg.delete_wait_seconds as u64))?;
        if released {
            if let Some(k) = known {
                // The run's data goes with the allocation (outputs were copied out); its
                // log and status stay for `skyform logs`.
                let rd = self.run_dir(&k);
                let c = self.blobs.container(&rd.account, &rd.container);
                let _ = self.block(async move {
                    for sub in ["inputs", "outputs"] {
                        storage::delete_tree(&c, &rd.key(sub)).await?;
                    }
                    storage::delete(&c, &rd.key("task.sh")).await
                });
            }
        }
        Ok(ReleaseResponse { released })
    }
}

#[cfg(all(test, feature = "testing"))]
mod emulator_tests;
