//! The `s3` state backend's object store: `skyform { backend "s3" { bucket, key, region,
//! endpoint, profile } }`. Conditional puts (`If-None-Match: *` to create, `If-Match` on
//! the ETag to update) give skyform's state layer one lock holder and no lost update.

use crate::storage::{self, Conditional};
use crate::{AwsConfig, AwsProvider};
use skyform_provider::objects::{Objects, Put};
use skyform_provider::{ConfigError, ProviderError};

/// `backend "s3" { bucket, key, region, endpoint, profile }`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3BackendConfig {
    pub bucket: String,
    pub key: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl S3BackendConfig {
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ConfigError> {
        let c: S3BackendConfig =
            serde_json::from_value(v.clone()).map_err(|e| ConfigError::block(format!("backend \"s3\": {e}")))?;
        if c.bucket.is_empty() {
            return Err(ConfigError::attribute("bucket", "backend \"s3\": `bucket` must not be empty"));
        }
        if c.key.is_empty() {
            return Err(ConfigError::attribute("key", "backend \"s3\": `key` must not be empty"));
        }
        Ok(c)
    }

    /// A name for the local working copy of this backend's state.
    pub fn id(&self) -> String {
        format!("{}-{}", self.bucket, self.key)
    }
}

/// The objects of one S3 bucket (through the AWS provider's SDK clients).
pub struct S3Objects {
    provider: AwsProvider,
    bucket: String,
    region: String,
}

impl S3Objects {
    pub fn new(c: &S3BackendConfig) -> Result<S3Objects, ProviderError> {
        let cfg = AwsConfig {
            regions: vec![c.region.clone()],
            endpoint: c.endpoint.clone(),
            profile: c.profile.clone(),
            ..AwsConfig::default()
        };
        let provider = AwsProvider::new(cfg).map_err(crate::other)?;
        Ok(S3Objects { provider, bucket: c.bucket.clone(), region: c.region.clone() })
    }
}

impl Objects for S3Objects {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, ProviderError> {
        let s3 = self.provider.clients(&self.region).s3;
        let (b, k) = (self.bucket.clone(), key.to_string());
        let r = self.provider.block(async move { storage::get(&s3, &b, &k).await })?;
        Ok(r.map(|(d, etag)| (d, etag.unwrap_or_default())))
    }

    fn put_if(&self, key: &str, data: Vec<u8>, version: Option<&str>) -> Result<Put, ProviderError> {
        let s3 = self.provider.clients(&self.region).s3;
        let (b, k, t) = (self.bucket.clone(), key.to_string(), version.map(str::to_string));
        let r = self.provider.block(async move { storage::put_conditional(&s3, &b, &k, data, t.as_deref()).await })?;
        Ok(match r {
            Conditional::Written(t) => Put::Written(t.unwrap_or_default()),
            Conditional::Refused => Put::Refused,
        })
    }

    fn delete(&self, key: &str) -> Result<(), ProviderError> {
        let s3 = self.provider.clients(&self.region).s3;
        let (b, k) = (self.bucket.clone(), key.to_string());
        self.provider.block(async move { storage::delete(&s3, &b, &k).await })
    }

    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}
