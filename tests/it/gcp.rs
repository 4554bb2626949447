//! apply on GCP through the real googleapis clients against the fakes on 127.0.0.1:
//! fake-gcs-server for Cloud Storage, the loopback Compute Engine fake (faults, preemption,
//! a record of every insert) and the agent that plays the VMs — and, for the three-cloud
//! job, AWS through moto. Each test writes its job directory and runs the `skyform`
//! binary.

use super::aws::{aws_block, Cloud as Aws};
use super::*;
use skyform_provider_gcp::testing::{provider_body, FakeGce, FakeGcs, Fault, InsertRecord, InstanceAgent, PROJECT};
use std::time::{Duration, Instant};

/// The fakes and the agent of one test.
struct Gcp {
    gcs: FakeGcs,
    gce: FakeGce,
    agent: InstanceAgent,
    _work: tempfile::TempDir,
}

impl Gcp {
    fn start() -> Gcp {
        let gcs = FakeGcs::start();
        let gce = FakeGce::start(PROJECT);
        let work = tempfile::tempdir().unwrap();
        let agent = InstanceAgent::start(&gce, work.path());
        Gcp { gcs, gce, agent, _work: work }
    }

    /// The `provider "gcp"` block: the fakes, anonymous credentials, buckets
    /// `skyform-{region}`, instances that look for their task every second.
    fn block(&self) -> String {
        hcl_block("provider \"gcp\"", &provider_body(&self.gce, &self.gcs, &["us-central1"]))
    }

    fn text(&self, bucket: &str, key: &str) -> Option<String> {
        self.gcs.object(bucket, key).map(|b| String::from_utf8(b).unwrap())
    }

    /// The inserts that created an instance.
    fn created(&self) -> Vec<InsertRecord> {
        self.gce.inserts().into_iter().filter(|i| i.outcome == "created").collect()
    }

