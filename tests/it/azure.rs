//! apply on Azure through the real Azure SDK crates against Azurite (Blob storage) and the
//! loopback Resource Manager fake (VMs, NICs, disks; faults, eviction, a record of every
//! PUT) with the agent that plays the VMs — and, for the three-cloud job, AWS through
//! moto. Each test writes its job directory and runs the `skyform` binary.

use super::aws::Cloud as Aws;
use super::gcp::{apply_three_clouds, three_cloud_job, EDGE_BYTES};
use super::*;
use skyform_provider::objects::{Objects, Put};
use skyform_provider::Factory;
use skyform_provider_azure::testing::{
    backend_config, provider_config, Azurite, FakeArm, Fault, RecordedPut, VmAgent, ACCOUNT,
};
use skyform_provider_azure::AzureFactory;
use std::time::{Duration, Instant};

/// Azurite, the ARM fake and the agent of one test.
struct Azure {
    azurite: Azurite,
    arm: FakeArm,
    agent: VmAgent,
    _work: tempfile::TempDir,
}

impl Azure {
    fn start() -> Azure {
        let azurite = Azurite::start();
        let arm = FakeArm::start();
        let work = tempfile::tempdir().unwrap();
        let agent = VmAgent::start(&arm, work.path());
        Azure { azurite, arm, agent, _work: work }
    }

    /// The `provider "azure"` block: the fake and Azurite, quick polls, these regions.
    fn block(&self, regions: &[&str]) -> String {
        let mut body = provider_config(&self.arm, &self.azurite);
        body["regions"] = serde_json::json!(regions);
        hcl_block("provider \"azure\"", &body)
    }

    /// A container of Azurite's account, as an object store (created on first write).
    fn container(&self, name: &str) -> std::sync::Arc<dyn Objects> {
        AzureFactory.backend("azurerm", &backend_config(&self.azurite, name, "unused")).unwrap().objects
    }

    fn put(&self, container: &str, key: &str, data: &str) {
        let r = self.container(container).put_if(key, data.as_bytes().to_vec(), None).unwrap();
        assert!(matches!(r, Put::Written(_)), "{r:?}");
    }

    fn text(&self, container: &str, key: &str) -> Option<String> {
        self.container(container).get(key).unwrap().map(|(b, _)| String::from_utf8(b).unwrap())
    }

    /// Every VM, NIC and disk that exists.
    fn left(&self) -> Vec<String> {
        let mut v = self.arm.vm_names();
        v.extend(self.arm.nic_names());
        v.extend(self.arm.disk_names());
        v
    }

    fn vm_puts(&self) -> Vec<RecordedPut> {
        self.arm.vm_puts()
    }

