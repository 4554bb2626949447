//! The `gcs` state backend's object store, like Terraform's gcs backend:
//! `skyform { backend "gcs" { bucket, prefix, storage_endpoint, credentials } }`. The state
//! is the object `PREFIX/default.state.json` (its lock `PREFIX/default.state.json.lock`).
//! Writes are conditional on the object's generation (`ifGenerationMatch=0` creates only if
//! absent), so skyform's state layer gets one lock holder and no lost update. Does network
//! I/O once [`GcsObjects`] is used.

use crate::blocking::Blocking;
use crate::config::blame;
use crate::storage::{Conditional, Gcs};
use skyform_provider::objects::{Objects, Put};
use skyform_provider::{ConfigError, ErrorKind, ProviderError};
use std::path::Path;
use std::time::Duration;

/// The state object's name under the prefix.
pub const STATE_OBJECT: &str = "default.state.json";

/// `backend "gcs" { bucket, prefix, storage_endpoint, credentials }`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsBackendConfig {
    /// An existing bucket.
    pub bucket: String,
    /// Where in the bucket the state lives (no leading or trailing `/` needed).
    #[serde(default)]
    pub prefix: String,
    /// The Cloud Storage endpoint (an emulator); default the public one.
    #[serde(default)]
    pub storage_endpoint: Option<String>,
    /// A credentials file, or `"anonymous"`; none: Application Default Credentials.
    #[serde(default)]
    pub credentials: Option<String>,
}

impl GcsBackendConfig {
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ConfigError> {
        let what = "backend \"gcs\"";
        let c: GcsBackendConfig = serde_json::from_value(v.clone())
            .map_err(|e| blame::<GcsBackendConfig>(what, v, serde_json::json!({"bucket": "b"}), e))?;
        if c.bucket.is_empty()
            || !c.bucket.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_.".contains(ch))
        {
            return Err(ConfigError::attribute("bucket", format!("{what}: `{}` is not a bucket name", c.bucket)));
        }
        if let Some(e) = &c.storage_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ConfigError::attribute(
                    "storage_endpoint",
                    format!("{what}: `storage_endpoint` must be an http(s) URL, got `{e}`"),
                ));
            }
        }
        if matches!(&c.credentials, Some(x) if x.trim().is_empty()) {
            return Err(ConfigError::attribute("credentials", format!("{what}: `credentials` must not be empty")));
        }
        Ok(c)
    }

    /// The key of the state object.
    pub fn key(&self) -> String {
        match self.prefix.trim_matches('/') {
            "" => STATE_OBJECT.to_string(),
            p => format!("{p}/{STATE_OBJECT}"),
        }
    }

    /// A name for the local working copy of this backend's state.
    pub fn id(&self) -> String {
        let p = self.prefix.trim_matches('/').replace('/', "-");
        if p.is_empty() {
            format!("gcs-{}", self.bucket)
        } else {
            format!("gcs-{}-{p}", self.bucket)
        }
    }
}

/// The objects of one bucket.
pub struct GcsObjects {
    gcs: Gcs,
    bucket: String,
    /// Last: the client is dropped before its runtime.
    rt: Blocking,
}

impl GcsObjects {
    /// Opens the bucket of a backend block (`job_dir` anchors a relative credentials path).
    pub fn new(c: &GcsBackendConfig, job_dir: &Path) -> Result<GcsObjects, ProviderError> {
        let (creds, _) = crate::auth::credentials(c.credentials.as_deref(), job_dir)?;
        let rt = Blocking::new("skyform-gcs")?;
        let ep = c.storage_endpoint.clone();
        let gcs = rt.block(async move { Gcs::new(ep.as_deref(), creds, None, Duration::from_secs(30)).await })?;
        Ok(GcsObjects { gcs, bucket: c.bucket.clone(), rt })
    }
}

impl Objects for GcsObjects {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, ProviderError> {
        let (g, b, k) = (self.gcs.clone(), self.bucket.clone(), key.to_string());
        let r = self.rt.block(async move { g.get(&b, &k).await })?;
        Ok(r.map(|(d, generation)| (d, generation.to_string())))
    }

    fn put_if(&self, key: &str, data: Vec<u8>, version: Option<&str>) -> Result<Put, ProviderError> {
        let generation = match version {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| {
                ProviderError::new(
                    ErrorKind::Other,
                    None,
                    format!("`{v}` is not a generation of {}", self.describe(key)),
                )
            })?,
        };
        let (g, b, k) = (self.gcs.clone(), self.bucket.clone(), key.to_string());
        let r = self.rt.block(async move { g.put_if(&b, &k, data, generation).await })?;
        Ok(match r {
            Conditional::Written(gen) => Put::Written(gen.to_string()),
            Conditional::Refused => Put::Refused,
        })
    }

    fn delete(&self, key: &str) -> Result<(), ProviderError> {
        let (g, b, k) = (self.gcs.clone(), self.bucket.clone(), key.to_string());
        self.rt.block(async move { g.delete(&b, &k).await })
    }

    fn describe(&self, key: &str) -> String {
        format!("gs://{}/{key}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_checks() {
        let c = GcsBackendConfig::from_json(&json!({"bucket": "tf-state", "prefix": "team/job/"})).unwrap();
        assert_eq!(c.key(), "team/job/default.state.json");
        assert_eq!(c.id(), "gcs-tf-state-team-job");
        let c = GcsBackendConfig::from_json(&json!({"bucket": "tf-state"})).unwrap();
        assert_eq!(c.key(), "default.state.json");
        for (body, attr) in [
            (json!({"bucket": "tf-state", "prefixx": "a"}), Some("prefixx")),
            (json!({"bucket": "tf-state", "prefix": 3}), Some("prefix")),
            (json!({"bucket": "Bad Bucket"}), Some("bucket")),
            (json!({"bucket": "b", "storage_endpoint": "localhost"}), Some("storage_endpoint")),
            (json!({"prefix": "a"}), None),
        ] {
            let e = GcsBackendConfig::from_json(&body).unwrap_err();
            assert_eq!(e.attribute.as_deref(), attr, "{body}: {e}");
        }
    }
}