    /// Waits until an instance runs and the agent has booted it; returns its id.
    fn wait_booted(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(id) = self.agent.started().first() {
                return id.clone();
            }
            assert!(Instant::now() < deadline, "no instance was booted: {:?}", self.gce.inserts());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn mixed_job_runs_a_spot_gpu_task_and_a_cpu_task_on_gcp_and_one_on_local_with_data_gcs_local_gcs() {
    let g = Gcp::start();
    g.gcs.create_bucket("input-data");
    g.gcs.put("input-data", "raw/numbers.txt", b"30\n10\n20\n");
    g.gcs.create_bucket("results");
    let text = format!(
        r#"skyform {{
  name = "mixed-gcp"
}}

{gcp}
provider "local" {{
  zones = ["zone-a"]
}}

storage "raw" {{
  uri     = "gs://input-data/raw"
  region  = "us-central1"
  size_gb = 0.001
}}

task "prep" {{
  resources {{
    cloud = "gcp"
    cpus  = "2+"
    spot  = false
  }}
  inputs  = {{ raw = storage.raw }}
  outputs = {{ clean = {{ size_gb = 0.001 }} }}
  run     = "sort -n $SKYFORM_INPUT_RAW/numbers.txt > $SKYFORM_OUTPUT_CLEAN/sorted.txt; echo sorted $(wc -l < $SKYFORM_OUTPUT_CLEAN/sorted.txt) lines"
  estimate {{
    hours = 0.1
  }}
}}

task "sum" {{
  resources {{
    cloud = "local"
  }}
  inputs  = {{ clean = task.prep.outputs.clean }}
  outputs = {{ total = {{ size_gb = 0.001 }} }}
  run     = "awk '{{s+=$1}} END {{print s}}' $SKYFORM_INPUT_CLEAN/sorted.txt > $SKYFORM_OUTPUT_TOTAL/total.txt"
  estimate {{
    hours = 0.1
  }}
}}

task "train" {{
  resources {{
    cloud        = "gcp"
    accelerators = ["T4:1"]
    spot         = true
  }}
  inputs  = {{ total = task.sum.outputs.total }}
  outputs = {{ model = {{ size_gb = 0.001, uri = "gs://results/model" }} }}
  run     = "echo model-of-$(cat $SKYFORM_INPUT_TOTAL/total.txt) > $SKYFORM_OUTPUT_MODEL/model.txt"
  estimate {{
    hours = 0.1
  }}
}}
"#,
        gcp = g.block()
    );
    let d = job(&[("main.sky.hcl", &text)]);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Apply complete! Resources: 3 added"), "{}", o.stdout);
    let st = state_json(d.path());
    let lineage = st["lineage"].as_str().unwrap();
    // One insert per GCP task, each with the planned zone, machine type and scheduling.
    let created = g.created();
    assert_eq!(created.len(), 2, "{created:?}");
    let by_task = |t: &str| created.iter().find(|i| i.labels().get("skyform-task").map(String::as_str) == Some(t));
    let (prep, train) = (by_task("task_prep").unwrap(), by_task("task_train").unwrap());
    for (ins, addr) in [(prep, "task.prep"), (train, "task.train")] {
        let placement = &st["tasks"][addr]["placement"];
        assert_eq!(ins.zone, placement["zone"].as_str().unwrap(), "{addr}");
        assert_eq!(ins.machine_type(), placement["instance_type"].as_str().unwrap(), "{addr}");
        let labels = ins.labels();
        assert_eq!(labels["skyform-lineage"], lineage.to_lowercase(), "{addr}: {labels:?}");
        assert_eq!(labels["skyform-job"], "mixed-gcp");
        assert_eq!(labels["skyform-attempt"], "1");
        assert_eq!(labels["skyform-token"], st["tasks"][addr]["allocations"][0]["idempotency_token"].as_str().unwrap());
    }
    // The GPU task: an N1 host with the T4 attached, spot, deleted on preemption,
    // terminated on host maintenance.
    assert!(train.machine_type().starts_with("n1-"), "{}", train.machine_type());
    assert_eq!(train.accelerators(), [("nvidia-tesla-t4".to_string(), 1)]);
    assert_eq!(train.provisioning_model().as_deref(), Some("SPOT"));
    assert_eq!(train.termination_action().as_deref(), Some("DELETE"));
    assert_eq!(train.on_host_maintenance().as_deref(), Some("TERMINATE"));
    assert_eq!(st["tasks"]["task.train"]["placement"]["spot"], true);
    // The CPU task: standard provisioning, no accelerators.
    assert!(prep.accelerators().is_empty());
    assert_eq!(prep.provisioning_model().as_deref(), Some("STANDARD"));
    // Data: GCS → gcp (prep) → GCS (skyform's bucket) → local (sum) → gcp (train) → GCS.
    let clean = st["tasks"]["task.prep"]["data"][0]["uri"].as_str().unwrap();
    let key = clean.strip_prefix("gs://skyform-us-central1/").expect(clean);
    assert_eq!(g.text("skyform-us-central1", &format!("{key}/sorted.txt")).as_deref(), Some("10\n20\n30\n"));
    assert!(st["tasks"]["task.sum"]["data"][0]["uri"].as_str().unwrap().starts_with("local://"));
    assert_eq!(g.text("results", "model/model.txt").as_deref(), Some("model-of-60\n"));
    assert!(o.stderr.contains("input raw ← gs://input-data/raw"), "{}", o.stderr);
    // The instance's log, from GCS.
    let logs = skyform(d.path(), &["logs", "task.prep"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(logs.stdout.contains("sorted 3 lines"), "{}", logs.stdout);
    // Every instance deleted; nothing to sweep.
    assert!(g.gce.instances().is_empty(), "{:?}", g.gce.instances());
    let s = skyform(d.path(), &["sweep"]);
    assert!(s.stdout.starts_with("Nothing to sweep"), "{}\n{}", s.stdout, s.stderr);
}

/// One task on GCP (or anywhere the policy allows), in `us-central1-a` or `-b`.
fn one_task(g: &Gcp, resources: &str, run: &str, extra: &str) -> tempfile::TempDir {
    let text = format!(
        r#"{gcp}
provider "local" {{
  zones = ["zone-a"]
}}

policy {{
  regions = ["gcp:us-central1:us-central1-a", "gcp:us-central1:us-central1-b", "local:*"]
}}

task "work" {{
  resources {{
{resources}
  }}
  outputs = {{ out = {{ size_gb = 0.001 }} }}
  run     = "{run}"
  estimate {{
    hours = 0.1
  }}
{extra}}}
"#,
        gcp = g.block()
    );
    job(&[("main.sky.hcl", &text)])
}

#[test]
fn zone_resource_pool_exhausted_in_the_planned_zone_fails_over_to_the_next_and_blocks_it() {
    let g = Gcp::start();
    g.gce.inject(Fault::capacity("us-central1-a"));
    let d = one_task(&g, "    cloud = \"gcp\"\n    cpus  = \"2+\"", "echo ok > $SKYFORM_OUTPUT_OUT/ok.txt", "");
    let p = skyform(d.path(), &["plan"]);
    assert!(p.stdout.contains("placement     = \"gcp/us-central1/us-central1-a\""), "{}", p.stdout);
    assert!(p.stdout.contains("#   gcp/us-central1/us-central1-b"), "{}", p.stdout);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("ZONE_RESOURCE_POOL_EXHAUSTED"), "{}", o.stderr);
    let tried: Vec<(String, String)> = g.gce.inserts().into_iter().map(|i| (i.zone, i.outcome)).collect();
    assert_eq!(
        tried,
        [
            ("us-central1-a".to_string(), "ZONE_RESOURCE_POOL_EXHAUSTED".to_string()),
            ("us-central1-b".to_string(), "created".to_string())
        ]
    );
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.work"]["placement"]["zone"], "us-central1-b");
    assert_eq!(st["tasks"]["task.work"]["status"], "succeeded");
    let blocks = tracker_blocks(d.path());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["location"]["zone"], "us-central1-a");
    assert_eq!(blocks[0]["kind"], "capacity_unavailable");
    assert!(g.gce.instances().is_empty());
}

