//! Blob storage as directory trees: a URI `az://ACCOUNT/CONTAINER/prefix` names every blob
//! under `prefix/` (or the one blob at `prefix`). Upload (in blocks above
//! [`SINGLE_PUT_LIMIT`]), download, server-side copy (across containers and accounts, the
//! source read through a short-lived SAS), list, delete, conditional puts.
//!
//! Every upload and download returns a content hash of what it moved: FNV-1a 64 over the
//! files' bytes in key order, the algorithm of `providers/aws/src/storage.rs` (copied, so a
//! hash computed on one cloud compares with one computed on another). Local files are
//! hashed in the byte order of their relative paths, which is the order of their keys.
//!
//! [`Blobs`] holds the clients per account (account key or Entra ID token) and makes the
//! SAS tokens VMs and copies use. The functions here do network I/O; nothing else does.

use crate::errors::{from_azure, status};
use azure_core::auth::TokenCredential;
use azure_core::request_options::IfMatchCondition;
use azure_core::ClientOptions;
use azure_storage::shared_access_signature::service_sas::BlobSasPermissions;
use azure_storage::shared_access_signature::SasToken;
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{BlobBlockType, BlobServiceClient, BlockList, ClientBuilder, ContainerClient};
use futures::StreamExt;
use skyform_provider::{ErrorKind, ProviderError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Files above this size go up in blocks.
pub const SINGLE_PUT_LIMIT: u64 = 16 * 1024 * 1024;
/// The size of one block.
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// The size of one ranged GET of a download.
const CHUNK: u64 = 4 * 1024 * 1024;

/// An `az://ACCOUNT/CONTAINER/path` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzUri {
    pub account: String,
    pub container: String,
    /// Without leading or trailing slashes.
    pub path: String,
}

impl AzUri {
    pub fn parse(uri: &str) -> Result<AzUri, ProviderError> {
        let bad = |why: &str| ProviderError::new(ErrorKind::Other, None, format!("`{uri}`: {why}"));
        let rest = uri.strip_prefix("az://").ok_or_else(|| bad("not an az:// URI"))?;
        let mut parts = rest.splitn(3, '/');
        let account = parts.next().unwrap_or_default();
        let container = parts.next().unwrap_or_default();
        if account.is_empty() || container.is_empty() {
            return Err(bad("expected az://ACCOUNT/CONTAINER/path"));
        }
        let path = parts.next().unwrap_or_default().trim_matches('/').to_string();
        Ok(AzUri { account: account.into(), container: container.into(), path })
    }
}

impl std::fmt::Display for AzUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "az://{}/{}", self.account, self.container)?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        Ok(())
    }
}

/// The clients of Blob storage, one per account, and the SAS tokens made with their
/// credentials. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    /// The blob service URL with `{account}`.
    endpoint: String,
    access_key: Option<String>,
    credential: Arc<dyn TokenCredential>,
    options: ClientOptions,
    services: Arc<Mutex<HashMap<String, BlobServiceClient>>>,
}

impl Blobs {
    /// `endpoint` is the blob service URL with `{account}`; with `access_key` every account
    /// is reached with that key, else with the token `credential` (Entra ID).
    pub fn new(
        endpoint: &str,
        access_key: Option<String>,
        credential: Arc<dyn TokenCredential>,
        http: Arc<dyn azure_core::HttpClient>,
    ) -> Blobs {
        let retry =
            azure_core::ExponentialRetryOptions::default().max_retries(3u32).max_total_elapsed(Duration::from_secs(30));
        let options = ClientOptions::new(azure_core::TransportOptions::new(http))
            .retry(azure_core::RetryOptions::exponential(retry));
        Blobs { endpoint: endpoint.to_string(), access_key, credential, options, services: Arc::default() }
    }

    /// The blob service of an account.
    pub fn service(&self, account: &str) -> BlobServiceClient {
        let mut g = self.services.lock().expect("lock");
        g.entry(account.to_string())
            .or_insert_with(|| {
                let creds = match &self.access_key {
                    Some(k) => StorageCredentials::access_key(account.to_string(), k.clone()),
                    None => StorageCredentials::token_credential(self.credential.clone()),
                };
                let uri = self.endpoint.replace("{account}", account);
                ClientBuilder::with_location(CloudLocation::Custom { account: account.to_string(), uri }, creds)
                    .client_options(self.options.clone())
                    .blob_service_client()
            })
            .clone()
    }

