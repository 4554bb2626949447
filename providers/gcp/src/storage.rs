//! Cloud Storage objects as directory trees: a URI `gs://bucket/prefix` names every object
//! under `prefix/` (or the one object at `prefix`). Does network I/O.
//!
//! Object data goes through the `google-cloud-storage` client: uploads carry their CRC32C
//! (computed here while hashing, `with_known_crc32c`) and switch to resumable uploads above
//! [`RESUMABLE_THRESHOLD`]; downloads are streamed to disk; conditional writes use
//! `ifGenerationMatch` (0: only if absent). The metadata calls that client makes over gRPC
//! only (list, delete, rewrite, bucket insert) go to the JSON API over HTTP with the same
//! credentials. Each transfer returns a content hash of what it moved — FNV-1a 64 over the
//! files' bytes in key order, the scheme of the AWS provider, so hashes compare across
//! clouds.

use crate::errors::{chain, from_gax, from_http};
use bytes::Bytes;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_storage::client::Storage;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use skyform_provider::{ErrorKind, ProviderError};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Objects above this size go up as resumable uploads.
pub const RESUMABLE_THRESHOLD: usize = 8 * 1024 * 1024;
/// The public Cloud Storage endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Characters of an object name kept as they are in a URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn other(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, format!("{what}: {e}"))
}

/// `gs://bucket/key` → (bucket, key without a trailing slash).
pub fn parse_gs(uri: &str) -> Result<(String, String), ProviderError> {
    let rest = uri.strip_prefix("gs://").ok_or_else(|| other("uri", format!("`{uri}` is not a gs:// URI")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(other("uri", format!("`{uri}` has no bucket")));
    }
    Ok((bucket.to_string(), key.trim_end_matches('/').to_string()))
}

/// FNV-1a 64, the content hash skyform's providers report for a transfer (the same
/// algorithm as `skyform_provider_aws::storage::Fnv`, copied to keep the crates apart).
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

/// One object of a tree: its path relative to the tree, name and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rel: String,
    pub key: String,
    pub size: u64,
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// Written; the object's new generation.
    Written(i64),
    /// The precondition did not hold (HTTP 412).
    Refused,
}

/// A Cloud Storage client: the Storage client for object data plus JSON API calls.
#[derive(Clone)]
pub struct Gcs {
    storage: Storage,
    http: reqwest::Client,
    creds: Credentials,
    endpoint: String,
    project: Option<String>,
}

/// The files of a local tree (a file alone is a tree of one, named by its basename), in
/// key order.
fn local_files(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
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
    out.sort();
    Ok(out)
}

fn bucket_path(bucket: &str) -> String {
    format!("projects/_/buckets/{bucket}")
}

impl Gcs {
    /// A client of `endpoint` (default [`DEFAULT_ENDPOINT`]) with `creds`; `project` owns
    /// the buckets it creates. Makes no call yet.
    pub async fn new(
        endpoint: Option<&str>,
        creds: Credentials,
        project: Option<String>,
        request_timeout: Duration,
    ) -> Result<Gcs, ProviderError> {
        let endpoint = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/').to_string();
        let storage = Storage::builder()
            .with_endpoint(endpoint.clone())
            .with_credentials(creds.clone())
            .with_resumable_upload_threshold(RESUMABLE_THRESHOLD)
            .build()
            .await
            .map_err(|e| other("storage client", chain(&e)))?;
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .map_err(|e| other("storage http client", chain(&e)))?;
        Ok(Gcs { storage, http, creds, endpoint, project })
    }

    /// The Storage client (object reads and writes).
    pub fn client(&self) -> &Storage {
        &self.storage
    }

