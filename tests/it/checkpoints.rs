//! Checkpoints on the cloud providers, through the CLI: a checkpointed spot task preempted
//! mid-run is rerun in its region and continues from its checkpoint (the task script
//! restores it, syncs it every second, and saves it when the VM's shutdown sends SIGTERM).
//! AWS through moto, GCP through fake-gcs-server and the Compute Engine fake, Azure through
//! Azurite and the Resource Manager fake, each with the agent that plays its VMs.

use super::aws::{aws_block, Cloud as Aws};
use super::*;
use skyform_provider::Factory;
use std::time::{Duration, Instant};

/// The run of the tests: counts to 20 from where its checkpoint left it, keeping the count
/// and the sum of the counts in `$SKYFORM_CHECKPOINT/state` (written whole at each step),
/// noting each start in `MARKS/starts` (and the files it found in `MARKS/restored`) and
/// its progress in `MARKS/progress` (the VM's
/// script runs on this host). An uninterrupted run writes `n=20 sum=210`. It also keeps a
/// `scratch` file in its checkpoint while it counts and removes it at the end, so the
/// stored checkpoint loses it only if a sync deletes what the directory no longer holds.
fn counting_run(marks: &Path) -> String {
    let m = marks.display();
    format!(
        "c=$SKYFORM_CHECKPOINT/state; read n s 2>/dev/null < $c || {{ n=0; s=0; }}; echo start $n >> {m}/starts; echo $(ls $SKYFORM_CHECKPOINT) >> {m}/restored; touch $SKYFORM_CHECKPOINT/scratch; \
         while [ $n -lt 20 ]; do n=$((n+1)); s=$((s+n)); echo $n $s > $c.tmp; mv $c.tmp $c; echo $n > {m}/progress; sleep 0.25; done; rm $SKYFORM_CHECKPOINT/scratch; \
         echo n=$n sum=$s > $SKYFORM_OUTPUT_OUT/result.txt"
    )
}