    pub fn container(&self, account: &str, container: &str) -> ContainerClient {
        self.service(account).container_client(container)
    }

    /// A SAS query string (no `?`) for a container: a service SAS with the account key,
    /// else a user-delegation SAS (Entra ID; at most 7 days).
    pub async fn sas(&self, c: &ContainerClient, write: bool, valid: Duration) -> azure_core::Result<String> {
        let perms = BlobSasPermissions {
            read: true,
            list: true,
            add: write,
            create: write,
            write,
            delete: write,
            ..Default::default()
        };
        let now = time::OffsetDateTime::now_utc();
        if self.access_key.is_some() {
            let sas = c.shared_access_signature(perms, now + valid).await?;
            return sas.token();
        }
        let valid = valid.min(Duration::from_secs(7 * 24 * 3600 - 60));
        let key = c.service_client().get_user_deligation_key(now - Duration::from_secs(60), now + valid).await?;
        let sas = c.user_delegation_shared_access_signature(perms, &key.user_deligation_key).await?;
        sas.token()
    }
}

fn other(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, format!("{what}: {e}"))
}

fn join(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// One blob of a tree: its path relative to the tree, name and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rel: String,
    pub name: String,
    pub size: u64,
}

/// Every blob of the tree at `prefix`, sorted by name.
pub async fn list(c: &ContainerClient, prefix: &str) -> Result<Vec<Entry>, ProviderError> {
    let dir = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let mut out = Vec::new();
    let mut pages = c.list_blobs().prefix(prefix.to_string()).into_stream();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            // A container that does not exist holds no tree.
            Err(e) if status(&e) == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(from_azure("List Blobs", None, &e)),
        };
        for b in page.blobs.blobs() {
            let size = b.properties.content_length;
            if b.name == prefix {
                let base = b.name.rsplit('/').next().unwrap_or(&b.name).to_string();
                out.push(Entry { rel: base, name: b.name.clone(), size });
            } else if let Some(rel) = b.name.strip_prefix(&dir) {
                if !rel.is_empty() && !rel.ends_with('/') {
                    out.push(Entry { rel: rel.to_string(), name: b.name.clone(), size });
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Creates the container when it does not exist.
pub async fn ensure_container(c: &ContainerClient) -> Result<(), ProviderError> {
    match c.create().await {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(409) => Ok(()),
        Err(e) => Err(from_azure(&format!("Create Container {}", c.container_name()), None, &e)),
    }
}

/// FNV-1a 64, the content hash skyform's providers report for a transfer (the same as the
/// AWS provider's).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The files of a local tree in key order (a file alone is a tree of one, named by its
/// basename).
pub fn local_files(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    if root.is_file() {
        let name = root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        out.push((name, root.to_path_buf()));
        return Ok(out);
    }
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(base, &p, out)?;
            } else {
                let rel = p.strip_prefix(base).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                out.push((rel, p));
            }
        }
        Ok(())
    }
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Uploads a local file or directory under `prefix/`. Returns (bytes, hash).
pub async fn upload_tree(c: &ContainerClient, src: &Path, prefix: &str) -> Result<(u64, String), ProviderError> {
    if !src.exists() {
        return Err(other("upload", format!("`{}` does not exist", src.display())));
    }
    let files = local_files(src).map_err(|e| other("upload", e))?;
    let mut bytes = 0u64;
    let mut hash = Fnv::default();
    for (rel, path) in files {
        bytes += upload_file(c, &path, &join(prefix, &rel), &mut hash).await?;
    }
    Ok((bytes, hash.hex()))
}

/// Uploads one file: one Put Blob up to [`SINGLE_PUT_LIMIT`], else Put Block per
/// [`BLOCK_SIZE`] and one Put Block List.
pub async fn upload_file(c: &ContainerClient, path: &Path, name: &str, hash: &mut Fnv) -> Result<u64, ProviderError> {
    let len = std::fs::metadata(path).map_err(|e| other("upload", e))?.len();
    let b = c.blob_client(name);
    if len <= SINGLE_PUT_LIMIT {
        let data = tokio::fs::read(path).await.map_err(|e| other("upload", e))?;
        hash.update(&data);
        b.put_block_blob(data).await.map_err(|e| from_azure(&format!("Put Blob {name}"), None, &e))?;
        return Ok(len);
    }
    let mut f = tokio::fs::File::open(path).await.map_err(|e| other("upload", e))?;
    let mut blocks = BlockList::default();
    for n in 0u32.. {
        let mut buf = Vec::with_capacity(BLOCK_SIZE);
        (&mut f).take(BLOCK_SIZE as u64).read_to_end(&mut buf).await.map_err(|e| other("upload", e))?;
        if buf.is_empty() {
            break;
        }
        hash.update(&buf);
        // Block ids of one blob must all have the same length.
        let id = format!("skyform-block-{n:08}").into_bytes();
        b.put_block(id.clone(), buf).await.map_err(|e| from_azure(&format!("Put Block {name}"), None, &e))?;
        blocks.blocks.push(BlobBlockType::new_latest(id));
    }
    b.put_block_list(blocks).await.map_err(|e| from_azure(&format!("Put Block List {name}"), None, &e))?;
    Ok(len)
}

/// Downloads the tree at `prefix` into the directory `dst`. Returns (bytes, hash).
pub async fn download_tree(c: &ContainerClient, prefix: &str, dst: &Path) -> Result<(u64, String), ProviderError> {
    let entries = list(c, prefix).await?;
    if entries.is_empty() {
        return Err(other("download", format!("nothing at {}", describe(c, prefix))));
    }
    let mut bytes = 0u64;
    let mut hash = Fnv::default();
    for e in entries {
        let path = dst.join(&e.rel);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|x| other("download", x))?;
        }
        let mut f = tokio::fs::File::create(&path).await.map_err(|x| other("download", x))?;
        if e.size > 0 {
            let mut chunks = c.blob_client(&e.name).get().chunk_size(CHUNK).into_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|x| from_azure(&format!("Get Blob {}", e.name), None, &x))?;
                let data = chunk.data.collect().await.map_err(|x| from_azure("Get Blob", None, &x))?;
                hash.update(&data);
                f.write_all(&data).await.map_err(|x| other("download", x))?;
                bytes += data.len() as u64;
            }
        }
        f.flush().await.map_err(|x| other("download", x))?;
    }
    Ok((bytes, hash.hex()))
}

