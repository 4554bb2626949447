//! Resource Manager through the legacy SDK clients (azure_mgmt_compute, azure_mgmt_network
//! 0.21): the credential, the client pipeline, the VM/NIC/VNet request bodies and the few
//! calls the provider makes.
//!
//! - Credentials ([`credential`]): a service principal from the block, else the standard
//!   chain (environment, managed identity, Azure CLI); a loopback endpoint gets a
//!   placeholder token ([`StaticToken`]) so tests never reach a login service.
//! - The pipeline ([`options`]): reqwest with a per-request timeout, no SDK retries (the
//!   engine retries `Throttled`/`Transient` itself and capacity errors must fail over at
//!   once), and a policy that turns every non-2xx response into a [`CloudFailure`] keeping
//!   Azure's code, message and `Retry-After` (azure_core's `HttpError` drops headers).
//! - Long-running PUT/DELETEs are sent with `.send()` and followed with `get()`: the legacy
//!   `create_or_update(..).await` re-sends the PUT to poll and misreads
//!   `provisioningState` (measured: a 30 s stall).
//!
//! Bodies are built as JSON and parsed into the SDK's models, which is what goes on the
//! wire; `tests::vm_body_survives_the_model` checks that nothing is dropped on the way.

use crate::config::{image_reference, is_loopback, AzureConfig};
use crate::errors::{status, CloudFailure};
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::{ClientOptions, Context, Policy, PolicyResult, Request, RetryOptions, TransportOptions};
use azure_mgmt_compute::models::{VirtualMachine, VirtualMachineInstanceView};
use azure_mgmt_network::models::{NetworkInterface, VirtualNetwork};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The tag that carries the idempotency token.
pub const TOKEN_TAG: &str = "skyform-token";

/// A bearer token used as is: for loopback endpoints (emulators, fakes), which accept any.
#[derive(Debug, Clone)]
pub struct StaticToken(pub String);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(Secret::new(self.0.clone()), time::OffsetDateTime::now_utc() + Duration::from_secs(3600)))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

/// The token credential of Resource Manager (and of Blob storage without an account key).
pub fn credential(cfg: &AzureConfig) -> Result<Arc<dyn TokenCredential>, String> {
    if is_loopback(&cfg.arm_endpoint()) {
        return Ok(Arc::new(StaticToken("skyform-loopback-token".into())));
    }
    if let (Some(t), Some(c), Some(s)) = (&cfg.tenant_id, &cfg.client_id, &cfg.client_secret) {
        let opts = azure_identity::TokenCredentialOptions::default();
        let authority = opts.authority_host().map_err(|e| format!("provider \"azure\": {e}"))?;
        return Ok(Arc::new(azure_identity::ClientSecretCredential::new(
            azure_core::new_http_client(),
            authority,
            t.clone(),
            c.clone(),
            s.clone(),
        )));
    }
    azure_identity::DefaultAzureCredential::create(azure_identity::TokenCredentialOptions::default())
        .map(|c| Arc::new(c) as Arc<dyn TokenCredential>)
        .map_err(|e| format!("provider \"azure\": no credential chain: {e}"))
}

/// The HTTP client of every SDK client: reqwest with a timeout per request (a hanging
/// endpoint fails instead of blocking a provider call forever).
pub fn http_client(timeout: Duration) -> Result<Arc<dyn azure_core::HttpClient>, String> {
    let c = reqwest::Client::builder()
        .timeout(timeout)
        // azure_core's own client does the same (hyper issue 2312).
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("azure: http client: {e}"))?;
    Ok(Arc::new(c))
}

/// Turns every non-2xx response into a [`CloudFailure`] error.
#[derive(Debug)]
struct CaptureFailures;

#[async_trait::async_trait]
impl Policy for CaptureFailures {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let rsp = next[0].send(ctx, request, &next[1..]).await?;
        if rsp.status().is_success() {
            return Ok(rsp);
        }
        let (st, headers, body) = rsp.deconstruct();
        let body = body.collect().await.unwrap_or_default();
        let retry_after =
            headers.get_optional_str(&azure_core::headers::RETRY_AFTER).and_then(|v| v.trim().parse().ok());
        let code = headers.get_optional_str(&azure_core::headers::ERROR_CODE);
        let f = CloudFailure::from_parts(u16::from(st), code, retry_after, &body);
        let kind = azure_core::error::ErrorKind::http_response(st, Some(f.code.clone()));
        let what = format!("{} {}", request.method(), request.url().path());
        Err(azure_core::Error::full(kind, f, what))
    }
}