    async fn auth(&self) -> Result<http::HeaderMap, ProviderError> {
        match self.creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Ok(http::HeaderMap::new()),
            Err(e) => Err(ProviderError::new(
                ErrorKind::Unauthorized,
                None,
                format!(
                    "cloud storage: no usable GCP credentials: {} (set `credentials`, GOOGLE_APPLICATION_CREDENTIALS, \
                     or run `gcloud auth application-default login`)",
                    chain(&e)
                ),
            )),
        }
    }

    /// One JSON API request: (HTTP status, body).
    async fn send(
        &self,
        what: &str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Bytes), ProviderError> {
        let url = format!("{}{path_and_query}", self.endpoint);
        let mut req = self.http.request(method, url).headers(self.auth().await?);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() || e.is_connect() { ErrorKind::Transient } else { ErrorKind::Other };
            ProviderError::new(kind, None, format!("{what}: {}", chain(&e)))
        })?;
        let status = r.status().as_u16();
        let bytes =
            r.bytes().await.map_err(|e| ProviderError::new(ErrorKind::Transient, None, format!("{what}: {e}")))?;
        Ok((status, bytes))
    }

    /// One JSON API call; `Ok(None)` on 404.
    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, ProviderError> {
        let (status, bytes) = self.send(what, method, path_and_query, body).await?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(from_http(what, None, status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Some(serde_json::Value::Null));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| other(what, e))
    }

    /// Creates the bucket in `location` when it does not exist (needs the project).
    pub async fn ensure_bucket(&self, bucket: &str, location: &str) -> Result<(), ProviderError> {
        if self
            .call("buckets.get", reqwest::Method::GET, &format!("/storage/v1/b/{}", enc(bucket)), None)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let project = self.project.as_deref().ok_or_else(|| {
            ProviderError::new(ErrorKind::Unauthorized, None, format!("creating gs://{bucket} needs a project"))
        })?;
        let body = serde_json::json!({"name": bucket, "location": location});
        let path = format!("/storage/v1/b?project={}", enc(project));
        match self.send("buckets.insert", reqwest::Method::POST, &path, Some(body)).await? {
            // 409: created meanwhile (by another call of ours).
            (200..=299 | 409, _) => Ok(()),
            (status, bytes) => Err(from_http("buckets.insert", None, status, &bytes)),
        }
    }

    /// Every object of the tree at `bucket/prefix`, in key order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Entry>, ProviderError> {
        let mut out = Vec::new();
        let dir = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let mut page: Option<String> = None;
        loop {
            let mut q = format!("/storage/v1/b/{}/o?prefix={}", enc(bucket), enc(prefix));
            if let Some(p) = &page {
                q.push_str(&format!("&pageToken={}", enc(p)));
            }
            let Some(v) = self.call("objects.list", reqwest::Method::GET, &q, None).await? else {
                return Err(other("objects.list", format!("no bucket gs://{bucket}")));
            };
            for o in v.get("items").and_then(|i| i.as_array()).into_iter().flatten() {
                let key = o.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
                let size = o
                    .get("size")
                    .and_then(|s| s.as_str().and_then(|s| s.parse().ok()).or_else(|| s.as_u64()))
                    .unwrap_or(0);
                if key == prefix {
                    let base = key.rsplit('/').next().unwrap_or(&key).to_string();
                    out.push(Entry { rel: base, key, size });
                } else if let Some(rel) = key.strip_prefix(&dir) {
                    if !rel.is_empty() && !rel.ends_with('/') {
                        out.push(Entry { rel: rel.to_string(), key, size });
                    }
                }
            }
            match v.get("nextPageToken").and_then(|t| t.as_str()) {
                Some(t) if !t.is_empty() => page = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Reads one object with its generation (None when it does not exist).
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, i64)>, ProviderError> {
        let mut r = match self.storage.read_object(bucket_path(bucket), key).send().await {
            Ok(r) => r,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(from_gax("objects.get", None, &e)),
        };
        let generation = r.object().generation;
        let mut data = Vec::new();
        while let Some(chunk) = r.next().await {
            data.extend_from_slice(&chunk.map_err(|e| from_gax("objects.get", None, &e))?);
        }
        Ok(Some((data, generation)))
    }

    /// Writes one object; returns its generation.
    pub async fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Result<i64, ProviderError> {
        let crc = crc32c::crc32c(&data);
        let o = self
            .storage
            .write_object(bucket_path(bucket), key, Bytes::from(data))
            .with_known_crc32c(crc)
            .send_unbuffered()
            .await
            .map_err(|e| from_gax("objects.insert", None, &e))?;
        Ok(o.generation)
    }

    /// Writes one object only if its generation is `generation` (0: only if absent).
    pub async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        generation: i64,
    ) -> Result<Conditional, ProviderError> {
        let crc = crc32c::crc32c(&data);
        let r = self
            .storage
            .write_object(bucket_path(bucket), key, Bytes::from(data))
            .set_if_generation_match(generation)
            .with_known_crc32c(crc)
            .send_unbuffered()
            .await;
        match r {
            Ok(o) => Ok(Conditional::Written(o.generation)),
            Err(e) if e.http_status_code() == Some(412) => Ok(Conditional::Refused),
            Err(e) => Err(from_gax("objects.insert", None, &e)),
        }
    }

    /// Deletes one object (absent is fine).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ProviderError> {
        let path = format!("/storage/v1/b/{}/o/{}", enc(bucket), enc(key));
        self.call("objects.delete", reqwest::Method::DELETE, &path, None).await.map(|_| ())
    }

    /// Deletes every object of the tree; returns how many.
    pub async fn delete_tree(&self, bucket: &str, prefix: &str) -> Result<usize, ProviderError> {
        let entries = self.list(bucket, prefix).await?;
        for e in &entries {
            self.delete(bucket, &e.key).await?;
        }
        Ok(entries.len())
    }

    /// Uploads one file (resumable above [`RESUMABLE_THRESHOLD`]), feeding `hash`.
    pub async fn upload_file(
        &self,
        path: &Path,
        bucket: &str,
        key: &str,
        hash: &mut Fnv,
    ) -> Result<u64, ProviderError> {
        let len = tokio::fs::metadata(path).await.map_err(|e| other("upload", e))?.len();
        let w = if len as usize <= RESUMABLE_THRESHOLD {
            let data = tokio::fs::read(path).await.map_err(|e| other("upload", e))?;
            hash.update(&data);
            let crc = crc32c::crc32c(&data);
            self.storage
                .write_object(bucket_path(bucket), key, Bytes::from(data))
                .with_known_crc32c(crc)
                .send_unbuffered()
                .await
        } else {
            // One pass for the checksums, then the client streams the file (it seeks back
            // to resume after a failed chunk).
            let mut f = tokio::fs::File::open(path).await.map_err(|e| other("upload", e))?;
            let mut buf = vec![0u8; 1 << 20];
            let mut crc = 0u32;
            loop {
                let n = f.read(&mut buf).await.map_err(|e| other("upload", e))?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                crc = crc32c::crc32c_append(crc, &buf[..n]);
            }
            let f = tokio::fs::File::open(path).await.map_err(|e| other("upload", e))?;
            self.storage.write_object(bucket_path(bucket), key, f).with_known_crc32c(crc).send_unbuffered().await
        };
        w.map_err(|e| from_gax("objects.insert", None, &e))?;
        Ok(len)
    }

    /// Uploads a local file or directory under `bucket/prefix/`. Returns (bytes, hash).
    pub async fn upload_tree(&self, src: &Path, bucket: &str, prefix: &str) -> Result<(u64, String), ProviderError> {
        if !src.exists() {
            return Err(other("upload", format!("`{}` does not exist", src.display())));
        }
        let files = local_files(src).map_err(|e| other("upload", e))?;
        let mut bytes = 0u64;
        let mut hash = Fnv::default();
        for (rel, path) in files {
            let key = if prefix.is_empty() { rel.clone() } else { format!("{prefix}/{rel}") };
            bytes += self.upload_file(&path, bucket, &key, &mut hash).await?;
        }
        Ok((bytes, hash.hex()))
    }

    /// Downloads the tree at `bucket/prefix` into the directory `dst` (streamed). Returns
    /// (bytes, hash).
    pub async fn download_tree(&self, bucket: &str, prefix: &str, dst: &Path) -> Result<(u64, String), ProviderError> {
        let entries = self.list(bucket, prefix).await?;
        if entries.is_empty() {
            return Err(other("download", format!("nothing at gs://{bucket}/{prefix}")));
        }
        let mut bytes = 0u64;
        let mut hash = Fnv::default();
        for e in entries {
            let path = dst.join(&e.rel);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|x| other("download", x))?;
            }
            let mut r = self
                .storage
                .read_object(bucket_path(bucket), &e.key)
                .send()
                .await
                .map_err(|x| from_gax("objects.get", None, &x))?;
            let mut f = tokio::fs::File::create(&path).await.map_err(|x| other("download", x))?;
            while let Some(chunk) = r.next().await {
                let chunk = chunk.map_err(|x| from_gax("objects.get", None, &x))?;
                hash.update(&chunk);
                f.write_all(&chunk).await.map_err(|x| other("download", x))?;
                bytes += chunk.len() as u64;
            }
            f.flush().await.map_err(|x| other("download", x))?;
        }
        Ok((bytes, hash.hex()))
    }

    /// Copies a tree from one bucket/prefix to another with server-side rewrites (across
    /// buckets and regions); the destination tree is replaced. Returns the bytes copied.
    pub async fn copy_tree(&self, from: (&str, &str), to: (&str, &str)) -> Result<u64, ProviderError> {
        let entries = self.list(from.0, from.1).await?;
        if entries.is_empty() {
            return Err(other("copy", format!("nothing at gs://{}/{}", from.0, from.1)));
        }
        self.delete_tree(to.0, to.1).await?;
        let mut bytes = 0u64;
        for e in entries {
            let key = if to.1.is_empty() { e.rel.clone() } else { format!("{}/{}", to.1, e.rel) };
            self.rewrite((from.0, &e.key), (to.0, &key)).await?;
            bytes += e.size;
        }
        Ok(bytes)
    }

    /// One server-side copy (`objects.rewrite`, repeated until done).
    pub async fn rewrite(&self, from: (&str, &str), to: (&str, &str)) -> Result<(), ProviderError> {
        let base = format!("/storage/v1/b/{}/o/{}/rewriteTo/b/{}/o/{}", enc(from.0), enc(from.1), enc(to.0), enc(to.1));
        let mut token: Option<String> = None;
        loop {
            let q = match &token {
                Some(t) => format!("{base}?rewriteToken={}", enc(t)),
                None => base.clone(),
            };
            let v = self
                .call("objects.rewrite", reqwest::Method::POST, &q, Some(serde_json::json!({})))
                .await?
                .ok_or_else(|| other("objects.rewrite", format!("gs://{}/{} is gone", from.0, from.1)))?;
            if v.get("done").and_then(|d| d.as_bool()).unwrap_or(false) {
                return Ok(());
            }
            token = v.get("rewriteToken").and_then(|t| t.as_str()).map(str::to_string);
            if token.is_none() {
                return Err(other("objects.rewrite", "not done and no rewrite token"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(parse_gs("gs://b/a/b/").unwrap(), ("b".into(), "a/b".into()));
        assert_eq!(parse_gs("gs://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_gs("gs:///x").is_err());
        assert!(parse_gs("s3://b/x").is_err());
        assert_eq!(enc("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn the_hash_is_the_aws_providers() {
        // FNV-1a 64 of "hello\n" (the AWS provider reports the same for the same bytes).
        let mut h = Fnv::default();
        h.update(b"hello\n");
        assert_eq!(h.hex(), "a9bc80cca21f28b3");
    }

    #[test]
    fn local_trees_are_in_key_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/x"), "1").unwrap();
        std::fs::write(d.path().join("a.txt"), "2").unwrap();
        let rels: Vec<String> = local_files(d.path()).unwrap().into_iter().map(|(r, _)| r).collect();
        assert_eq!(rels, ["a.txt", "a/x"]);
    }
}
