//! `skyform catalog update`: fresh prices from a published source into the cache
//! ([`crate::catalog::cache`]), one cloud at a time, never replacing good data with bad.
//!
//! ```text
//! Options × cache dir × previous catalog ──update──▶ per cloud: Updated | Unchanged | Failed
//! ```
//!
//! For each cloud the [`Source`] fetches its data (conditional on the ETag/Last-Modified of
//! the last download, streamed to a temporary file) and adds it to an import
//! [`Builder`](crate::catalog::import) — the `skypilot` source reuses `catalog import`'s
//! reader, so both give the same rows and prices. Rows that fail the [`checks`] (a
//! malformed or missing value, an unknown region, a price that is not positive, absurd or
//! moved more than a factor since the previous snapshot) are reported as `URL:LINE: why`
//! and left out, or, with `strict`, the cloud's update is refused. Only then is the
//! cloud's snapshot written (temporary file + rename); a failed cloud keeps its previous
//! snapshot. Progress goes to a [`Progress`] (the CLI draws a bar); nothing here prints.
//! [`spot`] runs the `azure` and `gcp` sources for the tracker's spot prices instead.
//! I/O: HTTP(S) downloads, the cache files.

pub mod aws;
pub mod azure;
pub mod checks;
pub mod download;
pub mod gcp;
pub mod skypilot;
pub mod spot;

use super::cache::{self, CacheState, CloudState, Validators};
use super::import::Builder;
use super::Snapshot;
use crate::forge::http::Http;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("cannot download {url}: {detail}")]
    Download { url: String, detail: String },
    #[error("{url} answered HTTP {status}: {excerpt}")]
    Status { url: String, status: u16, excerpt: String },
    #[error("{0}")]
    Data(String),
    #[error("refused (--strict): {} bad row(s)", .0)]
    Strict(usize),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the {from} source has no data for {cloud}")]
    NoSuchCloud { from: String, cloud: String },
}

/// Progress of the downloads (the CLI draws a bar).
pub trait Progress {
    /// A download of `what` starts (`total`: its length in bytes, when known).
    fn start(&self, what: &str, total: Option<u64>);
    fn advance(&self, bytes: u64);
    /// A step that has no byte count (importing, checking).
    fn step(&self, what: &str);
    fn finish(&self);
}

/// No progress shown.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn step(&self, _: &str) {}
    fn finish(&self) {}
}

/// Which published source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// SkyPilot's published catalog CSVs (`BASE/CLOUD/vms.csv`)
    Skypilot,
    /// The Azure Retail Prices API (Azure only; sizes from the previous snapshot)
    Azure,
    /// The AWS Price List bulk files (AWS only, on-demand; zones and spot prices from the
    /// previous snapshot)
    Aws,
    /// The Cloud Billing Catalog API (GCP only, needs $SKYFORM_GCP_API_KEY; machine types
    /// from the previous snapshot)
    Gcp,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Skypilot => "skypilot",
            SourceKind::Azure => "azure",
            SourceKind::Aws => "aws",
            SourceKind::Gcp => "gcp",
        }
    }

    /// The clouds the source knows.
    pub fn clouds(self) -> &'static [&'static str] {
        match self {
            SourceKind::Skypilot => &["aws", "gcp", "azure"],
            SourceKind::Azure => &["azure"],
            SourceKind::Aws => &["aws"],
            SourceKind::Gcp => &["gcp"],
        }
    }

    fn source(self, base_url: Option<&str>) -> Box<dyn Source> {
        let base = |default: &str| base_url.unwrap_or(default).trim_end_matches('/').to_string();
        match self {
            SourceKind::Skypilot => Box::new(skypilot::Skypilot { base: base(skypilot::DEFAULT_BASE) }),
            SourceKind::Azure => Box::new(azure::Azure { base: base(azure::DEFAULT_BASE), regions: vec![] }),
            SourceKind::Aws => Box::new(aws::Aws { base: base(aws::DEFAULT_BASE) }),
            SourceKind::Gcp => Box::new(gcp::Gcp { base: base(gcp::DEFAULT_BASE) }),
        }
    }
}