#[test]
fn a_gpus_all_regions_quota_blocks_gcp_as_a_whole_and_the_task_moves_to_local() {
    let g = Gcp::start();
    g.gce.inject(Fault::quota("GPUS_ALL_REGIONS"));
    let text = format!(
        r#"{gcp}
provider "local" {{
  zones          = ["zone-a"]
  instance_types = [{{ name = "local.t4", vcpus = 4, memory_gb = 16, accelerator = "T4:1", price = 1.0, spot_price = 0.3 }}]
}}

policy {{
  regions = ["gcp:us-central1:us-central1-a", "gcp:us-central1:us-central1-b", "local:*"]
}}

task "train" {{
  resources {{
    accelerators = ["T4:1"]
    spot         = true
  }}
  outputs = {{ model = {{ size_gb = 0.001 }} }}
  run     = "echo trained > $SKYFORM_OUTPUT_MODEL/model.txt"
  estimate {{
    hours = 0.1
  }}
}}
"#,
        gcp = g.block()
    );
    let d = job(&[("main.sky.hcl", &text)]);
    // GCP's spot T4 host ($0.2518/h) is the cheapest; the next zone of GCP and local ($0.30/h,
    // within the failover policy's +25%) are the alternatives.
    let p = skyform(d.path(), &["plan"]);
    assert!(p.stdout.contains("placement     = \"gcp/us-central1/us-central1-a\""), "{}", p.stdout);
    assert!(p.stdout.contains("#   gcp/us-central1/us-central1-b"), "{}", p.stdout);
    assert!(p.stdout.contains("#   local/zone-a local.t4"), "{}", p.stdout);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("quota_exceeded") && o.stderr.contains("GPUS_ALL_REGIONS"), "{}", o.stderr);
    // One insert: the quota is the project's, so the other GCP zone is not tried.
    let tried: Vec<String> = g.gce.inserts().into_iter().map(|i| format!("{} {}", i.zone, i.outcome)).collect();
    assert_eq!(tried, ["us-central1-a QUOTA_EXCEEDED"]);
    let st = state_json(d.path());
    let placement = &st["tasks"]["task.train"]["placement"];
    assert_eq!((placement["cloud"].as_str(), placement["instance_type"].as_str()), (Some("local"), Some("local.t4")));
    assert_eq!(st["tasks"]["task.train"]["status"], "succeeded");
    let blocks = tracker_blocks(d.path());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!((blocks[0]["location"]["cloud"].as_str(), blocks[0]["scope"].as_str()), (Some("gcp"), Some("cloud")));
    assert_eq!(blocks[0]["kind"], "quota_exceeded");
    // While the block lasts, a new plan keeps GCP out.
    let p = skyform(d.path(), &["plan", "-replace=task.train"]);
    assert!(p.stdout.contains("placement     = \"local/zone-a\""), "{}", p.stdout);
    assert!(!p.stdout.contains("gcp/"), "{}", p.stdout);
}