/// Copies a tree between containers (of any accounts) server-side: each destination
/// blob is a Copy Blob from the source's URL with `src_sas`. Returns (bytes, None).
pub async fn copy_tree(
    src: &ContainerClient,
    src_prefix: &str,
    src_sas: &str,
    dst: &ContainerClient,
    dst_prefix: &str,
) -> Result<(u64, Option<String>), ProviderError> {
    let entries = list(src, src_prefix).await?;
    if entries.is_empty() {
        return Err(other("copy", format!("nothing at {}", describe(src, src_prefix))));
    }
    delete_tree(dst, dst_prefix).await?;
    let mut bytes = 0u64;
    for e in entries {
        let name = join(dst_prefix, &e.rel);
        let mut url = src.blob_client(&e.name).url().map_err(|x| other("copy", x))?;
        url.set_query(Some(src_sas));
        let b = dst.blob_client(&name);
        let r = b.copy(url).await.map_err(|x| from_azure(&format!("Copy Blob {name}"), None, &x))?;
        let mut state = format!("{:?}", r.copy_status).to_lowercase();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while state == "pending" && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let p = b.get_properties().await.map_err(|x| from_azure("Get Blob Properties", None, &x))?;
            state = p.blob.properties.copy_status.map(|s| format!("{s:?}").to_lowercase()).unwrap_or_default();
        }
        if state != "success" {
            return Err(other("copy", format!("copy of {} to {name} ended `{state}`", e.name)));
        }
        bytes += e.size;
    }
    Ok((bytes, None))
}

/// Deletes every blob of the tree.
pub async fn delete_tree(c: &ContainerClient, prefix: &str) -> Result<usize, ProviderError> {
    let entries = list(c, prefix).await?;
    for e in &entries {
        delete(c, &e.name).await?;
    }
    Ok(entries.len())
}

