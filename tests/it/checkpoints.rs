//! Checkpoints on the cloud providers, through the CLI: a checkpointed spot task preempted
//! mid-run is rerun elsewhere in its region and continues from its checkpoint (the task
//! script restores it, syncs it every second, and saves it when the VM's shutdown sends
//! SIGTERM). AWS through moto and the instance agent.

use super::aws::{aws_block, Cloud as Aws};
use super::*;
use std::time::{Duration, Instant};

/// The run of the tests: counts to 20 from where its checkpoint left it, keeping the count
/// and the sum of the counts in `$SKYFORM_CHECKPOINT/state` (written whole at each step),
/// noting each start in `MARKS/starts` and its progress in `MARKS/progress` (the VM's
/// script runs on this host). An uninterrupted run writes `n=20 sum=210`.
fn counting_run(marks: &Path) -> String {
    let m = marks.display();
    format!(
        "c=$SKYFORM_CHECKPOINT/state; read n s 2>/dev/null < $c || {{ n=0; s=0; }}; echo start $n >> {m}/starts; \
         while [ $n -lt 20 ]; do n=$((n+1)); s=$((s+n)); echo $n $s > $c.tmp; mv $c.tmp $c; echo $n > {m}/progress; sleep 0.25; done; \
         echo n=$n sum=$s > $SKYFORM_OUTPUT_OUT/result.txt"
    )
}

/// Where the runs started, from `MARKS/starts`.
fn starts(marks: &Path) -> Vec<u32> {
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
    let starts = starts(marks.path());
    println!("the runs started at {starts:?}");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0], 0, "the first run starts from nothing");
    assert!(starts[1] > 0, "the rerun continues from the checkpoint, not from zero: {starts:?}");
    assert_eq!(cloud.get("results", "count/result.txt").as_deref(), Some("n=20 sum=210\n"), "an uninterrupted run's");
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.count"]["status"], "succeeded");
    assert_eq!(st["tasks"]["task.count"]["runs"].as_array().unwrap().len(), 2);
    // The stored checkpoint is the finished run's; the interrupted run saved its own when
    // the shutdown's SIGTERM came (its log, uploaded then, says so).
    let lineage = st["lineage"].as_str().unwrap();
    let key = format!("skyform-{}/checkpoints/task.count/ckpt/state", &lineage[..8]);
    assert_eq!(cloud.get("skyform-it-us-east-1", &key).as_deref(), Some("20 210\n"));
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
