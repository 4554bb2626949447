//! S3 objects as directory trees: a URI `s3://bucket/prefix` names every object under
//! `prefix/` (or the one object at `prefix`). Upload, download, copy, list, delete;
//! multipart above [`MULTIPART_THRESHOLD`]; every upload carries CRC32 checksums that S3
//! verifies, and each transfer returns a content hash of what it moved (FNV-1a over the
//! files in key order), so the two ends of a copy can be compared.

use crate::errors::from_sdk;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use skyform_provider::{ErrorKind, ProviderError};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Objects above this size go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of one part.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// `s3://bucket/key` → (bucket, key without a trailing slash).
pub fn parse_s3(uri: &str) -> Result<(String, String), ProviderError> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| ProviderError::new(ErrorKind::Other, None, format!("`{uri}` is not an s3:// URI")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ProviderError::new(ErrorKind::Other, None, format!("`{uri}` has no bucket")));
    }
    Ok((bucket.to_string(), key.trim_end_matches('/').to_string()))
}

fn other(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, format!("{what}: {e}"))
}

/// One object of a tree: its path relative to the tree, key and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rel: String,
    pub key: String,
    pub size: u64,
}

/// Every object of the tree at `bucket/prefix`, sorted by key.
pub async fn list(c: &Client, bucket: &str, prefix: &str) -> Result<Vec<Entry>, ProviderError> {
    let mut out = Vec::new();
    let dir = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let mut token: Option<String> = None;
    loop {
        let r = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| from_sdk("ListObjectsV2", None, e))?;
        for o in r.contents() {
            let key = o.key().unwrap_or_default().to_string();
            let size = o.size().unwrap_or(0).max(0) as u64;
            if key == prefix {
                let base = key.rsplit('/').next().unwrap_or(&key).to_string();
                out.push(Entry { rel: base, key, size });
            } else if let Some(rel) = key.strip_prefix(&dir) {
                if !rel.is_empty() && !rel.ends_with('/') {
                    out.push(Entry { rel: rel.to_string(), key, size });
                }
            }
        }
        match r.next_continuation_token() {
            Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The region a bucket lives in (HeadBucket; from the `x-amz-bucket-region` header when
/// asked in the wrong region), or None when S3 does not say.
pub async fn bucket_region(c: &Client, bucket: &str) -> Option<String> {
    match c.head_bucket().bucket(bucket).send().await {
        Ok(o) => o.bucket_region().map(str::to_string),
        Err(e) => e.raw_response().and_then(|r| r.headers().get("x-amz-bucket-region")).map(str::to_string),
    }
}

/// Creates the bucket when it does not exist.
pub async fn ensure_bucket(c: &Client, bucket: &str, region: &str) -> Result<(), ProviderError> {
    if c.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    let mut req = c.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let pe = from_sdk("CreateBucket", None, e);
            if matches!(pe.code.as_deref(), Some("BucketAlreadyOwnedByYou")) {
                Ok(())
            } else {
                Err(pe)
            }
        }
    }
}

/// FNV-1a, the content hash skyform's providers report for a transfer.
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

/// The files of a local tree (a file alone is a tree of one, named by its basename).
fn local_files(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    if root.is_file() {
        let name = root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        out.push((name, root.to_path_buf()));
        return Ok(out);
    }
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
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
    // Key order (the relative path's bytes), as listings return them and as the GCP and
    // Azure providers hash: the content hash of a tree is the same on every cloud.
    out.sort();
    Ok(out)
}

/// Uploads a local file or directory under `bucket/prefix/`. Returns (bytes, hash).
pub async fn upload_tree(c: &Client, src: &Path, bucket: &str, prefix: &str) -> Result<(u64, String), ProviderError> {
    if !src.exists() {
        return Err(other("upload", format!("`{}` does not exist", src.display())));
    }
    let files = local_files(src).map_err(|e| other("upload", e))?;
    let mut bytes = 0u64;
    let mut hash = Fnv::default();
    for (rel, path) in files {
        let key = if prefix.is_empty() { rel.clone() } else { format!("{prefix}/{rel}") };
        bytes += upload_file(c, &path, bucket, &key, &mut hash).await?;
    }
    Ok((bytes, hash.hex()))
}

/// Uploads one file; multipart above the threshold.
pub async fn upload_file(
    c: &Client,
    path: &Path,
    bucket: &str,
    key: &str,
    hash: &mut Fnv,
) -> Result<u64, ProviderError> {
    let len = std::fs::metadata(path).map_err(|e| other("upload", e))?.len();
    if len <= MULTIPART_THRESHOLD {
        let data = tokio::fs::read(path).await.map_err(|e| other("upload", e))?;
        hash.update(&data);
        put(c, bucket, key, data).await?;
        return Ok(len);
    }
    let up = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .map_err(|e| from_sdk("CreateMultipartUpload", None, e))?;
    let upload_id = up.upload_id().unwrap_or_default().to_string();
    let result = async {
        let mut f = tokio::fs::File::open(path).await.map_err(|e| other("upload", e))?;
        let mut parts = Vec::new();
        let mut n = 1i32;
        loop {
            let mut buf = Vec::with_capacity(PART_SIZE);
            let mut chunk = (&mut f).take(PART_SIZE as u64);
            chunk.read_to_end(&mut buf).await.map_err(|e| other("upload", e))?;
            if buf.is_empty() {
                break;
            }
            hash.update(&buf);
            let r = c
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(n)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(|e| from_sdk("UploadPart", None, e))?;
            parts.push(
                CompletedPart::builder()
                    .e_tag(r.e_tag().unwrap_or_default())
                    .set_checksum_crc32(r.checksum_crc32().map(str::to_string))
                    .part_number(n)
                    .build(),
            );
            n += 1;
        }
        c.complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| from_sdk("CompleteMultipartUpload", None, e))?;
        Ok::<(), ProviderError>(())
    }
    .await;
    if let Err(e) = result {
        let _ = c.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
        return Err(e);
    }
    Ok(len)
}

