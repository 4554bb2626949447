//! # The plugin protocol: providers as separate programs
//!
//! A provider that is not compiled into skyform is an executable named
//! `skyform-provider-NAME`, found in the job's `.skyform/plugins/`, then on `PATH`, or named
//! by `provider "NAME" { plugin = "path" }`. skyform starts it and speaks to it over its
//! stdin/stdout, one JSON object per line (`docs/plugin-protocol.md` is the reference):
//!
//! 1. the plugin writes a [`Handshake`] line (protocol version, its name and version, the
//!    verbs it serves);
//! 2. skyform writes [`Request`] lines (`{"id", "verb", "params"}`) and the plugin answers
//!    each with a [`Response`] line (`{"id", "result"}` or `{"id", "error"}` where `error` is
//!    a [`ProviderError`](crate::ProviderError): its `kind` and `scope` cross the wire);
//! 3. skyform closes stdin when it is done; the plugin exits.
//!
//! The plugin's stderr is its log (skyform keeps it, and quotes its last lines when the
//! plugin dies).
//!
//! This module holds the wire types and the plugin path ([`find`], [`discover`]), no I/O
//! beyond listing directories; [`serve`] (the plugin side: a Rust plugin's `main` is one
//! call) and [`client`] (skyform's side: [`client::PluginFactory`], a [`Factory`] whose
//! provider is a child process) do process and pipe I/O.

pub mod client;
mod serve;

pub use client::{PluginError, PluginFactory};
pub use serve::{serve, serve_on};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The protocol version this crate speaks. A plugin announcing another one is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// The prefix of a plugin executable's name: `skyform-provider-NAME`.
pub const EXECUTABLE_PREFIX: &str = "skyform-provider-";

/// The directory of a job where plugins are looked up first (relative to the job).
pub const PLUGIN_DIR: &str = ".skyform/plugins";

/// The environment variable skyform sets for the plugin: the protocol version it speaks.
pub const PROTOCOL_ENV: &str = "SKYFORM_PLUGIN_PROTOCOL";

/// The first line a plugin writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handshake {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The provider name (`provider "NAME"` and the cloud of its locations).
    pub plugin: String,
    /// The plugin's own version (shown by `skyform version`).
    pub version: String,
    /// The verbs it answers ([`Verb`] names); a verb not listed is `unsupported`.
    #[serde(default)]
    pub verbs: Vec<String>,
}

/// The verbs of the protocol, as they appear in `"verb"`.
pub mod verb {
    /// `{"config"}` → `{"problem": null | {"attribute", "message"}}`. No I/O expected.
    pub const CHECK: &str = "check";
    /// `{"config"}` → `{"offerings": null | [OfferingSpec]}`.
    pub const OFFERINGS: &str = "offerings";
    /// `{"config", "job_dir"}` → `ProviderInfo`; must come before the provider verbs.
    pub const CONFIGURE: &str = "configure";
    pub const INFO: &str = "info";
    pub const READ: &str = "read";
    pub const ALLOCATE: &str = "allocate";
    pub const RUN_TASK: &str = "run_task";
    pub const TASK_STATUS: &str = "task_status";
    pub const TRANSFER: &str = "transfer";
    pub const RELEASE: &str = "release";
    /// `{"location"}` → `{"uri": null | "s3://..."}`.
    pub const OBJECT_STORE: &str = "object_store";
    /// `SpotPricesRequest` → `SpotPricesResponse` (after `configure`).
    pub const SPOT_PRICES: &str = "spot_prices";
    /// Every verb, in the order of the documentation.
    pub const ALL: &[&str] = &[
        CHECK,
        OFFERINGS,
        CONFIGURE,
        INFO,
        READ,
        ALLOCATE,
        RUN_TASK,
        TASK_STATUS,
        TRANSFER,
        RELEASE,
        OBJECT_STORE,
        SPOT_PRICES,
    ];
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub verb: String,
    #[serde(default)]
    pub params: serde_json::Value,
}