#[test]
fn a_spot_instance_preempted_mid_run_reruns_in_the_next_zone() {
    let g = Gcp::start();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let d = one_task(
        &g,
        "    cloud = \"gcp\"\n    cpus  = \"2+\"\n    spot  = true",
        &format!("touch {}; sleep 3; echo done > $SKYFORM_OUTPUT_OUT/done.txt", started.display()),
        "  recovery = \"next_zone\"\n",
    );
    let (child, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &[]);
    // Preempt the first instance while its task runs (as GCE reclaims a spot VM).
    wait_file(&started, "the first run");
    let id = g.wait_booted();
    assert!(id.starts_with("us-central1-a/"), "{id}");
    assert!(g.gce.preempt(&id));
    let out = child.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("task.work: preempted in gcp/us-central1/us-central1-a; recovering (NextZone)"),
        "{}",
        out.stderr
    );
    let zones: Vec<String> = g.created().into_iter().map(|i| i.zone).collect();
    assert_eq!(zones, ["us-central1-a", "us-central1-b"], "rerun in the next zone");
    assert!(g.created().iter().all(|i| i.provisioning_model().as_deref() == Some("SPOT")));
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.work"]["status"], "succeeded");
    assert_eq!(st["tasks"]["task.work"]["runs"].as_array().unwrap().len(), 2);
    assert!(g.gce.instances().is_empty(), "{:?}", g.gce.instances());
}

