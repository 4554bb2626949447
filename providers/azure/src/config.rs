//! `provider "azure" { ... }`: subscription, resource group, credentials, ARM endpoint,
//! storage account, image, network and the waits. No I/O: [`AzureConfig::from_json`] and
//! [`AzureConfig::check`] only read the block, so `validate` and `plan` need no
//! credentials; what only `apply` needs (subscription, storage account) is required by
//! [`AzureConfig::resolve`], which the provider calls when it is built.

use serde::{Deserialize, Serialize};
use skyform_provider::ConfigError;
use std::collections::BTreeMap;

/// Canonical's Ubuntu 24.04 LTS (Gen2) from the marketplace, as `publisher:offer:sku:version`.
pub const DEFAULT_IMAGE: &str = "Canonical:ubuntu-24_04-lts:server:latest";

/// The public cloud's Resource Manager.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";

/// The blob service of an account in the public cloud (`{account}` is replaced).
pub const DEFAULT_STORAGE_ENDPOINT: &str = "https://{account}.blob.core.windows.net";

/// The configuration of the Azure provider. Everything has a default or may be left out
/// until `apply` (see [`AzureConfig::resolve`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// The subscription VMs are created in; `AZURE_SUBSCRIPTION_ID` when left out.
    pub subscription_id: Option<String>,
    /// The resource group that holds skyform's VMs, NICs, disks and virtual networks. It
    /// must exist (`az group create -n skyform -l eastus`).
    pub resource_group: String,
    /// Regions skyform may use (empty: every region of the catalog the policy allows).
    pub regions: Vec<String>,
    /// A service principal (all three, or none: then the standard chain — environment
    /// variables `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`, then the Azure
    /// CLI's login).
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Resource Manager's URL. A loopback URL (an emulator or a fake) gets a placeholder
    /// token and no credential is looked up.
    pub endpoint: Option<String>,
    /// The storage account of run directories and task outputs; `{region}` is replaced by
    /// the region (one account per region keeps data next to its VMs; an account lives in
    /// one region). `AZURE_STORAGE_ACCOUNT` when left out.
    pub storage_account: Option<String>,
    /// The blob service URL of an account (`{account}` is replaced); default
    /// `https://{account}.blob.core.windows.net`. Azurite: `http://127.0.0.1:10000/{account}`.
    pub storage_endpoint: Option<String>,
    /// The storage account key (`AZURE_STORAGE_KEY` when left out). Without it, Blob
    /// storage is reached with the Entra ID credential and VMs get user-delegation SAS.
    pub access_key: Option<String>,
    /// The container of a region's run directories and outputs (`{region}` replaced);
    /// created when missing.
    pub container: String,
    /// The VM image: `publisher:offer:sku:version` or an image resource id.
    pub image: String,
    /// The image of allocations with accelerators (GPU sizes), when it differs: one with
    /// NVIDIA drivers, such as `microsoft-dsvm:ubuntu-hpc:2204:latest`. Default: `image`.
    pub gpu_image: Option<String>,
    /// The virtual network of a region's VMs (`{region}` replaced), created with `subnet`
    /// when missing.
    pub vnet: String,
    /// The subnet name in `vnet`, or a subnet resource id (`/subscriptions/...`) to use as is.
    pub subnet: String,
    /// The address space of a virtual network skyform creates (its subnet takes all of it).
    pub address_prefix: String,
    /// Tags on everything skyform creates, next to its owner tags.
    pub tags: BTreeMap<String, String>,
    /// The VMs' admin user.
    pub admin_username: String,
    /// An SSH public key for the admin user; without it the user gets a random password
    /// that nobody knows (the VMs have no public address anyway).
    pub ssh_public_key: Option<String>,
    /// The OS disk's storage type.
    pub os_disk_type: String,
    /// `billingProfile.maxPrice` of spot VMs: -1 pays up to the on-demand price (never
    /// evicted for price), or a USD/hour cap.
    pub spot_max_price: f64,
    /// Seconds between the bootstrap's looks for its task.
    pub poll_seconds: u32,
    /// Hours a VM's SAS for its container stays valid (at most 168 with Entra ID).
    pub sas_hours: u32,
    /// Seconds `allocate` waits for `provisioningState` to leave `Creating` (a VM still
    /// creating after that is returned; a failure later shows as preempted).
    pub create_wait_seconds: u32,
    /// Seconds `release` waits for the VM, NIC and disk to be gone (below the engine's 60 s
    /// per-call timeout; a release still deleting fails transiently and is retried).
    pub delete_wait_seconds: u32,
    /// Seconds one HTTP request may take.
    pub request_timeout_seconds: u32,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            subscription_id: None,
            resource_group: "skyform".into(),
            regions: Vec::new(),
            tenant_id: None,
            client_id: None,
            client_secret: None,
            endpoint: None,
            storage_account: None,
            storage_endpoint: None,
            access_key: None,
            container: "skyform-{region}".into(),
            image: DEFAULT_IMAGE.into(),
            gpu_image: None,
            vnet: "skyform-{region}".into(),
            subnet: "default".into(),
            address_prefix: "10.64.0.0/16".into(),
            tags: BTreeMap::new(),
            admin_username: "skyform".into(),
            ssh_public_key: None,
            os_disk_type: "StandardSSD_LRS".into(),
            spot_max_price: -1.0,
            poll_seconds: 5,
            sas_hours: 168,
            create_wait_seconds: 40,
            delete_wait_seconds: 45,
            request_timeout_seconds: 30,
        }
    }
}