/// The client options of the Resource Manager clients.
pub fn options(http: Arc<dyn azure_core::HttpClient>) -> ClientOptions {
    let mut o = ClientOptions::new(TransportOptions::new(http)).retry(RetryOptions::none());
    o.per_retry_policies_mut().push(Arc::new(CaptureFailures));
    o
}

/// `skyform:lineage` → `skyform-lineage` (Azure tag names are kept plain).
pub fn azure_tag(k: &str) -> String {
    match k.strip_prefix("skyform:") {
        Some(rest) => format!("skyform-{rest}"),
        None => k.to_string(),
    }
}

/// The reverse of [`azure_tag`] for skyform's own tags (the token tag stays apart).
pub fn seam_tag(k: &str) -> Option<String> {
    let rest = k.strip_prefix("skyform-")?;
    (k != TOKEN_TAG).then(|| format!("skyform:{rest}"))
}

/// The VM name of an idempotency token: `skyform-TOKEN` when the token is a valid name
/// part (skyform's tokens are UUIDs), else `skyform_` and a hash (`_` cannot occur in the
/// first form, so the two never meet).
pub fn vm_name(token: &str) -> String {
    let plain = !token.is_empty() && token.len() <= 50 && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if plain {
        format!("skyform-{token}")
    } else {
        let mut h = crate::storage::Fnv::default();
        h.update(token.as_bytes());
        format!("skyform_{}", h.hex())
    }
}

/// The token behind a VM name of the plain form.
pub fn token_of(vm: &str) -> Option<String> {
    vm.strip_prefix("skyform-").filter(|t| !t.is_empty()).map(str::to_string)
}

pub fn nic_name(vm: &str) -> String {
    format!("{vm}-nic")
}

pub fn disk_name(vm: &str) -> String {
    format!("{vm}-osdisk")
}

/// What a VM is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub name: String,
    pub region: String,
    /// An availability zone (`1`, `2`, `3`) when the placement names one.
    pub zone: Option<String>,
    pub size: String,
    pub spot: bool,
    /// `publisher:offer:sku:version` or an image resource id.
    pub image: String,
    pub nic_id: String,
    pub tags: BTreeMap<String, String>,
    /// The bootstrap script (base64-encoded here).
    pub custom_data: String,
    pub disk_gb: Option<u32>,
}

/// The zone of a placement, when its zone is not the region itself (`eastus-2` or `2`).
pub fn zone_of(region: &str, zone: &str) -> Option<String> {
    if zone.is_empty() || zone == region {
        return None;
    }
    let z = zone.rsplit('-').next().unwrap_or(zone);
    (!z.is_empty() && z.chars().all(|c| c.is_ascii_digit())).then(|| z.to_string())
}

/// The body of a VM PUT.
pub fn vm_body(cfg: &AzureConfig, spec: &VmSpec) -> Value {
    let computer = spec.name.replace('_', "-");
    let mut os = json!({
        "computerName": computer,
        "adminUsername": cfg.admin_username,
        "customData": crate::base64_encode(spec.custom_data.as_bytes()),
    });
    match &cfg.ssh_public_key {
        Some(key) => {
            os["linuxConfiguration"] = json!({
                "disablePasswordAuthentication": true,
                "ssh": {"publicKeys": [{
                    "path": format!("/home/{}/.ssh/authorized_keys", cfg.admin_username),
                    "keyData": key,
                }]},
            });
        }
        None => {
            // Azure wants a password or a key; nobody learns this one.
            os["adminPassword"] = json!(format!("Sk1!{}", uuid::Uuid::new_v4().simple()));
            os["linuxConfiguration"] = json!({"disablePasswordAuthentication": false});
        }
    }
    let mut disk = json!({
        "name": disk_name(&spec.name),
        "createOption": "FromImage",
        "deleteOption": "Delete",
        "managedDisk": {"storageAccountType": cfg.os_disk_type},
    });
    if let Some(gb) = spec.disk_gb {
        disk["diskSizeGB"] = json!(gb);
    }
    let mut props = json!({
        "hardwareProfile": {"vmSize": spec.size},
        "storageProfile": {"imageReference": image_reference(&spec.image), "osDisk": disk},
        "osProfile": os,
        "networkProfile": {"networkInterfaces": [{
            "id": spec.nic_id,
            "properties": {"primary": true, "deleteOption": "Delete"},
        }]},
    });
    if spec.spot {
        props["priority"] = json!("Spot");
        props["evictionPolicy"] = json!("Delete");
        props["billingProfile"] = json!({"maxPrice": cfg.spot_max_price});
    }
    let mut body = json!({"location": spec.region, "tags": spec.tags, "properties": props});
    if let Some(z) = &spec.zone {
        body["zones"] = json!([z]);
    }
    body
}

