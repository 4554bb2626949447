//! The cache of `skyform catalog update`: one snapshot per cloud and what the update
//! remembers (when each cloud was fetched or confirmed unchanged, each URL's ETag and
//! Last-Modified).
//!
//! Layout of [`dir`] (`$SKYFORM_HOME/cache/catalog` when `SKYFORM_HOME` is set, else
//! `$XDG_CACHE_HOME/skyform/catalog`, else `~/.cache/skyform/catalog`):
//!
//! ```text
//! aws.bin gcp.bin azure.bin   a Snapshot holding one cloud (`created` = fetch time, RFC 3339)
//! state.json                  CacheState
//! ```
//!
//! Every file is written beside its place and renamed over it ([`write_atomic`]), so a
//! reader sees the previous file or the new one, never a part. I/O: the cache files.

use super::{CatalogError, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The cache directory (see the module doc).
pub fn dir() -> PathBuf {
    if let Some(h) = std::env::var_os("SKYFORM_HOME") {
        return PathBuf::from(h).join("cache").join("catalog");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("skyform").join("catalog");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("skyform")
        .join("catalog")
}

/// What `catalog update` remembers (`state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheState {
    /// Per cloud, the snapshot in `CLOUD.bin`.
    #[serde(default)]
    pub clouds: BTreeMap<String, CloudState>,
    /// Per URL, the validators of the answer the snapshot was made from.
    #[serde(default)]
    pub http: BTreeMap<String, Validators>,
}

/// One cloud's cached snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudState {
    /// The source's name (`skypilot`, `azure`, `aws`).
    pub source: String,
    /// What was read (a URL, or the first page's URL).
    pub url: String,
    /// When the data was downloaded (Unix seconds).
    pub fetched: u64,
    /// When the source last confirmed it (downloaded, or answered "not modified").
    pub checked: u64,
    pub offerings: u64,
    pub skipped: u64,
}

/// HTTP validators of one URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl CacheState {
    /// Reads `state.json` in `dir` (absent or unreadable: empty — the update rewrites it).
    pub fn load(dir: &Path) -> CacheState {
        std::fs::read(dir.join("state.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        write_atomic(&dir.join("state.json"), serde_json::to_string_pretty(self).expect("serializable").as_bytes())
    }
}

/// The path of a cloud's snapshot.
pub fn snapshot_path(dir: &Path, cloud: &str) -> PathBuf {
    dir.join(format!("{cloud}.bin"))
}

/// A cloud's cached snapshot, if there is one.
pub fn read_snapshot(dir: &Path, cloud: &str) -> Result<Option<Snapshot>, CatalogError> {
    let p = snapshot_path(dir, cloud);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(Snapshot::decode(&b, &p.display().to_string())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CatalogError::Io { path: p.display().to_string(), source: e }),
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
