//! `skyform catalog update` against a loopback HTTP server that serves SkyPilot's catalog
//! layout (`BASE/CLOUD/vms.csv`, as in `skypilot-org/skypilot-catalog/catalogs/v8/`): the
//! CSVs of `../shared/catalog` or small ones written here, plain or gzip
//! (`Content-Encoding: gzip`), with an ETag, and on demand a 500, a body cut short or a bad
//! row.

use super::*;
use skyform::catalog::{import, Catalog};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// How the server answers one path.
#[derive(Clone)]
pub(crate) enum Answer {
    /// 200 with the body (gzip-encoded on the wire when `gzip`), an ETag of its content,
    /// and 304 to a matching If-None-Match.
    Ok { body: Vec<u8>, gzip: bool },
    /// This status with a short body.
    Status(u16),
    /// 200 whose body stops after `sent` of its bytes (Content-Length says all of them).
    CutShort { body: Vec<u8>, sent: usize },
    /// 200 with a gzip body cut in half (Content-Length matches what is sent).
    GzipCutShort { body: Vec<u8> },
    /// No answer for this long, then the connection is closed.
    Hang(std::time::Duration),
}

#[derive(Default)]
struct Routes {
    answers: BTreeMap<String, Answer>,
    /// (path, status answered)
    log: Vec<(String, u16)>,
}

/// A loopback HTTP/1.1 server, one thread per connection, `Connection: close`. Written by
/// hand (not hyper) because it must misbehave on purpose: a body shorter than its
/// Content-Length. Stopped when dropped.
pub(crate) struct Server {
    pub(crate) url: String,
    routes: Arc<Mutex<Routes>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn etag(b: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

fn serve(mut s: TcpStream, routes: &Mutex<Routes>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("if-none-match") {
                if_none_match = Some(v.trim().to_string());
            }
        }
    }
    let answer = routes.lock().unwrap().answers.get(&path).cloned();
    let (status, headers, body): (u16, Vec<String>, Vec<u8>) = match answer {
        None => (404, vec![], b"not found".to_vec()),
        Some(Answer::Status(code)) => (code, vec![], b"internal error".to_vec()),
        Some(Answer::Ok { body, gzip: gz }) => {
            let tag = etag(&body);
            if if_none_match.as_deref() == Some(tag.as_str()) {
                (304, vec![format!("ETag: {tag}")], vec![])
            } else if gz {
                (200, vec![format!("ETag: {tag}"), "Content-Encoding: gzip".into()], gzip(&body))
            } else {
                (200, vec![format!("ETag: {tag}")], body)
            }
        }
        Some(Answer::CutShort { body, sent }) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(&body[..sent]));
            routes.lock().unwrap().log.push((path, 200));
            return;
        }
        Some(Answer::Hang(d)) => {
            std::thread::sleep(d);
            return;
        }
        Some(Answer::GzipCutShort { body }) => {
            let z = gzip(&body);
            (200, vec!["Content-Encoding: gzip".into()], z[..z.len() / 2].to_vec())
        }
    };
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(&body));
    routes.lock().unwrap().log.push((path, status));
}

