//! Downloads of `catalog update`: one GET streamed to a file (gzip `Content-Encoding`
//! decoded on the way), conditional on the ETag / Last-Modified remembered from the last
//! download of the same URL. The file is the caller's temporary file: nothing here touches
//! a snapshot. Does network I/O and writes the file.

use super::{Progress, UpdateError};
use crate::catalog::cache::Validators;
use crate::forge::http::Http;
use std::io::Write;
use std::path::Path;

/// What a conditional GET found.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the source has not changed since `validators`.
    NotModified,
    /// The body is in the file; these are its validators.
    Body(Validators),
}

/// A file, or a gzip decoder writing into one.
enum Sink {
    Plain(std::io::BufWriter<std::fs::File>),
    Gzip(Box<flate2::write::GzDecoder<std::io::BufWriter<std::fs::File>>>),
}

impl Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(b),
            Sink::Gzip(w) => w.write_all(b),
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gzip(w) => w.finish()?.flush(),
        }
    }
}

/// GET `url` into the file `to` (created or truncated), sending `If-None-Match` /
/// `If-Modified-Since` from `known` when given.
pub fn get_to_file(
    http: &Http,
    url: &str,
    known: Option<&Validators>,
    to: &Path,
    progress: &dyn Progress,
) -> Result<Fetched, UpdateError> {
    let mut headers: Vec<(&str, String)> = vec![("accept-encoding", "gzip".into())];
    if let Some(v) = known {
        if let Some(e) = &v.etag {
            headers.push(("if-none-match", e.clone()));
        }
        if let Some(m) = &v.last_modified {
            headers.push(("if-modified-since", m.clone()));
        }
    }
    let io = |e: std::io::Error| UpdateError::Io { path: to.display().to_string(), source: e };
    let file = std::io::BufWriter::new(std::fs::File::create(to).map_err(io)?);
    // Both callbacks need the sink: the head may switch it to a gzip decoder.
    let sink = std::cell::RefCell::new(Some(Sink::Plain(file)));
    let mut on_head = |r: &crate::forge::http::Response| {
        let mut s = sink.borrow_mut();
        if r.header("content-encoding").is_some_and(|e| e.eq_ignore_ascii_case("gzip")) {
            if let Some(Sink::Plain(f)) = s.take() {
                *s = Some(Sink::Gzip(Box::new(flate2::write::GzDecoder::new(f))));
            }
        }
        if r.ok() {
            progress.start(url, r.header("content-length").and_then(|v| v.trim().parse().ok()));
        }
    };
    let mut write = |b: &[u8]| -> std::io::Result<()> {
        progress.advance(b.len() as u64);
        match sink.borrow_mut().as_mut() {
            Some(s) => s.write(b),
            None => Ok(()),
        }
    };
    let resp = http.get_stream(url, &headers, &mut on_head, &mut write);
    let resp =
        resp.map_err(|e| UpdateError::Download { url: url.to_string(), detail: strip_url(&e.to_string(), url) })?;
    if resp.status == 304 {
        return Ok(Fetched::NotModified);
    }
    if !resp.ok() {
        let excerpt: String = resp.body.chars().take(200).collect();
        return Err(UpdateError::Status { url: url.to_string(), status: resp.status, excerpt });
    }
    if let Some(s) = sink.into_inner() {
        s.finish().map_err(|e| UpdateError::Download {
            url: url.to_string(),
            detail: format!("the gzip body is cut short or corrupt: {e}"),
        })?;
    }
    Ok(Fetched::Body(Validators {
        etag: resp.header("etag").map(str::to_string),
        last_modified: resp.header("last-modified").map(str::to_string),
    }))
}

/// The detail of a transport error without its leading "cannot reach URL: ".
fn strip_url(msg: &str, url: &str) -> String {
    msg.strip_prefix(&format!("cannot reach {url}: ")).unwrap_or(msg).to_string()
}