#[test]
fn kill_9_during_apply_then_apply_adopts_the_finished_run_and_leaves_no_unknown_instance() {
    let g = Gcp::start();
    let marks = tempfile::tempdir().unwrap();
    let runs = marks.path().join("runs");
    let d = one_task(
        &g,
        "    cloud = \"gcp\"\n    cpus  = \"2+\"",
        &format!(
            "echo started >> {r}; sleep 2; echo done > $SKYFORM_OUTPUT_OUT/done.txt; echo finished >> {r}",
            r = runs.display()
        ),
        "",
    );
    let (mut child, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &[]);
    wait_file(&runs, "the run");
    child.kill();
    // The instance outlives the engine and its run finishes meanwhile.
    let id = g.wait_booted();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&runs).unwrap().contains("finished") {
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = id.split_once("/skyform-").unwrap().1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.gcs.object("skyform-us-central1", &format!("skyform-runs/{token}/status.json")).is_none() {
        assert!(Instant::now() < deadline, "the run's status never reached GCS");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(g.gce.instances().len(), 1, "the instance is still there");
    // The lock of the killed apply is stale: force-unlock it, then apply again.
    let o = skyform(d.path(), &["apply", "-auto-approve", "-lock-timeout=0s"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("the lock is stale"), "{}", o.stderr);
    let lock = o.stderr.split("skyform force-unlock ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(skyform(d.path(), &["force-unlock", "-force", &lock]).code, 0);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains(&format!("task.work: found {id} from an interrupted apply; its run had finished: adopted")),
        "{}",
        o.stderr
    );
    // It ran to completion once, on one instance, which is gone; nothing to sweep.
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "started\nfinished\n");
    assert_eq!(g.created().len(), 1, "{:?}", g.gce.inserts());
    assert!(g.gce.instances().is_empty(), "{:?}", g.gce.instances());
    let s = skyform(d.path(), &["sweep"]);
    assert!(s.stdout.starts_with("Nothing to sweep"), "{}\n{}", s.stdout, s.stderr);
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.work"]["status"], "succeeded");
    let out = st["tasks"]["task.work"]["data"][0]["uri"].as_str().unwrap();
    let key = out.strip_prefix("gs://skyform-us-central1/").expect(out);
    assert_eq!(g.text("skyform-us-central1", &format!("{key}/done.txt")).as_deref(), Some("done\n"));
}

/// A job whose state lives in GCS; `sleep` keeps an apply holding the lock.
fn team_job(gcs: &FakeGcs, sleep: u32) -> tempfile::TempDir {
    let backend = hcl_block(
        "  backend \"gcs\"",
        &serde_json::json!({
            "bucket": "team-state",
            "prefix": "jobs/team",
            "storage_endpoint": gcs.endpoint,
            "credentials": "anonymous",
        }),
    );
    job(&[(
        "main.sky.hcl",
        &format!(
            r#"skyform {{
  name = "team"
{backend}}}

task "work" {{
  outputs = {{ out = {{ size_gb = 0.001 }} }}
  run     = "sleep {sleep}; echo ok > $SKYFORM_OUTPUT_OUT/ok.txt"
  estimate {{
    hours = 0.1
  }}
}}
"#
        ),
    )])
}

