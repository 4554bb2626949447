//! apply on AWS through the real SDK against moto server on 127.0.0.1, with the instance
//! agent playing the VMs and the fault proxy injecting AWS errors.

use super::*;
use skyform_provider_aws::aws_sdk_ec2::types::{Filter, InstanceStateName};
use skyform_provider_aws::testing::{client_env, Fault, FaultProxy, InstanceAgent, Moto};
use std::time::{Duration, Instant};

/// moto, the proxy in front of it and the agent, for one test (the GCP and Azure tests use
/// it for their jobs' AWS side).
pub(crate) struct Cloud {
    pub(crate) moto: Moto,
    pub(crate) proxy: FaultProxy,
    _agent: InstanceAgent,
    _work: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Cloud {
    pub(crate) fn start() -> Cloud {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.endpoint);
        let work = tempfile::tempdir().unwrap();
        let agent = InstanceAgent::start(&proxy.endpoint, &["us-east-1"], work.path());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Cloud { moto, proxy, _agent: agent, _work: work, rt }
    }

    pub(crate) fn put(&self, bucket: &str, key: &str, data: &str) {
        let (_, s3) = self.moto.clients("us-east-1");
        self.rt.block_on(async {
            let _ = s3.create_bucket().bucket(bucket).send().await;
            s3.put_object().bucket(bucket).key(key).body(data.as_bytes().to_vec().into()).send().await.unwrap();
        });
    }

    pub(crate) fn get(&self, bucket: &str, key: &str) -> Option<String> {
        let (_, s3) = self.moto.clients("us-east-1");
        self.rt.block_on(async {
            let r = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
            Some(String::from_utf8(r.body.collect().await.ok()?.into_bytes().to_vec()).unwrap())
        })
    }

    /// Every instance moto knows that carries skyform's tags.
    pub(crate) fn instances(&self) -> Vec<Inst> {
        let (ec2, _) = self.moto.clients("us-east-1");
        self.rt.block_on(async {
            let r = ec2
                .describe_instances()
                .filters(Filter::builder().name("tag-key").values("skyform:lineage").build())
                .send()
                .await
                .unwrap();
            r.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .map(|i| Inst {
                    itype: i.instance_type().unwrap().as_str().to_string(),
                    zone: i.placement().unwrap().availability_zone().unwrap().to_string(),
                    spot: i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
                    state: i.state().unwrap().name().unwrap().clone(),
                    tags: i.tags().iter().map(|t| (t.key().unwrap().into(), t.value().unwrap().into())).collect(),
                })
                .collect()
        })
    }

    /// Terminates instance `id` directly in moto, as someone outside skyform would.
    pub(crate) fn terminate(&self, id: &str) {
        let (ec2, _) = self.moto.clients("us-east-1");
        self.rt.block_on(async { ec2.terminate_instances().instance_ids(id).send().await.unwrap() });
    }

    pub(crate) fn running(&self) -> usize {
        self.instances()
            .iter()
            .filter(|i| matches!(i.state, InstanceStateName::Running | InstanceStateName::Pending))
            .count()
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        client_env()
    }
}

#[derive(Debug)]
pub(crate) struct Inst {
    pub(crate) itype: String,
    pub(crate) zone: String,
    pub(crate) spot: bool,
    pub(crate) state: InstanceStateName,
    pub(crate) tags: BTreeMap<String, String>,
}

use std::collections::BTreeMap;

pub(crate) fn run(dir: &Path, args: &[&str], cloud: &Cloud) -> Out {
    let env = cloud.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    skyform_env(dir, args, &env)
}

/// The `provider "aws"` block of the tests: moto (or the proxy) at `endpoint`, a bucket per
/// region, the bootstrap looking for its task every second.
pub(crate) fn aws_block(endpoint: &str) -> String {
    format!(
        "provider \"aws\" {{\n  regions      = [\"us-east-1\"]\n  endpoint     = \"{endpoint}\"\n  bucket       = \"skyform-it-{{region}}\"\n  poll_seconds = 1\n}}\n"
    )
}

