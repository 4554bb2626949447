//! The Ray provider against a real Ray cluster on 127.0.0.1 (PyPI `ray[default]`, installed
//! by scripts/test.sh into `~/.cache/skyform-emulators/ray-venv`, or `SKYFORM_RAY_VENV`):
//! a head node with 2 CPUs and a second node with 1 CPU and the custom resource `zone-b`.
//! One test (one cluster, ≈1 min on 2 cores): the conformance kit through the plugin
//! protocol, a task pinned to zone b runs on the second node, the offerings are the nodes',
//! and killing the second node mid-run is a preemption whose processes release removes;
//! then through the `skyform` binary: a DAG across Ray zone b and local applies with the right
//! answer, and a saved plan on zone b fails over to local once the node is lost.

use serde_json::json;
use skyform_provider::plugin::PluginFactory;
use skyform_provider::*;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn venv() -> PathBuf {
    std::env::var_os("SKYFORM_RAY_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/skyform-emulators/ray-venv")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every process of our cluster: started in its temp dir (Ray's workers leave the nodes'
/// process groups, and outlive them).
fn pids_in(dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir)
                || std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir.display().to_string()))
        })
        .collect()
}

fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()
}

struct Cluster {
    head: Child,
    worker: Child,
    dashboard: String,
    tmp: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = venv().join("bin");
        assert!(
            bin.join("ray").exists(),
            "no Ray in {}: run scripts/test.sh (it pip-installs ray[default])",
            bin.display()
        );
        // Short: Ray's unix sockets live under it.
        let tmp = tempfile::Builder::new().prefix("skr").tempdir_in("/tmp").unwrap();
        let (gcs, dash) = (free_port(), free_port());
        // Each node's `ray start --block` leads its own process group; its output is kept
        // in the cluster's temp dir.
        let common = |c: &mut Command, name: &str| {
            let log = std::fs::File::create(tmp.path().join(format!("{name}.log"))).unwrap();
            c.env("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                .env("RAY_USAGE_STATS_ENABLED", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .current_dir(tmp.path())
                .process_group(0);
        };
        let mut head = Command::new(bin.join("ray"));
        head.args(["start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=true"])
            .arg(format!("--port={gcs}"))
            .arg(format!("--dashboard-port={dash}"))
            .args(["--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--memory=2000000000"])
            .arg(format!("--temp-dir={}", tmp.path().display()));
        common(&mut head, "head");
        let head = head.spawn().unwrap();
        let dashboard = format!("http://127.0.0.1:{dash}");
        let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        while http.get(format!("{dashboard}/api/version")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "the Ray head did not come up; see {}", tmp.path().display());
            std::thread::sleep(Duration::from_millis(500));
        }
        // `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps Ray on loopback and makes `ray start`
        // refuse worker nodes: this wrapper lifts that check in its own process only.
        let mut worker = Command::new(bin.join("python"));
        worker
            .args([
                "-c",
                // Only the CLI's check sees the flag: the node itself still keeps to
                // loopback (`--address=127.0.0.1` is not rewritten to the host's address).
                "import sys, types\nfrom ray._private import ray_constants\nfrom ray.scripts import scripts\n\
                 proxy = types.ModuleType('ray_constants')\nproxy.__dict__.update(ray_constants.__dict__)\n\
                 proxy.ENABLE_RAY_CLUSTER = True\nscripts.ray_constants = proxy\nsys.argv[0] = 'ray'\n\
                 sys.exit(scripts.main())",
                "start",
                "--block",
                "--disable-usage-stats",
            ])
            .arg(format!("--address=127.0.0.1:{gcs}"))
            .args(["--node-ip-address=127.0.0.1", "--num-cpus=1", "--memory=2000000000"])
            .arg(r#"--resources={"zone-b": 1000}"#)
            .arg("--labels=zone=b");
        common(&mut worker, "worker");
        let worker = worker.spawn().unwrap();
        let c = Cluster { head, worker, dashboard, tmp };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let n = c.nodes().iter().filter(|n| n["state"] == "ALIVE").count();
            if n == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the second Ray node did not join");
            std::thread::sleep(Duration::from_millis(500));
        }
        c
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        http.get(format!("{}{path}", self.dashboard)).send().unwrap().json().unwrap()
    }

    fn nodes(&self) -> Vec<serde_json::Value> {
        let v = self.get("/api/v0/nodes?detail=true");
        v.pointer("/data/result/result").and_then(|x| x.as_array()).cloned().unwrap_or_default()
    }

    fn node_b(&self) -> String {
        let b = self.nodes().into_iter().find(|n| n["resources_total"].get("zone-b").is_some()).expect("node b");
        b["node_id"].as_str().unwrap().to_string()
    }

    /// Kills the second node's raylet (as if the machine were lost).
    fn kill_node_b(&self) {
        let raylets: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| ppid(*p) == Some(self.worker.id()))
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("raylet"))
            })
            .collect();
        assert!(!raylets.is_empty(), "the second node's raylet");
        for p in raylets {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in [&mut self.worker, &mut self.head] {
            let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", c.id())]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in [&mut self.worker, &mut self.head] {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", c.id())]).status();
            let _ = c.wait();
        }
        // Whatever our cluster started that left its group (by our unique temp dir).
        for p in pids_in(self.tmp.path()) {
            let _ = Command::new("kill").args(["-KILL", &p.to_string()]).status();
        }
    }
}