#[test]
fn gcs_backend_lets_one_of_two_concurrent_applies_hold_the_lock() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("team-state");
    let (state, lock) = ("jobs/team/default.state.json", "jobs/team/default.state.json.lock");
    // Two clones of the same job (two teammates, one remote state).
    let (a, b) = (team_job(&gcs, 3), team_job(&gcs, 3));
    let (first, _home) = spawn_skyform(a.path(), &["apply", "-auto-approve"], &[]);
    let pid = first.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gcs.object("team-state", lock).is_none() {
        assert!(Instant::now() < deadline, "the first apply never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = skyform(b.path(), &["apply", "-auto-approve", "-lock-timeout=0s"]);
    assert_eq!(second.code, 1, "{}\n{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("the state is locked by another process"), "{}", second.stderr);
    assert!(second.stderr.contains("Operation: apply"), "{}", second.stderr);
    assert!(second.stderr.contains(&format!("(pid {pid})")), "the holder is named: {}", second.stderr);
    let out = first.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The state is in GCS, the lock is gone, and the other clone sees the same state.
    assert!(gcs.object("team-state", lock).is_none());
    let remote: serde_json::Value = serde_json::from_slice(&gcs.object("team-state", state).unwrap()).unwrap();
    assert_eq!(remote["tasks"]["task.work"]["status"], "succeeded");
    let pulled = state_json(b.path());
    assert_eq!((&pulled["lineage"], &pulled["serial"]), (&remote["lineage"], &remote["serial"]));
    let again = skyform(b.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(again.code, 0, "nothing to do from the other clone: {}\n{}", again.stdout, again.stderr);
}

/// The events of `apply -json` of one type.
pub(crate) fn events<'a>(stdout: &'a str, kind: &'a str) -> impl Iterator<Item = serde_json::Value> + 'a {
    stdout.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(move |v| v["type"] == kind)
}

/// The three-cloud job: `extract` on AWS writes `BYTES` bytes, `transform` on `cloud`
/// reads them (the S3 → `cloud` edge, declared with exactly that size), `report` on local
/// writes its result next to the job.
pub(crate) fn three_cloud_job(aws: &Aws, cloud: &str, cloud_block: &str) -> tempfile::TempDir {
    let text = format!(
        r#"skyform {{
  name = "three-clouds"
}}

{aws}
{cloud_block}
provider "local" {{
  zones = ["zone-a"]
}}

task "extract" {{
  resources {{
    cloud = "aws"
    cpus  = "2+"
  }}
  outputs = {{ rows = {{ size_gb = {gb} }} }}
  run     = "head -c {bytes} /dev/zero | tr '\\0' x > $SKYFORM_OUTPUT_ROWS/rows.txt"
  estimate {{
    hours = 0.1
  }}
}}

task "transform" {{
  resources {{
    cloud = "{cloud}"
    cpus  = "2+"
  }}
  inputs  = {{ rows = task.extract.outputs.rows }}
  outputs = {{ count = {{ size_gb = 0.000001 }} }}
  run     = "wc -c < $SKYFORM_INPUT_ROWS/rows.txt | tr -d ' ' > $SKYFORM_OUTPUT_COUNT/count.txt"
  estimate {{
    hours = 0.1
  }}
}}

task "report" {{
  resources {{
    cloud = "local"
  }}
  inputs  = {{ count = task.transform.outputs.count }}
  outputs = {{ report = {{ size_gb = 0.000001, uri = "./out" }} }}
  run     = "echo rows=$(cat $SKYFORM_INPUT_COUNT/count.txt) > $SKYFORM_OUTPUT_REPORT/report.txt"
  estimate {{
    hours = 0.1
  }}
}}
"#,
        aws = aws_block(&aws.proxy.endpoint),
        bytes = EDGE_BYTES,
        gb = EDGE_BYTES as f64 / 1e9,
    );
    job(&[("main.sky.hcl", &text)])
}

/// The size of the S3 → GCS (or Blob) edge of [`three_cloud_job`].
pub(crate) const EDGE_BYTES: u64 = 250_000;

/// Plans the three-cloud job into `p.plan`, applies the saved plan with `-json`, and
/// checks that the edge from AWS moved exactly the bytes its egress line prices, at that
/// price. Returns the state.
pub(crate) fn apply_three_clouds(d: &Path, env: &[(String, String)], cloud: &str) -> serde_json::Value {
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = skyform_env(d, &["plan", "-out", "p.plan"], &env_ref);
    assert_eq!(p.code, 0, "{}\n{}", p.stdout, p.stderr);
    let shown = skyform_env(d, &["show", "-json", "p.plan"], &env_ref);
    let plan: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let change = |addr: &str| {
        plan["resource_changes"].as_array().unwrap().iter().find(|c| c["address"] == addr).unwrap()["change"]["after"]
            .clone()
    };
    assert_eq!(change("task.extract")["cloud"], "aws");
    assert_eq!(change("task.transform")["cloud"], cloud);
    assert_eq!(change("task.report")["cloud"], "local");
    let edge = change("task.transform")["egress_in"].as_array().unwrap().clone();
    assert_eq!(edge.len(), 1, "{edge:?}");
    assert_eq!(edge[0]["what"], "rows from task.extract");
    let planned_bytes = (edge[0]["size_gb"].as_f64().unwrap() * 1e9).round() as u64;
    assert_eq!(planned_bytes, EDGE_BYTES);
    let a = skyform_env(d, &["apply", "-json", "p.plan"], &env_ref);
    assert_eq!(a.code, 0, "{}\n{}", a.stdout, a.stderr);
    let moved: Vec<serde_json::Value> =
        events(&a.stdout, "transferred").filter(|e| e["task"] == "task.transform").collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0]["what"].as_str().unwrap().starts_with("input rows ← s3://skyform-it-us-east-1/"), "{moved:?}");
    assert_eq!(moved[0]["bytes"], planned_bytes, "the bytes moved are the plan's egress line");
    let cost = skyform::plan::money(moved[0]["cost"].as_f64().unwrap()).to_string();
    assert_eq!(cost, edge[0]["cost"].as_str().unwrap(), "priced as the plan priced it");
    assert!(moved[0]["cost"].as_f64().unwrap() > 0.0, "leaving AWS is egress: {moved:?}");
    assert!(a.stdout.contains("\"type\":\"task_done\""), "{}", a.stdout);
    assert_eq!(std::fs::read_to_string(d.join("out/report.txt")).unwrap(), format!("rows={EDGE_BYTES}\n"));
    let o = skyform_env(d, &["state", "pull"], &env_ref);
    assert_eq!(o.code, 0, "{}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap()
}