/// Where the subscription and the storage account come from once resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub subscription_id: String,
    pub storage_account: String,
    pub access_key: Option<String>,
}

fn http_url(attr: &str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::attribute(attr, format!("provider \"azure\": `{attr}` must be an http(s) URL, got `{v}`")))
    }
}

/// True for `http(s)://127.0.0.1…`, `localhost` and `[::1]` URLs.
pub fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map(|x| x.1).unwrap_or(host);
    let name = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

impl AzureConfig {
    /// Reads the body of a `provider "azure"` block (as JSON) and checks it.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ConfigError> {
        let cfg: AzureConfig = serde_json::from_value(v.clone()).map_err(|e| {
            let msg = format!("provider \"azure\": {e}");
            // serde names the unknown field: point at it.
            match unknown_field(&e.to_string()) {
                Some(f) => ConfigError::attribute(f, msg),
                None => ConfigError::block(msg),
            }
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Validates the configuration without contacting anything.
    pub fn check(&self) -> Result<(), ConfigError> {
        let nonempty = |attr: &str, v: &str| {
            if v.trim().is_empty() {
                Err(ConfigError::attribute(attr, format!("provider \"azure\": `{attr}` must not be empty")))
            } else {
                Ok(())
            }
        };
        nonempty("resource_group", &self.resource_group)?;
        nonempty("container", &self.container)?;
        nonempty("vnet", &self.vnet)?;
        nonempty("subnet", &self.subnet)?;
        nonempty("admin_username", &self.admin_username)?;
        if let Some(e) = &self.endpoint {
            http_url("endpoint", e)?;
        }
        if let Some(e) = &self.storage_endpoint {
            http_url("storage_endpoint", e)?;
        }
        let sp = [&self.tenant_id, &self.client_id, &self.client_secret];
        let given = sp.iter().filter(|v| v.is_some()).count();
        if given != 0 && given != 3 {
            let missing = ["tenant_id", "client_id", "client_secret"]
                .iter()
                .zip(sp)
                .find(|(_, v)| v.is_none())
                .map(|(n, _)| *n)
                .unwrap_or("client_secret");
            return Err(ConfigError::attribute(
                missing,
                format!(
                    "provider \"azure\": a service principal needs tenant_id, client_id and client_secret; `{missing}` is missing"
                ),
            ));
        }
        if let Some(a) = &self.storage_account {
            let name = a.replace("{region}", "");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
                return Err(ConfigError::attribute(
                    "storage_account",
                    format!("provider \"azure\": `storage_account` `{a}`: Azure account names are lowercase letters and digits"),
                ));
            }
        }
        check_image("image", &self.image)?;
        if let Some(g) = &self.gpu_image {
            check_image("gpu_image", g)?;
        }
        if self.spot_max_price != -1.0 && self.spot_max_price <= 0.0 {
            return Err(ConfigError::attribute(
                "spot_max_price",
                "provider \"azure\": `spot_max_price` is -1 (up to the on-demand price) or a positive USD/hour",
            ));
        }
        for (attr, v) in [
            ("poll_seconds", self.poll_seconds),
            ("sas_hours", self.sas_hours),
            ("request_timeout_seconds", self.request_timeout_seconds),
        ] {
            if v == 0 {
                return Err(ConfigError::attribute(attr, format!("provider \"azure\": `{attr}` must be at least 1")));
            }
        }
        for k in self.tags.keys() {
            if k.starts_with("skyform-") {
                return Err(ConfigError::attribute(
                    "tags",
                    format!("provider \"azure\": tag `{k}`: the `skyform-` prefix is skyform's own"),
                ));
            }
        }
        Ok(())
    }

    /// What `apply` needs and `plan` does not: the subscription and the storage account
    /// (from the block, else `AZURE_SUBSCRIPTION_ID`, `AZURE_STORAGE_ACCOUNT`,
    /// `AZURE_STORAGE_KEY`).
    pub fn resolve(&self) -> Result<Resolved, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let subscription_id = self.subscription_id.clone().or_else(|| env("AZURE_SUBSCRIPTION_ID")).ok_or(
            "provider \"azure\": no subscription: set `subscription_id` or AZURE_SUBSCRIPTION_ID \
             (`az account show --query id -o tsv` prints yours)",
        )?;
        let storage_account = self.storage_account.clone().or_else(|| env("AZURE_STORAGE_ACCOUNT")).ok_or(
            "provider \"azure\": no storage account for run directories and outputs: set `storage_account` \
             or AZURE_STORAGE_ACCOUNT",
        )?;
        Ok(Resolved {
            subscription_id,
            storage_account,
            access_key: self.access_key.clone().or_else(|| env("AZURE_STORAGE_KEY")),
        })
    }

