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
use skyform_provider_aws::testing::set_client_env;
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
