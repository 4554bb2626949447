//! The `azurerm` state backend's object store, like Terraform's azurerm backend:
//! `skyform { backend "azurerm" { storage_account, container, key, storage_endpoint,
//! access_key, tenant_id, client_id, client_secret } }` (`storage_account_name` and
//! `container_name`, Terraform's spellings, are accepted too). Conditional puts give
//! skyform's state layer one lock holder and no lost update: create with
//! `If-None-Match: *` (Azure answers 409 when the blob exists), update with `If-Match` on
//! the ETag (412 when it changed). Without `access_key` (or `AZURE_STORAGE_KEY`) the blob
//! service is reached with the Entra ID credential chain.

use crate::config::AzureConfig;
use crate::storage::{self, Blobs, Conditional};
use crate::Rt;
use azure_storage_blobs::prelude::ContainerClient;
use skyform_provider::objects::{Objects, Put};
use skyform_provider::{ConfigError, ProviderError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `backend "azurerm" { ... }`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzurermBackendConfig {
    #[serde(alias = "storage_account_name")]
    pub storage_account: String,
    #[serde(alias = "container_name")]
    pub container: String,
    pub key: String,
    #[serde(default)]
    pub storage_endpoint: Option<String>,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
}

impl AzurermBackendConfig {
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ConfigError> {
        let c: AzurermBackendConfig =
            serde_json::from_value(v.clone()).map_err(|e| ConfigError::block(format!("backend \"azurerm\": {e}")))?;
        for (attr, val) in [("storage_account", &c.storage_account), ("container", &c.container), ("key", &c.key)] {
            if val.trim().is_empty() {
                return Err(ConfigError::attribute(attr, format!("backend \"azurerm\": `{attr}` must not be empty")));
            }
        }
        // The provider's checks of the same attributes.
        let as_provider = AzureConfig {
            storage_account: Some(c.storage_account.clone()),
            storage_endpoint: c.storage_endpoint.clone(),
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            ..AzureConfig::default()
        };
        as_provider.check().map_err(|e| ConfigError {
            attribute: e.attribute,
            message: e.message.replace("provider \"azure\"", "backend \"azurerm\""),
        })?;
        Ok(c)
    }

    /// A name for the local working copy of this backend's state.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.storage_account, self.container, self.key)
    }
}

/// The blobs of one container.
pub struct BlobObjects {
    rt: Rt,
    container: ContainerClient,
    account: String,
    created: AtomicBool,
}

impl BlobObjects {
    /// The container's client (no network call yet).
    pub fn new(c: &AzurermBackendConfig) -> Result<BlobObjects, ProviderError> {
        let cfg = AzureConfig {
            storage_account: Some(c.storage_account.clone()),
            storage_endpoint: c.storage_endpoint.clone(),
            access_key: c.access_key.clone(),
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            ..AzureConfig::default()
        };
        let access_key =
            cfg.access_key.clone().or_else(|| std::env::var("AZURE_STORAGE_KEY").ok().filter(|k| !k.is_empty()));
        // The Entra ID chain only without an account key (with one, nothing asks for a token).
        let credential: std::sync::Arc<dyn azure_core::auth::TokenCredential> = match &access_key {
            Some(_) => std::sync::Arc::new(crate::arm::StaticToken(String::new())),
            None => crate::arm::credential(&cfg).map_err(crate::other)?,
        };
        let http = crate::arm::http_client(Duration::from_secs(30)).map_err(crate::other)?;
        let endpoint = cfg.storage_endpoint.clone().unwrap_or_else(|| crate::config::DEFAULT_STORAGE_ENDPOINT.into());
        let blobs = Blobs::new(&endpoint, access_key, credential, http);
        Ok(BlobObjects {
            rt: Rt::new("skyform-azurerm").map_err(crate::other)?,
            container: blobs.container(&c.storage_account, &c.container),
            account: c.storage_account.clone(),
            created: AtomicBool::new(false),
        })
    }

    fn ensure_container(&self) -> Result<(), ProviderError> {
        if self.created.load(Ordering::SeqCst) {
            return Ok(());
        }
        let c = self.container.clone();
        // Creating needs more rights than writing blobs: a refusal is left to the write.
        let _ = self.rt.block(async move { storage::ensure_container(&c).await });
        self.created.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Objects for BlobObjects {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, ProviderError> {
        let (c, k) = (self.container.clone(), key.to_string());
        self.rt.block(async move { storage::get(&c, &k).await })
    }

    fn put_if(&self, key: &str, data: Vec<u8>, version: Option<&str>) -> Result<Put, ProviderError> {
        self.ensure_container()?;
        let (c, k, t) = (self.container.clone(), key.to_string(), version.map(str::to_string));
        let r = self.rt.block(async move { storage::put_conditional(&c, &k, data, t.as_deref()).await })?;
        Ok(match r {
            Conditional::Written(t) => Put::Written(t),
            Conditional::Refused => Put::Refused,
        })
    }

    fn delete(&self, key: &str) -> Result<(), ProviderError> {
        let (c, k) = (self.container.clone(), key.to_string());
        self.rt.block(async move { storage::delete(&c, &k).await })
    }

    fn describe(&self, key: &str) -> String {
        format!("az://{}/{}/{key}", self.account, self.container.container_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backend_blocks_are_checked() {
        let c = AzurermBackendConfig::from_json(
            &json!({"storage_account_name": "acct", "container_name": "tfstate", "key": "job.json"}),
        )
        .unwrap();
        assert_eq!((c.storage_account.as_str(), c.container.as_str()), ("acct", "tfstate"));
        let e = AzurermBackendConfig::from_json(&json!({"storage_account": "acct", "container": "c", "key": ""}))
            .unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("key"));
        let e = AzurermBackendConfig::from_json(
            &json!({"storage_account": "acct", "container": "c", "key": "k", "bucket": "x"}),
        )
        .unwrap_err();
        assert!(e.message.contains("bucket"), "{e}");
        let e = AzurermBackendConfig::from_json(
            &json!({"storage_account": "acct", "container": "c", "key": "k", "storage_endpoint": "127.0.0.1:1"}),
        )
        .unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("storage_endpoint"));
        assert!(e.message.starts_with("backend \"azurerm\""), "{e}");
    }
}
