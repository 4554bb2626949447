//! Reality and re-optimization on AWS, through the real SDK and its error parsing against
//! moto (with the instance agent playing the VMs and the fault proxy injecting EC2
//! errors): `plan` sees an instance terminated outside skyform, and failover re-solves
//! a chain when a zone runs out of capacity.

use super::aws::{aws_block, run, state_json, Cloud};
use crate::job;
use skyform::config::TaskAddr;
use skyform::plan::Plan;
use skyform::providers::Registry;
use skyform::state::{SledStore, StateStore, TaskStatus};
use skyform_provider::*;
use skyform_provider_aws::testing::{set_client_env, Fault};
use std::collections::BTreeMap;

/// One task on AWS whose run waits for the file `GATE` on this host (the agent runs the
/// instances' scripts here), so it keeps running until the test lets it finish.
const GATED: &str = r#"
task "slow" {
  resources {
    cloud = "aws"
    cpus  = "2+"
    spot  = false
  }
  outputs = { o = { size_gb = 0.001 } }
  run     = "while [ ! -e GATE ]; do sleep 0.2; done; echo done > $SKYFORM_OUTPUT_O/done.txt"
  estimate {
    hours = 0.1
  }
}
"#;

/// `task.slow` started on AWS as an apply that is still going leaves it: allocated and
/// running at its planned placement through the provider itself (RunInstances through the
/// proxy; the agent boots it), recorded in the state as running. Returns the job, the gate
/// file (in the job's directory) and the allocation's provider id (`REGION/INSTANCE`).
fn running_on_aws(cloud: &Cloud) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let d = job(&[]);
    let gate = d.path().join("go");
    let hcl = format!("{}{}", aws_block(&cloud.proxy.endpoint), GATED.replace("GATE", &gate.display().to_string()));
    std::fs::write(d.path().join("main.sky.hcl"), hcl).unwrap();
    let o = run(d.path(), &["plan", "-out=p.plan"], cloud);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plan = Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    let placement = plan.changes[0].after.as_ref().unwrap().placement.clone();
    assert_eq!(placement.cloud, "aws");

    set_client_env();
    let providers = Registry::builtin().providers(&plan.config, &BuildContext::new(d.path())).unwrap();
    let aws = providers["aws"].clone();
    let store = SledStore::new(d.path().join(".skyform/state"));
    let st = store.read().unwrap();
    store.commit(&st).unwrap();
    let mut st = store.read().unwrap();
    let at = Location::new("aws", placement.region.as_str(), placement.zone.as_str());
    let mut req = AllocateRequest::new("task.slow", at, placement.instance_type.as_str(), "tok-slow");
    req.owner_tags = [
        ("skyform:lineage".to_string(), st.lineage.clone()),
        ("skyform:task".to_string(), "task.slow".to_string()),
        ("skyform:attempt".to_string(), "1".to_string()),
    ]
    .into();
    let id = aws.allocate(&req).unwrap().provider_id;
    let mut rr =
        RunTaskRequest::new(id.clone(), "task.slow", plan.config.tasks[&TaskAddr("task.slow".into())].run.clone());
    rr.outputs = vec!["o".into()];
    let log = aws.run_task(&rr).unwrap().log;
    let task = plan.config.tasks[&TaskAddr("task.slow".into())].clone();
    let mut t =
        crate::running_task(task, placement, &st.lineage, &id, "tok-slow", skyform::clock::now_secs(), Some(log));
    t.allocations[0].provider = "aws".into();
    t.allocations[0].owner_tags = req.owner_tags.clone();
    st.tasks.insert(TaskAddr("task.slow".into()), t);
    store.commit(&st).unwrap();
    (d, gate, id)
}