/// The mixed job: `prep` on AWS (spot) reads S3, `sum` on local writes its result to S3.
fn mixed_job(endpoint: &str, prep_resources: &str, extra: &str) -> tempfile::TempDir {
    let aws = aws_block(endpoint);
    let text = format!(
        r#"{aws}
provider "local" {{
  zones = ["zone-a"]
}}

storage "raw" {{
  uri     = "s3://input-data/raw"
  region  = "us-east-1"
  size_gb = 0.001
}}

task "prep" {{
  resources {{
{prep_resources}
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
  outputs = {{ total = {{ size_gb = 0.001, uri = "s3://results/total" }} }}
  run     = "awk '{{s+=$1}} END {{print s}}' $SKYFORM_INPUT_CLEAN/sorted.txt > $SKYFORM_OUTPUT_TOTAL/total.txt"
  estimate {{
    hours = 0.1
  }}
}}
{extra}"#
    );
    job(&[("main.sky.hcl", &text)])
}

/// `skyform apply -auto-approve` in the background (its output piped, killed if the test
/// ends first), with its home.
fn spawn_apply(dir: &Path, cloud: &Cloud) -> (KillOnDrop, tempfile::TempDir) {
    spawn_skyform(dir, &["apply", "-auto-approve"], &cloud.env())
}

fn numbers(cloud: &Cloud) {
    cloud.put("input-data", "raw/numbers.txt", "30\n10\n20\n");
    cloud.put("results", ".keep", "");
}

pub(crate) fn state_json(dir: &Path, cloud: &Cloud) -> serde_json::Value {
    let o = run(dir, &["state", "pull"], cloud);
    assert_eq!(o.code, 0, "{}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap()
}

#[test]
fn mixed_job_runs_on_aws_and_local_with_data_through_s3() {
    let cloud = Cloud::start();
    numbers(&cloud);
    let d = mixed_job(&cloud.proxy.endpoint, "    cloud = \"aws\"\n    cpus  = \"2+\"\n    spot  = true", "");
    let o = run(d.path(), &["apply", "-auto-approve"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Apply complete! Resources: 2 added"), "{}", o.stdout);
    // The instance: the planned type, zone and market, with the owner tags.
    let st = state_json(d.path(), &cloud);
    let prep = &st["tasks"]["task.prep"];
    let placement = &prep["placement"];
    let insts = cloud.instances();
    assert_eq!(insts.len(), 1, "{insts:?}");
    let i = &insts[0];
    assert_eq!(i.itype, placement["instance_type"].as_str().unwrap());
    assert_eq!(i.zone, placement["zone"].as_str().unwrap());
    assert!(i.spot, "spot via InstanceMarketOptions");
    assert_eq!(i.tags["skyform:lineage"], st["lineage"].as_str().unwrap());
    assert_eq!(i.tags["skyform:task"], "task.prep");
    assert_eq!(i.tags["skyform:attempt"], "1");
    assert!(i.tags.contains_key("skyform:job"));
    // Everything terminated at the end.
    assert_eq!(cloud.running(), 0, "{:?}", cloud.instances());
    // Data: S3 → aws → S3 (skyform's bucket) → local → S3 (pinned uri).
    assert_eq!(cloud.get("results", "total/total.txt").as_deref(), Some("60\n"));
    let clean = prep["data"][0]["uri"].as_str().unwrap();
    assert!(clean.starts_with("s3://skyform-it-us-east-1/skyform-"), "{clean}");
    let key = clean.strip_prefix("s3://skyform-it-us-east-1/").unwrap();
    assert_eq!(cloud.get("skyform-it-us-east-1", &format!("{key}/sorted.txt")).as_deref(), Some("10\n20\n30\n"));
    // Transfers were reported with their bytes.
    assert!(o.stderr.contains("input raw ← s3://input-data/raw"), "{}", o.stderr);
    // The instance's log, from S3.
    let logs = run(d.path(), &["logs", "task.prep"], &cloud);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(logs.stdout.contains("sorted 3 lines"), "{}", logs.stdout);
    // Destroy: nothing is left to sweep.
    let o = run(d.path(), &["destroy", "-auto-approve"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let s = run(d.path(), &["sweep"], &cloud);
    assert!(s.stdout.starts_with("Nothing to sweep"), "{}", s.stdout);
}

#[test]
fn capacity_error_in_us_east_1a_fails_over_to_the_next_zone_and_blocks_it() {
    let cloud = Cloud::start();
    numbers(&cloud);
    cloud.proxy.inject(Fault::run_instances("us-east-1a", "InsufficientInstanceCapacity"));
    let d = mixed_job(
        &cloud.proxy.endpoint,
        "    cloud = \"aws\"\n    cpus  = \"2+\"\n    spot  = false",
        "policy {\n  regions = [\"aws:us-east-1:us-east-1a\", \"aws:us-east-1:us-east-1b\", \"local:*\"]\n}\n",
    );
    // The plan ranks us-east-1a first and us-east-1b next.
    let p = run(d.path(), &["plan"], &cloud);
    assert!(p.stdout.contains("placement     = \"aws/us-east-1/us-east-1a\""), "{}", p.stdout);
    assert!(p.stdout.contains("#   aws/us-east-1/us-east-1b"), "{}", p.stdout);
    let o = run(d.path(), &["apply", "-auto-approve"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("InsufficientInstanceCapacity"), "{}", o.stderr);
    let st = state_json(d.path(), &cloud);
    assert_eq!(st["tasks"]["task.prep"]["placement"]["zone"], "us-east-1b");
    let insts = cloud.instances();
    assert_eq!(insts.iter().map(|i| i.zone.as_str()).collect::<Vec<_>>(), vec!["us-east-1b"]);
    let tried: Vec<Option<String>> =
        cloud.proxy.seen().into_iter().filter(|(a, _)| a == "RunInstances").map(|(_, z)| z).collect();
    assert_eq!(tried, vec![Some("us-east-1a".to_string()), Some("us-east-1b".to_string())]);
    // The tracker blocks us-east-1a.
    let t: serde_json::Value =
        serde_json::from_str(&run(d.path(), &["tracker", "show", "-json"], &cloud).stdout).unwrap();
    let blocks = t["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{t}");
    assert_eq!(blocks[0]["location"]["zone"], "us-east-1a");
    assert_eq!(blocks[0]["kind"], "capacity_unavailable");
    assert_eq!(cloud.running(), 0);
    assert_eq!(cloud.get("results", "total/total.txt").as_deref(), Some("60\n"));
}

#[test]
fn kill_9_during_apply_then_apply_leaves_no_unknown_instance() {
    let cloud = Cloud::start();
    numbers(&cloud);
    let d = job(&[(
        "main.sky.hcl",
        &format!(
            r#"{}
task "slow" {{
  resources {{
    cloud = "aws"
    cpus  = "2+"
  }}
  outputs = {{ out = {{ size_gb = 0.001 }} }}
  run     = "sleep 4; echo done > $SKYFORM_OUTPUT_OUT/done.txt"
  estimate {{
    hours = 0.1
  }}
}}
"#,
            aws_block(&cloud.proxy.endpoint)
        ),
    )]);
    let (mut child, _home) = spawn_apply(d.path(), &cloud);
    // Kill it once the instance runs its task.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cloud.running() == 0 {
        assert!(Instant::now() < deadline, "no instance was launched");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    child.kill();
    assert_eq!(cloud.running(), 1, "the instance outlives the killed engine");
    // Refresh: no drift while it runs; terminated outside skyform, it shows as drift.
    let st: serde_json::Value = serde_json::from_str(&run(d.path(), &["status", "-json"], &cloud).stdout).unwrap();
    assert!(st["tasks"][0]["drift"].is_null(), "{st}");
    let (ec2, _) = cloud.moto.clients("us-east-1");
    cloud.rt.block_on(async {
        let r = ec2.describe_instances().send().await.unwrap();
        let id = r.reservations()[0].instances()[0].instance_id().unwrap().to_string();
        ec2.terminate_instances().instance_ids(id).send().await.unwrap();
    });
    let st: serde_json::Value = serde_json::from_str(&run(d.path(), &["status", "-json"], &cloud).stdout).unwrap();
    assert!(st["tasks"][0]["drift"].as_str().unwrap().contains("terminated outside skyform"), "{st}");
    let text = run(d.path(), &["status"], &cloud).stdout;
    assert!(text.contains("running (drifted)") && text.contains("Drift: task.slow"), "{text}");
    // The stale lock is reported, not broken; force-unlock it, then apply again.
    let o = run(d.path(), &["apply", "-auto-approve", "-lock-timeout=0s"], &cloud);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("the lock is stale"), "{}", o.stderr);
    let id = o.stderr.split("skyform force-unlock ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(run(d.path(), &["force-unlock", "-force", &id], &cloud).code, 0);
    let o = run(d.path(), &["apply", "-auto-approve"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(cloud.running(), 0, "{:?}", cloud.instances());
    let s = run(d.path(), &["sweep"], &cloud);
    assert!(s.stdout.starts_with("Nothing to sweep"), "{}", s.stdout);
    let st = state_json(d.path(), &cloud);
    assert_eq!(st["tasks"]["task.slow"]["status"], "succeeded");
    assert_eq!(cloud.instances().len(), 2, "the terminated first instance and the rerun's");
    // Found terminated by recovery, the run counts as preempted (`recovery` = next_zone):
    // its zone is blocked and the rerun is in another.
    let t = &st["tasks"]["task.slow"];
    let runs: Vec<&str> = t["runs"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(runs, ["preempted", "succeeded"]);
    let zones: Vec<&str> =
        t["allocations"].as_array().unwrap().iter().map(|a| a["placement"]["zone"].as_str().unwrap()).collect();
    assert_eq!(zones.len(), 2, "{zones:?}");
    assert_ne!(zones[0], zones[1], "the rerun left the zone");
    assert!(o.stderr.contains(&format!("task.slow: preempted in aws/us-east-1/{}", zones[0])), "{}", o.stderr);
}

/// A job whose state lives in S3 (moto); `sleep` keeps an apply holding the lock.
fn team_job(endpoint: &str, sleep: u32) -> tempfile::TempDir {
    job(&[(
        "main.sky.hcl",
        &format!(
            r#"skyform {{
  name = "team"
  backend "s3" {{
    bucket   = "team-state"
    key      = "jobs/team.json"
    region   = "us-east-1"
    endpoint = "{endpoint}"
  }}
}}

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
fn s3_backend_lets_one_of_two_concurrent_applies_hold_the_lock() {
    let cloud = Cloud::start();
    cloud.put("team-state", ".keep", "");
    // Two clones of the same job (two teammates, one remote state).
    let (a, b) = (team_job(&cloud.moto.endpoint, 3), team_job(&cloud.moto.endpoint, 3));
    let (first, _home) = spawn_apply(a.path(), &cloud);
    let pid = first.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cloud.get("team-state", "jobs/team.json.lock").is_none() {
        assert!(Instant::now() < deadline, "the first apply never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = run(b.path(), &["apply", "-auto-approve", "-lock-timeout=0s"], &cloud);
    assert_eq!(second.code, 1, "{}\n{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("the state is locked by another process"), "{}", second.stderr);
    assert!(second.stderr.contains("Operation: apply"), "{}", second.stderr);
    assert!(second.stderr.contains(&format!("(pid {pid})")), "the holder is named: {}", second.stderr);
    let out = first.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The state survived in S3, the lock is gone, and the other clone sees the same state.
    assert!(cloud.get("team-state", "jobs/team.json.lock").is_none());
    let remote: serde_json::Value = serde_json::from_str(&cloud.get("team-state", "jobs/team.json").unwrap()).unwrap();
    assert_eq!(remote["tasks"]["task.work"]["status"], "succeeded");
    let pulled = state_json(b.path(), &cloud);
    assert_eq!(pulled["lineage"], remote["lineage"]);
    assert_eq!(pulled["serial"], remote["serial"]);
    let again = run(b.path(), &["plan", "-detailed-exitcode"], &cloud);
    assert_eq!(again.code, 0, "nothing to do from the other clone: {}\n{}", again.stdout, again.stderr);
}

/// The state an apply cannot push at its end (the remote was replaced by another job's
/// state while it ran) fails the apply: its exit code says the remote is not current.
#[test]
fn an_apply_whose_last_push_is_refused_fails() {
    let cloud = Cloud::start();
    cloud.put("team-state", ".keep", "");
    let d = team_job(&cloud.moto.endpoint, 3);
    let (first, _home) = spawn_apply(d.path(), &cloud);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cloud.get("team-state", "jobs/team.json").is_none() {
        assert!(Instant::now() < deadline, "the apply never pushed its state");
        std::thread::sleep(Duration::from_millis(50));
    }
    let foreign = r#"{"version":1,"lineage":"another-job","serial":99,"tasks":{},"outputs":{}}"#;
    cloud.put("team-state", "jobs/team.json", foreign);
    let out = first.wait();
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("Error: remote state s3://team-state/jobs/team.json"), "{}", out.stderr);
    assert_eq!(cloud.get("team-state", "jobs/team.json").as_deref(), Some(foreign), "the other state is kept");
    assert!(cloud.get("team-state", "jobs/team.json.lock").is_none(), "the lock is released");
}

#[test]
fn provider_regions_restrict_where_aws_tasks_are_placed() {
    let d = job(&[(
        "main.sky.hcl",
        r#"provider "aws" {
  regions = ["us-west-2"]
}

task "t" {
  resources {
    cloud = "aws"
    cpus  = "4+"
  }
  run = "true"
  estimate {
    hours = 1
  }
}
"#,
    )]);
    let o = skyform(d.path(), &["plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    // Without the block's regions this task goes to us-east-1 (cheapest); with them, us-west-2.
    assert!(o.stdout.contains("placement     = \"aws/us-west-2/us-west-2"), "{}", o.stdout);
    assert!(!o.stdout.contains("us-east-1"), "{}", o.stdout);
    // A region the catalog does not have: the cause is named.
    std::fs::write(
        d.path().join("main.sky.hcl"),
        std::fs::read_to_string(d.path().join("main.sky.hcl")).unwrap().replace("us-west-2", "eu-west-1"),
    )
    .unwrap();
    let o = skyform(d.path(), &["plan"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("the `regions` of provider blocks) removed the last of them"), "{}", o.stderr);
}

#[test]
fn tracker_refresh_reads_aws_spot_price_history() {
    let moto = Moto::start();
    let d = job(&[(
        "main.sky.hcl",
        &format!(
            "provider \"aws\" {{\n  regions  = [\"us-east-1\"]\n  endpoint = \"{}\"\n}}\n\ntask \"t\" {{\n  run = \"true\"\n}}\n",
            moto.endpoint
        ),
    )]);
    let env = client_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o = skyform_env(d.path(), &["tracker", "refresh"], &env);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let n: usize = o
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("aws: recorded ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(n > 0, "{}", o.stderr);
    let t: serde_json::Value =
        serde_json::from_str(&skyform_env(d.path(), &["tracker", "show", "-json"], &env).stdout).unwrap();
    let aws = t["spot"].as_array().unwrap().iter().filter(|s| s["location"]["cloud"] == "aws").count();
    assert_eq!(aws, n, "every observation is kept, one per zone and type");
}

#[test]
fn an_instance_terminated_during_its_run_is_a_preemption_and_the_task_moves_on() {
    let cloud = Cloud::start();
    let d = job(&[(
        "main.sky.hcl",
        &format!(
            r#"{}
policy {{
  regions = ["aws:us-east-1:us-east-1a", "aws:us-east-1:us-east-1b"]
}}

task "long" {{
  resources {{
    cloud = "aws"
    cpus  = "2+"
    spot  = false
  }}
  outputs  = {{ out = {{ size_gb = 0.001 }} }}
  run      = "sleep 3; echo $(hostname) > $SKYFORM_OUTPUT_OUT/done.txt"
  recovery = "next_zone"
  estimate {{
    hours = 0.1
  }}
}}
"#,
            aws_block(&cloud.proxy.endpoint)
        ),
    )]);
    let (child, _home) = spawn_apply(d.path(), &cloud);
    // Interrupt the first instance while its task runs (as a spot reclaim would).
    let deadline = Instant::now() + Duration::from_secs(60);
    while cloud.running() == 0 {
        assert!(Instant::now() < deadline, "no instance was launched");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (ec2, _) = cloud.moto.clients("us-east-1");
    cloud.rt.block_on(async {
        let r = ec2.describe_instances().send().await.unwrap();
        let id = r.reservations()[0].instances()[0].instance_id().unwrap().to_string();
        ec2.terminate_instances().instance_ids(id).send().await.unwrap();
    });
    let out = child.wait();
    let stderr = out.stderr;
    assert_eq!(out.code, 0, "{stderr}");
    assert!(stderr.contains("task.long: preempted in aws/us-east-1/us-east-1a; recovering (NextZone)"), "{stderr}");
    let mut zones: Vec<String> = cloud.instances().into_iter().map(|i| i.zone).collect();
    zones.sort();
    assert_eq!(zones, vec!["us-east-1a".to_string(), "us-east-1b".to_string()], "rerun in the next zone");
    assert_eq!(cloud.running(), 0);
    let st = state_json(d.path(), &cloud);
    assert_eq!(st["tasks"]["task.long"]["status"], "succeeded");
    assert_eq!(st["tasks"]["task.long"]["runs"].as_array().unwrap().len(), 2);
}
