//! `skyform catalog search|gpus|regions|info|import|update`: the catalog from the command
//! line, each with a `-json` twin.

use super::{views, Ctx};
use crate::catalog::{self, fmt_count, Catalog, Filter};
use crate::config::Quantity;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CatalogCmd {
    /// Search offerings, cheapest first
    Search(SearchArgs),
    /// Accelerators with the cheapest offering per cloud and count (like `sky show-gpus`)
    Gpus(GpusArgs),
    /// Regions and zones per cloud
    Regions(JsonArg),
    /// Where the catalog comes from, its date and row counts per cloud
    Info(JsonArg),
    /// Build a catalog snapshot from SkyPilot-format CSVs (DIR/{aws,gcp,azure}/vms.csv)
    Import(ImportArgs),
    /// Download fresh prices into the cache (used over the embedded catalog); `--check`:
    /// exit 1 when a cloud's data is older than --max-age
    #[command(long_about = UPDATE_ABOUT)]
    Update(UpdateArgs),
}

const UPDATE_ABOUT: &str = "Download fresh prices into the cache, used over the embedded catalog by every command.

Each cloud is fetched, checked and written on its own (temporary file + rename): a failed or
partial download never replaces a good snapshot, and the previous snapshot stays in use. An
unchanged source (same ETag / Last-Modified) is not downloaded again. Bad rows (a malformed
or missing value, an unknown region, a price that is not positive, above $2000/h, or moved
more than --max-change times since the previous snapshot) are reported as URL:LINE and
skipped; --strict refuses the cloud's update instead.

The azure source's price list does not say what a VM size is: sizes come from the previous
snapshot and, with a subscription configured (the job's provider \"azure\" block or
AZURE_SUBSCRIPTION_ID, and a credential), from Resource Manager's resource SKUs for CPU
sizes the snapshot does not know; other unknown sizes are skipped (counted).

The cache: $SKYFORM_HOME/cache/catalog when SKYFORM_HOME is set, else
$XDG_CACHE_HOME/skyform/catalog, else ~/.cache/skyform/catalog.

`--check` downloads nothing and exits 1 when any cloud's data is older than --max-age (for CI).
Plans warn when an updated cloud's data is older than $SKYFORM_CATALOG_MAX_AGE (default 30d).

Exit status: 0 when every cloud was updated or is unchanged, 1 when any failed (or, with
--check, is stale).";

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Where the prices come from
    #[arg(long, value_enum, default_value = "skypilot")]
    pub source: crate::catalog::update::SourceKind,
    /// Only this cloud: aws, gcp, azure (repeatable; default: every cloud of the source)
    #[arg(long)]
    pub cloud: Vec<String>,
    /// The source's base URL (skypilot: the directory holding CLOUD/vms.csv; default:
    /// SkyPilot's catalog repository, schema v8)
    #[arg(long = "base-url", value_name = "URL")]
    pub base_url: Option<String>,
    /// Refuse a cloud's update when any row is bad (default: report bad rows and skip them)
    #[arg(long)]
    pub strict: bool,
    /// Download nothing: exit 1 when any cloud's data is older than --max-age
    #[arg(long)]
    pub check: bool,
    /// The age past which a cloud's data is stale (e.g. 30d, 12h)
    #[arg(long = "max-age", default_value = "30d")]
    pub max_age: String,
    /// How far a price may move since the previous snapshot (a factor either way) before
    /// its row counts as bad
    #[arg(long = "max-change", default_value_t = crate::catalog::update::checks::DEFAULT_MAX_CHANGE)]
    pub max_change: f64,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Accelerator, with or without count: V100:8 or V100
    #[arg(long)]
    pub gpu: Option<String>,
    /// vCPUs: 8 (exactly) or 8+ (at least)
    #[arg(long)]
    pub cpus: Option<String>,
    /// Memory GiB: 32 or 32+
    #[arg(long)]
    pub memory: Option<String>,
    /// Only this cloud (aws, gcp, azure, local)
    #[arg(long)]
    pub cloud: Option<String>,
    /// Region glob, e.g. 'us-*' or 'aws:us-*'
    #[arg(long)]
    pub region: Option<String>,
    /// Exact instance type
    #[arg(long = "instance-type")]
    pub instance_type: Option<String>,
    /// Spot offerings only, priced and sorted by spot price
    #[arg(long)]
    pub spot: bool,
    /// Highest $/h
    #[arg(long = "max-price")]
    pub max_price: Option<f64>,
    /// How many rows to show (0: all)
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GpusArgs {
    /// Only this accelerator (e.g. V100)
    pub name: Option<String>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory with aws/vms.csv, gcp/vms.csv and/or azure/vms.csv
    #[arg(long)]
    pub from: PathBuf,
    /// Where to write the snapshot (default: $SKYFORM_HOME/catalog.bin, which skyform uses
    /// instead of the embedded catalog)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The date of the data (default: the CSV files' modification date)
    #[arg(long)]
    pub date: Option<String>,
}