/// One response line: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ProviderError>,
}

/// Params of `check` and `offerings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigParams {
    pub config: serde_json::Value,
}

/// Params of `configure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigureParams {
    pub config: serde_json::Value,
    /// The job directory (absolute): relative paths in the config are resolved against it.
    pub job_dir: PathBuf,
}

/// A problem `check` found (the wire form of [`ConfigError`](crate::ConfigError)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub attribute: Option<String>,
    pub message: String,
}

/// Result of `check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CheckResult {
    #[serde(default)]
    pub problem: Option<Problem>,
}

/// Result of `offerings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OfferingsResult {
    #[serde(default)]
    pub offerings: Option<Vec<crate::OfferingSpec>>,
}

/// Params of `object_store`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStoreParams {
    pub location: crate::Location,
}

/// Result of `object_store`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ObjectStoreResult {
    #[serde(default)]
    pub uri: Option<String>,
}

/// The directories searched for plugins, in order: the job's `.skyform/plugins/`, then each
/// directory of `PATH`.
pub fn search_dirs(job_dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![job_dir.join(PLUGIN_DIR)];
    if let Some(p) = std::env::var_os("PATH") {
        v.extend(std::env::split_paths(&p).filter(|d| !d.as_os_str().is_empty()));
    }
    v
}

fn is_executable(p: &Path) -> bool {
    let Ok(m) = std::fs::metadata(p) else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        m.is_file()
    }
}

/// The executable of plugin `name` in the first of `dirs` that has one.
pub fn find(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(format!("{EXECUTABLE_PREFIX}{name}"))).find(|p| is_executable(p))
}

/// Every plugin in `dirs` as (name, executable); the first directory wins for a name.
pub fn discover(dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        let mut here: Vec<(String, PathBuf)> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name = file.strip_prefix(EXECUTABLE_PREFIX)?;
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    && is_executable(&e.path());
                valid.then(|| (name.to_string(), e.path()))
            })
            .collect();
        here.sort();
        for (n, p) in here {
            if !out.iter().any(|(m, _)| *m == n) {
                out.push((n, p));
            }
        }
    }
    out
}

/// How to install a missing plugin, as a sentence for diagnostics and `skyform init`.
pub fn install_hint(name: &str) -> String {
    format!(
        "install the executable `{EXECUTABLE_PREFIX}{name}` into the job's {PLUGIN_DIR}/ or a directory on PATH, \
         or name it in the block: provider \"{name}\" {{ plugin = \"path/to/{EXECUTABLE_PREFIX}{name}\" }}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes_are_stable() {
        let r: Request = serde_json::from_str(r#"{"id":3,"verb":"info"}"#).unwrap();
        assert_eq!(r.params, serde_json::Value::Null);
        let ok = Response { id: 3, result: Some(serde_json::json!({"released": true})), error: None };
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"id":3,"result":{"released":true}}"#);
        let e = crate::ProviderError::new(crate::ErrorKind::CapacityUnavailable, None, "full");
        let err = Response { id: 4, result: None, error: Some(e) };
        let line = serde_json::to_string(&err).unwrap();
        assert!(line.contains(r#""kind":"capacity_unavailable""#) && line.contains(r#""scope":"zone""#), "{line}");
    }

    #[test]
    fn discovery_prefers_the_first_directory_and_skips_non_executables() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let make = |dir: &Path, file: &str, mode: u32| {
            let p = dir.join(file);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            p
        };
        let first = make(a.path(), "skyform-provider-ray", 0o755);
        make(b.path(), "skyform-provider-ray", 0o755);
        make(b.path(), "skyform-provider-notes", 0o644);
        let other = make(b.path(), "skyform-provider-k8s", 0o755);
        make(b.path(), "unrelated", 0o755);
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find("ray", &dirs), Some(first.clone()));
        assert_eq!(find("notes", &dirs), None, "not executable");
        assert_eq!(discover(&dirs), vec![("ray".to_string(), first), ("k8s".to_string(), other)]);
    }
}