#[test]
fn a_three_cloud_job_moves_data_s3_to_gcs_as_the_plan_priced_it() {
    let aws = Aws::start();
    let g = Gcp::start();
    let d = three_cloud_job(&aws, "gcp", &g.block());
    let st = apply_three_clouds(d.path(), &aws.env(), "gcp");
    // The transform's input crossed into GCS (its run directory) and its output is kept there.
    let count = st["tasks"]["task.transform"]["data"][0]["uri"].as_str().unwrap();
    let key = count.strip_prefix("gs://skyform-us-central1/").expect(count);
    assert_eq!(g.text("skyform-us-central1", &format!("{key}/count.txt")), Some(format!("{EDGE_BYTES}\n")));
    assert!(st["tasks"]["task.extract"]["data"][0]["uri"].as_str().unwrap().starts_with("s3://skyform-it-us-east-1/"));
    assert_eq!(g.created().len(), 1);
    assert!(g.gce.instances().is_empty());
    assert_eq!(aws.running(), 0);
}

#[test]
fn provider_gcp_is_checked_with_spans_and_plan_needs_no_project_or_credentials() {
    let task = "task \"t\" {\n  resources {\n    cloud = \"gcp\"\n    cpus  = \"2+\"\n  }\n  run = \"true\"\n  estimate {\n    hours = 0.1\n  }\n}\n";
    let bad = job(&[(
        "main.sky.hcl",
        &format!("provider \"gcp\" {{\n  regions = [\"us-central1\"]\n  bucket  = \"Not A Bucket\"\n}}\n\n{task}"),
    )]);
    let o = skyform(bad.path(), &["validate"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("on main.sky.hcl:3:3"), "the diagnostic points at `bucket`: {}", o.stderr);
    assert!(o.stderr.contains("`bucket` must be a bucket name"), "{}", o.stderr);
    // No project, no credentials: plan works; apply says what is missing, before any call.
    let d = job(&[(
        "main.sky.hcl",
        &format!("provider \"gcp\" {{\n  regions     = [\"us-central1\"]\n  credentials = \"anonymous\"\n}}\n\n{task}"),
    )]);
    let env = [("GOOGLE_CLOUD_PROJECT", ""), ("CLOUDSDK_CORE_PROJECT", "")];
    let p = skyform_env(d.path(), &["plan"], &env);
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert!(p.stdout.contains("placement     = \"gcp/us-central1/"), "{}", p.stdout);
    let a = skyform_env(d.path(), &["apply", "-auto-approve"], &env);
    assert_eq!(a.code, 1, "{}\n{}", a.stdout, a.stderr);
    assert!(
        a.stderr.contains("Error: provider \"gcp\": unauthorized (cloud): provider \"gcp\": no project"),
        "{}",
        a.stderr
    );
    assert_eq!(a.stderr.matches("no project").count(), 1, "said once: {}", a.stderr);
}