/// The catalog for catalog commands: the job's (with the offerings of its providers) when
/// the directory holds a job that loads, else the default source plus the offerings of a
/// job with no provider blocks (the default local cloud).
fn open(ctx: &Ctx) -> anyhow::Result<Catalog> {
    if ctx.has_job_files() {
        if let Some(l) = ctx.job_opt() {
            return ctx.catalog(&l.spec);
        }
    }
    let empty = crate::config::JobSpec::empty("catalog");
    ctx.catalog(&empty)
}

fn parse_gpu(c: &Catalog, s: &str) -> anyhow::Result<(String, Option<f64>)> {
    let (name, count) = match s.split_once(':') {
        Some((n, k)) => {
            (n, Some(k.parse::<f64>().map_err(|_| anyhow::anyhow!("--gpu {s}: the count after `:` must be a number"))?))
        }
        None => (s, None),
    };
    match c.canonical_accelerator(name) {
        Some(canon) => Ok((canon, count)),
        None => {
            let hint = c.suggest_accelerator(name).map(|h| format!(" Did you mean `{h}`?")).unwrap_or_default();
            anyhow::bail!("--gpu {s}: unknown accelerator `{name}`.{hint} `skyform catalog gpus` lists them all.")
        }
    }
}

fn money(x: f64) -> String {
    format!("${x:.4}")
}

pub fn run(ctx: &Ctx, cmd: CatalogCmd) -> anyhow::Result<i32> {
    match cmd {
        CatalogCmd::Search(a) => search(ctx, a),
        CatalogCmd::Gpus(a) => gpus(ctx, a),
        CatalogCmd::Regions(a) => {
            let c = open(ctx)?;
            let r = c.regions();
            if a.json {
                views::print_json(&serde_json::to_value(&r)?);
            } else {
                let mut rows = vec![vec!["CLOUD".into(), "REGION".into(), "ZONES".into()]];
                for (cloud, regions) in &r {
                    for (region, zones) in regions {
                        let z: Vec<&str> = zones.iter().map(String::as_str).filter(|z| z != region).collect();
                        rows.push(vec![
                            cloud.clone(),
                            region.clone(),
                            if z.is_empty() { "-".into() } else { z.join(", ") },
                        ]);
                    }
                }
                out!("{}", views::table(&rows));
            }
            Ok(0)
        }
        CatalogCmd::Info(a) => {
            let c = open(ctx)?;
            let gpus = c.accelerator_names().len();
            let per_cloud: BTreeMap<&String, serde_json::Value> = c
                .snap
                .counts
                .iter()
                .map(|(k, (n, skipped))| {
                    let shapes = c.snap.shapes.iter().filter(|s| &s.cloud == k).count();
                    let info = c.clouds.get(k);
                    let age = info.and_then(|i| i.age(ctx.clock.now()));
                    (
                        k,
                        serde_json::json!({
                            "offerings": n, "skipped_rows": skipped, "instance_shapes": shapes,
                            "origin": info.map(|i| &i.origin), "source": info.map(|i| &i.source),
                            "date": info.map(|i| &i.date),
                            "checked": info.and_then(|i| i.checked).map(crate::clock::format_time),
                            "age_days": age.map(|a| a / 86_400),
                        }),
                    )
                })
                .collect();
            if a.json {
                views::print_json(&serde_json::json!({
                    "origin": c.origin, "source": c.snap.source, "created": c.snap.created,
                    "offerings": c.len(), "accelerators": gpus, "clouds": per_cloud,
                }));
            } else {
                outln!("Catalog:   {} ({})", c.origin, c.snap.source);
                outln!("Data date: {}", c.snap.created);
                outln!("Offerings: {} in total, {gpus} accelerator types", c.len());
                let mut rows = vec![["CLOUD", "OFFERINGS", "SHAPES", "SKIPPED ROWS", "DATE", "AGE", "SOURCE"]
                    .map(String::from)
                    .to_vec()];
                let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).unwrap_or("-").to_string();
                for (k, v) in &per_cloud {
                    rows.push(vec![
                        k.to_string(),
                        v["offerings"].to_string(),
                        v["instance_shapes"].to_string(),
                        v["skipped_rows"].to_string(),
                        text(&v["date"]),
                        v["age_days"].as_u64().map(|d| format!("{d} d")).unwrap_or_else(|| "-".into()),
                        match v["origin"].as_str() {
                            Some("update") => text(&v["source"]),
                            Some(o) => format!("{o} ({})", text(&v["source"])),
                            None => "-".into(),
                        },
                    ]);
                }
                out!("{}", views::table(&rows));
            }
            Ok(0)
        }
        CatalogCmd::Import(a) => {
            let from = ctx.dir.join(&a.from);
            let mut snap = catalog::import::import_dir(&from)?;
            if let Some(d) = a.date {
                snap.created = d;
            }
            let out = a.out.map(|o| ctx.dir.join(o)).unwrap_or_else(catalog::installed_path);
            if let Some(p) = out.parent() {
                std::fs::create_dir_all(p)?;
            }
            // Write beside, then rename: a failed write never leaves a broken snapshot.
            let tmp = out.with_extension("tmp");
            std::fs::write(&tmp, snap.encode())?;
            std::fs::rename(&tmp, &out)?;
            let total: u64 = snap.counts.values().map(|c| c.0).sum();
            let skipped: u64 = snap.counts.values().map(|c| c.1).sum();
            errln!("Imported {total} offerings ({skipped} rows skipped) from {}", from.display());
            outln!("{}", out.display());
            Ok(0)
        }
        CatalogCmd::Update(a) => update(ctx, a),
    }
}