    /// Waits until the agent has booted a VM; returns its name.
    fn wait_booted(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(n) = self.agent.started().first() {
                return n.clone();
            }
            assert!(Instant::now() < deadline, "no VM was booted: {:?}", self.arm.requests());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn mixed_job_runs_a_spot_gpu_vm_and_a_cpu_vm_on_azure_and_a_task_on_local_with_data_blob_local_blob() {
    let az = Azure::start();
    az.put("input-data", "raw/numbers.txt", "30\n10\n20\n");
    let text = format!(
        r#"skyform {{
  name = "mixed-azure"
}}

{azure}
provider "local" {{
  zones = ["zone-a"]
}}

storage "raw" {{
  uri     = "az://{ACCOUNT}/input-data/raw"
  region  = "eastus"
  size_gb = 0.001
}}

task "prep" {{
  resources {{
    cloud = "azure"
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
    cloud        = "azure"
    accelerators = ["T4:1"]
    spot         = true
  }}
  inputs  = {{ total = task.sum.outputs.total }}
  outputs = {{ model = {{ size_gb = 0.001, uri = "az://{ACCOUNT}/results/model" }} }}
  run     = "echo model-of-$(cat $SKYFORM_INPUT_TOTAL/total.txt) > $SKYFORM_OUTPUT_MODEL/model.txt"
  estimate {{
    hours = 0.1
  }}
}}
"#,
        azure = az.block(&["eastus"])
    );
    let d = job(&[("main.sky.hcl", &text)]);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Apply complete! Resources: 3 added"), "{}", o.stdout);
    let st = state_json(d.path());
    // One VM PUT per Azure task: the planned region, size and priority, the owner tags.
    let puts = az.vm_puts();
    assert_eq!(puts.len(), 2, "{puts:?}");
    let by_task = |t: &str| puts.iter().find(|p| p.body["tags"]["skyform-task"] == t).unwrap();
    for addr in ["task.prep", "task.train"] {
        let (b, placement) = (&by_task(addr).body, &st["tasks"][addr]["placement"]);
        assert_eq!(b["location"], placement["region"], "{addr}");
        assert_eq!(b["properties"]["hardwareProfile"]["vmSize"], placement["instance_type"], "{addr}");
        assert_eq!(b["tags"]["skyform-lineage"], st["lineage"]);
        assert_eq!(b["tags"]["skyform-job"], "mixed-azure");
        assert_eq!(b["tags"]["skyform-attempt"], "1");
        assert_eq!(b["tags"]["skyform-token"], st["tasks"][addr]["allocations"][0]["idempotency_token"]);
    }
    let train = &by_task("task.train").body["properties"];
    assert_eq!(st["tasks"]["task.train"]["placement"]["instance_type"], "Standard_NC4as_T4_v3");
    assert_eq!(train["priority"], "Spot");
    assert_eq!(train["evictionPolicy"], "Delete");
    assert_eq!(train["billingProfile"]["maxPrice"], serde_json::json!(-1.0));
    let prep = &by_task("task.prep").body["properties"];
    assert!(prep.get("priority").is_none(), "on demand: {prep}");
    // Data: Blob → azure (prep) → Blob (skyform's container) → local (sum) → azure (train) → Blob.
    let clean = st["tasks"]["task.prep"]["data"][0]["uri"].as_str().unwrap();
    let key = clean.strip_prefix(&format!("az://{ACCOUNT}/skyform-eastus/")).expect(clean);
    assert_eq!(az.text("skyform-eastus", &format!("{key}/sorted.txt")).as_deref(), Some("10\n20\n30\n"));
    assert!(st["tasks"]["task.sum"]["data"][0]["uri"].as_str().unwrap().starts_with("local://"));
    assert_eq!(az.text("results", "model/model.txt").as_deref(), Some("model-of-60\n"));
    assert!(o.stderr.contains(&format!("input raw ← az://{ACCOUNT}/input-data/raw")), "{}", o.stderr);
    let logs = skyform(d.path(), &["logs", "task.prep"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(logs.stdout.contains("sorted 3 lines"), "{}", logs.stdout);
    // Every VM, NIC and disk deleted; nothing to sweep.
    assert!(az.left().is_empty(), "{:?}", az.left());
    let s = skyform(d.path(), &["sweep"]);
    assert!(s.stdout.starts_with("Nothing to sweep"), "{}\n{}", s.stdout, s.stderr);
}

/// One task, placed in eastus (first) or eastus2 by the policy.
fn one_task(az: &Azure, resources: &str, run: &str, extra: &str) -> tempfile::TempDir {
    let text = format!(
        r#"{azure}
provider "local" {{
  zones = ["zone-a"]
}}

policy {{
  regions = ["azure:eastus", "azure:eastus2", "local:*"]
}}

task "work" {{
  resources {{
    cloud = "azure"
{resources}
  }}
  outputs = {{ out = {{ size_gb = 0.001 }} }}
  run     = "{run}"
  estimate {{
    hours = 0.1
  }}
{extra}}}
"#,
        azure = az.block(&["eastus", "eastus2"])
    );
    job(&[("main.sky.hcl", &text)])
}

/// Applies a one-task job whose first VM PUT in eastus meets `fault`; the task ends in
/// eastus2. Returns the tracker's blocks.
fn fails_over_to_eastus2(fault: Fault, code: &str) -> Vec<serde_json::Value> {
    let az = Azure::start();
    az.arm.inject(fault);
    let d = one_task(&az, "    cpus  = \"2+\"", "echo ok > $SKYFORM_OUTPUT_OUT/ok.txt", "");
    let p = skyform(d.path(), &["plan"]);
    assert!(p.stdout.contains("placement     = \"azure/eastus\""), "{}", p.stdout);
    assert!(p.stdout.contains("#   azure/eastus2 "), "{}", p.stdout);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains(code), "{}", o.stderr);
    let regions: Vec<String> = az.vm_puts().iter().map(|p| p.body["location"].as_str().unwrap().to_string()).collect();
    assert_eq!(regions, ["eastus", "eastus2"]);
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.work"]["placement"]["region"], "eastus2");
    assert_eq!(st["tasks"]["task.work"]["status"], "succeeded");
    assert!(az.left().is_empty(), "{:?}", az.left());
    tracker_blocks(d.path())
}

#[test]
fn zonal_allocation_failed_in_the_planned_region_fails_over_to_the_next_placement_and_blocks_it() {
    let blocks = fails_over_to_eastus2(Fault::capacity("eastus"), "ZonalAllocationFailed");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["location"]["region"], "eastus");
    assert_eq!((blocks[0]["kind"].as_str(), blocks[0]["scope"].as_str()), (Some("capacity_unavailable"), Some("zone")));
}

