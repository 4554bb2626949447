//! `provider "gcp" { ... }`: project, regions, credentials, endpoints, data bucket, images,
//! service account, network, labels. [`GcpConfig::from_json`] checks a block without any
//! I/O: a missing project or credentials is not an error here (`plan` needs neither); the
//! provider says so when it is built.

use crate::naming;
use serde::{Deserialize, Serialize};
use skyform_provider::ConfigError;
use std::collections::BTreeMap;

/// The image of machines without accelerators: Canonical's Ubuntu 22.04 LTS image family.
pub const DEFAULT_IMAGE: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts";
/// The arm64 twin of [`DEFAULT_IMAGE`] (T2A, C4A machine types).
pub const DEFAULT_IMAGE_ARM64: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts-arm64";
/// The image of machines with GPUs: a Deep Learning VM image family that ships the NVIDIA
/// driver (installed at first boot, see the `install-nvidia-driver` metadata key).
pub const DEFAULT_GPU_IMAGE: &str =
    "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570";

/// `credentials = "anonymous"`: no authentication (emulators and fakes on loopback).
pub const ANONYMOUS: &str = "anonymous";

/// The configuration of the GCP provider. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcpConfig {
    /// The project that owns instances and buckets. Else the `project_id` of the credentials
    /// file, else `GOOGLE_CLOUD_PROJECT` / `CLOUDSDK_CORE_PROJECT` (needed from apply on).
    pub project: Option<String>,
    /// Regions skyform may use and `read` looks in (empty: every region).
    pub regions: Vec<String>,
    /// A credentials JSON file (service account key or `gcloud auth application-default
    /// login` user credentials), relative to the job directory; `"anonymous"` for emulators;
    /// none: Application Default Credentials.
    pub credentials: Option<String>,
    /// The Compute Engine endpoint (default `https://compute.googleapis.com`).
    pub endpoint: Option<String>,
    /// The Cloud Storage endpoint (default `https://storage.googleapis.com`); the instances
    /// talk to it too.
    pub storage_endpoint: Option<String>,
    /// The bucket that holds a region's run directories and task outputs; `{region}` and
    /// `{project}` are replaced. Created in its region when missing.
    pub bucket: String,
    /// The boot image per region (`"*"` for every region, `"gpu"` for machines with GPUs).
    pub images: BTreeMap<String, String>,
    /// The service account the instances run as (default: the project's compute default).
    pub service_account: Option<String>,
    /// The VPC network (a name or a resource path).
    pub network: String,
    /// The subnetwork (a name in the instance's region, or a resource path).
    pub subnetwork: Option<String>,
    /// Give instances an external IP (needed to reach Cloud Storage without Private Google
    /// Access or Cloud NAT).
    pub external_ip: bool,
    /// Labels put on every instance (GCP label rules; `skyform-*` keys are skyform's).
    pub labels: BTreeMap<String, String>,
    /// Boot disk size when the task does not ask for one (GB).
    pub disk_gb: u32,
    /// Boot disk type (`pd-balanced`; `hyperdisk-balanced` is chosen for series that only
    /// take Hyperdisk).
    pub disk_type: Option<String>,
    /// Seconds between the bootstrap's looks for its task.
    pub poll_seconds: u32,
    /// An instance whose task ended and that was not released after this many minutes
    /// shuts itself down: a safety net if skyform is gone.
    pub idle_shutdown_minutes: u32,
    /// Seconds `allocate` and `release` wait for their zone operation (below the engine's
    /// 60 s per-call timeout; a release still running fails transiently and is retried).
    pub operation_wait_seconds: u32,
    /// Timeout of one HTTP request to Compute Engine or Cloud Storage (seconds).
    pub request_timeout_seconds: u32,
}

impl Default for GcpConfig {
    fn default() -> Self {
        GcpConfig {
            project: None,
            regions: Vec::new(),
            credentials: None,
            endpoint: None,
            storage_endpoint: None,
            bucket: "skyform-{project}-{region}".into(),
            images: BTreeMap::new(),
            service_account: None,
            network: "default".into(),
            subnetwork: None,
            external_ip: true,
            labels: BTreeMap::new(),
            disk_gb: 50,
            disk_type: None,
            poll_seconds: 5,
            idle_shutdown_minutes: 30,
            operation_wait_seconds: 50,
            request_timeout_seconds: 30,
        }
    }
}

fn http_url(attr: &str, v: &Option<String>) -> Result<(), ConfigError> {
    match v {
        Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
            Err(ConfigError::attribute(attr, format!("provider \"gcp\": `{attr}` must be an http(s) URL, got `{e}`")))
        }
        _ => Ok(()),
    }
}

