//! [`GcpFactory`]: the GCP provider in skyform's registry (`provider "gcp" { }` and
//! `backend "gcs" { }`).

use crate::backend::{GcsBackendConfig, GcsObjects};
use crate::{GcpConfig, GcpProvider};
use skyform_provider::factory::BackendStore;
use skyform_provider::{BuildContext, ConfigError, Factory, Provider, ProviderError};
use std::sync::Arc;

/// Where GCP spot prices come from (`tracker refresh` says it).
pub const PRICE_SOURCE: &str =
    "the catalog (GCP publishes spot prices in its billing catalog, not through the Compute Engine API)";

/// `provider "gcp" { }` and `backend "gcs" { }`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcpFactory;

impl Factory for GcpFactory {
    fn name(&self) -> &str {
        crate::CLOUD
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
        GcpConfig::from_json(body).map(|_| ())
    }

    fn provider(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let cfg = GcpConfig::from_json(body).map_err(|e| crate::other(e.message))?;
        Ok(Arc::new(GcpProvider::new(cfg, &ctx.job_dir)?))
    }

    fn price_source(&self) -> &str {
        PRICE_SOURCE
    }

    fn backends(&self) -> &[&str] {
        &["gcs"]
    }

    fn check_backend(&self, kind: &str, body: &serde_json::Value) -> Result<(), ConfigError> {
        if kind != "gcs" {
            return Err(ConfigError::block(format!("provider gcp serves no backend \"{kind}\"")));
        }
        GcsBackendConfig::from_json(body).map(|_| ())
    }

    fn backend(&self, kind: &str, body: &serde_json::Value) -> Result<BackendStore, ProviderError> {
        if kind != "gcs" {
            return Err(ProviderError::new(
                skyform_provider::ErrorKind::Unsupported,
                None,
                format!("provider gcp serves no backend \"{kind}\""),
            ));
        }
        let c = GcsBackendConfig::from_json(body).map_err(|e| crate::other(e.message))?;
        let objects = GcsObjects::new(&c, std::path::Path::new(""))?;
        Ok(BackendStore { objects: Arc::new(objects), key: c.key(), id: c.id() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_need_no_credentials_and_name_attributes() {
        let f = GcpFactory;
        assert_eq!(f.name(), "gcp");
        f.check(&json!({})).unwrap();
        f.check(&json!({"regions": ["us-central1"], "credentials": "/nonexistent/key.json"})).unwrap();
        assert_eq!(f.check(&json!({"zones": []})).unwrap_err().attribute.as_deref(), Some("zones"));
        assert!(f.market(&json!({}), &BuildContext::default()).unwrap().is_none());
        assert!(f.price_source().contains("catalog"));
        assert_eq!(f.backends(), ["gcs"]);
        f.check_backend("gcs", &json!({"bucket": "b", "prefix": "p"})).unwrap();
        assert!(f.check_backend("s3", &json!({"bucket": "b"})).is_err());
    }

    #[test]
    fn a_missing_key_file_fails_at_build_not_at_check() {
        let f = GcpFactory;
        let body = json!({"project": "p", "credentials": "missing-key.json"});
        f.check(&body).unwrap();
        let e = f.provider(&body, &BuildContext::new("/nonexistent")).err().expect("no key file");
        assert_eq!(e.kind, skyform_provider::ErrorKind::Unauthorized);
        assert!(e.message.contains("missing-key.json"), "{e}");
        if std::env::var_os("GOOGLE_CLOUD_PROJECT").is_none() && std::env::var_os("CLOUDSDK_CORE_PROJECT").is_none() {
            let e =
                f.provider(&json!({"credentials": "anonymous"}), &BuildContext::default()).err().expect("no project");
            assert!(e.message.contains("no project"), "{e}");
        }
    }
}