/// Draws the download progress on stderr (hidden when stderr is not a terminal).
struct Bar(indicatif::ProgressBar);

impl crate::catalog::update::Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        self.0.reset();
        self.0.set_length(total.unwrap_or(0));
        let template = if total.is_some() {
            "{spinner} {msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})"
        } else {
            "{spinner} {msg} {bytes} ({bytes_per_sec})"
        };
        self.0.set_style(indicatif::ProgressStyle::with_template(template).expect("template"));
        self.0.set_message(what.to_string());
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn step(&self, what: &str) {
        self.0.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("template"));
        self.0.set_message(what.to_string());
        self.0.tick();
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn update(ctx: &Ctx, a: UpdateArgs) -> anyhow::Result<i32> {
    use crate::catalog::update::{self, Outcome};
    let max_age = crate::config::parse_hours(&a.max_age).map_err(|e| anyhow::anyhow!("--max-age: {e}"))?;
    let max_age = (max_age * 3600.0) as u64;
    if !(a.max_change.is_finite() && a.max_change > 1.0) {
        anyhow::bail!("--max-change {}: must be a factor above 1", a.max_change);
    }
    let now = ctx.clock.now();
    if a.check {
        let c = Catalog::default_source(None)?;
        let clouds: Vec<&String> = c.clouds.keys().filter(|k| a.cloud.is_empty() || a.cloud.contains(k)).collect();
        let stale: Vec<(String, u64)> =
            c.stale(now, max_age, false).into_iter().filter(|(k, _)| clouds.contains(&k)).collect();
        if a.json {
            let rows: Vec<serde_json::Value> = clouds
                .iter()
                .map(|k| {
                    let i = &c.clouds[*k];
                    serde_json::json!({
                        "cloud": k, "date": i.date, "origin": i.origin, "age_days": i.age(now).map(|x| x / 86_400),
                        "stale": stale.iter().any(|(s, _)| s == *k),
                    })
                })
                .collect();
            views::print_json(&serde_json::json!({"max_age_days": max_age as f64 / 86_400.0, "clouds": rows}));
        } else {
            for k in &clouds {
                let i = &c.clouds[*k];
                let age = i.age(now).map(catalog::fmt_age).unwrap_or_else(|| "unknown age".into());
                let mark = if stale.iter().any(|(s, _)| s == *k) { "stale" } else { "fresh" };
                outln!("{k}: {mark} ({age}; {} data of {})", i.origin, if i.date.is_empty() { "-" } else { &i.date });
            }
        }
        if !stale.is_empty() {
            let names: Vec<&str> = stale.iter().map(|(k, _)| k.as_str()).collect();
            errln!("Error: catalog data older than {}: {} (run `skyform catalog update`)", a.max_age, names.join(", "));
            return Ok(1);
        }
        return Ok(0);
    }
    let previous = Catalog::default_source(None)?;
    let mut opts = update::Options {
        source: a.source,
        clouds: a.cloud.clone(),
        base_url: a.base_url.clone(),
        strict: a.strict,
        max_change: a.max_change,
        now: fetched_at(now)?,
        shapes: Default::default(),
    };
    // Sizes from the clouds' own APIs (Azure's resource SKUs), when credentials allow.
    for cloud in update::clouds(&opts)? {
        match ctx.registry.instance_shapes(ctx.job_opt().map(|l| &l.spec), &cloud, &ctx.build_context()) {
            Ok(Some(shapes)) => {
                errln!("{cloud}: {} VM sizes from its API", shapes.len());
                opts.shapes.insert(cloud, shapes);
            }
            Ok(None) => {}
            Err(e) => errln!(
                "Warning: {cloud}: cannot list its VM sizes ({e}); sizes the catalog does not know yet are skipped"
            ),
        }
    }
    let dir = catalog::cache::dir();
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    let reports = update::update(&opts, &dir, &previous, &Bar(bar))?;
    let failed = reports.iter().any(|r| matches!(r.outcome, Outcome::Failed { .. }));
    if a.json {
        views::print_json(&serde_json::json!({"source": a.source, "cache": dir, "clouds": reports}));
    }
    for r in &reports {
        for b in &r.bad_rows {
            errln!("Warning: {b}");
        }
        if a.json {
            continue;
        }
        match &r.outcome {
            Outcome::Updated { offerings, skipped } => {
                let bad = if r.bad_rows.is_empty() {
                    String::new()
                } else {
                    format!(", {} bad rows left out", r.bad_rows.len())
                };
                outln!("{}: updated, {offerings} offerings ({skipped} rows skipped{bad}) from {}", r.cloud, r.url);
            }
            Outcome::Unchanged => outln!("{}: unchanged since the last update ({})", r.cloud, r.url),
            Outcome::Failed { error } => {
                let prev = previous.clouds.get(&r.cloud);
                let kept = match prev {
                    Some(i) if i.origin == "update" => {
                        format!("the previous snapshot (fetched {}) stays in use", i.date)
                    }
                    Some(i) => format!("the previous snapshot ({} data of {}) stays in use", i.origin, i.date),
                    None => "no data for it is in use".into(),
                };
                errln!("Error: {}: update failed: {error}; {kept}", r.cloud);
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// The fetch time an update records: now, or `$SKYFORM_CATALOG_FETCHED_AT` (Unix seconds;
/// test-only: it lets a test make a snapshot look old).
fn fetched_at(now: u64) -> anyhow::Result<u64> {
    match std::env::var("SKYFORM_CATALOG_FETCHED_AT") {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("SKYFORM_CATALOG_FETCHED_AT: `{v}` is not a Unix time")),
        Err(_) => Ok(now),
    }
}

fn search(ctx: &Ctx, a: SearchArgs) -> anyhow::Result<i32> {
    let c = open(ctx)?;
    let mut f = Filter {
        spot: a.spot,
        max_price: a.max_price,
        cloud: a.cloud.clone(),
        instance_type: a.instance_type.clone(),
        ..Default::default()
    };
    if let Some(g) = &a.gpu {
        f.gpu = Some(parse_gpu(&c, g)?);
    }
    if let Some(s) = &a.cpus {
        f.cpus = Some(Quantity::parse(s).map_err(|e| anyhow::anyhow!("--cpus: {e}"))?);
    }
    if let Some(s) = &a.memory {
        f.memory = Some(Quantity::parse(s).map_err(|e| anyhow::anyhow!("--memory: {e}"))?);
    }
    if let Some(cl) = &a.cloud {
        let known = ctx.registry.names();
        if !known.contains(cl) {
            anyhow::bail!("--cloud {cl}: unknown cloud ({})", known.join(", "));
        }
    }
    if let Some(r) = &a.region {
        f.region_glob = Some(globset::Glob::new(r).map_err(|e| anyhow::anyhow!("--region: {e}"))?.compile_matcher());
    }
    let found = c.search(&f);
    let shown: Vec<_> = if a.limit == 0 { found.iter().collect() } else { found.iter().take(a.limit).collect() };
    if a.json {
        views::print_json(&serde_json::json!({"count": found.len(), "offerings": shown}));
        return Ok(0);
    }
    if found.is_empty() {
        errln!("No offering matches these filters.");
        return Ok(0);
    }
    let mut rows =
        vec![["CLOUD", "REGION", "ZONE", "INSTANCE TYPE", "vCPUs", "MEM GiB", "ACCELERATOR", "$/h", "SPOT $/h"]
            .map(String::from)
            .to_vec()];
    for o in &shown {
        rows.push(vec![
            o.cloud.into(),
            o.region.into(),
            o.zone.into(),
            o.instance_type.into(),
            fmt_count(o.vcpus),
            fmt_count(o.memory_gb),
            o.accelerator_label(),
            money(o.price),
            o.spot_price.map(money).unwrap_or_else(|| "-".into()),
        ]);
    }
    out!("{}", views::table(&rows));
    if shown.len() < found.len() {
        errln!("({} of {} offerings shown; --limit 0 shows all)", shown.len(), found.len());
    }
    Ok(0)
}

fn gpus(ctx: &Ctx, a: GpusArgs) -> anyhow::Result<i32> {
    let c = open(ctx)?;
    let name = match &a.name {
        Some(n) => Some(parse_gpu(&c, n)?.0),
        None => None,
    };
    // (accelerator, count, cloud) → (cheapest on-demand offering, cheapest spot offering)
    type Best<'a> = (Option<crate::catalog::Offering<'a>>, Option<crate::catalog::Offering<'a>>);
    let mut best: BTreeMap<(String, u64, String), Best> = BTreeMap::new();
    for s in &c.snap.shapes {
        let Some(acc) = &s.accelerator else { continue };
        if name.as_ref().is_some_and(|n| n != acc) {
            continue;
        }
        for o in c.offerings_of(s) {
            let e = best.entry((acc.clone(), (s.accelerator_count * 1000.0) as u64, s.cloud.clone())).or_default();
            let better =
                |cur: &Option<crate::catalog::Offering>, p: f64, get: fn(&crate::catalog::Offering) -> Option<f64>| {
                    cur.as_ref().and_then(get).is_none_or(|c| p < c)
                };
            if better(&e.0, o.price, |x| Some(x.price)) {
                e.0 = Some(o.clone());
            }
            if let Some(sp) = o.spot_price {
                if better(&e.1, sp, |x| x.spot_price) {
                    e.1 = Some(o.clone());
                }
            }
        }
    }
    if a.json {
        let rows: Vec<serde_json::Value> = best
            .iter()
            .map(|((acc, count, cloud), (od, sp))| {
                serde_json::json!({
                    "accelerator": acc, "count": *count as f64 / 1000.0, "cloud": cloud,
                    "on_demand": od.as_ref().map(|o| serde_json::json!({"instance_type": o.instance_type, "region": o.region, "zone": o.zone, "price": o.price})),
                    "spot": sp.as_ref().map(|o| serde_json::json!({"instance_type": o.instance_type, "region": o.region, "zone": o.zone, "price": o.spot_price})),
                })
            })
            .collect();
        views::print_json(&serde_json::Value::Array(rows));
        return Ok(0);
    }
    let mut rows =
        vec![["GPU", "QTY", "CLOUD", "INSTANCE TYPE", "vCPUs", "MEM GiB", "$/h", "REGION", "SPOT $/h", "SPOT REGION"]
            .map(String::from)
            .to_vec()];
    for ((acc, count, cloud), (od, sp)) in &best {
        let od = od.as_ref().expect("every entry has an on-demand offering");
        rows.push(vec![
            acc.clone(),
            fmt_count(*count as f64 / 1000.0),
            cloud.clone(),
            od.instance_type.into(),
            fmt_count(od.vcpus),
            fmt_count(od.memory_gb),
            money(od.price),
            od.region.into(),
            sp.as_ref().and_then(|o| o.spot_price).map(money).unwrap_or_else(|| "-".into()),
            sp.as_ref().map(|o| o.region.to_string()).unwrap_or_else(|| "-".into()),
        ]);
    }
    out!("{}", views::table(&rows));
    Ok(0)
}
