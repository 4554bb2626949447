//! `provider "aws" { ... }`: regions, credentials profile, endpoint, data bucket, images.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The default image: Canonical's Ubuntu 22.04 published through a public SSM parameter,
/// which `RunInstances` resolves itself (`resolve:ssm:`), so no AMI id is pinned per region.
pub const DEFAULT_IMAGE_AMD64: &str =
    "resolve:ssm:/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id";
/// The arm64 twin of [`DEFAULT_IMAGE_AMD64`] (Graviton instance types).
pub const DEFAULT_IMAGE_ARM64: &str =
    "resolve:ssm:/aws/service/canonical/ubuntu/server/22.04/stable/current/arm64/hvm/ebs-gp2/ami-id";

/// The configuration of the AWS provider. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Regions skyform may use (empty: every region of the catalog that the policy allows).
    pub regions: Vec<String>,
    /// A named profile of the shared config files (`~/.aws/config`); none: the standard chain.
    pub profile: Option<String>,
    /// An endpoint for every service (emulators); `AWS_ENDPOINT_URL` is honoured too.
    pub endpoint: Option<String>,
    /// The S3 bucket that holds a region's run directories and task outputs; `{region}` is
    /// replaced by the region. Created when missing.
    pub bucket: String,
    /// The image per region (`"*"` for every region); values are AMI ids or `resolve:ssm:`
    /// parameters. Default: Ubuntu 22.04 of the instance type's architecture.
    pub images: BTreeMap<String, String>,
    /// An instance profile (IAM role) the instances run with, so they can reach S3.
    pub instance_profile: Option<String>,
    /// Seconds between the bootstrap's looks for its task.
    pub poll_seconds: u32,
    /// An instance that finished its task and was not released after this many minutes
    /// shuts itself down (and so terminates): a safety net if skyform is gone.
    pub idle_shutdown_minutes: u32,
    /// Seconds `release` waits for `terminated` (below the engine's 60 s per-call timeout;
    /// a release that is still shutting down then fails transiently and is retried).
    pub terminate_wait_seconds: u32,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            regions: Vec::new(),
            profile: None,
            endpoint: None,
            bucket: "skyform-{region}".into(),
            images: BTreeMap::new(),
            instance_profile: None,
            poll_seconds: 5,
            idle_shutdown_minutes: 30,
            terminate_wait_seconds: 50,
        }
    }
}

impl AwsConfig {
    /// Reads the body of a `provider "aws"` block (as JSON) and checks it.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let cfg: AwsConfig = serde_json::from_value(v.clone()).map_err(|e| format!("provider \"aws\": {e}"))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Validates the configuration.
    pub fn check(&self) -> Result<(), String> {
        if self.bucket.trim().is_empty() {
            return Err("provider \"aws\": `bucket` must not be empty".into());
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!("provider \"aws\": `endpoint` must be an http(s) URL, got `{e}`"));
            }
        }
        if self.poll_seconds == 0 {
            return Err("provider \"aws\": `poll_seconds` must be at least 1".into());
        }
        Ok(())
    }

    /// The data bucket of a region.
    pub fn bucket_for(&self, region: &str) -> String {
        self.bucket.replace("{region}", region)
    }

    /// The image of a region for an architecture (`x86_64` or `arm64`).
    pub fn image_for(&self, region: &str, arch: &str) -> String {
        if let Some(i) = self.images.get(region).or_else(|| self.images.get("*")) {
            return i.clone();
        }
        if arch == "arm64" {
            DEFAULT_IMAGE_ARM64.into()
        } else {
            DEFAULT_IMAGE_AMD64.into()
        }
    }

    /// The endpoint in use: the config's, else `AWS_ENDPOINT_URL`.
    pub fn effective_endpoint(&self) -> Option<String> {
        self.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|s| !s.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_templates() {
        let c = AwsConfig::from_json(&serde_json::json!({"regions": ["us-east-1"], "bucket": "team-{region}-data"}))
            .unwrap();
        assert_eq!(c.bucket_for("eu-west-1"), "team-eu-west-1-data");
        assert_eq!(c.image_for("us-east-1", "arm64"), DEFAULT_IMAGE_ARM64);
        let c = AwsConfig::from_json(&serde_json::json!({"images": {"*": "ami-1", "eu-west-1": "ami-2"}})).unwrap();
        assert_eq!(c.image_for("us-east-1", "x86_64"), "ami-1");
        assert_eq!(c.image_for("eu-west-1", "x86_64"), "ami-2");
    }

    #[test]
    fn bad_fields_are_named() {
        let e = AwsConfig::from_json(&serde_json::json!({"regionz": ["x"]})).unwrap_err();
        assert!(e.contains("regionz"), "{e}");
        let e = AwsConfig::from_json(&serde_json::json!({"endpoint": "localhost:1"})).unwrap_err();
        assert!(e.contains("endpoint"), "{e}");
    }
}