/// Downloads the tree at `bucket/prefix` into the directory `dst`. Returns (bytes, hash).
pub async fn download_tree(c: &Client, bucket: &str, prefix: &str, dst: &Path) -> Result<(u64, String), ProviderError> {
    let entries = list(c, bucket, prefix).await?;
    if entries.is_empty() {
        return Err(other("download", format!("nothing at s3://{bucket}/{prefix}")));
    }
    let mut bytes = 0u64;
    let mut hash = Fnv::default();
    for e in entries {
        let path = dst.join(&e.rel);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|x| other("download", x))?;
        }
        let r = c.get_object().bucket(bucket).key(&e.key).send().await.map_err(|x| from_sdk("GetObject", None, x))?;
        let mut body = r.body.into_async_read();
        let mut f = tokio::fs::File::create(&path).await.map_err(|x| other("download", x))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = body.read(&mut buf).await.map_err(|x| other("download", x))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            f.write_all(&buf[..n]).await.map_err(|x| other("download", x))?;
            bytes += n as u64;
        }
        f.flush().await.map_err(|x| other("download", x))?;
    }
    Ok((bytes, hash.hex()))
}

/// Copies a tree from one bucket/prefix to another (server-side; across regions too).
pub async fn copy_tree(
    c: &Client,
    from: (&str, &str),
    to: (&str, &str),
) -> Result<(u64, Option<String>), ProviderError> {
    let entries = list(c, from.0, from.1).await?;
    if entries.is_empty() {
        return Err(other("copy", format!("nothing at s3://{}/{}", from.0, from.1)));
    }
    delete_tree(c, to.0, to.1).await?;
    let mut bytes = 0u64;
    for e in entries {
        let key = if to.1.is_empty() { e.rel.clone() } else { format!("{}/{}", to.1, e.rel) };
        c.copy_object()
            .copy_source(format!("{}/{}", from.0, urlencode_key(&e.key)))
            .bucket(to.0)
            .key(key)
            .send()
            .await
            .map_err(|x| from_sdk("CopyObject", None, x))?;
        bytes += e.size;
    }
    Ok((bytes, None))
}

/// Deletes every object of the tree.
pub async fn delete_tree(c: &Client, bucket: &str, prefix: &str) -> Result<usize, ProviderError> {
    let entries = list(c, bucket, prefix).await?;
    for e in &entries {
        c.delete_object().bucket(bucket).key(&e.key).send().await.map_err(|x| from_sdk("DeleteObject", None, x))?;
    }
    Ok(entries.len())
}

/// Reads one object (None when it does not exist).
pub async fn get(c: &Client, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>, ProviderError> {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(r) => {
            let etag = r.e_tag().map(str::to_string);
            let data = r.body.collect().await.map_err(|e| other("GetObject", e))?.into_bytes().to_vec();
            Ok(Some((data, etag)))
        }
        Err(e) => {
            let pe = from_sdk("GetObject", None, e);
            if matches!(pe.code.as_deref(), Some("NoSuchKey") | Some("NotFound")) {
                Ok(None)
            } else {
                Err(pe)
            }
        }
    }
}

/// Writes one object.
pub async fn put(c: &Client, bucket: &str, key: &str, data: Vec<u8>) -> Result<Option<String>, ProviderError> {
    let r = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .map_err(|e| from_sdk("PutObject", None, e))?;
    Ok(r.e_tag().map(str::to_string))
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    Written(Option<String>),
    /// The condition did not hold (HTTP 412, or 409 for a concurrent conditional write).
    Refused,
}

/// Writes an object only if the key is absent (`If-None-Match: *`) or, with `etag`, only
/// if it still has that ETag (`If-Match`).
pub async fn put_conditional(
    c: &Client,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
    etag: Option<&str>,
) -> Result<Conditional, ProviderError> {
    let mut req = c.put_object().bucket(bucket).key(key).body(ByteStream::from(data));
    req = match etag {
        None => req.if_none_match("*"),
        Some(t) => req.if_match(t),
    };
    match req.send().await {
        Ok(r) => Ok(Conditional::Written(r.e_tag().map(str::to_string))),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if matches!(status, Some(412) | Some(409)) {
                return Ok(Conditional::Refused);
            }
            let pe = from_sdk("PutObject", None, e);
            if matches!(pe.code.as_deref(), Some("PreconditionFailed") | Some("ConditionalRequestConflict")) {
                Ok(Conditional::Refused)
            } else {
                Err(pe)
            }
        }
    }
}

/// Deletes one object.
pub async fn delete(c: &Client, bucket: &str, key: &str) -> Result<(), ProviderError> {
    c.delete_object().bucket(bucket).key(key).send().await.map_err(|e| from_sdk("DeleteObject", None, e))?;
    Ok(())
}

/// Percent-encodes a key for `x-amz-copy-source` (keeps `/`).
fn urlencode_key(k: &str) -> String {
    let mut s = String::with_capacity(k.len());
    for b in k.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => s.push(b as char),
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(parse_s3("s3://b/a/b/").unwrap(), ("b".into(), "a/b".into()));
        assert_eq!(parse_s3("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_s3("s3:///x").is_err());
        assert!(parse_s3("gs://b/x").is_err());
        assert_eq!(urlencode_key("a b/ü"), "a%20b/%C3%BC");
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
