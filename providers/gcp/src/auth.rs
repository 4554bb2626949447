//! GCP credentials for the clients: a key file named in the provider block (service
//! account key or `gcloud auth application-default login` user credentials), `"anonymous"`
//! for emulators, else Application Default Credentials. Reads the key file; fetches no token
//! (that happens on the first call).

use crate::config::ANONYMOUS;
use google_cloud_auth::credentials::{self, Credentials};
use skyform_provider::{ErrorKind, ProviderError};
use std::path::Path;

fn unauthorized(msg: String) -> ProviderError {
    ProviderError::new(ErrorKind::Unauthorized, None, msg)
}

/// Credentials from the `credentials` attribute (resolved against `job_dir`) and the project
/// the key file names (`project_id`), if any.
pub fn credentials(spec: Option<&str>, job_dir: &Path) -> Result<(Credentials, Option<String>), ProviderError> {
    match spec {
        Some(ANONYMOUS) => Ok((credentials::anonymous::Builder::new().build(), None)),
        Some(file) => {
            let path = job_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| unauthorized(format!("provider \"gcp\": credentials file {}: {e}", path.display())))?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                unauthorized(format!("provider \"gcp\": credentials file {} is not JSON: {e}", path.display()))
            })?;
            let project = json.get("project_id").and_then(|p| p.as_str()).map(str::to_string);
            let kind = json.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
            let built = match kind.as_str() {
                "service_account" => credentials::service_account::Builder::new(json).build(),
                "authorized_user" => credentials::user_account::Builder::new(json).build(),
                other => {
                    return Err(unauthorized(format!(
                        "provider \"gcp\": credentials file {} has type `{other}`; use a service account key or \
                         application-default user credentials (or leave `credentials` out for Application Default \
                         Credentials)",
                        path.display()
                    )))
                }
            };
            let c = built
                .map_err(|e| unauthorized(format!("provider \"gcp\": credentials file {}: {e}", path.display())))?;
            Ok((c, project))
        }
        None => {
            let c = credentials::Builder::default().build().map_err(|e| {
                unauthorized(format!(
                    "provider \"gcp\": no Application Default Credentials: {e} (set `credentials`, \
                     GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`)"
                ))
            })?;
            Ok((c, None))
        }
    }
}

/// The project: the provider block's, else the key file's, else `GOOGLE_CLOUD_PROJECT` /
/// `CLOUDSDK_CORE_PROJECT`.
pub fn project(configured: Option<&str>, from_key: Option<String>) -> Result<String, ProviderError> {
    configured
        .map(str::to_string)
        .or(from_key)
        .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("CLOUDSDK_CORE_PROJECT").ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            unauthorized(
                "provider \"gcp\": no project: set `project` in the provider block (or GOOGLE_CLOUD_PROJECT)".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_foreign_key_files_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = credentials(Some("nope.json"), d.path()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(e.message.contains("nope.json"), "{e}");
        std::fs::write(d.path().join("k.json"), r#"{"type": "gdch_service_account"}"#).unwrap();
        let e = credentials(Some("k.json"), d.path()).unwrap_err();
        assert!(e.message.contains("gdch_service_account"), "{e}");
        assert!(credentials(Some(ANONYMOUS), d.path()).is_ok());
    }

    #[test]
    fn the_project_comes_from_the_block_first() {
        assert_eq!(project(Some("p1"), Some("p2".into())).unwrap(), "p1");
        assert_eq!(project(None, Some("p2".into())).unwrap(), "p2");
    }
}