/// The body of a NIC PUT: one dynamic private address in `subnet_id`, no public address.
pub fn nic_body(region: &str, subnet_id: &str, tags: &BTreeMap<String, String>) -> Value {
    json!({
        "location": region,
        "tags": tags,
        "properties": {"ipConfigurations": [{
            "name": "ipconfig1",
            "properties": {"subnet": {"id": subnet_id}, "privateIPAllocationMethod": "Dynamic"},
        }]},
    })
}

/// The body of a VNet PUT with one subnet spanning it. The subnet reaches Blob storage
/// through a service endpoint (no public address needed) and keeps default outbound
/// access explicitly (subnets created after September 2025 lose it otherwise), so setup
/// scripts can still install packages.
pub fn vnet_body(region: &str, subnet: &str, prefix: &str, tags: &BTreeMap<String, String>) -> Value {
    json!({
        "location": region,
        "tags": tags,
        "properties": {
            "addressSpace": {"addressPrefixes": [prefix]},
            "subnets": [{
                "name": subnet,
                "properties": {
                    "addressPrefix": prefix,
                    "serviceEndpoints": [{"service": "Microsoft.Storage"}],
                    "defaultOutboundAccess": true,
                },
            }],
        },
    })
}

/// The tags of a model (`tags` is free-form JSON in the SDK).
pub fn tags_of(v: &Option<Value>) -> BTreeMap<String, String> {
    v.as_ref()
        .and_then(|t| t.as_object())
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// A VM's `provisioningState`.
pub fn provisioning(vm: &VirtualMachine) -> String {
    vm.properties.as_ref().and_then(|p| p.provisioning_state.clone()).unwrap_or_default()
}

/// The `PowerState/...` of an instance view, and a provisioning failure as (code, message).
pub fn power_and_failure(iv: Option<&VirtualMachineInstanceView>) -> (Option<String>, Option<(String, String)>) {
    let mut power = None;
    let mut failure = None;
    for s in iv.map(|i| i.statuses.as_slice()).unwrap_or_default() {
        let code = s.code.clone().unwrap_or_default();
        if let Some(p) = code.strip_prefix("PowerState/") {
            power = Some(p.to_string());
        } else if let Some(f) = code.strip_prefix("ProvisioningState/failed/") {
            failure = Some((f.to_string(), s.message.clone().unwrap_or_default()));
        }
    }
    (power, failure)
}

fn found<T>(r: azure_core::Result<T>) -> azure_core::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if status(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

fn model<T: serde::de::DeserializeOwned>(v: Value) -> azure_core::Result<T> {
    serde_json::from_value(v)
        .map_err(|e| azure_core::Error::full(azure_core::error::ErrorKind::DataConversion, e, "body"))
}

/// The Resource Manager calls of one subscription and resource group.
#[derive(Clone)]
pub struct Arm {
    pub compute: azure_mgmt_compute::Client,
    pub network: azure_mgmt_network::Client,
    pub subscription: String,
    pub resource_group: String,
}

impl Arm {
    pub fn new(
        endpoint: &str,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Arm, String> {
        let url = azure_core::Url::parse(endpoint).map_err(|e| format!("provider \"azure\": endpoint: {e}"))?;
        let scopes = vec![format!("{}/.default", endpoint.trim_end_matches('/'))];
        Ok(Arm {
            compute: azure_mgmt_compute::Client::new(url.clone(), credential.clone(), scopes.clone(), options.clone()),
            network: azure_mgmt_network::Client::new(url, credential, scopes, options),
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
        })
    }

    /// The resource id of a NIC of this resource group.
    pub fn nic_id(&self, nic: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkInterfaces/{nic}",
            self.subscription, self.resource_group
        )
    }

    /// A VM with its instance view, or None.
    pub async fn vm(&self, name: &str) -> azure_core::Result<Option<VirtualMachine>> {
        let c = self.compute.virtual_machines_client();
        let r = async {
            c.get(&self.resource_group, name, &self.subscription).expand("instanceView").send().await?.into_body().await
        }
        .await;
        found(r)
    }

    /// Sends a VM PUT (does not wait for provisioning).
    pub async fn put_vm(&self, name: &str, body: Value) -> azure_core::Result<()> {
        let vm: VirtualMachine = model(body)?;
        let c = self.compute.virtual_machines_client();
        c.create_or_update(&self.resource_group, name, vm, &self.subscription).send().await?;
        Ok(())
    }

    /// Sends a VM DELETE; false when there was no VM.
    pub async fn delete_vm(&self, name: &str) -> azure_core::Result<bool> {
        let c = self.compute.virtual_machines_client();
        let r = c.delete(&self.resource_group, name, &self.subscription).send().await;
        match r {
            Ok(rsp) => Ok(u16::from(rsp.as_raw_response().status()) != 204),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every VM of the resource group, with instance views.
    pub async fn vms(&self) -> azure_core::Result<Vec<VirtualMachine>> {
        let c = self.compute.virtual_machines_client();
        let mut pages = c.list(&self.resource_group, &self.subscription).expand("instanceView").into_stream();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page?.value);
        }
        Ok(out)
    }

    pub async fn nic(&self, name: &str) -> azure_core::Result<Option<NetworkInterface>> {
        let c = self.network.network_interfaces_client();
        found(async { c.get(&self.resource_group, name, &self.subscription).send().await?.into_body().await }.await)
    }

    /// Creates or updates a NIC and waits (briefly) for it to be provisioned.
    pub async fn put_nic(&self, name: &str, body: Value) -> azure_core::Result<()> {
        let nic: NetworkInterface = model(body)?;
        let c = self.network.network_interfaces_client();
        let r =
            c.create_or_update(&self.resource_group, name, nic, &self.subscription).send().await?.into_body().await?;
        let ready = |n: &NetworkInterface| {
            n.properties.as_ref().and_then(|p| p.provisioning_state.as_ref()).map(|s| format!("{s:?}"))
                == Some("Succeeded".into())
        };
        if ready(&r) {
            return Ok(());
        }
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.nic(name).await?.as_ref().is_some_and(ready) {
                return Ok(());
            }
        }
        Err(azure_core::Error::message(
            azure_core::error::ErrorKind::Io,
            format!("NIC {name} is not provisioned after 20 s"),
        ))
    }

    /// Sends a NIC DELETE; false when there was none.
    pub async fn delete_nic(&self, name: &str) -> azure_core::Result<bool> {
        let c = self.network.network_interfaces_client();
        match c.delete(&self.resource_group, name, &self.subscription).send().await {
            Ok(rsp) => Ok(u16::from(rsp.as_raw_response().status()) != 204),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every NIC of the resource group.
    pub async fn nics(&self) -> azure_core::Result<Vec<NetworkInterface>> {
        let c = self.network.network_interfaces_client();
        let mut pages = c.list(&self.resource_group, &self.subscription).into_stream();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page?.value);
        }
        Ok(out)
    }

    pub async fn disk_exists(&self, name: &str) -> azure_core::Result<bool> {
        let c = self.compute.disks_client();
        Ok(found(c.get(&self.subscription, &self.resource_group, name).send().await)?.is_some())
    }

    /// Sends a disk DELETE; false when there was none.
    pub async fn delete_disk(&self, name: &str) -> azure_core::Result<bool> {
        let c = self.compute.disks_client();
        match c.delete(&self.subscription, &self.resource_group, name).send().await {
            Ok(rsp) => Ok(u16::from(rsp.as_raw_response().status()) != 204),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The subnet of a region's VMs: the configured id, or `subnet` in the region's VNet,
    /// which is created when missing.
    pub async fn subnet_id(&self, cfg: &AzureConfig, region: &str) -> azure_core::Result<String> {
        if cfg.subnet.starts_with('/') {
            return Ok(cfg.subnet.clone());
        }
        let vnet = cfg.vnet_for(region);
        let c = self.network.virtual_networks_client();
        let subnet_of = |v: &VirtualNetwork| {
            v.properties.as_ref().and_then(|p| {
                p.subnets
                    .iter()
                    .find(|s| s.sub_resource.id.is_some() && s.name.as_deref() == Some(cfg.subnet.as_str()))
                    .and_then(|s| s.sub_resource.id.clone())
            })
        };
        let get = || async {
            found(
                async { c.get(&self.resource_group, &vnet, &self.subscription).send().await?.into_body().await }.await,
            )
        };
        if let Some(id) = get().await?.as_ref().and_then(subnet_of) {
            return Ok(id);
        }
        let tags: BTreeMap<String, String> =
            cfg.tags.clone().into_iter().chain([("skyform-managed".to_string(), "true".to_string())]).collect();
        let body: VirtualNetwork = model(vnet_body(region, &cfg.subnet, &cfg.address_prefix, &tags))?;
        c.create_or_update(&self.resource_group, &vnet, body, &self.subscription).send().await?;
        for _ in 0..60 {
            if let Some(v) = get().await? {
                let ok = v.properties.as_ref().and_then(|p| p.provisioning_state.as_ref()).map(|s| format!("{s:?}"))
                    == Some("Succeeded".into());
                if let (true, Some(id)) = (ok, subnet_of(&v)) {
                    return Ok(id);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(azure_core::Error::message(
            azure_core::error::ErrorKind::Io,
            format!("virtual network {vnet} is not provisioned after 30 s"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model's JSON without the nulls it adds for read-only fields (`timeCreated`).
    fn wire<T: serde::Serialize>(m: &T) -> Value {
        fn strip(v: &mut Value) {
            if let Some(o) = v.as_object_mut() {
                o.retain(|_, x| !x.is_null());
                o.values_mut().for_each(strip);
            } else if let Some(a) = v.as_array_mut() {
                a.iter_mut().for_each(strip);
            }
        }
        let mut v = serde_json::to_value(m).unwrap();
        strip(&mut v);
        v
    }

    fn spec(spot: bool) -> VmSpec {
        VmSpec {
            name: "skyform-tok".into(),
            region: "eastus".into(),
            zone: None,
            size: "Standard_NC6s_v3".into(),
            spot,
            image: crate::config::DEFAULT_IMAGE.into(),
            nic_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/skyform-tok-nic"
                .into(),
            tags: [("skyform-task".to_string(), "task.a".to_string())].into(),
            custom_data: "#!/bin/bash\necho hi\n".into(),
            disk_gb: Some(64),
        }
    }

    #[test]
    fn vm_body_survives_the_model() {
        let cfg = AzureConfig { ssh_public_key: Some("ssh-ed25519 AAAA".into()), ..AzureConfig::default() };
        for s in [spec(true), spec(false), VmSpec { zone: Some("2".into()), ..spec(true) }] {
            let body = vm_body(&cfg, &s);
            let vm: VirtualMachine = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(wire(&vm), body, "the SDK model drops nothing");
        }
        let cfg = AzureConfig::default();
        let body = vm_body(&cfg, &spec(true));
        let vm: VirtualMachine = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(wire(&vm), body);
        let p = &body["properties"];
        assert_eq!((p["priority"].as_str(), p["evictionPolicy"].as_str()), (Some("Spot"), Some("Delete")));
        assert_eq!(p["billingProfile"]["maxPrice"], json!(-1.0));
        assert_eq!(p["storageProfile"]["osDisk"]["diskSizeGB"], json!(64));
        assert!(p["osProfile"]["adminPassword"].as_str().unwrap().len() >= 12);
        let on_demand = vm_body(&cfg, &spec(false));
        assert!(on_demand["properties"].get("priority").is_none());
    }

    #[test]
    fn network_bodies_survive_the_models() {
        let tags: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        let b = nic_body("eastus", "/subscriptions/s/x/subnets/default", &tags);
        let n: NetworkInterface = serde_json::from_value(b.clone()).unwrap();
        assert_eq!(wire(&n), b);
        let b = vnet_body("eastus", "default", "10.64.0.0/16", &tags);
        let v: VirtualNetwork = serde_json::from_value(b.clone()).unwrap();
        assert_eq!(wire(&v), b);
    }

    #[test]
    fn names_and_tags() {
        assert_eq!(vm_name("0b7e6f0e-2f6a-4d7c-9d6e-3f1f7a3c2b11"), "skyform-0b7e6f0e-2f6a-4d7c-9d6e-3f1f7a3c2b11");
        assert_eq!(token_of(&vm_name("conformance-token-1")).as_deref(), Some("conformance-token-1"));
        let hashed = vm_name("a token/with spaces");
        assert!(hashed.starts_with("skyform_") && hashed.len() == 24, "{hashed}");
        assert_eq!(token_of(&hashed), None);
        assert_eq!(vm_name("a token/with spaces"), hashed, "stable");
        assert_eq!(azure_tag("skyform:lineage"), "skyform-lineage");
        assert_eq!(seam_tag("skyform-lineage").as_deref(), Some("skyform:lineage"));
        assert_eq!(seam_tag(TOKEN_TAG), None);
        assert_eq!(seam_tag("team"), None);
        assert_eq!(zone_of("eastus", "eastus"), None);
        assert_eq!(zone_of("eastus", "eastus-2").as_deref(), Some("2"));
        assert_eq!(zone_of("eastus", "3").as_deref(), Some("3"));
    }
}