#[test]
fn a_regional_quota_error_blocks_the_region() {
    let blocks = fails_over_to_eastus2(Fault::quota("eastus"), "OperationNotAllowed");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["location"]["region"], "eastus");
    assert_eq!((blocks[0]["kind"].as_str(), blocks[0]["scope"].as_str()), (Some("quota_exceeded"), Some("region")));
}

#[test]
fn a_throttled_vm_put_is_retried_in_place_after_azures_retry_after() {
    let az = Azure::start();
    az.arm.inject(Fault::throttle("eastus", 2).times(1));
    let d = one_task(&az, "    cpus  = \"2+\"", "echo ok > $SKYFORM_OUTPUT_OUT/ok.txt", "");
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let puts = az.vm_puts();
    assert_eq!(puts.iter().map(|p| p.body["location"].as_str().unwrap()).collect::<Vec<_>>(), ["eastus", "eastus"]);
    let waited = puts[1].at - puts[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}, before Azure's Retry-After of 2 s");
    // Throttling is no failure of the place: nothing is blocked.
    assert!(tracker_blocks(d.path()).is_empty());
    assert_eq!(state_json(d.path())["tasks"]["task.work"]["placement"]["region"], "eastus");
}

#[test]
fn a_spot_vm_evicted_mid_run_reruns_per_its_recovery() {
    let az = Azure::start();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let d = one_task(
        &az,
        "    cpus  = \"2+\"\n    spot  = true",
        &format!("touch {}; sleep 3; echo done > $SKYFORM_OUTPUT_OUT/done.txt", started.display()),
        "  recovery = \"same_zone\"\n",
    );
    let (child, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &[]);
    wait_file(&started, "the first run");
    let vm = az.wait_booted();
    assert!(az.arm.evict(&vm), "evicting {vm}");
    let out = child.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("task.work: preempted in azure/eastus; recovering (SameZone)"), "{}", out.stderr);
    let puts = az.vm_puts();
    assert_eq!(puts.len(), 2, "{puts:?}");
    for p in &puts {
        assert_eq!(
            (p.body["location"].as_str(), p.body["properties"]["priority"].as_str()),
            (Some("eastus"), Some("Spot"))
        );
    }
    assert_ne!(puts[0].name, puts[1].name, "a new VM for the rerun");
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.work"]["status"], "succeeded");
    assert_eq!(st["tasks"]["task.work"]["runs"].as_array().unwrap().len(), 2);
    assert!(az.left().is_empty(), "{:?}", az.left());
}