/// What an update is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: SourceKind,
    /// Clouds to update (empty: every cloud of the source).
    pub clouds: Vec<String>,
    pub base_url: Option<String>,
    /// Refuse a cloud's update when any row is bad (default: skip bad rows).
    pub strict: bool,
    /// How far a price may move since the previous snapshot (a factor).
    pub max_change: f64,
    /// The fetch time recorded (Unix seconds).
    pub now: u64,
    /// VM sizes per cloud from the cloud's API ([`skyform_provider::Factory::
    /// instance_shapes`]), for sizes a price list names but the previous snapshot does not
    /// know (empty: none).
    pub shapes: std::collections::BTreeMap<String, Vec<skyform_provider::InstanceShape>>,
}

/// What one source fetch produced.
pub enum Fetch {
    /// The source has not changed since the cached snapshot.
    Unchanged,
    Data {
        builder: Builder,
        /// What was read (for `catalog info`).
        url: String,
        /// Validators per URL read.
        validators: Vec<(String, Validators)>,
        /// How a builder line number is shown in reports.
        locate: Locate,
    },
}

/// Where a builder line number points.
pub enum Locate {
    /// A line of the file at this URL: `URL:LINE`.
    Lines(String),
    /// The n-th item of paged answers: (number of the page's first item, page URL), in order;
    /// shown as `PAGE-URL item N`.
    Pages(Vec<(u64, String)>),
    /// Lines numbered across several files: (number of the file's first line, its URL), in
    /// order; shown as `URL:LINE`.
    Files(Vec<(u64, String)>),
}

impl Locate {
    pub fn at(&self, n: u64) -> String {
        match self {
            Locate::Lines(url) => format!("{url}:{n}"),
            Locate::Pages(pages) => match pages.iter().rev().find(|(first, _)| *first <= n) {
                Some((first, url)) => format!("{url} item {}", n - first + 1),
                None => format!("item {n}"),
            },
            Locate::Files(files) => match files.iter().rev().find(|(first, _)| *first <= n) {
                Some((first, url)) => format!("{url}:{}", n - first + 1),
                None => format!("line {n}"),
            },
        }
    }
}

/// What a source needs while fetching one cloud.
pub struct FetchCtx<'a> {
    pub http: &'a Http,
    pub cloud: &'a str,
    /// The cache directory (temporary files go there, beside the snapshots).
    pub dir: &'a Path,
    /// Validators remembered per URL (only when the cloud's cached snapshot exists).
    pub known: &'a dyn Fn(&str) -> Option<Validators>,
    /// The cloud's offerings before the update.
    pub previous: Option<&'a Snapshot>,
    /// The cloud's VM sizes from its API (see [`Options::shapes`]).
    pub shapes: &'a [skyform_provider::InstanceShape],
    /// Bad rows found (`URL:LINE: why`).
    pub bad: &'a mut Vec<String>,
    pub progress: &'a dyn Progress,
}

/// One published source of prices.
pub trait Source {
    /// What the cloud's data is read from (shown in messages).
    fn url(&self, cloud: &str) -> String;
    fn fetch(&self, ctx: &mut FetchCtx) -> Result<Fetch, UpdateError>;
}

/// How one cloud's update ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    Updated { offerings: u64, skipped: u64 },
    Unchanged,
    Failed { error: String },
}

/// One cloud's update.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CloudReport {
    pub cloud: String,
    pub url: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Bad rows, reported and left out (or, under `strict`, the reason of the refusal).
    pub bad_rows: Vec<String>,
}

/// The clouds `opts` asks for, checked against the source.
pub fn clouds(opts: &Options) -> Result<Vec<String>, UpdateError> {
    let known = opts.source.clouds();
    if opts.clouds.is_empty() {
        return Ok(known.iter().map(|c| c.to_string()).collect());
    }
    for c in &opts.clouds {
        if !known.contains(&c.as_str()) {
            return Err(UpdateError::NoSuchCloud { from: opts.source.name().into(), cloud: c.clone() });
        }
    }
    Ok(opts.clouds.clone())
}

/// Runs the update into the cache directory `dir`; `previous` is the catalog in use
/// before it (for the price-move check). Each cloud succeeds or fails on its own.
pub fn update(
    opts: &Options,
    dir: &Path,
    previous: &super::Catalog,
    progress: &dyn Progress,
) -> Result<Vec<CloudReport>, UpdateError> {
    let clouds = clouds(opts)?;
    let source = opts.source.source(opts.base_url.as_deref());
    std::fs::create_dir_all(dir).map_err(|e| UpdateError::Io { path: dir.display().to_string(), source: e })?;
    let first_url = source.url(&clouds[0]);
    let http =
        Http::new(&first_url).map_err(|e| UpdateError::Download { url: first_url.clone(), detail: e.to_string() })?;
    let mut reports = Vec::new();
    for cloud in &clouds {
        let url = source.url(cloud);
        let mut bad = Vec::new();
        let outcome = match update_cloud(opts, dir, previous, source.as_ref(), &http, cloud, &mut bad, progress) {
            Ok(o) => o,
            Err(e) => Outcome::Failed { error: e.to_string() },
        };
        progress.finish();
        reports.push(CloudReport { cloud: cloud.clone(), url, outcome, bad_rows: bad });
    }
    Ok(reports)
}

