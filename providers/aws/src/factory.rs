//! [`AwsFactory`]: the AWS provider in skyform's registry.

use crate::backend::{S3BackendConfig, S3Objects};
use crate::market::AwsMarket;
use crate::{AwsConfig, AwsProvider};
use skyform_provider::factory::BackendStore;
use skyform_provider::{BuildContext, ConfigError, Factory, Market, Provider, ProviderError};
use std::sync::Arc;

/// `provider "aws" { }` and `backend "s3" { }`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsFactory;

fn config(body: &serde_json::Value) -> Result<AwsConfig, ProviderError> {
    AwsConfig::from_json(body).map_err(crate::other)
}

impl Factory for AwsFactory {
    fn name(&self) -> &str {
        crate::CLOUD
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
        AwsConfig::from_json(body).map(|_| ()).map_err(ConfigError::block)
    }

    fn provider(&self, body: &serde_json::Value, _ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(AwsProvider::new(config(body)?).map_err(crate::other)?))
    }

    fn market(&self, body: &serde_json::Value, _ctx: &BuildContext) -> Result<Option<Box<dyn Market>>, ProviderError> {
        let p = Arc::new(AwsProvider::new(config(body)?).map_err(crate::other)?);
        Ok(Some(Box::new(AwsMarket::new(p))))
    }

    fn backends(&self) -> &[&str] {
        &["s3"]
    }

    fn check_backend(&self, _kind: &str, body: &serde_json::Value) -> Result<(), ConfigError> {
        S3BackendConfig::from_json(body).map(|_| ())
    }

    fn backend(&self, _kind: &str, body: &serde_json::Value) -> Result<BackendStore, ProviderError> {
        let c = S3BackendConfig::from_json(body).map_err(|e| crate::other(e.message))?;
        Ok(BackendStore { objects: Arc::new(S3Objects::new(&c)?), key: c.key.clone(), id: c.id() })
    }
}