#[test]
fn kill_9_during_apply_then_apply_follows_the_running_vm_to_its_end_leaving_nothing_unknown() {
    let az = Azure::start();
    let marks = tempfile::tempdir().unwrap();
    let (mark, log) = (marks.path().join("tried"), marks.path().join("log"));
    // The first run takes 8 s; a second run (which must not happen) would say "rerun".
    let run = format!(
        "if [ -e {m} ]; then echo rerun >> {l}; else touch {m}; echo first >> {l}; sleep 8; echo first-finished >> {l}; fi; echo ok > $SKYFORM_OUTPUT_OUT/ok.txt",
        m = mark.display(),
        l = log.display()
    );
    let d = one_task(&az, "    cpus  = \"2+\"", &run, "");
    let (mut child, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &[]);
    wait_file(&log, "the first run");
    child.kill();
    let vm = az.wait_booted();
    assert_eq!(az.arm.vm_names(), std::slice::from_ref(&vm), "the VM outlives the engine");
    let o = skyform(d.path(), &["apply", "-auto-approve", "-lock-timeout=0s"]);
    assert!(o.code != 0 && o.stderr.contains("the lock is stale"), "{}", o.stderr);
    let lock = o.stderr.split("skyform force-unlock ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(skyform(d.path(), &["force-unlock", "-force", &lock]).code, 0);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    // The interrupted VM (its run still going) was found by its token and followed to its
    // end: the task completed once, on the first VM, and the VM was released.
    assert!(
        o.stderr.contains(&format!(
            "task.work: found eastus/{vm} from an interrupted apply; its run is still going: following it"
        )),
        "{}",
        o.stderr
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nfirst-finished\n");
    assert_eq!(az.vm_puts().len(), 1);
    assert!(az.left().is_empty(), "nothing the state does not know: {:?}", az.left());
    let s = skyform(d.path(), &["sweep"]);
    assert!(s.stdout.starts_with("Nothing to sweep"), "{}\n{}", s.stdout, s.stderr);
    assert_eq!(state_json(d.path())["tasks"]["task.work"]["status"], "succeeded");
}

/// A job whose state lives in Blob storage; `sleep` keeps an apply holding the lock.
fn team_job(azurite: &Azurite, sleep: u32) -> tempfile::TempDir {
    let backend = hcl_block("  backend \"azurerm\"", &backend_config(azurite, "team-state", "jobs/team.json"));
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
fn azurerm_backend_lets_one_of_two_concurrent_applies_hold_the_lock() {
    let az = Azure::start();
    let (a, b) = (team_job(&az.azurite, 3), team_job(&az.azurite, 3));
    let (first, _home) = spawn_skyform(a.path(), &["apply", "-auto-approve"], &[]);
    let pid = first.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while az.text("team-state", "jobs/team.json.lock").is_none() {
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
    assert!(az.text("team-state", "jobs/team.json.lock").is_none());
    let remote: serde_json::Value = serde_json::from_str(&az.text("team-state", "jobs/team.json").unwrap()).unwrap();
    assert_eq!(remote["tasks"]["task.work"]["status"], "succeeded");
    let pulled = state_json(b.path());
    assert_eq!((&pulled["lineage"], &pulled["serial"]), (&remote["lineage"], &remote["serial"]));
    let again = skyform(b.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(again.code, 0, "nothing to do from the other clone: {}\n{}", again.stdout, again.stderr);
}

#[test]
fn a_job_on_aws_azure_and_local_moves_data_s3_to_blob_as_the_plan_priced_it() {
    let aws = Aws::start();
    let az = Azure::start();
    let d = three_cloud_job(&aws, "azure", &az.block(&["eastus"]));
    let st = apply_three_clouds(d.path(), &aws.env(), "azure");
    let count = st["tasks"]["task.transform"]["data"][0]["uri"].as_str().unwrap();
    let key = count.strip_prefix(&format!("az://{ACCOUNT}/skyform-eastus/")).expect(count);
    assert_eq!(az.text("skyform-eastus", &format!("{key}/count.txt")), Some(format!("{EDGE_BYTES}\n")));
    assert_eq!(az.vm_puts().len(), 1);
    assert!(az.left().is_empty(), "{:?}", az.left());
    assert_eq!(aws.running(), 0);
}

#[test]
fn provider_azure_is_checked_with_spans_and_plan_needs_no_subscription() {
    let task = "task \"t\" {\n  resources {\n    cloud = \"azure\"\n    cpus  = \"2+\"\n  }\n  run = \"true\"\n  estimate {\n    hours = 0.1\n  }\n}\n";
    let bad = job(&[(
        "main.sky.hcl",
        &format!(
            "provider \"azure\" {{\n  regions  = [\"eastus\"]\n  endpoint = \"management.azure.com\"\n}}\n\n{task}"
        ),
    )]);
    let o = skyform(bad.path(), &["validate"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("on main.sky.hcl:3:3"), "the diagnostic points at `endpoint`: {}", o.stderr);
    assert!(o.stderr.contains("`endpoint` must be an http(s) URL"), "{}", o.stderr);
    // No subscription, no storage account, no credentials: plan works; apply says what is
    // missing, once, before any call.
    let d = job(&[("main.sky.hcl", &format!("provider \"azure\" {{\n  regions = [\"eastus\"]\n}}\n\n{task}"))]);
    let env = [("AZURE_SUBSCRIPTION_ID", ""), ("AZURE_STORAGE_ACCOUNT", "")];
    let p = skyform_env(d.path(), &["plan"], &env);
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert!(p.stdout.contains("placement     = \"azure/eastus\""), "{}", p.stdout);
    let a = skyform_env(d.path(), &["apply", "-auto-approve"], &env);
    assert_eq!(a.code, 1, "{}\n{}", a.stdout, a.stderr);
    assert!(
        a.stderr.contains("Error: provider \"azure\": unauthorized (cloud): provider \"azure\": no subscription"),
        "{}",
        a.stderr
    );
    assert_eq!(a.stderr.matches("no subscription").count(), 1, "said once: {}", a.stderr);
}