#[allow(clippy::too_many_arguments)]
fn update_cloud(
    opts: &Options,
    dir: &Path,
    previous: &super::Catalog,
    source: &dyn Source,
    http: &Http,
    cloud: &str,
    bad: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<Outcome, UpdateError> {
    let mut state = CacheState::load(dir);
    let has_snapshot = cache::snapshot_path(dir, cloud).is_file() && state.clouds.contains_key(cloud);
    let prev_snap = previous.cloud_snapshot(cloud);
    let known_http = state.http.clone();
    let known = |url: &str| if has_snapshot { known_http.get(url).cloned() } else { None };
    let mut ctx = FetchCtx {
        http,
        cloud,
        dir,
        known: &known,
        previous: (!prev_snap.shapes.is_empty()).then_some(&prev_snap),
        shapes: opts.shapes.get(cloud).map(Vec::as_slice).unwrap_or_default(),
        bad,
        progress,
    };
    let fetched = source.fetch(&mut ctx)?;
    let (mut builder, url, validators, locate) = match fetched {
        Fetch::Unchanged => {
            if let Some(c) = state.clouds.get_mut(cloud) {
                c.checked = opts.now;
            }
            state
                .save(dir)
                .map_err(|e| UpdateError::Io { path: dir.join("state.json").display().to_string(), source: e })?;
            return Ok(Outcome::Unchanged);
        }
        Fetch::Data { builder, url, validators, locate } => (builder, url, validators, locate),
    };
    progress.step(&format!("checking {cloud} prices"));
    let checks = checks::Offerings::new(cloud, ctx.previous, opts.max_change);
    builder.retain(|c| match checks.check(c) {
        Some(why) => {
            ctx.bad.push(format!("{}: {why}", locate.at(c.line)));
            false
        }
        None => true,
    });
    if opts.strict && !ctx.bad.is_empty() {
        return Err(UpdateError::Strict(ctx.bad.len()));
    }
    let snap = builder.finish(format!("{} {url}", opts.source.name()), crate::clock::format_time(opts.now));
    let Some(&(offerings, skipped)) = snap.counts.get(cloud) else {
        return Err(UpdateError::Data(format!("{url}: no offerings for {cloud}")));
    };
    let path = cache::snapshot_path(dir, cloud);
    cache::write_atomic(&path, &snap.encode())
        .map_err(|e| UpdateError::Io { path: path.display().to_string(), source: e })?;
    state.clouds.insert(
        cloud.to_string(),
        CloudState { source: opts.source.name().into(), url, fetched: opts.now, checked: opts.now, offerings, skipped },
    );
    for (u, v) in validators {
        state.http.insert(u, v);
    }
    state.save(dir).map_err(|e| UpdateError::Io { path: dir.join("state.json").display().to_string(), source: e })?;
    Ok(Outcome::Updated { offerings, skipped })
}

/// A temporary download path in `dir` for `name` (removed by [`TempFile`]'s drop).
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(dir: &Path, name: &str) -> TempFile {
        TempFile(dir.join(format!(".{name}.{}.part", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::Locate;

    #[test]
    fn locations_of_reported_rows() {
        assert_eq!(Locate::Lines("http://x/aws/vms.csv".into()).at(7), "http://x/aws/vms.csv:7");
        let pages = Locate::Pages(vec![(1, "p1".into()), (101, "p2".into())]);
        assert_eq!(pages.at(1), "p1 item 1");
        assert_eq!(pages.at(100), "p1 item 100");
        assert_eq!(pages.at(105), "p2 item 5");
        let files = Locate::Files(vec![(1, "east.csv".into()), (51, "west.csv".into())]);
        assert_eq!(files.at(17), "east.csv:17");
        assert_eq!(files.at(57), "west.csv:7");
    }
}