impl GcpConfig {
    /// Reads the body of a `provider "gcp"` block (as JSON) and checks it. The error names
    /// the attribute to blame when there is one.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ConfigError> {
        let cfg: GcpConfig = match serde_json::from_value(v.clone()) {
            Ok(c) => c,
            Err(e) => return Err(blame::<GcpConfig>("provider \"gcp\"", v, serde_json::json!({}), e)),
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Validates the configuration (no I/O).
    pub fn check(&self) -> Result<(), ConfigError> {
        let bucket = self.bucket.replace("{region}", "r").replace("{project}", "p");
        if bucket.is_empty()
            || bucket.len() > 63
            || !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        {
            return Err(ConfigError::attribute(
                "bucket",
                format!(
                    "provider \"gcp\": `bucket` must be a bucket name (lowercase letters, digits, `-`, `_`, `.`; \
                     `{{region}}` and `{{project}}` are replaced), got `{}`",
                    self.bucket
                ),
            ));
        }
        if let Some(p) = &self.project {
            if p.is_empty()
                || !p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ':' || c == '.')
            {
                return Err(ConfigError::attribute("project", format!("provider \"gcp\": `{p}` is not a project id")));
            }
        }
        for r in &self.regions {
            if r.is_empty() || !r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(ConfigError::attribute("regions", format!("provider \"gcp\": `{r}` is not a GCP region")));
            }
        }
        if matches!(&self.credentials, Some(c) if c.trim().is_empty()) {
            return Err(ConfigError::attribute(
                "credentials",
                "provider \"gcp\": `credentials` must be a file path or \"anonymous\"",
            ));
        }
        http_url("endpoint", &self.endpoint)?;
        http_url("storage_endpoint", &self.storage_endpoint)?;
        for (k, v) in &self.labels {
            naming::check_label(k, v)
                .map_err(|e| ConfigError::attribute(format!("labels.{k}"), format!("provider \"gcp\": {e}")))?;
        }
        if self.network.is_empty() {
            return Err(ConfigError::attribute("network", "provider \"gcp\": `network` must not be empty"));
        }
        for (attr, v) in [
            ("poll_seconds", self.poll_seconds),
            ("operation_wait_seconds", self.operation_wait_seconds),
            ("request_timeout_seconds", self.request_timeout_seconds),
            ("disk_gb", self.disk_gb),
        ] {
            if v == 0 {
                return Err(ConfigError::attribute(attr, format!("provider \"gcp\": `{attr}` must be at least 1")));
            }
        }
        Ok(())
    }

    /// The data bucket of a region in a project.
    pub fn bucket_for(&self, project: &str, region: &str) -> String {
        self.bucket.replace("{region}", region).replace("{project}", project)
    }

    /// The boot image for a region; `gpu` for machines with accelerators, `arm64` for Arm
    /// machine types.
    pub fn image_for(&self, region: &str, gpu: bool, arm64: bool) -> String {
        if gpu {
            if let Some(i) = self.images.get("gpu") {
                return i.clone();
            }
        }
        if let Some(i) = self.images.get(region).or_else(|| self.images.get("*")) {
            return i.clone();
        }
        match (gpu, arm64) {
            (true, _) => DEFAULT_GPU_IMAGE.into(),
            (false, true) => DEFAULT_IMAGE_ARM64.into(),
            (false, false) => DEFAULT_IMAGE.into(),
        }
    }

    /// True when calls need no credentials (`credentials = "anonymous"`).
    pub fn anonymous(&self) -> bool {
        self.credentials.as_deref() == Some(ANONYMOUS)
    }
}

/// The attribute a deserialization error is about: each key alone (over `base`, which
/// holds the required fields) is read again, and the first that fails is to blame.
pub(crate) fn blame<T: serde::de::DeserializeOwned>(
    what: &str,
    v: &serde_json::Value,
    base: serde_json::Value,
    e: serde_json::Error,
) -> ConfigError {
    let msg = format!("{what}: {e}");
    let Some(obj) = v.as_object() else {
        return ConfigError::block(msg);
    };
    for (k, val) in obj {
        let mut one = base.as_object().cloned().unwrap_or_default();
        one.insert(k.clone(), val.clone());
        if let Err(e) = serde_json::from_value::<T>(serde_json::Value::Object(one)) {
            return ConfigError::attribute(k.clone(), format!("{what}: {e}"));
        }
    }
    ConfigError::block(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_block_is_valid_without_project_or_credentials() {
        let c = GcpConfig::from_json(&json!({})).unwrap();
        assert_eq!(c.project, None);
        assert_eq!(c.credentials, None);
        assert_eq!(c.bucket_for("proj", "us-central1"), "skyform-proj-us-central1");
    }

    #[test]
    fn templates_and_images() {
        let c = GcpConfig::from_json(
            &json!({"bucket": "team-{region}", "images": {"*": "img-a", "europe-west4": "img-b"}}),
        )
        .unwrap();
        assert_eq!(c.bucket_for("p", "europe-west4"), "team-europe-west4");
        assert_eq!(c.image_for("us-east1", false, false), "img-a");
        assert_eq!(c.image_for("europe-west4", false, false), "img-b");
        let d = GcpConfig::default();
        assert_eq!(d.image_for("us-east1", true, false), DEFAULT_GPU_IMAGE);
        assert_eq!(d.image_for("us-east1", false, true), DEFAULT_IMAGE_ARM64);
    }

    #[test]
    fn bad_attributes_are_named() {
        let cases = [
            (json!({"regionz": ["x"]}), "regionz"),
            (json!({"poll_seconds": "often"}), "poll_seconds"),
            (json!({"endpoint": "localhost:1"}), "endpoint"),
            (json!({"storage_endpoint": "127.0.0.1:9"}), "storage_endpoint"),
            (json!({"bucket": "Upper_Case"}), "bucket"),
            (json!({"regions": ["US Central"]}), "regions"),
            (json!({"labels": {"Team": "a"}}), "labels.Team"),
            (json!({"labels": {"skyform-job": "a"}}), "labels.skyform-job"),
            (json!({"credentials": " "}), "credentials"),
            (json!({"poll_seconds": 0}), "poll_seconds"),
        ];
        for (body, attr) in cases {
            let e = GcpConfig::from_json(&body).unwrap_err();
            assert_eq!(e.attribute.as_deref(), Some(attr), "{body}: {e}");
            assert!(e.message.starts_with("provider \"gcp\""), "{e}");
        }
    }
}