fn loc(zone: &str) -> Location {
    Location::new("ray", "ray", zone)
}

fn wait_state(p: &dyn Provider, id: &str, secs: u64, done: impl Fn(&RunState) -> bool) -> RunState {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = p.task_status(&TaskStatusRequest::new(id)).unwrap().state;
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn ray_cluster_conformance_zones_and_node_loss() {
    let c = Cluster::start();
    let d = tempfile::tempdir().unwrap();
    let body = json!({
        "address": c.dashboard,
        "zones": { "head": {}, "b": { "resource": "zone-b" }, "c": { "resource": "zone-c" } },
        "price": 0.5,
    });
    let plugin = PluginFactory::new("ray", env!("CARGO_BIN_EXE_skyform-provider-ray"));

    // The catalog's offerings are the cluster's nodes, at the user's price.
    let offered = plugin.offerings(&body).unwrap().unwrap();
    let by_zone: Vec<(String, String, f64, f64)> =
        offered.iter().map(|o| (o.zone.clone(), o.instance_type.clone(), o.vcpus, o.price)).collect();
    assert_eq!(by_zone, [("b".into(), "ray-b".into(), 1.0, 0.5), ("head".into(), "ray-head".into(), 2.0, 0.5)]);

    // The conformance kit, through the plugin protocol.
    let p = plugin.plugin_provider(&body, &BuildContext::new(d.path())).unwrap();
    conformance::lifecycle(&p, &loc("head"), "ray-head", "ray://conformance").unwrap();
    // Zone c has no node: capacity_unavailable at once, nothing submitted.
    conformance::capacity_error(&p, &loc("c"), "ray-head").unwrap();
    // More than zone b's nodes have (2 CPUs): refused before Ray would queue it for 15 min.
    let e = p.allocate(&AllocateRequest::new("t", loc("b"), "ray-head", "too-big")).unwrap_err();
    assert_eq!((e.kind, e.scope), (ErrorKind::CapacityUnavailable, Scope::Zone), "{e}");

    // A task pinned to zone b runs on the second node.
    let a = p.allocate(&AllocateRequest::new("t", loc("b"), "ray-b", "pin-b")).unwrap();
    let mut run = RunTaskRequest::new(a.provider_id.clone(), "t", "echo on-b > $SKYFORM_OUTPUT_OUT/where.txt");
    run.outputs = vec!["out".into()];
    p.run_task(&run).unwrap();
    // A repeated submission (a retry) is the same job.
    p.run_task(&run).unwrap();
    assert_eq!(wait_state(&p, &a.provider_id, 60, |s| *s != RunState::Running), RunState::Succeeded);
    let job = c.get(&format!("/api/jobs/{}", a.provider_id));
    assert_eq!(job["driver_node_id"].as_str(), Some(c.node_b().as_str()), "{job}");
    p.release(&ReleaseRequest::new(a.provider_id.clone())).unwrap();

    // The same through skyform: a DAG across Ray zone b and local, applied by the CLI.
    let job = SkyformJob::new(&format!(
        r#"{ray}
task "numbers" {{
  resources {{
    cloud = "ray"
    zone  = "b"
  }}
  outputs = {{ nums = {{ size_gb = 0.001 }} }}
  run     = "seq 1 10 > $SKYFORM_OUTPUT_NUMS/n.txt"

  estimate {{
    hours = 0.01
  }}
}}

task "sum" {{
  resources {{
    cloud = "local"
  }}
  inputs = {{ nums = task.numbers.outputs.nums }}
  run    = "awk '{{s += $1}} END {{print s}}' $SKYFORM_INPUT_NUMS/n.txt > {total}"

  estimate {{
    hours = 0.01
  }}
}}
"#,
        ray = ray_block(&c),
        total = d.path().join("total").display()
    ));
    let o = job.skyform(&["apply", "-auto-approve"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(d.path().join("total")).unwrap(), "55\n");
    let st = job.state();
    assert_eq!(st["tasks"]["task.numbers"]["placement"]["zone"], "b", "{st}");
    assert_eq!(st["tasks"]["task.numbers"]["status"], "succeeded");
    assert_eq!(st["tasks"]["task.sum"]["status"], "succeeded");

    // A plan that puts a task on zone b, saved before the second node is lost (below).
    let failover = SkyformJob::new(&format!(
        r#"{ray}
policy {{
  regions = ["ray:ray:b", "local:*"]
}}

task "work" {{
  resources {{
    cpus = "1+"
  }}
  run = "echo done > {done}"

  estimate {{
    hours = 0.01
  }}
}}
"#,
        ray = ray_block(&c),
        done = d.path().join("done").display()
    ));
    let o = failover.skyform(&["plan", "-out=p.plan"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("placement     = \"ray/b\""), "{text}");

    // Killing the second node mid-run: the run is preempted, and release leaves no process.
    let a = p.allocate(&AllocateRequest::new("t", loc("b"), "ray-b", "lost-b")).unwrap();
    p.run_task(&RunTaskRequest::new(a.provider_id.clone(), "t", "sleep 300")).unwrap();
    let pgid_file = d.path().join(".skyform/ray/sandbox").join(&a.provider_id).join("pgid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pgid_file.exists() {
        assert!(Instant::now() < deadline, "the task did not start");
        std::thread::sleep(Duration::from_millis(300));
    }
    c.kill_node_b();
    let state = wait_state(&p, &a.provider_id, 90, |s| *s != RunState::Running);
    assert_eq!(state, RunState::Preempted);
    let pgid = std::fs::read_to_string(&pgid_file).unwrap().trim().to_string();
    assert!(p.release(&ReleaseRequest::new(a.provider_id.clone())).unwrap().released);
    std::thread::sleep(Duration::from_millis(300));
    assert!(group_gone(&pgid), "no process of the lost run is left");

    // Zone b is gone: applying the saved plan fails over to local at once (no 15-minute
    // wait in Ray's queue), and the tracker blocks zone b.
    let t0 = Instant::now();
    let o = failover.skyform(&["apply", "-auto-approve", "p.plan"]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("task.work: capacity_unavailable in ray/b"), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(60), "failover took {:?}", t0.elapsed());
    assert_eq!(std::fs::read_to_string(d.path().join("done")).unwrap(), "done\n");
    let st = failover.state();
    assert_eq!(st["tasks"]["task.work"]["placement"]["cloud"], "local", "{st}");
    let o = failover.skyform(&["tracker", "show", "-json"]);
    let tracker: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let blocks = tracker["blocks"].as_array().cloned().unwrap_or_default();
    assert!(blocks.iter().any(|b| b["location"]["cloud"] == "ray" && b["location"]["zone"] == "b"), "{tracker}");
}

/// The `provider "ray"` block of the cluster, served by this crate's plugin binary.
fn ray_block(c: &Cluster) -> String {
    format!(
        "provider \"ray\" {{\n  plugin  = \"{}\"\n  address = \"{}\"\n  zones   = {{ head = {{}}, b = {{ resource = \"zone-b\" }} }}\n}}\n",
        env!("CARGO_BIN_EXE_skyform-provider-ray"),
        c.dashboard
    )
}

/// A job directory driven through the `skyform` binary of this workspace's target
/// directory (`cargo test --workspace` builds it: the root package's tests need it).
struct SkyformJob {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl SkyformJob {
    fn new(hcl: &str) -> SkyformJob {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.sky.hcl"), hcl).unwrap();
        SkyformJob { dir, home: tempfile::tempdir().unwrap() }
    }

    fn skyform(&self, args: &[&str]) -> std::process::Output {
        // target/debug/deps/cluster-HASH → target/debug/skyform
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().and_then(|p| p.parent()).unwrap().join("skyform");
        assert!(
            bin.exists(),
            "{} is missing: run the workspace's tests (`cargo test --workspace`, which builds it) or `cargo build -p skyform` first",
            bin.display()
        );
        Command::new(bin)
            .args(args)
            .current_dir(self.dir.path())
            .env("SKYFORM_HOME", self.home.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn state(&self) -> serde_json::Value {
        let o = self.skyform(&["state", "pull"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

fn group_gone(pgid: &str) -> bool {
    !std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
            let f: Vec<&str> = s.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            f.first() != Some(&"Z") && f.get(2) == Some(&pgid)
        })
    })
}