/// Where the runs started, from `MARKS/starts`.
pub(crate) fn starts(marks: &Path) -> Vec<u32> {
    std::fs::read_to_string(marks.join("starts"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_start_matches("start ").parse().unwrap())
        .collect()
}

/// Waits until the first run has counted to `n`.
fn wait_progress(marks: &Path, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p = std::fs::read_to_string(marks.join("progress")).unwrap_or_default();
        if p.trim().parse::<u32>().unwrap_or(0) >= n {
            return;
        }
        assert!(Instant::now() < deadline, "the first run never counted to {n} (at {p:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The checkpoint block of the tests.
const CHECKPOINT: &str = "  checkpoint {\n    path  = \"ckpt\"\n    every = \"1s\"\n  }\n";

#[test]
fn aws_a_spot_task_preempted_mid_run_continues_from_its_checkpoint_in_the_next_zone() {
    let cloud = Aws::start();
    cloud.put("results", ".keep", "");
    let marks = tempfile::tempdir().unwrap();
    let d = job(&[(
        "main.sky.hcl",
        &format!(
            r#"{aws}
policy {{
  regions = ["aws:us-east-1:us-east-1a", "aws:us-east-1:us-east-1b"]
}}

task "count" {{
  resources {{
    cloud = "aws"
    cpus  = "2+"
    spot  = true
  }}
  outputs  = {{ out = {{ size_gb = 0.001, uri = "s3://results/count" }} }}
  run      = "{run}"
  recovery = "next_zone"
{CHECKPOINT}  estimate {{
    hours = 0.1
  }}
}}
"#,
            aws = aws_block(&cloud.proxy.endpoint),
            run = counting_run(marks.path()),
        ),
    )]);
    let t0 = Instant::now();
    let (child, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &cloud.env());
    // Reclaim the instance while its task counts (after a few periodic syncs).
    wait_progress(marks.path(), 8);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (ec2, s3) = cloud.moto.clients("us-east-1");
    rt.block_on(async {
        let r = ec2.describe_instances().send().await.unwrap();
        let id = r.reservations()[0].instances()[0].instance_id().unwrap().to_string();
        ec2.terminate_instances().instance_ids(id).send().await.unwrap();
    });
    let out = child.wait();
    println!("apply with a preemption took {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("task.count: preempted in aws/us-east-1/us-east-1a; recovering (NextZone)"),
        "{}",
        out.stderr
    );
    assert_resumed(marks.path(), cloud.get("results", "count/result.txt"));
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.count"]["status"], "succeeded");
    assert_eq!(st["tasks"]["task.count"]["runs"].as_array().unwrap().len(), 2);
    // The stored checkpoint is the finished run's; the interrupted run saved its own when
    // the shutdown's SIGTERM came (its log, uploaded then, says so).
    assert_checkpoint(&st, |k| cloud.get("skyform-it-us-east-1", k));
    let logs: Vec<String> = rt.block_on(async {
        let l = s3.list_objects_v2().bucket("skyform-it-us-east-1").prefix("skyform-runs/").send().await.unwrap();
        l.contents().iter().filter_map(|o| o.key()).filter(|k| k.ends_with("/log.txt")).map(str::to_string).collect()
    });
    assert_eq!(logs.len(), 2, "{logs:?}");
    let stopped: Vec<String> = logs
        .iter()
        .filter_map(|k| cloud.get("skyform-it-us-east-1", k))
        .filter(|l| l.contains("skyform: stopped; saving the checkpoint"))
        .collect();
    assert_eq!(stopped.len(), 1, "the interrupted run saved its checkpoint at the stop: {logs:?}");
}

/// A job of one checkpointed spot task counting with [`counting_run`]: `provider` blocks,
/// the policy's `regions`, the task's `recovery`.
fn count_job(providers: &str, regions: &str, cloud: &str, recovery: &str, marks: &Path) -> tempfile::TempDir {
    let text = format!(
        r#"{providers}
policy {{
  regions = [{regions}]
}}

task "count" {{
  resources {{
    cloud = "{cloud}"
    cpus  = "2+"
    spot  = true
  }}
  outputs  = {{ out = {{ size_gb = 0.001 }} }}
  run      = "{run}"
  recovery = "{recovery}"
{CHECKPOINT}  estimate {{
    hours = 0.1
  }}
}}
"#,
        run = counting_run(marks),
    );
    job(&[("main.sky.hcl", &text)])
}

/// The job's state (the task succeeded in its second run) and the URI of the task's output
/// `out` in it.
fn output_uri(dir: &Path) -> (serde_json::Value, String) {
    let st = state_json(dir);
    assert_eq!(st["tasks"]["task.count"]["status"], "succeeded", "{st}");
    assert_eq!(st["tasks"]["task.count"]["runs"].as_array().unwrap().len(), 2);
    let data = st["tasks"]["task.count"]["data"].as_array().unwrap();
    let out = data.iter().find(|d| d["name"] == "out").expect("the output in the state");
    let uri = out["uri"].as_str().unwrap().to_string();
    (st, uri)
}

/// The stored checkpoint, read with `get` (a key in the location's bucket or container):
/// the finished run's `state`, and no `scratch` (the final sync deleted it).
fn assert_checkpoint(st: &serde_json::Value, get: impl Fn(&str) -> Option<String>) {
    let lineage = st["lineage"].as_str().unwrap();
    let key = |f: &str| format!("skyform-{}/checkpoints/task.count/ckpt/{f}", &lineage[..8]);
    assert_eq!(get(&key("state")).as_deref(), Some("20 210\n"), "the finished run's checkpoint");
    assert_eq!(get(&key("scratch")), None, "what the directory no longer holds is gone from the store");
}

/// The logs the VMs' task scripts wrote under the agent's `work` directory that say the
/// run was stopped and its checkpoint saved.
fn stopped_logs(work: &Path) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if p.file_name().is_some_and(|f| f == "log.txt")
                && std::fs::read_to_string(&p).unwrap_or_default().contains("skyform: stopped; saving the checkpoint")
            {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(work, &mut n);
    n
}

/// The runs' starts and the task's output (`out/result.txt`, read by the test).
fn assert_resumed(marks: &Path, result: Option<String>) {
    let starts = starts(marks);
    println!("the runs started at {starts:?}");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0], 0, "the first run starts from nothing");
    assert!(starts[1] > 0, "the rerun continues from the checkpoint, not from zero: {starts:?}");
    // (A stop between the run's write of `state.tmp` and its rename may add that file.)
    let restored = std::fs::read_to_string(marks.join("restored")).unwrap();
    let found: Vec<Vec<&str>> = restored.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(found.len(), 2, "{restored:?}");
    assert!(found[0].is_empty(), "the first run found nothing: {restored:?}");
    assert!(found[1].starts_with(&["scratch", "state"]), "the rerun found the whole tree: {restored:?}");
    assert_eq!(result.as_deref(), Some("n=20 sum=210\n"), "an uninterrupted run's output");
}

#[test]
fn gcp_a_spot_instance_preempted_mid_run_continues_from_its_checkpoint_in_the_next_zone() {
    use skyform_provider_gcp::testing::{provider_body, FakeGce, FakeGcs, InstanceAgent, PROJECT};
    let gcs = FakeGcs::start();
    let gce = FakeGce::start(PROJECT);
    let work = tempfile::tempdir().unwrap();
    let agent = InstanceAgent::start(&gce, work.path());
    let marks = tempfile::tempdir().unwrap();
    let d = count_job(
        &hcl_block("provider \"gcp\"", &provider_body(&gce, &gcs, &["us-central1"])),
        "\"gcp:us-central1:us-central1-a\", \"gcp:us-central1:us-central1-b\"",
        "gcp",
        "next_zone",
        marks.path(),
    );
    let t0 = Instant::now();
    let (child, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &[]);
    wait_progress(marks.path(), 8);
    let id = agent.started().first().cloned().expect("a booted instance");
    assert!(id.starts_with("us-central1-a/"), "{id}");
    assert!(gce.preempt(&id));
    let out = child.wait();
    println!("apply with a preemption took {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("task.count: preempted in gcp/us-central1/us-central1-a; recovering (NextZone)"),
        "{}",
        out.stderr
    );
    let (st, uri) = output_uri(d.path());
    let (bucket, key) = uri.strip_prefix("gs://").unwrap().split_once('/').unwrap();
    let text = |k: &str| gcs.object(bucket, k).map(|b| String::from_utf8(b).unwrap());
    assert_resumed(marks.path(), text(&format!("{key}/result.txt")));
    assert_eq!(stopped_logs(work.path()), 1, "the interrupted run saved its checkpoint at the stop");
    assert_checkpoint(&st, text);
    assert!(gce.instances().is_empty(), "{:?}", gce.instances());
}

#[test]
fn azure_a_spot_vm_evicted_mid_run_continues_from_its_checkpoint() {
    use skyform_provider_azure::testing::{backend_config, provider_config, Azurite, FakeArm, VmAgent};
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let work = tempfile::tempdir().unwrap();
    let agent = VmAgent::start(&arm, work.path());
    let marks = tempfile::tempdir().unwrap();
    let mut body = provider_config(&arm, &azurite);
    body["regions"] = serde_json::json!(["eastus"]);
    let d = count_job(&hcl_block("provider \"azure\"", &body), "\"azure:eastus\"", "azure", "same_zone", marks.path());
    let t0 = Instant::now();
    let (child, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &[]);
    wait_progress(marks.path(), 8);
    let vm = agent.started().first().cloned().expect("a booted VM");
    assert!(arm.evict(&vm), "evicting {vm}");
    let out = child.wait();
    println!("apply with an eviction took {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("task.count: preempted in azure/eastus; recovering (SameZone)"), "{}", out.stderr);
    let (st, uri) = output_uri(d.path());
    let rest = uri.strip_prefix("az://").unwrap();
    let (_account, rest) = rest.split_once('/').unwrap();
    let (container, key) = rest.split_once('/').unwrap();
    let objects = skyform_provider_azure::AzureFactory
        .backend("azurerm", &backend_config(&azurite, container, "unused"))
        .unwrap()
        .objects;
    let text = |k: &str| objects.get(k).unwrap().map(|(b, _)| String::from_utf8(b).unwrap());
    assert_resumed(marks.path(), text(&format!("{key}/result.txt")));
    assert_eq!(stopped_logs(work.path()), 1, "the interrupted run saved its checkpoint at the stop");
    assert_checkpoint(&st, text);
    assert!(arm.vm_names().is_empty(), "{:?}", arm.vm_names());
}