impl Server {
    pub(crate) fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let routes = Arc::new(Mutex::new(Routes::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, st) = (routes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let r = r.clone();
                        std::thread::spawn(move || serve(s, &r));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Server { url, routes, stop, thread: Some(thread) }
    }

    pub(crate) fn set(&self, path: &str, a: Answer) {
        self.routes.lock().unwrap().answers.insert(path.to_string(), a);
    }

    /// Serves the shared CSVs (AWS gzip-encoded on the wire).
    fn shared(&self) {
        for cloud in ["aws", "gcp", "azure"] {
            let body = std::fs::read(shared_catalog().join(cloud).join("vms.csv")).unwrap();
            self.set(&format!("/{cloud}/vms.csv"), Answer::Ok { body, gzip: cloud == "aws" });
        }
    }

    pub(crate) fn log(&self) -> Vec<(String, u16)> {
        std::mem::take(&mut self.routes.lock().unwrap().log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs skyform with `home` as SKYFORM_HOME (so the cache persists between calls).
pub(crate) fn sky(dir: &Path, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut all = vec![("SKYFORM_HOME", home.to_str().unwrap())];
    all.extend_from_slice(env);
    skyform_env(dir, args, &all)
}

fn cache(home: &Path) -> PathBuf {
    home.join("cache/catalog")
}

/// The catalog every command uses with this SKYFORM_HOME (embedded + the update cache).
fn catalog_in(home: &Path) -> Catalog {
    let mut c = Catalog::embedded();
    c.overlay_cache(&cache(home), None).unwrap();
    c
}

/// Every offering as comparable text, sorted.
fn offerings(c: &Catalog) -> Vec<String> {
    let mut v: Vec<String> = c
        .offerings()
        .map(|o| {
            format!(
                "{} {} {} {} {:?}:{} {} {} {:?} {} {:?}",
                o.cloud,
                o.region,
                o.zone,
                o.instance_type,
                o.accelerator,
                o.accelerator_count,
                o.vcpus,
                o.memory_gb,
                o.arch,
                o.price,
                o.spot_price
            )
        })
        .collect();
    v.sort();
    v
}

const AWS_HEADER: &str =
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n";
const GCP_HEADER: &str =
    "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n";
const AZURE_HEADER: &str =
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,Generation\n";

fn aws_csv(m5_large: f64) -> Vec<u8> {
    format!(
        "{AWS_HEADER}m5.large,,,2.0,8.0,,{m5_large},0.03,us-east-1,us-east-1a\n\
         m5.large,,,2.0,8.0,,{m5_large},0.031,us-east-1,us-east-1b\n\
         p3.2xlarge,V100,1,8.0,61.0,\"{{'Gpus': []}}\",3.06,0.918,us-east-1,us-east-1a\n"
    )
    .into_bytes()
}

fn small_gcp() -> Vec<u8> {
    format!("{GCP_HEADER}n2-standard-2,2.0,8.0,,,,us-central1,us-central1-a,0.097118,0.023\n").into_bytes()
}

fn small_azure() -> Vec<u8> {
    format!("{AZURE_HEADER}Standard_D2s_v5,,,2,8,,0.096,0.0192,eastus,V2\n").into_bytes()
}

fn serve_small(s: &Server, m5_large: f64) {
    s.set("/aws/vms.csv", Answer::Ok { body: aws_csv(m5_large), gzip: false });
    s.set("/gcp/vms.csv", Answer::Ok { body: small_gcp(), gzip: true });
    s.set("/azure/vms.csv", Answer::Ok { body: small_azure(), gzip: false });
}

/// The on-demand prices of a cloud's offerings of `instance_type`, as the catalog every
/// command uses sees them.
fn prices(home: &Path, cloud: &str, instance_type: &str) -> Vec<f64> {
    let c = catalog_in(home);
    c.offerings().filter(|o| o.cloud == cloud && o.instance_type == instance_type).map(|o| o.price).collect()
}

#[test]
fn update_from_skypilot_csvs_equals_their_import_and_skips_unchanged_sources() {
    let s = Server::start();
    s.shared();
    let home = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let o = sky(&root(), home.path(), &["catalog", "update", "--source", "skypilot", "--base-url", &s.url], &[]);
    let took = t.elapsed();
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("aws: updated, 7758 offerings"), "{}", o.stdout);
    assert!(!o.stderr.contains("Warning"), "the shared CSVs have no bad row: {}", o.stderr);
    eprintln!("update of the shared CSVs: {took:?}");

    // The same rows and prices as `catalog import` of the same files.
    let imported = import::import_dir(&shared_catalog()).unwrap();
    let imported = Catalog::new(imported, "import".into());
    let updated = catalog_in(home.path());
    assert_eq!(offerings(&updated), offerings(&imported));
    assert_eq!(updated.snap.counts, imported.snap.counts);
    for cloud in ["aws", "gcp", "azure"] {
        assert_eq!(updated.clouds[cloud].origin, "update");
        assert!(updated.clouds[cloud].source.ends_with(&format!("{}/{cloud}/vms.csv", s.url)));
    }
    let log = s.log();
    assert_eq!(log.iter().filter(|(_, st)| *st == 200).count(), 3, "{log:?}");

    // `catalog info` shows each cloud's source, fetch date and rows.
    let o = sky(&root(), home.path(), &["catalog", "info", "-json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["clouds"]["gcp"]["offerings"], imported.snap.counts["gcp"].0);
    assert_eq!(v["clouds"]["gcp"]["origin"], "update");
    assert_eq!(v["clouds"]["gcp"]["age_days"], 0);
    assert!(v["clouds"]["gcp"]["date"].as_str().unwrap().ends_with('Z'), "{}", v["clouds"]["gcp"]);
    assert!(v["origin"].as_str().unwrap().starts_with("embedded + catalog update (aws "), "{}", v["origin"]);
    let o = sky(&root(), home.path(), &["catalog", "info"], &[]);
    assert!(o.stdout.contains(&format!("skypilot {}/azure/vms.csv", s.url)), "{}", o.stdout);

    // Unchanged sources (same ETag) are not downloaded again.
    let before = std::fs::read(cache(home.path()).join("gcp.bin")).unwrap();
    let o = sky(&root(), home.path(), &["catalog", "update", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.matches("unchanged since the last update").count(), 3, "{}", o.stdout);
    assert_eq!(s.log().iter().map(|(_, st)| *st).collect::<Vec<_>>(), vec![304, 304, 304]);
    assert_eq!(std::fs::read(cache(home.path()).join("gcp.bin")).unwrap(), before);
}

#[test]
fn a_failure_midway_keeps_the_previous_snapshot_in_use_and_says_so() {
    let s = Server::start();
    serve_small(&s, 0.096);
    let home = tempfile::tempdir().unwrap();
    let o = sky(&root(), home.path(), &["catalog", "update", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let gcp_before = std::fs::read(cache(home.path()).join("gcp.bin")).unwrap();
    let azure_before = std::fs::read(cache(home.path()).join("azure.bin")).unwrap();

    // AWS changed; GCP answers 500; Azure's body stops midway.
    s.set("/aws/vms.csv", Answer::Ok { body: aws_csv(0.12), gzip: true });
    s.set("/gcp/vms.csv", Answer::Status(500));
    let azure = small_azure();
    s.set("/azure/vms.csv", Answer::CutShort { sent: azure.len() / 2, body: azure });
    let o = sky(&root(), home.path(), &["catalog", "update", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("aws: updated, 3 offerings"), "{}", o.stdout);
    assert!(
        o.stderr.contains(&format!(
            "Error: gcp: update failed: {}/gcp/vms.csv answered HTTP 500: internal error; the previous snapshot (fetched ",
        s.url)),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("Error: azure: update failed: cannot download"), "{}", o.stderr);
    assert!(o.stderr.contains("the body broke off"), "{}", o.stderr);
    assert!(o.stderr.contains(") stays in use"), "{}", o.stderr);
    assert_eq!(std::fs::read(cache(home.path()).join("gcp.bin")).unwrap(), gcp_before);
    assert_eq!(std::fs::read(cache(home.path()).join("azure.bin")).unwrap(), azure_before);
    assert_eq!(prices(home.path(), "aws", "m5.large"), vec![0.12, 0.12]);
    assert_eq!(prices(home.path(), "gcp", "n2-standard-2"), vec![0.097118]);
    assert_eq!(prices(home.path(), "azure", "Standard_D2s_v5"), vec![0.096]);

    // A gzip body cut short: refused too, and nothing half-written is left in the cache.
    s.set("/azure/vms.csv", Answer::GzipCutShort { body: small_azure() });
    let o = sky(&root(), home.path(), &["catalog", "update", "--cloud", "azure", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("the gzip body is cut short or corrupt"), "{}", o.stderr);
    assert_eq!(std::fs::read(cache(home.path()).join("azure.bin")).unwrap(), azure_before);
    let mut left: Vec<String> = std::fs::read_dir(cache(home.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["aws.bin", "azure.bin", "gcp.bin", "state.json"]);

    // A cached snapshot this version cannot read is passed over, and `catalog info` says so.
    std::fs::write(cache(home.path()).join("gcp.bin"), b"SKYCAT\x00\x09 another format").unwrap();
    let o = sky(&root(), home.path(), &["catalog", "info", "-json"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["clouds"]["gcp"]["origin"], "embedded");
    assert_eq!(v["clouds"]["aws"]["origin"], "update");
    assert!(v["origin"]
        .as_str()
        .unwrap()
        .ends_with("(the cached update of gcp is unreadable: run `skyform catalog update`)"));

    // The first update of a cloud that fails leaves the embedded data in use.
    let fresh = tempfile::tempdir().unwrap();
    let o = sky(&root(), fresh.path(), &["catalog", "update", "--cloud", "gcp", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("the previous snapshot (embedded data of 2026-05-20) stays in use"), "{}", o.stderr);
    assert_eq!(catalog_in(fresh.path()).clouds["gcp"].origin, "embedded");
}

#[test]
fn bad_rows_are_reported_with_url_and_line_and_skipped_or_refused_with_strict() {
    let s = Server::start();
    serve_small(&s, 0.096);
    let home = tempfile::tempdir().unwrap();
    assert_eq!(sky(&root(), home.path(), &["catalog", "update", "--base-url", &s.url], &[]).code, 0);
    let good = "m5.xlarge,,,4.0,16.0,,0.192,0.06,us-east-1,us-east-1a\n";
    let bad = format!(
        "{AWS_HEADER}m5.large,,,2.0,8.0,,0.096,0.03,us-east-1,us-east-1a\n\
         m5.large,,,2.0,8.0,,9.6,0.031,us-east-1,us-east-1b\n\
         c5.large,,,2.0,4.0,,-0.085,,us-east-1,us-east-1a\n\
         c5.xlarge,,,4.0,8.0,,0,,us-east-1,us-east-1a\n\
         c5.2xlarge,,,8.0,16.0,,0.34,,moon-base-1,moon-base-1a\n\
         c5.4xlarge,,,16.0,32.0,,0.68,,us-east-1\n\
         {good}"
    );
    s.set("/aws/vms.csv", Answer::Ok { body: bad.into_bytes(), gzip: false });
    let url = format!("{}/aws/vms.csv", s.url);
    let o = sky(&root(), home.path(), &["catalog", "update", "--cloud", "aws", "--strict", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let expected = [
        format!("Warning: {url}:4: column Price: `-0.085` is not a non-negative number"),
        format!("Warning: {url}:6: unknown AWS region `moon-base-1`"),
        format!("Warning: {url}:7: "),
        format!("Warning: {url}:3: m5.large in us-east-1b: on-demand price moved from $0.096 to $9.6 (more than 10x"),
        format!("Warning: {url}:5: c5.xlarge in us-east-1a: on-demand price $0 is not between $0 and $2000/h"),
    ];
    for e in &expected {
        assert!(o.stderr.contains(e.as_str()), "{e}\n{}", o.stderr);
    }
    assert!(o
        .stderr
        .contains("Error: aws: update failed: refused (--strict): 5 bad row(s); the previous snapshot (fetched "));
    assert_eq!(prices(home.path(), "aws", "m5.large"), vec![0.096, 0.096], "nothing changed");

    // Without --strict: the same report, the bad rows left out, the good ones in.
    let o = sky(&root(), home.path(), &["catalog", "update", "--cloud", "aws", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for e in &expected {
        assert!(o.stderr.contains(e.as_str()), "{e}\n{}", o.stderr);
    }
    assert!(o.stdout.contains("aws: updated, 2 offerings (0 rows skipped, 5 bad rows left out)"), "{}", o.stdout);
    assert_eq!(prices(home.path(), "aws", "m5.large"), vec![0.096], "us-east-1b's jump is left out");
    assert_eq!(prices(home.path(), "aws", "m5.xlarge"), vec![0.192]);
    assert!(prices(home.path(), "aws", "c5.xlarge").is_empty());
}

fn aws_job() -> tempfile::TempDir {
    job(&[(
        "main.sky.hcl",
        "provider \"aws\" {}\n\ntask \"t\" {\n  resources {\n    cloud         = \"aws\"\n    instance_type = \"m5.large\"\n  }\n  run = \"true\"\n\n  estimate {\n    hours = 10\n  }\n}\n",
    )])
}

#[test]
fn a_plan_after_an_update_uses_the_new_prices_and_names_the_catalog() {
    let s = Server::start();
    serve_small(&s, 0.5);
    let home = tempfile::tempdir().unwrap();
    let d = aws_job();
    let show = |plan: &str| -> serde_json::Value {
        let o = sky(d.path(), home.path(), &["show", "-json", plan], &[]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        serde_json::from_str(&o.stdout).unwrap()
    };
    let o = sky(d.path(), home.path(), &["plan", "-out", "before.plan"], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let before = show("before.plan");
    assert_eq!(before["cost"]["after"], "0.96", "10 h of m5.large at the embedded $0.096/h");
    assert!(before["catalog"].as_str().unwrap().starts_with("embedded ("), "{}", before["catalog"]);

    let o = sky(d.path(), home.path(), &["catalog", "update", "--cloud", "aws", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = sky(d.path(), home.path(), &["plan", "-out", "after.plan"], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(!o.stderr.contains("Warning"), "fresh data: {}", o.stderr);
    let after = show("after.plan");
    assert_eq!(after["cost"]["after"], "5.00", "10 h at the updated $0.5/h");
    let id = after["catalog"].as_str().unwrap();
    assert!(id.starts_with("embedded + catalog update (aws 20"), "{id}");
    assert_ne!(id, before["catalog"].as_str().unwrap());
}

/// SkyPilot's v6+ AWS rows name zones by zone ID: the catalog keeps the ID, and a plan
/// placing a task there says that apply maps it to the account's zone name.
#[test]
fn aws_zone_ids_stay_in_the_catalog_and_plans_say_apply_maps_them() {
    let s = Server::start();
    serve_small(&s, 0.096);
    let csv = format!("{AWS_HEADER}m5.large,,,2.0,8.0,,0.05,0.02,us-east-1,use1-az2\n");
    s.set("/aws/vms.csv", Answer::Ok { body: csv.into_bytes(), gzip: false });
    let home = tempfile::tempdir().unwrap();
    let d = aws_job();
    let o = sky(d.path(), home.path(), &["catalog", "update", "--cloud", "aws", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let o = sky(d.path(), home.path(), &["plan", "-out", "z.plan"], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("Note: AWS zones are named by zone ID (use1-az2); apply maps them to this account's zone names (DescribeAvailabilityZones)."),
        "{}",
        o.stderr
    );
    let o = sky(d.path(), home.path(), &["show", "-json", "z.plan"], &[]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["cost"]["after"], "0.50", "10 h of m5.large at $0.05/h");
    assert!(o.stdout.contains("\"use1-az2\""), "the plan keeps the zone ID: {}", o.stdout);
}

#[test]
fn check_exits_1_on_a_40_day_old_cloud_and_plans_warn() {
    let s = Server::start();
    serve_small(&s, 0.096);
    let home = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let old = (now - 40 * 86_400).to_string();
    let o = sky(
        &root(),
        home.path(),
        &["catalog", "update", "--cloud", "aws", "--base-url", &s.url],
        &[("SKYFORM_CATALOG_FETCHED_AT", &old)],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = sky(
        &root(),
        home.path(),
        &["catalog", "update", "--cloud", "gcp", "--cloud", "azure", "--base-url", &s.url],
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);

    s.log();
    let o = sky(&root(), home.path(), &["catalog", "update", "--check"], &[]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("aws: stale (40 days;"), "{}", o.stdout);
    assert!(o.stdout.contains("gcp: fresh"), "{}", o.stdout);
    assert!(o.stderr.contains("catalog data older than 30d: aws (run `skyform catalog update`)"), "{}", o.stderr);
    assert_eq!(s.log(), vec![], "--check downloads nothing");
    let o = sky(&root(), home.path(), &["catalog", "update", "--check", "--cloud", "gcp", "--cloud", "azure"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = sky(&root(), home.path(), &["catalog", "update", "--check", "--max-age", "41d", "-json"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["clouds"][0]["cloud"], "aws");
    assert_eq!(v["clouds"][0]["age_days"], 40);
    assert_eq!(v["clouds"][0]["stale"], false);

    // A plan on AWS warns; one with a larger max age does not.
    let d = aws_job();
    let o = sky(d.path(), home.path(), &["plan"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("Warning: the catalog's aws prices are 40 days old (fetched "), "{}", o.stderr);
    assert!(o.stderr.contains("run `skyform catalog update --cloud aws`"), "{}", o.stderr);
    let o = sky(d.path(), home.path(), &["plan"], &[("SKYFORM_CATALOG_MAX_AGE", "60d")]);
    assert!(!o.stderr.contains("Warning"), "{}", o.stderr);

    // A fresh fetch (the source unchanged: 304) makes the data current again.
    let o = sky(&root(), home.path(), &["catalog", "update", "--cloud", "aws", "--base-url", &s.url], &[]);
    assert!(o.stdout.contains("aws: unchanged"), "{}", o.stdout);
    assert_eq!(sky(&root(), home.path(), &["catalog", "update", "--check"], &[]).code, 0);
}

/// Two pages of the Azure Retail Prices API, cut down by hand to the fields it answers per
/// item (shape of the response example in
/// <https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices>:
/// `{"BillingCurrency", "CustomerEntityId", "CustomerEntityType", "Items": [{"currencyCode",
/// "tierMinimumUnits", "retailPrice", "unitPrice", "armRegionName", "location",
/// "effectiveStartDate", "meterId", "meterName", "productId", "skuId", "productName",
/// "skuName", "serviceName", "serviceId", "serviceFamily", "unitOfMeasure", "type",
/// "isPrimaryMeterRegion", "armSkuName"}], "NextPageLink", "Count"}`). `BASE` is replaced by
/// the server's URL.
pub(crate) fn azure_item(
    sku: &str,
    region: &str,
    meter: &str,
    product: &str,
    price: f64,
    kind: &str,
    unit: &str,
) -> String {
    format!(
        r#"{{"currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": {price}, "unitPrice": {price},
        "armRegionName": "{region}", "location": "US East", "effectiveStartDate": "2024-06-01T00:00:00Z",
        "meterId": "00000000-0000-0000-0000-000000000000", "meterName": "{meter}", "productId": "DZH318Z0BQ4L",
        "skuId": "DZH318Z0BQ4L/00T7", "productName": "{product}", "skuName": "{meter}",
        "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
        "unitOfMeasure": "{unit}", "type": "{kind}", "isPrimaryMeterRegion": true, "armSkuName": "{sku}"}}"#
    )
}

fn azure_pages(base: &str) -> (String, String) {
    let c = "Consumption";
    let h = "1 Hour";
    let dsv5 = "Virtual Machines Dsv5 Series";
    let page1 = [
        azure_item("Standard_D2s_v5", "eastus", "D2s v5", dsv5, 0.1, c, h),
        azure_item("Standard_D2s_v5", "eastus", "D2s v5", "Virtual Machines Dsv5 Series Windows", 0.188, c, h),
        azure_item("Standard_D2s_v5", "eastus", "D2s v5 Spot", dsv5, 0.021, c, h),
        azure_item("Standard_D2s_v5", "eastus", "D2s v5 Low Priority", dsv5, 0.019, c, h),
        azure_item("Standard_D2s_v5", "eastus", "D2s v5", dsv5, 500.0, "Reservation", "1 Year"),
        azure_item("Standard_E4s_v5", "westus2", "E4s v5", "Virtual Machines Esv5 Series", 0.26, c, h),
    ];
    let page2 = [
        azure_item("Standard_E4s_v5", "westus2", "E4s v5 Spot", "Virtual Machines Esv5 Series", 0.052, c, h),
        azure_item("Standard_NC24s_v3", "eastus", "NC24s v3", "Virtual Machines NCSv3 Series", 12.5, c, h),
        azure_item("Standard_NC24s_v3", "eastus", "NC24s v3 Spot", "Virtual Machines NCSv3 Series", 2.5, c, h),
        azure_item("Standard_Unknown_v9", "eastus", "Unknown v9", "Virtual Machines Unknown Series", 1.0, c, h),
        azure_item("Standard_E4s_v5", "eastus", "E4s v5", "Virtual Machines Esv5 Series", 0.0, c, h),
        azure_item("Standard_D2s_v5", "East US", "D2s v5", dsv5, 0.1, c, h),
        azure_item("Standard_D2s_v5", "westus2", "D2s v5", dsv5, 0.09, "DevTestConsumption", h),
    ];
    let page = |items: &[String], next: Option<String>| {
        serde_json::json!({
            "BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
            "Items": items.iter().map(|i| serde_json::from_str::<serde_json::Value>(i).unwrap()).collect::<Vec<_>>(),
            "NextPageLink": next, "Count": items.len(),
        })
        .to_string()
    };
    (page(&page1, Some(format!("{base}/api/retail/prices?page=2"))), page(&page2, None))
}

pub(crate) const AZURE_FIRST: &str =
    "/api/retail/prices?$filter=serviceName%20eq%20%27Virtual%20Machines%27%20and%20priceType%20eq%20%27Consumption%27";

/// With a subscription configured, a size the previous snapshot does not know takes its
/// vCPUs, memory and architecture from Resource Manager's resource SKUs (the loopback ARM
/// fake, two SKUs a page as ARM pages them); a GPU size stays out (the SKUs do not name
/// its model), and so does a size the subscription may not use in the region.
#[test]
fn azure_sizes_the_catalog_does_not_know_come_from_the_subscription_s_resource_skus() {
    use skyform_provider_azure::testing::FakeArm;
    let s = Server::start();
    let (p1, p2) = azure_pages(&s.url);
    // Two more prices: a GPU size and the new size in a region the subscription may not use.
    let mut p2: serde_json::Value = serde_json::from_str(&p2).unwrap();
    for (sku, region, price) in [("Standard_NC8_v9", "eastus", 3.0), ("Standard_Unknown_v9", "westus2", 1.2)] {
        let item = azure_item(sku, region, "v9", "Virtual Machines v9 Series", price, "Consumption", "1 Hour");
        p2["Items"].as_array_mut().unwrap().push(serde_json::from_str(&item).unwrap());
    }
    s.set(AZURE_FIRST, Answer::Ok { body: p1.into_bytes(), gzip: false });
    s.set("/api/retail/prices?page=2", Answer::Ok { body: p2.to_string().into_bytes(), gzip: false });
    let arm = FakeArm::start();
    let cap = |n: &str, v: &str| serde_json::json!({"name": n, "value": v});
    arm.set_skus(vec![
        serde_json::json!({"resourceType": "disks", "name": "Premium_LRS", "locations": ["eastus"]}),
        serde_json::json!({"resourceType": "virtualMachines", "name": "Standard_Unknown_v9", "locations": ["eastus"],
            "capabilities": [cap("vCPUs", "8"), cap("MemoryGB", "32"), cap("CpuArchitectureType", "Arm64")]}),
        serde_json::json!({"resourceType": "virtualMachines", "name": "Standard_NC8_v9", "locations": ["eastus"],
            "capabilities": [cap("vCPUs", "8"), cap("MemoryGB", "56"), cap("GPUs", "1")]}),
    ]);
    let job = job(&[(
        "main.sky.hcl",
        &format!(
            "provider \"azure\" {{\n  subscription_id = \"sub-1\"\n  endpoint        = \"{}\"\n}}\n",
            arm.endpoint
        ),
    )]);
    let home = tempfile::tempdir().unwrap();
    let o = sky(job.path(), home.path(), &["catalog", "update", "--source", "azure", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("azure: 2 VM sizes from its API"), "{}", o.stderr);
    assert!(o.stdout.contains("azure: updated, 4 offerings (2 rows skipped, 2 bad rows left out)"), "{}", o.stdout);
    let requests = arm.requests();
    let skus: Vec<&String> = requests.iter().filter(|r| r.contains("/providers/Microsoft.Compute/skus")).collect();
    assert_eq!(skus.len(), 2, "two pages: {requests:?}");
    assert!(skus[0].starts_with("GET /subscriptions/sub-1/providers/Microsoft.Compute/skus?api-version="), "{skus:?}");
    let c = catalog_in(home.path());
    let o = c.offerings().find(|o| o.instance_type == "Standard_Unknown_v9").expect("the new size is offered");
    assert_eq!((o.zone, o.vcpus, o.memory_gb, o.price), ("eastus", 8.0, 32.0, 1.0));
    assert_eq!(o.arch, skyform::catalog::Arch::Arm64);
    assert!(c.offerings().all(|o| o.instance_type != "Standard_NC8_v9"), "a GPU size of unknown model");
    assert!(c.offerings().all(|o| !(o.instance_type == "Standard_Unknown_v9" && o.zone == "westus2")));

    // Without a subscription nothing is asked and the unknown size is skipped, as before.
    let home = tempfile::tempdir().unwrap();
    let o = sky(&root(), home.path(), &["catalog", "update", "--source", "azure", "--base-url", &s.url], &[]);
    assert!(o.stdout.contains("azure: updated, 3 offerings (3 rows skipped, 2 bad rows left out)"), "{}", o.stdout);
    assert!(!o.stderr.contains("VM sizes from its API"), "{}", o.stderr);
}

#[test]
fn azure_retail_prices_pages_become_offerings_with_the_previous_sizes() {
    let s = Server::start();
    let (p1, p2) = azure_pages(&s.url);
    s.set(AZURE_FIRST, Answer::Ok { body: p1.into_bytes(), gzip: false });
    s.set("/api/retail/prices?page=2", Answer::Ok { body: p2.clone().into_bytes(), gzip: true });
    let home = tempfile::tempdir().unwrap();
    let o = sky(&root(), home.path(), &["catalog", "update", "--source", "azure", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let page2 = format!("{}/api/retail/prices?page=2", s.url);
    assert!(o.stderr.contains(&format!("Warning: {page2} item 6: unknown Azure region `East US`")), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "Warning: {page2} item 5: Standard_E4s_v5 in eastus: on-demand price $0 is not between $0 and $2000/h"
        )),
        "{}",
        o.stderr
    );
    assert!(o.stdout.contains("azure: updated, 3 offerings (1 rows skipped, 2 bad rows left out)"), "{}", o.stdout);

    // Prices from the pages (Linux pay-as-you-go and Spot meters; Windows, Low Priority,
    // reservations and dev/test left out), sizes from the embedded catalog.
    let c = catalog_in(home.path());
    let mut az: Vec<String> = c
        .offerings()
        .filter(|o| o.cloud == "azure")
        .map(|o| {
            format!(
                "{} {} {}cpu {}GiB {} ${} spot ${:?}",
                o.instance_type,
                o.zone,
                o.vcpus,
                o.memory_gb,
                o.accelerator_label(),
                o.price,
                o.spot_price
            )
        })
        .collect();
    az.sort();
    assert_eq!(
        az,
        [
            "Standard_D2s_v5 eastus 2cpu 8GiB - $0.1 spot $Some(0.021)",
            "Standard_E4s_v5 westus2 4cpu 32GiB - $0.26 spot $Some(0.052)",
            "Standard_NC24s_v3 eastus 24cpu 448GiB V100:4 $12.5 spot $Some(2.5)",
        ]
    );
    assert_eq!(c.clouds["azure"].source, format!("azure {}{AZURE_FIRST}", s.url));
    assert!(c.offerings().any(|o| o.cloud == "aws"), "other clouds keep their data");

    // A page that fails midway: the update is refused and the previous snapshot stays.
    let before = std::fs::read(cache(home.path()).join("azure.bin")).unwrap();
    s.set("/api/retail/prices?page=2", Answer::Status(503));
    let o = sky(&root(), home.path(), &["catalog", "update", "--source", "azure", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains(&format!("Error: azure: update failed: {page2} answered HTTP 503")), "{}", o.stderr);
    assert!(o.stderr.contains("stays in use"), "{}", o.stderr);
    assert_eq!(std::fs::read(cache(home.path()).join("azure.bin")).unwrap(), before);
    let o = sky(&root(), home.path(), &["catalog", "update", "--source", "azure", "--cloud", "aws"], &[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("the azure source has no data for aws"), "{}", o.stderr);
}

/// An AWS Price List offer file in its CSV form, cut down by hand: the five metadata lines,
/// then the header and rows, with the columns the source reads among others (shape of
/// `index.csv` as described in "Reading the price list files" of the AWS Billing user guide,
/// <https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-service-price-list-files.html>).
const AWS_OFFER_HEAD: &str = "\"FormatVersion\",\"v1.0\"
\"Disclaimer\",\"This pricing list is for informational purposes only.\"
\"Publication Date\",\"2024-05-01T00:00:00Z\"
\"Version\",\"20240501000000\"
\"OfferCode\",\"AmazonEC2\"
\"SKU\",\"OfferTermCode\",\"RateCode\",\"TermType\",\"PriceDescription\",\"EffectiveDate\",\"StartingRange\",\"EndingRange\",\"Unit\",\"PricePerUnit\",\"Currency\",\"LeaseContractLength\",\"PurchaseOption\",\"OfferingClass\",\"Product Family\",\"serviceCode\",\"Location\",\"Location Type\",\"Instance Type\",\"Current Generation\",\"Instance Family\",\"vCPU\",\"Physical Processor\",\"Memory\",\"Storage\",\"Network Performance\",\"Tenancy\",\"Operating System\",\"License Model\",\"CapacityStatus\",\"GPU\",\"Pre Installed S/W\",\"MarketOption\",\"Region Code\"
";

/// One offer row: (type, term, price, vCPU, memory, GPU, tenancy, OS, pre-installed,
/// capacity status, market option).
#[allow(clippy::too_many_arguments)]
fn aws_row(
    it: &str,
    term: &str,
    price: &str,
    vcpu: &str,
    mem: &str,
    gpu: &str,
    tenancy: &str,
    os: &str,
    sw: &str,
    cap: &str,
    market: &str,
) -> String {
    let unit = if term == "OnDemand" { "Hrs" } else { "Quantity" };
    format!(
        "\"SKU{it}{tenancy}{os}\",\"JRTCKXETXF\",\"SKU.JRTCKXETXF.6YS6EN2CT7\",\"{term}\",\"${price} per On Demand {os} {it} Instance Hour\",\"2024-05-01\",\"0\",\"Inf\",\"{unit}\",\"{price}\",\"USD\",\"\",\"\",\"\",\"Compute Instance\",\"AmazonEC2\",\"US East (N. Virginia)\",\"AWS Region\",\"{it}\",\"Yes\",\"General purpose\",\"{vcpu}\",\"Intel Xeon\",\"{mem}\",\"EBS only\",\"Up to 10 Gigabit\",\"{tenancy}\",\"{os}\",\"No License required\",\"{cap}\",\"{gpu}\",\"{sw}\",\"{market}\",\"us-east-1\"\n"
    )
}

fn aws_offer(rows: &[String]) -> Vec<u8> {
    let mut s = AWS_OFFER_HEAD.to_string();
    for r in rows {
        s.push_str(r);
    }
    s.into_bytes()
}

fn od(it: &str, price: &str, vcpu: &str, mem: &str, gpu: &str) -> String {
    aws_row(it, "OnDemand", price, vcpu, mem, gpu, "Shared", "Linux", "NA", "Used", "OnDemand")
}

#[test]
fn aws_price_list_offer_files_become_offerings_with_the_previous_zones() {
    let s = Server::start();
    let index = serde_json::json!({
        "formatVersion": "v1.0", "disclaimer": "This pricing list is for informational purposes only.",
        "publicationDate": "2024-05-01T00:00:00Z",
        "regions": {
            "us-east-1": {"regionCode": "us-east-1", "currentVersionUrl": "/offers/v1.0/aws/AmazonEC2/20240501000000/us-east-1/index.json"},
            "us-west-2": {"regionCode": "us-west-2", "currentVersionUrl": "/offers/v1.0/aws/AmazonEC2/20240501000000/us-west-2/index.json"},
            "eu-west-1": {"regionCode": "eu-west-1", "currentVersionUrl": "/offers/v1.0/aws/AmazonEC2/20240501000000/eu-west-1/index.json"},
        }
    });
    s.set(
        "/offers/v1.0/aws/AmazonEC2/current/region_index.json",
        Answer::Ok { body: index.to_string().into_bytes(), gzip: false },
    );
    let east = aws_offer(&[
        od("m5.large", "0.1000000000", "2", "8 GiB", "NA"),
        aws_row(
            "m5.large",
            "OnDemand",
            "0.1880000000",
            "2",
            "8 GiB",
            "NA",
            "Shared",
            "Windows",
            "NA",
            "Used",
            "OnDemand",
        ),
        aws_row(
            "m5.large",
            "OnDemand",
            "0.1010000000",
            "2",
            "8 GiB",
            "NA",
            "Dedicated",
            "Linux",
            "NA",
            "Used",
            "OnDemand",
        ),
        aws_row(
            "m5.large",
            "Reserved",
            "0.0600000000",
            "2",
            "8 GiB",
            "NA",
            "Shared",
            "Linux",
            "NA",
            "Used",
            "OnDemand",
        ),
        aws_row("m5.large", "OnDemand", "0.1500000000", "2", "8 GiB", "NA", "Shared", "RHEL", "NA", "Used", "OnDemand"),
        aws_row(
            "m5.large",
            "OnDemand",
            "0.3000000000",
            "2",
            "8 GiB",
            "NA",
            "Shared",
            "Linux",
            "SQL Std",
            "Used",
            "OnDemand",
        ),
        aws_row(
            "m5.large",
            "OnDemand",
            "0.0000000000",
            "2",
            "8 GiB",
            "NA",
            "Shared",
            "Linux",
            "NA",
            "UnusedCapacityReservation",
            "OnDemand",
        ),
        od("p3.2xlarge", "3.2000000000", "8", "61 GiB", "1"),
        aws_row(
            "p3.2xlarge",
            "OnDemand",
            "2.5000000000",
            "8",
            "61 GiB",
            "1",
            "Shared",
            "Linux",
            "NA",
            "Used",
            "CapacityBlock",
        ),
        od("g6.xlarge", "0.8048000000", "4", "16 GiB", "1"),
        od("c5.large", "0.0850000000", "two", "4 GiB", "NA"),
    ]);
    let west = aws_offer(&[od("c5.xlarge", "0.1800000000", "4", "8 GiB", "NA")]);
    let eu = aws_offer(&[od("m5.large", "0.1070000000", "2", "8 GiB", "NA")]);
    let at = |r: &str| format!("/offers/v1.0/aws/AmazonEC2/20240501000000/{r}/index.csv");
    s.set(&at("us-east-1"), Answer::Ok { body: east, gzip: true });
    s.set(&at("us-west-2"), Answer::Ok { body: west, gzip: false });
    s.set(&at("eu-west-1"), Answer::Ok { body: eu, gzip: false });
    let home = tempfile::tempdir().unwrap();
    let o = sky(&root(), home.path(), &["catalog", "update", "--source", "aws", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "Warning: {}{}:17: column vCPU: `two` is not a non-negative number",
            s.url,
            at("us-east-1")
        )),
        "{}",
        o.stderr
    );
    // 6 m5.large + 6 p3.2xlarge + 6 g6.xlarge (us-east-1) + 4 c5.xlarge (us-west-2); eu-west-1
    // has no zones in the previous snapshot: skipped.
    assert!(o.stdout.contains("aws: updated, 22 offerings (1 rows skipped, 1 bad rows left out)"), "{}", o.stdout);

    let c = catalog_in(home.path());
    let rows = |it: &str| -> Vec<String> {
        let mut v: Vec<String> = c
            .offerings()
            .filter(|o| o.cloud == "aws" && o.instance_type == it)
            .map(|o| {
                format!(
                    "{} {}cpu {}GiB {} ${} spot {:?}",
                    o.zone,
                    o.vcpus,
                    o.memory_gb,
                    o.accelerator_label(),
                    o.price,
                    o.spot_price
                )
            })
            .collect();
        v.sort();
        v
    };
    // On-demand from the offer file; zones and spot prices from the embedded catalog (the
    // shared CSV's rows of the same type and region).
    assert_eq!(
        rows("m5.large"),
        [
            "us-east-1a 2cpu 8GiB - $0.1 spot Some(0.0429)",
            "us-east-1b 2cpu 8GiB - $0.1 spot Some(0.0378)",
            "us-east-1c 2cpu 8GiB - $0.1 spot Some(0.0427)",
            "us-east-1d 2cpu 8GiB - $0.1 spot Some(0.0379)",
            "us-east-1e 2cpu 8GiB - $0.1 spot None",
            "us-east-1f 2cpu 8GiB - $0.1 spot Some(0.0359)",
        ]
    );
    assert_eq!(
        rows("c5.xlarge"),
        [
            "us-west-2a 4cpu 8GiB - $0.18 spot Some(0.0695)",
            "us-west-2b 4cpu 8GiB - $0.18 spot Some(0.0676)",
            "us-west-2c 4cpu 8GiB - $0.18 spot Some(0.0722)",
            "us-west-2d 4cpu 8GiB - $0.18 spot Some(0.0644)",
        ]
    );
    assert_eq!(
        rows("p3.2xlarge"),
        [
            "us-east-1a 8cpu 61GiB V100:1 $3.2 spot Some(1.8041)",
            "us-east-1b 8cpu 61GiB V100:1 $3.2 spot None",
            "us-east-1c 8cpu 61GiB V100:1 $3.2 spot Some(1.7214)",
            "us-east-1d 8cpu 61GiB V100:1 $3.2 spot Some(1.3105)",
            "us-east-1e 8cpu 61GiB V100:1 $3.2 spot None",
            "us-east-1f 8cpu 61GiB V100:1 $3.2 spot Some(2.1311)",
        ]
    );
    // A type the 2022 snapshot lacks: its GPU named by its family, every zone of the region.
    assert_eq!(rows("g6.xlarge").len(), 6);
    assert!(
        rows("g6.xlarge")[0].starts_with("us-east-1a 4cpu 16GiB L4:1 $0.8048 spot None"),
        "{:?}",
        rows("g6.xlarge")
    );

    // The region index unchanged (ETag): nothing is downloaded again.
    s.log();
    let o = sky(&root(), home.path(), &["catalog", "update", "--source", "aws", "--base-url", &s.url], &[]);
    assert!(o.stdout.contains("aws: unchanged"), "{}", o.stdout);
    assert_eq!(s.log().len(), 1);
}

#[test]
fn the_update_bench_streams_a_generated_offer_file() {
    // A small file here (the figure in CHANGELOG is `skyform bench catalog-update`, 200 MB).
    let d = tempfile::tempdir().unwrap();
    let o = skyform(d.path(), &["bench", "catalog-update", "--size-mb", "5", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(v["offer_file_bytes"].as_u64().unwrap() >= 5_000_000);
    assert!(v["aws_offerings_written"].as_u64().unwrap() > 1000, "{v}");
    let peak = v["peak_rss_kb"].as_u64().unwrap();
    assert!(peak < 300 * 1024, "{peak} kB");
}

/// A Cloud Billing Catalog SKU, cut down by hand to the fields of the `services.skus.list`
/// answer (<https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list>:
/// `{"skus": [{"name", "skuId", "description", "category": {"serviceDisplayName",
/// "resourceFamily", "resourceGroup", "usageType"}, "serviceRegions", "pricingInfo":
/// [{"pricingExpression": {"usageUnit", "tieredRates": [{"startUsageAmount", "unitPrice":
/// {"currencyCode", "units", "nanos"}}]}}], "serviceProviderName"}], "nextPageToken"}`).
pub(crate) fn gcp_sku(description: &str, group: &str, usage: &str, unit: &str, nanos: i64) -> serde_json::Value {
    let units = (nanos / 1_000_000_000).to_string();
    let nanos = nanos % 1_000_000_000;
    serde_json::json!({
        "name": "services/6F81-5844-456A/skus/0000-0000-0000", "skuId": "0000-0000-0000",
        "description": description,
        "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute", "resourceGroup": group, "usageType": usage},
        "serviceRegions": ["us-central1"],
        "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "tieredRates": [
            {"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": units, "nanos": nanos}}
        ]}}],
        "serviceProviderName": "Google",
    })
}

#[test]
fn gcp_billing_skus_price_the_previous_machine_types() {
    let s = Server::start();
    let page1 = serde_json::json!({"skus": [
        gcp_sku("N2 Instance Core running in Americas", "CPU", "OnDemand", "h", 31_611_000),
        gcp_sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", "GiBy.h", 4_237_000),
        gcp_sku("Spot Preemptible N2 Instance Core running in Americas", "CPU", "Preemptible", "h", 7_650_000),
        gcp_sku("Spot Preemptible N2 Instance Ram running in Americas", "RAM", "Preemptible", "GiBy.h", 1_030_000),
        gcp_sku("E2 Instance Core running in Americas", "CPU", "OnDemand", "h", 21_811_000),
        gcp_sku("E2 Instance Ram running in Americas", "RAM", "OnDemand", "GiBy.h", 2_923_000),
        gcp_sku("Commitment v1: N2 Cpu in Americas for 1 Year", "CPU", "Commit1Yr", "h", 19_915_000),
    ], "nextPageToken": "p2"});
    let page2 = serde_json::json!({"skus": [
        gcp_sku("N1 Predefined Instance Core running in Americas", "N1Standard", "OnDemand", "h", 31_611_000),
        gcp_sku("N1 Predefined Instance Ram running in Americas", "N1Standard", "OnDemand", "GiBy.h", 4_237_000),
        gcp_sku("Spot Preemptible N1 Predefined Instance Core running in Americas", "N1Standard", "Preemptible", "h", 6_600_000),
        gcp_sku("Spot Preemptible N1 Predefined Instance Ram running in Americas", "N1Standard", "Preemptible", "GiBy.h", 890_000),
        gcp_sku("Nvidia Tesla V100 GPU running in Americas", "GPU", "OnDemand", "h", 2_480_000_000),
        gcp_sku("Nvidia Tesla V100 GPU attached to Spot Preemptible VMs running in Americas", "GPU", "Preemptible", "h", 740_000_000),
        gcp_sku("Nvidia Tesla T4 GPU running in Americas", "GPU", "OnDemand", "GiBy.h", 350_000_000),
    ], "nextPageToken": ""});
    let page2 = page2.to_string();
    let first = "/v1/services/6F81-5844-456A/skus?currencyCode=USD&key=test-key";
    s.set(first, Answer::Ok { body: page1.to_string().into_bytes(), gzip: false });
    s.set(
        "/v1/services/6F81-5844-456A/skus?currencyCode=USD&pageToken=p2&key=test-key",
        Answer::Ok { body: page2.into_bytes(), gzip: true },
    );
    let home = tempfile::tempdir().unwrap();
    let args = ["catalog", "update", "--source", "gcp", "--base-url", &s.url];
    let o = sky(&root(), home.path(), &args, &[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("needs an API key: set SKYFORM_GCP_API_KEY"), "{}", o.stderr);
    let o = sky(&root(), home.path(), &args, &[("SKYFORM_GCP_API_KEY", "test-key")]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("test-key") && !o.stderr.contains("test-key"), "the key is not shown");
    assert!(
        o.stderr.contains(&format!(
            "Warning: {}/v1/services/6F81-5844-456A/skus?currencyCode=USD&pageToken=p2 item 7: `Nvidia Tesla T4 GPU running in Americas`: no price per h (usageUnit `GiBy.h`)",
            s.url
        )),
        "{}",
        o.stderr
    );

    let c = catalog_in(home.path());
    let rows = |it: &str, acc: Option<&str>| -> Vec<String> {
        let mut v: Vec<String> = c
            .offerings()
            .filter(|o| o.cloud == "gcp" && o.instance_type == it && o.accelerator == acc && o.accelerator_count <= 1.0)
            .map(|o| format!("{} ${} spot {:?}", o.zone, o.price, o.spot_price))
            .collect();
        v.sort();
        v
    };
    // n2-standard-2: 2 × 0.031611 + 8 × 0.004237 = 0.097118; spot 2 × 0.00765 + 8 × 0.00103.
    assert_eq!(rows("n2-standard-2", None)[0], "us-central1-a $0.097118 spot Some(0.02354)");
    assert_eq!(rows("n2-standard-2", None).len(), 4);
    // e2-standard-4: 4 × 0.021811 + 16 × 0.002923 = 0.134012; no E2 spot SKU here.
    assert_eq!(rows("e2-standard-4", None)[3], "us-central1-f $0.134012 spot None");
    // n1-standard-8 + V100:1 (units "2" + nanos 480000000): 8 × 0.031611 + 30 × 0.004237 + 2.48 = 2.859998;
    // spot 8 × 0.0066 + 30 × 0.00089 + 0.74 = 0.8195.
    assert_eq!(
        rows("n1-standard-8", Some("V100")),
        [
            "us-central1-a $2.859998 spot Some(0.8195)",
            "us-central1-b $2.859998 spot Some(0.8195)",
            "us-central1-c $2.859998 spot Some(0.8195)",
            "us-central1-f $2.859998 spot Some(0.8195)",
        ]
    );
    assert!(c.offerings().filter(|o| o.cloud == "gcp").all(|o| o.region == "us-central1"), "only priced regions");
}