    /// Resource Manager's URL in use.
    pub fn arm_endpoint(&self) -> String {
        self.endpoint.clone().unwrap_or_else(|| DEFAULT_ENDPOINT.into()).trim_end_matches('/').to_string()
    }

    /// The storage account of a region, given the resolved account template.
    pub fn account_for(account: &str, region: &str) -> String {
        account.replace("{region}", region)
    }

    /// The container of a region.
    pub fn container_for(&self, region: &str) -> String {
        self.container.replace("{region}", region)
    }

    /// The blob service URL of an account.
    pub fn blob_endpoint(&self, account: &str) -> String {
        self.storage_endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_STORAGE_ENDPOINT.into())
            .replace("{account}", account)
            .trim_end_matches('/')
            .to_string()
    }

    /// The virtual network of a region.
    pub fn vnet_for(&self, region: &str) -> String {
        self.vnet.replace("{region}", region)
    }
}

/// The `imageReference` of an image (`publisher:offer:sku:version`, checked by
/// [`AzureConfig::check`], or a resource id).
pub fn image_reference(image: &str) -> serde_json::Value {
    let p: Vec<&str> = image.split(':').collect();
    match p.as_slice() {
        [publisher, offer, sku, version] if !image.starts_with('/') => {
            serde_json::json!({ "publisher": publisher, "offer": offer, "sku": sku, "version": version })
        }
        _ => serde_json::json!({ "id": image }),
    }
}

fn check_image(attr: &str, image: &str) -> Result<(), ConfigError> {
    if image.trim().is_empty() {
        return Err(ConfigError::attribute(attr, format!("provider \"azure\": `{attr}` must not be empty")));
    }
    if !image.starts_with('/') && image.split(':').count() != 4 {
        return Err(ConfigError::attribute(
            attr,
            format!("provider \"azure\": `{attr}` `{image}` is neither publisher:offer:sku:version nor an image resource id"),
        ));
    }
    Ok(())
}

/// The field serde calls unknown (`unknown field `regionz`, expected ...`).
fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_block_checks_and_needs_the_subscription_only_at_apply() {
        let c = AzureConfig::from_json(&json!({})).unwrap();
        assert_eq!(c.container_for("eastus"), "skyform-eastus");
        assert_eq!(c.blob_endpoint("acct"), "https://acct.blob.core.windows.net");
        if std::env::var("AZURE_SUBSCRIPTION_ID").is_err() {
            let e = c.resolve().unwrap_err();
            assert!(e.contains("subscription_id"), "{e}");
        }
        let c = AzureConfig::from_json(&json!({"subscription_id": "s", "storage_account": "data{region}"})).unwrap();
        let r = c.resolve().unwrap();
        assert_eq!(AzureConfig::account_for(&r.storage_account, "westeurope"), "datawesteurope");
    }

    #[test]
    fn bad_attributes_are_named() {
        let e = AzureConfig::from_json(&json!({"regionz": ["x"]})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("regionz"), "{e}");
        let e = AzureConfig::from_json(&json!({"endpoint": "localhost:1"})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("endpoint"), "{e}");
        let e = AzureConfig::from_json(&json!({"tenant_id": "t", "client_id": "c"})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("client_secret"), "{e}");
        let e = AzureConfig::from_json(&json!({"storage_account": "My_Account"})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("storage_account"), "{e}");
        let e = AzureConfig::from_json(&json!({"image": "Canonical:ubuntu"})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("image"), "{e}");
        let e = AzureConfig::from_json(&json!({"poll_seconds": 0})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("poll_seconds"), "{e}");
        let e = AzureConfig::from_json(&json!({"tags": {"skyform-job": "x"}})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("tags"), "{e}");
        let e = AzureConfig::from_json(&json!({"regions": "eastus"})).unwrap_err();
        assert!(e.message.contains("provider \"azure\""), "{e}");
    }

    #[test]
    fn images_and_loopback() {
        assert_eq!(image_reference(DEFAULT_IMAGE)["offer"], "ubuntu-24_04-lts");
        assert_eq!(image_reference("/subscriptions/s/images/i"), json!({"id": "/subscriptions/s/images/i"}));
        let e = AzureConfig::from_json(&json!({"gpu_image": "dsvm"})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("gpu_image"), "{e}");
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://localhost"));
        assert!(is_loopback("http://[::1]:9/"));
        assert!(!is_loopback("https://management.azure.com"));
        assert!(!is_loopback("https://127.0.0.1.example.com"));
    }
}
