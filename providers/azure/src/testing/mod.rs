//! The emulator harness of skyform's Azure tests (feature `testing`). Everything listens
//! on 127.0.0.1 only; nothing reaches Azure.
//!
//! - [`Azurite`]: Azurite's blob service (npm `azurite`) on a free port, in memory, with
//!   telemetry off; it goes away with the handle, and with the test process even after a
//!   SIGKILL (its shell waits on our stdin).
//! - [`FakeArm`]: a loopback fake of the Resource Manager routes the SDK clients call
//!   (VMs, NICs, disks, VNets; provisioning states, instance views, faults, eviction).
//! - [`VmAgent`]: plays the VMs. It watches the fake for running VMs and runs each one's
//!   custom data with bash on this host against Azurite (so PUT → cloud-init bootstrap →
//!   status blob → poll → DELETE happens for real, all but the machine); a VM that is
//!   deleted, evicted or deallocated has its process group stopped as a shutdown stops it
//!   (SIGTERM, a grace, SIGKILL).
//! - [`provider_config`] / [`backend_config`]: the `provider "azure"` and
//!   `backend "azurerm"` bodies (as JSON) that point at them.

mod arm_fake;

pub use arm_fake::{FakeArm, Fault, FaultKind, RecordedPut};

use serde_json::{json, Value};
use skyform_provider::vm_process::VmProcess;
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Azurite's account and its well-known key (public, in Azure's docs).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The subscription and resource group the tests use against the fake.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
pub const RESOURCE_GROUP: &str = "skyform-test";

/// The npm package and version the harness is verified with.
pub const AZURITE_NPM: &str = "azurite@3.35.0";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

/// `azurite-blob`: `$SKYFORM_AZURITE_BLOB`, else the one `npm install azurite` put in
/// `~/.cache/skyform-emulators`, else the PATH's.
pub fn azurite_bin() -> String {
    if let Ok(b) = std::env::var("SKYFORM_AZURITE_BLOB") {
        return b;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/skyform-emulators/node_modules/.bin/azurite-blob");
        if p.exists() {
            return p.display().to_string();
        }
    }
    "azurite-blob".into()
}

/// Azurite's blob service of this test.
pub struct Azurite {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Azurite {
    /// Starts `azurite-blob` on a free port and waits until it answers. Panics with the
    /// install hint when it is missing.
    pub fn start() -> Azurite {
        let bin = azurite_bin();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("skyform-azurite-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("azurite work dir");
        // `SKYFORM_AZURITE_LOG=FILE` keeps its debug log (every request).
        let debug = std::env::var("SKYFORM_AZURITE_LOG").map(|f| format!(" --debug '{f}'")).unwrap_or_default();
        // `read` returns when our end of stdin closes (also when this process is killed),
        // and the server goes with it.
        let script = format!(
            "'{bin}' --blobHost 127.0.0.1 --blobPort {port} --inMemoryPersistence --extentMemoryLimit 1024 \
             --skipApiVersionCheck --loose --disableTelemetry --disableProductStyleUrl --silent{debug} \
              >/dev/null 2>&1 & pid=$!; read _; kill $pid 2>/dev/null; wait $pid 2>/dev/null"
        );
        // In memory: nothing is written, but Azurite runs in its cwd; give it one of its own.
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let a = Azurite { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite did not start on 127.0.0.1:{port}; install it with: \
                 npm install --prefix ~/.cache/skyform-emulators {AZURITE_NPM}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    /// The blob service URL template (`{account}` replaced by the provider).
    pub fn storage_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{{account}}", self.port)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut s) = self.child.stdin.take() {
            let _ = s.write_all(b"\n");
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The body of a `provider "azure"` block against the fake and Azurite: fast polls and
/// short waits.
pub fn provider_config(arm: &FakeArm, azurite: &Azurite) -> Value {
    json!({
        "subscription_id": SUBSCRIPTION,
        "resource_group": RESOURCE_GROUP,
        "endpoint": arm.endpoint,
        "storage_account": ACCOUNT,
        "storage_endpoint": azurite.storage_endpoint(),
        "access_key": KEY,
        "poll_seconds": 1,
        "create_wait_seconds": 10,
        "delete_wait_seconds": 20,
        "request_timeout_seconds": 10,
    })
}

/// The body of a `backend "azurerm"` block on Azurite.
pub fn backend_config(azurite: &Azurite, container: &str, key: &str) -> Value {
    json!({
        "storage_account": ACCOUNT,
        "container": container,
        "key": key,
        "storage_endpoint": azurite.storage_endpoint(),
        "access_key": KEY,
    })
}

/// Plays the VMs of a [`FakeArm`].
pub struct VmAgent {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    started: Arc<Mutex<Vec<String>>>,
}

impl VmAgent {
    /// Starts watching. `work` is where the VMs' directories (and each VM's
    /// `NAME.agent.log`, the bootstrap's own output) go.
    pub fn start(arm: &FakeArm, work: &Path) -> VmAgent {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Mutex::new(Vec::new()));
        let (stop2, started2, state) = (stop.clone(), started.clone(), arm.shared());
        let work = work.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut vms: HashMap<String, VmProcess> = HashMap::new();
            let mut stopping: Vec<std::thread::JoinHandle<()>> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let running: HashMap<String, String> = FakeArm::running_of(&state).into_iter().collect();
                for (name, cd) in &running {
                    if vms.contains_key(name) {
                        continue;
                    }
                    let Some(script) = base64_decode(cd) else { continue };
                    let _ = std::fs::create_dir_all(&work);
                    let log = work.join(format!("{name}.agent.log"));
                    let env = [("SKYFORM_WORK", work.join(name))];
                    if let Some(vm) = VmProcess::boot(&script, env, Some(&log)) {
                        started2.lock().expect("lock").push(name.clone());
                        vms.insert(name.clone(), vm);
                    }
                }
                let gone: Vec<String> = vms.keys().filter(|n| !running.contains_key(*n)).cloned().collect();
                for n in gone {
                    if let Some(vm) = vms.remove(&n) {
                        // On a thread of its own: the other VMs go on meanwhile.
                        stopping.push(std::thread::spawn(move || vm.stop()));
                    }
                }
                for vm in vms.values_mut() {
                    vm.reap();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stopping.extend(vms.into_values().map(|vm| std::thread::spawn(move || vm.stop())));
            for t in stopping {
                let _ = t.join();
            }
        });
        VmAgent { stop, thread: Some(thread), started }
    }

    /// VM names the agent has booted so far.
    pub fn started(&self) -> Vec<String> {
        self.started.lock().expect("lock").clone()
    }
}

impl Drop for VmAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()?;
    String::from_utf8(b).ok()
}
