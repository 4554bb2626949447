//! [`AzureFactory`]: the Azure provider in skyform's registry.

use crate::backend::{AzurermBackendConfig, BlobObjects};
use crate::{AzureConfig, AzureProvider};
use skyform_provider::factory::BackendStore;
use skyform_provider::{BuildContext, ConfigError, Factory, InstanceShape, Provider, ProviderError};
use std::sync::Arc;

/// `provider "azure" { }` and `backend "azurerm" { }`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AzureFactory;

impl Factory for AzureFactory {
    fn name(&self) -> &str {
        crate::CLOUD
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
        AzureConfig::from_json(body).map(|_| ())
    }

    fn provider(&self, body: &serde_json::Value, _ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let cfg = AzureConfig::from_json(body).map_err(|e| crate::other(e.message))?;
        Ok(Arc::new(AzureProvider::new(cfg)?))
    }

    /// The resource SKUs of the subscription (see [`crate::skus`]).
    fn instance_shapes(
        &self,
        body: &serde_json::Value,
        _ctx: &BuildContext,
    ) -> Result<Option<Vec<InstanceShape>>, ProviderError> {
        let cfg = AzureConfig::from_json(body).map_err(|e| crate::other(e.message))?;
        crate::skus::instance_shapes(&cfg)
    }

    // No market: Azure's spot prices come with the catalog (`market` stays `None`).
    fn price_source(&self) -> &str {
        "the catalog (Azure retail prices, spot included, imported with `skyform catalog import`)"
    }

    fn backends(&self) -> &[&str] {
        &["azurerm"]
    }

    fn check_backend(&self, kind: &str, body: &serde_json::Value) -> Result<(), ConfigError> {
        if kind != "azurerm" {
            return Err(ConfigError::block(format!("provider azure serves no backend \"{kind}\"")));
        }
        AzurermBackendConfig::from_json(body).map(|_| ())
    }

    fn backend(&self, kind: &str, body: &serde_json::Value) -> Result<BackendStore, ProviderError> {
        self.check_backend(kind, body).map_err(|e| crate::other(e.message))?;
        let c = AzurermBackendConfig::from_json(body).map_err(|e| crate::other(e.message))?;
        Ok(BackendStore { objects: Arc::new(BlobObjects::new(&c)?), key: c.key.clone(), id: c.id() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_needs_no_credentials_and_names_attributes() {
        let f = AzureFactory;
        assert_eq!(f.name(), "azure");
        f.check(&json!({})).unwrap();
        f.check(&json!({"regions": ["eastus"], "resource_group": "rg"})).unwrap();
        let e = f.check(&json!({"region": "eastus"})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("region"));
        assert!(f.market(&json!({}), &BuildContext::new(".")).unwrap().is_none());
        assert!(f.price_source().contains("catalog"));
        assert_eq!(f.backends(), ["azurerm"]);
        assert!(f.check_backend("s3", &json!({})).is_err());
        f.check_backend("azurerm", &json!({"storage_account": "a", "container": "c", "key": "k"})).unwrap();
    }

    #[test]
    fn building_without_a_subscription_says_what_is_missing() {
        if std::env::var("AZURE_SUBSCRIPTION_ID").is_ok() {
            return;
        }
        let Err(e) = AzureFactory.provider(&json!({"storage_account": "acct"}), &BuildContext::new(".")) else {
            panic!("a provider without a subscription");
        };
        assert_eq!((e.kind, e.scope), (skyform_provider::ErrorKind::Unauthorized, skyform_provider::Scope::Cloud));
        assert!(e.message.contains("subscription_id"), "{e}");
    }
}
