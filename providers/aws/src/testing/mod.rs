//! The emulator harness of skyform's AWS tests (feature `testing`). Everything listens on
//! 127.0.0.1 only.
//!
//! - [`Moto`]: a moto server of its own (`moto_server` from PyPI's `moto[server]`) on a free
//!   port; it goes away with the handle, and with the test process even after a SIGKILL.
//! - [`InstanceAgent`]: plays the VM. It watches moto for instances carrying skyform's
//!   tags, reads their user data and runs it with bash on this host against moto's S3 (so
//!   RunInstances → bootstrap → S3 status → poll → Terminate happens for real, all but the
//!   machine); a terminated instance's processes are stopped as a shutdown stops them:
//!   SIGTERM, a grace, then SIGKILL ([`skyform_provider::vm_process`]).
//! - [`FaultProxy`]: a loopback HTTP proxy in front of moto that answers chosen EC2 calls
//!   in chosen zones with AWS's error XML, so failover goes through the SDK's own parsing.

mod proxy;

pub use proxy::{Fault, FaultProxy};

use aws_sdk_ec2::types as ec2t;
use skyform_provider::vm_process::VmProcess;
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The static credentials every emulator client uses.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";

/// The environment that keeps the SDK (and the AWS CLI) on the emulator: static
/// credentials, no instance metadata, no shared config files.
pub fn client_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Sets [`client_env`] in this process (tests that call the SDK in-process).
pub fn set_client_env() {
    for (k, v) in client_env() {
        // Tests set the same values from every thread; nothing reads them concurrently
        // with a different expectation.
        std::env::set_var(k, v);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

/// A moto server of this test.
pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    child: Child,
}

impl Moto {
    /// Starts `moto_server` (or `$SKYFORM_MOTO_SERVER`) on a free port and waits until it
    /// answers. Panics with the install hint when it is missing.
    pub fn start() -> Moto {
        let bin = std::env::var("SKYFORM_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        // `read` returns when our end of stdin closes (also when this process is killed),
        // and the server goes with it.
        // `SKYFORM_MOTO_LOG=FILE` keeps the server's log (request lines, tracebacks).
        let log = std::env::var("SKYFORM_MOTO_LOG").unwrap_or_else(|_| "/dev/null".into());
        let script = format!(
            "{bin} -H 127.0.0.1 -p {port} >>'{log}' 2>&1 & pid=$!; read _; kill $pid 2>/dev/null; wait $pid 2>/dev/null"
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let m = Moto { endpoint: format!("http://127.0.0.1:{port}"), port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto server did not start on 127.0.0.1:{port}; install it with: pip install 'moto[server]>=5.2,<5.3'"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    /// Region clients against this server (static credentials, no other network).
    pub fn clients(&self, region: &str) -> (aws_sdk_ec2::Client, aws_sdk_s3::Client) {
        clients_at(&self.endpoint, region)
    }
}

/// Region clients at an endpoint with static credentials.
pub fn clients_at(endpoint: &str, region: &str) -> (aws_sdk_ec2::Client, aws_sdk_s3::Client) {
    let creds = aws_sdk_ec2::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "skyform-tests");
    let ec2 = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(region.to_string()))
        .credentials_provider(creds.clone())
        .endpoint_url(endpoint)
        .build();
    let s3 = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    (aws_sdk_ec2::Client::from_conf(ec2), aws_sdk_s3::Client::from_conf(s3))
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut s) = self.child.stdin.take() {
            let _ = s.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

/// Plays the VM for every skyform instance moto holds in `regions`.
pub struct InstanceAgent {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    started: Arc<Mutex<Vec<String>>>,
}

impl InstanceAgent {
    /// Starts watching. `work` is where the instances' directories go; `endpoint` is what
    /// the instances' AWS CLI talks to (written into the user data by skyform).
    pub fn start(endpoint: &str, regions: &[&str], work: &std::path::Path) -> InstanceAgent {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Mutex::new(Vec::new()));
        let (stop2, started2) = (stop.clone(), started.clone());
        let endpoint = endpoint.to_string();
        let regions: Vec<String> = regions.iter().map(|s| s.to_string()).collect();
        let work = work.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let clients: Vec<(String, aws_sdk_ec2::Client)> =
                regions.iter().map(|r| (r.clone(), clients_at(&endpoint, r).0)).collect();
            let mut vms: HashMap<String, VmProcess> = HashMap::new();
            let mut stopping: Vec<std::thread::JoinHandle<()>> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                for (_region, ec2) in &clients {
                    let seen = rt.block_on(async {
                        ec2.describe_instances()
                            .filters(ec2t::Filter::builder().name("tag-key").values(crate::TOKEN_TAG).build())
                            .send()
                            .await
                    });
                    let Ok(seen) = seen else { continue };
                    for i in seen.reservations().iter().flat_map(|r| r.instances()) {
                        let id = i.instance_id().unwrap_or_default().to_string();
                        let state = i.state().and_then(|s| s.name()).cloned();
                        let alive =
                            matches!(state, Some(ec2t::InstanceStateName::Pending | ec2t::InstanceStateName::Running));
                        if alive && !vms.contains_key(&id) {
                            let ud = rt.block_on(async {
                                ec2.describe_instance_attribute()
                                    .instance_id(&id)
                                    .attribute(ec2t::InstanceAttributeName::UserData)
                                    .send()
                                    .await
                            });
                            let Some(script) = ud
                                .ok()
                                .and_then(|r| r.user_data().and_then(|u| u.value()).map(str::to_string))
                                .and_then(|b| base64_decode(&b))
                            else {
                                continue;
                            };
                            let mut env: Vec<(String, std::ffi::OsString)> = vec![
                                ("SKYFORM_WORK".into(), work.join(&id).into()),
                                ("SKYFORM_NO_SHUTDOWN".into(), "1".into()),
                            ];
                            env.extend(client_env().into_iter().map(|(k, v)| (k.to_string(), v.into())));
                            if let Some(vm) = VmProcess::boot(&script, env, None) {
                                started2.lock().expect("lock").push(id.clone());
                                vms.insert(id, vm);
                            }
                        } else if !alive {
                            if let Some(vm) = vms.remove(&id) {
                                // On a thread of its own: the others' VMs go on meanwhile.
                                stopping.push(std::thread::spawn(move || vm.stop()));
                            }
                        }
                    }
                }
                for vm in vms.values_mut() {
                    vm.reap();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            stopping.extend(vms.into_values().map(|vm| std::thread::spawn(move || vm.stop())));
            for t in stopping {
                let _ = t.join();
            }
        });
        InstanceAgent { stop, thread: Some(thread), started }
    }

    /// Instance ids the agent has booted so far.
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

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()?;
    String::from_utf8(b).ok()
}