/// An instance terminated directly in moto: the next `plan` notes it as changed outside
/// skyform with the action it implies, `-refresh=false` does not see it, `-refresh-only`
/// applied records it in the state without an EC2 call that changes anything, and the
/// plan after that runs the task again.
#[test]
fn an_instance_terminated_in_ec2_shows_in_plan_and_refresh_only_records_it() {
    let cloud = Cloud::start();
    let (d, gate, id) = running_on_aws(&cloud);
    let store = SledStore::new(d.path().join(".skyform/state"));
    let instance = id.strip_prefix("us-east-1/").unwrap().to_string();

    // While it runs, the refresh finds it: nothing changed.
    let o = run(d.path(), &["plan", "-detailed-exitcode"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("changed outside"), "{}", o.stdout);

    cloud.terminate(&instance);

    let o = run(d.path(), &["plan", "-detailed-exitcode"], &cloud);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("Note: Tasks have changed outside skyform\n"), "{}", o.stdout);
    let note = format!(
        "  # task.slow has changed outside skyform: {id} is gone (terminated outside skyform); it will be released and run again\n"
    );
    assert!(o.stdout.contains(&note), "{}", o.stdout);
    assert!(o.stdout.contains("# task.slow must be replaced (it changed outside skyform)"), "{}", o.stdout);

    // Without the refresh the plan goes by the state alone, which still says running.
    let o = run(d.path(), &["plan", "-refresh=false", "-detailed-exitcode"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("changed outside"), "{}", o.stdout);
    assert!(o.stdout.starts_with("No changes."), "{}", o.stdout);

    let serial = store.read().unwrap().serial;
    let o = run(d.path(), &["plan", "-refresh-only", "-detailed-exitcode", "-out=r.plan"], &cloud);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    let note = format!(
        "  # task.slow has changed outside skyform: {id} is gone (terminated outside skyform); applying this refresh-only plan records it in the state (the next plan runs it again)\n"
    );
    assert!(o.stdout.contains(&note), "{}", o.stdout);
    assert!(o.stdout.contains("Refresh-only plan: 1 task changed outside skyform; applying it records this in the state and touches no resource."), "{}", o.stdout);
    assert!(!o.stdout.contains("must be replaced"), "no task change: {}", o.stdout);
    assert_eq!(store.read().unwrap().serial, serial, "planning records nothing");

    // Applied: recorded in the state; no EC2 call but reads.
    let calls = cloud.proxy.seen().len();
    let o = run(d.path(), &["apply", "r.plan"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .contains("Apply complete! Recorded 1 change made outside skyform in the state; no resource was touched."),
        "{}",
        o.stdout
    );
    let writes: Vec<String> =
        cloud.proxy.seen()[calls..].iter().map(|(a, _)| a.clone()).filter(|a| !a.starts_with("Describe")).collect();
    assert!(writes.is_empty(), "apply of a refresh-only plan touched EC2: {writes:?}");
    assert_eq!(cloud.instances().len(), 1, "nothing was launched");
    let st = store.read().unwrap();
    let t = &st.tasks[&TaskAddr("task.slow".into())];
    assert_eq!(t.status, TaskStatus::Pending);
    assert!(t.allocations[0].released.is_some());
    assert_eq!(t.allocations[0].status, format!("changed outside skyform: {id} is gone (terminated outside skyform)"));
    assert_eq!(t.runs[0].status, TaskStatus::Preempted);
    drop(st);

    // The state now matches reality, and the next plan runs the task again.
    let o = run(d.path(), &["plan", "-refresh-only", "-detailed-exitcode"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("No changes. Your state matches the live allocations."), "{}", o.stdout);
    let o = run(d.path(), &["plan", "-detailed-exitcode"], &cloud);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("changed outside"), "{}", o.stdout);
    assert!(o.stdout.contains("# task.slow will be created"), "{}", o.stdout);
    assert!(o.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", o.stdout);
    std::fs::write(&gate, "").unwrap();
    let o = run(d.path(), &["apply", "-auto-approve"], &cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let st = state_json(d.path(), &cloud);
    assert_eq!(st["tasks"]["task.slow"]["status"], "succeeded");
    assert_eq!(cloud.instances().len(), 2, "the terminated instance and the rerun's");
    assert_eq!(cloud.running(), 0);
}

/// producer → consumer → sink on us-east-1a/b/c with large estimated outputs (50 GB, then
/// 200 GB: AWS's inter-AZ egress, $0.01/GB, is what placements differ by); the sink may
/// only run in zones ending in `a` or `c`. Everything is planned in us-east-1a. The runs
/// are tiny; the sink's result goes to `s3://results/KEY`.
const CHAIN: &str = r#"
policy {
  regions = ["aws:us-east-1:us-east-1a", "aws:us-east-1:us-east-1b", "aws:us-east-1:us-east-1c"]
  failover {
    max_cost_increase = 0.5
  }
}

task "producer" {
  resources {
    cloud = "aws"
    cpus  = "8+"
    spot  = false
  }
  outputs = { o = { size_gb = 50 } }
  run     = "echo p > $SKYFORM_OUTPUT_O/v"
  estimate {
    hours = 100
  }
}

task "consumer" {
  resources {
    cloud = "aws"
    cpus  = "8+"
    spot  = false
  }
  inputs  = { i = task.producer.outputs.o }
  outputs = { o = { size_gb = 200 } }
  run     = "cat $SKYFORM_INPUT_I/v > $SKYFORM_OUTPUT_O/v; echo c >> $SKYFORM_OUTPUT_O/v"
  estimate {
    hours = 100
  }
}

task "sink" {
  resources {
    cloud = "aws"
    cpus  = "8+"
    spot  = false
    zone  = "*[ac]"
  }
  inputs  = { i = task.consumer.outputs.o }
  outputs = { r = { size_gb = 0.001, uri = "s3://results/KEY" } }
  run     = "cat $SKYFORM_INPUT_I/v > $SKYFORM_OUTPUT_R/v"
  estimate {
    hours = 100
  }
}
"#;

/// Plans the chain (result under `s3://results/KEY`) and applies the saved plan with
/// `flags`. Returns the job, the plan, what apply printed and the zones RunInstances was
/// called in meanwhile.
fn apply_chain(cloud: &Cloud, key: &str, flags: &[&str]) -> (tempfile::TempDir, Plan, crate::Out, Vec<String>) {
    let hcl = format!("{}{}", aws_block(&cloud.proxy.endpoint), CHAIN.replace("KEY", key));
    let d = job(&[("main.sky.hcl", &hcl)]);
    let o = run(d.path(), &["plan", "-out=p.plan"], cloud);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plan = Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    for c in &plan.changes {
        assert_eq!(c.after.as_ref().unwrap().placement.zone, "us-east-1a", "{} is planned next to its data", c.address);
    }
    let calls = cloud.proxy.seen().len();
    let mut args = vec!["apply"];
    args.extend_from_slice(flags);
    args.push("p.plan");
    let o = run(d.path(), &args, cloud);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let tried = cloud.proxy.seen()[calls..]
        .iter()
        .filter(|(a, _)| a == "RunInstances")
        .map(|(_, z)| z.clone().unwrap_or_default())
        .collect();
    assert_eq!(cloud.get("results", &format!("{key}/v")).as_deref(), Some("p\nc\n"), "the chain's result");
    (d, plan, o, tried)
}

/// The whole job's cost (compute + storage + egress, the plan's figures) with every task
/// where the state says it ran.
fn whole_cost(plan: &Plan, st: &serde_json::Value) -> f64 {
    let catalog = skyform::catalog::Catalog::for_job(&plan.config, &Registry::builtin()).unwrap();
    let view = skyform::tracker::TrackerView { now: skyform::clock::now_secs(), ..Default::default() };
    let resolved = skyform::resolve::resolve(&plan.config, &catalog, &view).unwrap();
    let at: BTreeMap<TaskAddr, skyform::optimize::replan::Pin> = st["tasks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(a, t)| {
            let p = &t["placement"];
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            let l = Location::new(s("cloud"), s("region"), s("zone"));
            (TaskAddr(a.clone()), skyform::optimize::replan::Pin::new(l, s("instance_type"), p["spot"] == true))
        })
        .collect();
    skyform::optimize::replan::cost_of(&resolved, &at).unwrap()
}

fn zones(st: &serde_json::Value) -> Vec<String> {
    ["task.producer", "task.consumer", "task.sink"]
        .iter()
        .map(|a| st["tasks"][a]["placement"]["zone"].as_str().unwrap().to_string())
        .collect()
}

/// The consumer's planned zone has no capacity (InsufficientInstanceCapacity from EC2,
/// through the SDK's error parsing), after the producer finished there. Walking its ranked
/// alternatives (`-resolve-limit=0`) puts it in us-east-1b and the sink, finding
/// us-east-1a blocked, in us-east-1c: the 200 GB edge crosses zones. Re-solving moves the
/// consumer and the not-yet-started sink together to us-east-1c: only the 50 GB edge
/// crosses. Both figures are printed; the re-solve costs less and is in the state.
#[test]
fn failover_on_aws_re_solves_and_moves_the_unstarted_sink_for_less_than_the_ranked_alternatives() {
    let cloud = Cloud::start();
    cloud.put("results", ".keep", "");
    cloud.proxy.inject(
        Fault::run_instances("us-east-1a", "InsufficientInstanceCapacity").tagged("skyform:task", "task.consumer"),
    );

    // Walking the ranked alternatives.
    let (walking, plan, o, tried) = apply_chain(&cloud, "walked", &["-resolve-limit=0"]);
    assert!(
        o.stderr.contains("task.consumer: capacity_unavailable in aws/us-east-1/us-east-1a (")
            && o.stderr.contains("InsufficientInstanceCapacity"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("re-planned"), "{}", o.stderr);
    assert_eq!(tried, ["us-east-1a", "us-east-1a", "us-east-1b", "us-east-1c"]);
    let st = state_json(walking.path(), &cloud);
    assert_eq!(zones(&st), ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert!(st["tasks"]["task.consumer"]["replans"].is_null(), "{}", st["tasks"]["task.consumer"]);
    let walked = whole_cost(&plan, &st);

    // Re-solving.
    let (resolving, plan, o, tried) = apply_chain(&cloud, "re-solved", &[]);
    let itype = plan.changes[0].after.as_ref().unwrap().placement.instance_type.clone();
    let line = format!(
        "re-planned 2 tasks after capacity_unavailable in aws/us-east-1/us-east-1a: +$0.50 (walking task.consumer's ranked alternatives: +$2.50); task.consumer aws/us-east-1/us-east-1a ({itype}) → aws/us-east-1/us-east-1c ({itype}), task.sink aws/us-east-1/us-east-1a ({itype}) → aws/us-east-1/us-east-1c ({itype})"
    );
    assert!(o.stderr.contains(&line), "{line}\n{}", o.stderr);
    assert_eq!(tried, ["us-east-1a", "us-east-1a", "us-east-1c", "us-east-1c"]);
    let st = state_json(resolving.path(), &cloud);
    assert_eq!(zones(&st), ["us-east-1a", "us-east-1c", "us-east-1c"]);
    let re_solved = whole_cost(&plan, &st);
    let replans = st["tasks"]["task.consumer"]["replans"].as_array().unwrap();
    assert_eq!(replans.len(), 1, "{replans:?}");
    let r = &replans[0];
    let (delta, walk_delta) = (r["cost_delta"].as_f64().unwrap(), r["alternatives_delta"].as_f64().unwrap());
    println!("re-plan in the state: re-solved {delta:+.2}, walking the ranked alternatives {walk_delta:+.2}");
    println!("whole job, walking the ranked alternatives: ${walked:.2}; re-solved: ${re_solved:.2}");
    assert_eq!(
        (r["kind"].as_str(), r["location"].as_str()),
        (Some("capacity_unavailable"), Some("aws/us-east-1/us-east-1a"))
    );
    assert_eq!(r["moved"].as_array().unwrap().len(), 2);
    assert!(r["fallback"].is_null(), "{r}");
    // 50 GB us-east-1a → us-east-1c at $0.01/GB, against that plus 200 GB us-east-1b → us-east-1c.
    assert!((delta - 0.50).abs() < 1e-6, "{r}");
    assert!((walk_delta - 2.50).abs() < 1e-6, "{r}");
    assert!((walked - re_solved - 2.00).abs() < 1e-6, "walked ${walked}, re-solved ${re_solved}");
    assert_eq!(cloud.running(), 0, "{:?}", cloud.instances());
}