/// Reads one blob and its ETag (None when it does not exist).
pub async fn get(c: &ContainerClient, name: &str) -> Result<Option<(Vec<u8>, String)>, ProviderError> {
    let mut chunks = c.blob_client(name).get().chunk_size(CHUNK).into_stream();
    let mut data = Vec::new();
    let mut etag = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            // An empty blob has no range to read.
            Err(e) if status(&e) == Some(416) && etag.is_none() => {
                let p = c
                    .blob_client(name)
                    .get_properties()
                    .await
                    .map_err(|x| from_azure("Get Blob Properties", None, &x))?;
                return Ok(Some((Vec::new(), p.blob.properties.etag.to_string())));
            }
            Err(e) => return Err(from_azure(&format!("Get Blob {name}"), None, &e)),
        };
        etag.get_or_insert_with(|| chunk.blob.properties.etag.to_string());
        data.extend_from_slice(&chunk.data.collect().await.map_err(|x| from_azure("Get Blob", None, &x))?);
    }
    Ok(etag.map(|t| (data, t)))
}

/// Writes one blob; returns its ETag.
pub async fn put(c: &ContainerClient, name: &str, data: Vec<u8>) -> Result<String, ProviderError> {
    let r = c
        .blob_client(name)
        .put_block_blob(data)
        .await
        .map_err(|e| from_azure(&format!("Put Blob {name}"), None, &e))?;
    Ok(r.etag)
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    Written(String),
    /// The condition did not hold.
    Refused,
}

/// Writes a blob only if it is absent (`If-None-Match: *`; Azure answers 409
/// `BlobAlreadyExists`) or, with `etag`, only if it still has that ETag (`If-Match`; 412
/// `ConditionNotMet`, 404 when it was deleted meanwhile).
pub async fn put_conditional(
    c: &ContainerClient,
    name: &str,
    data: Vec<u8>,
    etag: Option<&str>,
) -> Result<Conditional, ProviderError> {
    let cond = match etag {
        None => IfMatchCondition::NotMatch("*".into()),
        Some(t) => IfMatchCondition::Match(t.to_string()),
    };
    match c.blob_client(name).put_block_blob(data).if_match(cond).await {
        Ok(r) => Ok(Conditional::Written(r.etag)),
        Err(e) => match status(&e) {
            Some(409) | Some(412) => Ok(Conditional::Refused),
            Some(404) if etag.is_some() => Ok(Conditional::Refused),
            _ => Err(from_azure(&format!("Put Blob {name}"), None, &e)),
        },
    }
}

/// Deletes one blob (absent is fine).
pub async fn delete(c: &ContainerClient, name: &str) -> Result<(), ProviderError> {
    match c.blob_client(name).delete().await {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(404) => Ok(()),
        Err(e) => Err(from_azure(&format!("Delete Blob {name}"), None, &e)),
    }
}

/// `az://ACCOUNT/CONTAINER/name`, for messages.
pub fn describe(c: &ContainerClient, name: &str) -> String {
    AzUri {
        account: c.service_client().account().to_string(),
        container: c.container_name().to_string(),
        path: name.to_string(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let u = AzUri::parse("az://acct/cont/a/b/").unwrap();
        assert_eq!((u.account.as_str(), u.container.as_str(), u.path.as_str()), ("acct", "cont", "a/b"));
        assert_eq!(u.to_string(), "az://acct/cont/a/b");
        assert_eq!(AzUri::parse("az://acct/cont").unwrap().path, "");
        assert!(AzUri::parse("az://acct").is_err());
        assert!(AzUri::parse("s3://b/x").is_err());
    }

    #[test]
    fn hashes_match_the_aws_provider() {
        // FNV-1a 64 of "hello\n", the same figure providers/aws computes.
        let mut h = Fnv::default();
        h.update(b"hello\n");
        assert_eq!(h.hex(), "a9bc80cca21f28b3");
    }

    #[test]
    fn local_files_come_in_key_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/b"), b"1").unwrap();
        std::fs::write(d.path().join("a.txt"), b"2").unwrap();
        let rels: Vec<String> = local_files(d.path()).unwrap().into_iter().map(|x| x.0).collect();
        // "a.txt" < "a/b" as keys ('.' < '/'), although the directory `a` sorts first as a path.
        assert_eq!(rels, ["a.txt", "a/b"]);
    }
}
