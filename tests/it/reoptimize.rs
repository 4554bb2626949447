//! Scheduled re-optimization through the CLI: a running spot task on the local provider,
//! whose market reads a price trace the test rewrites; `tracker refresh` (or the refresh of
//! the running task's cloud that `plan` itself does) then `plan -detailed-exitcode` proposes moving it only when the saving over its remaining work,
//! net of the work lost and the transfers, passes `policy.reoptimize`.

use crate::{job, skyform};
use skyform::config::TaskAddr;
use skyform::plan::Plan;
use skyform::providers::Registry;
use skyform::state::{SledStore, StateStore, TaskStatus};
use skyform_provider::*;
use std::collections::BTreeMap;

const JOB: &str = r#"
provider "local" {
  zones          = ["zone-a", "zone-b"]
  price_trace    = "prices.csv"
  instance_types = [{ name = "local.big", vcpus = 8, memory_gb = 32, price = 10, spot_price = 3 }]
}

policy {
  reoptimize {
    min_saving     = "10%"
    min_saving_usd = 5
  }
}

task "train" {
  resources {
    spot = true
  }
  run = "sleep 600"
  estimate {
    hours = 10
  }
}
"#;

/// Rewrites the price trace the local market reads (the tracker does not know yet).
fn trace(dir: &std::path::Path, a: f64, b: f64) {
    let text = format!("at,zone,instance_type,price\n0,zone-a,local.big,{a}\n0,zone-b,local.big,{b}\n");
    std::fs::write(dir.join("prices.csv"), text).unwrap();
}

/// The latest observed spot price of local.big in `zone` (`tracker show -json`).
fn observed(dir: &std::path::Path, zone: &str) -> f64 {
    let o = skyform(dir, &["tracker", "show", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let row = v["spot"].as_array().unwrap().iter().find(|r| r["location"]["zone"] == zone).unwrap().clone();
    row["price"].as_f64().unwrap()
}

/// Writes the local market's price trace (zone-a, zone-b) and records it in the tracker.
pub(crate) fn prices(dir: &std::path::Path, a: f64, b: f64) {
    trace(dir, a, b);
    let o = skyform(dir, &["tracker", "refresh"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
}

/// The dollar figure after `label` in `text` (e.g. `saves $16.00`).
fn dollars_after(text: &str, label: &str) -> f64 {
    let i = text.find(label).unwrap_or_else(|| panic!("no `{label}` in {text}")) + label.len();
    let rest = text[i..].trim_start().trim_start_matches('$');
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap().parse().unwrap()
}

/// The job planned at prices (3.00, 3.20), and `task.train` running in zone-a for an hour:
/// a real process, recorded in state. Returns the job directory, the provider and the
/// run's allocation.
fn running(hcl: &str) -> (tempfile::TempDir, std::sync::Arc<dyn Provider>, String) {
    let d = job(&[("main.sky.hcl", hcl)]);
    prices(d.path(), 3.0, 3.2);
    let o = skyform(d.path(), &["plan", "-out=p.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plan = Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    let placement = plan.changes[0].after.as_ref().unwrap().placement.clone();
    assert_eq!((placement.zone.as_str(), placement.spot, placement.hourly), ("zone-a", true, 3.0));

    // The task has been running in zone-a for an hour: a real process, recorded in state.
    let providers = Registry::builtin().providers(&plan.config, &BuildContext::new(d.path())).unwrap();
    let local = providers["local"].clone();
    let store = SledStore::new(d.path().join(".skyform/state"));
    let mut st = store.read().unwrap();
    store.commit(&st).unwrap();
    st = store.read().unwrap();
    let tags: BTreeMap<String, String> = [("skyform:lineage".to_string(), st.lineage.clone())].into();
    let mut req =
        AllocateRequest::new("task.train", Location::new("local", "local", "zone-a"), "local.big", "tok-train");
    req.spot = true;
    req.owner_tags = tags.clone();
    let id = local.allocate(&req).unwrap().provider_id;
    let log = local.run_task(&RunTaskRequest::new(id.clone(), "task.train", "sleep 600")).unwrap().log;
    let task = plan.config.tasks[&TaskAddr("task.train".into())].clone();
    let started = skyform::clock::now_secs() - 3600;
    st.tasks.insert(
        TaskAddr("task.train".into()),
        crate::running_task(task, placement, &st.lineage, &id, "tok-train", started, Some(log)),
    );
    store.commit(&st).unwrap();

    (d, local, id)
}

#[test]
fn a_running_task_moves_only_when_the_net_saving_passes_the_hysteresis() {
    let (d, local, id) = running(JOB);
    // Prices wobble: zone-b is cheaper for a fresh start ($26 against $31), but moving
    // the running task saves only ~$1.90 of its remaining ~$27.90: it stays.
    prices(d.path(), 3.1, 2.6);
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train keeps running: price in local/zone-a (spot) rose from $3.00/h to $3.10/h, local/zone-b (spot) costs $2.60/h;"), "{}", o.stdout);
    assert!(o.stdout.contains("under policy.reoptimize (10% and $5.00), it stays"), "{}", o.stdout);
    let saving = dollars_after(&o.stdout, "moving would save");
    let remaining = dollars_after(&o.stdout, "of the remaining");
    println!("wobble: would save ${saving:.2} of ${remaining:.2}");
    assert!((saving - 1.90).abs() < 0.05 && (remaining - 27.90).abs() < 0.05, "{}", o.stdout);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);

    // Prices move: zone-a rises to $4, zone-b falls to $2. Starting over there (10 h at
    // $2) beats the remaining 9 h at $4 by ~$16: migrate, exit 2.
    prices(d.path(), 4.0, 2.0);
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train will be migrated (a cheaper placement)"), "{}", o.stdout);
    assert!(o.stdout.contains("# price in local/zone-a (spot) rose from $3.00/h to $4.00/h, local/zone-b (spot) costs $2.00/h; moving saves $"), "{}", o.stdout);
    assert!(
        o.stdout.contains("after $0.00 of transfers (no checkpoint: it starts over there (10.0 h))"),
        "{}",
        o.stdout
    );
    let saving = dollars_after(&o.stdout, "moving saves");
    let remaining = dollars_after(&o.stdout, "of the remaining");
    println!("moved: saves ${saving:.2} of ${remaining:.2}");
    assert!((saving - 16.0).abs() < 0.05 && (remaining - 36.0).abs() < 0.05, "{}", o.stdout);
    let j = skyform(d.path(), &["plan", "-out=m.plan"]);
    assert_eq!(j.code, 0, "{}", j.stderr);
    let j = skyform(d.path(), &["show", "-json", "m.plan"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let rc = &v["resource_changes"][0];
    assert_eq!(rc["change"]["actions"][0], "update");
    assert!(rc["reoptimize"].as_str().unwrap().contains("moving saves"), "{rc}");

    local.release(&ReleaseRequest::new(id)).unwrap();
}

/// `plan` records fresh spot prices of the clouds its running tasks are on before it
/// weighs a move (no `tracker refresh` needed); `-refresh=false` plans from the tracker as
/// it is.
#[test]
fn plan_refreshes_the_spot_prices_of_running_tasks_unless_refresh_is_false() {
    let (d, local, id) = running(JOB);
    // The market moves (zone-a $4, zone-b $2); the tracker still holds $3.00 and $3.20.
    trace(d.path(), 4.0, 2.0);
    let o = skyform(d.path(), &["plan", "-refresh=false", "-detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);
    assert_eq!((observed(d.path(), "zone-a"), observed(d.path(), "zone-b")), (3.0, 3.2), "nothing recorded");

    // The same move as after `tracker refresh`: ~$16 saved over the remaining work.
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train will be migrated (a cheaper placement)"), "{}", o.stdout);
    assert!(o.stdout.contains("# price in local/zone-a (spot) rose from $3.00/h to $4.00/h, local/zone-b (spot) costs $2.00/h; moving saves $"), "{}", o.stdout);
    let saving = dollars_after(&o.stdout, "moving saves");
    assert!((saving - 16.0).abs() < 0.05, "{}", o.stdout);
    assert!(!o.stderr.contains("Warning"), "{}", o.stderr);
    assert_eq!((observed(d.path(), "zone-a"), observed(d.path(), "zone-b")), (4.0, 2.0), "the plan recorded them");

    // A market that cannot be read is a warning, never a failed plan.
    std::fs::remove_file(d.path().join("prices.csv")).unwrap();
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("Warning: could not refresh the spot prices of local ("), "{}", o.stderr);
    assert!(o.stderr.contains("the plan uses the tracker's last observations."), "{}", o.stderr);
    local.release(&ReleaseRequest::new(id)).unwrap();
}

const TINY: &str = r#"
task "tiny" {
  outputs = { o = { size_gb = 0.001 } }
  run     = "echo hi > $SKYFORM_OUTPUT_O/x"
  estimate {
    hours = 0.1
  }
}
"#;

/// A running task whose process was killed outside skyform: `plan -refresh-only` shows
/// the drift (exit 2 with -detailed-exitcode) and changes no task; applying the saved plan
/// records it in the state without touching anything; the state then matches reality, and
/// the next plan runs the task again (a create: nothing of it is left).
#[test]
fn refresh_only_shows_drift_and_applying_it_records_it_in_the_state() {
    let d = job(&[("main.sky.hcl", TINY)]);
    let o = skyform(d.path(), &["plan", "-out=p.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plan = Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    let placement = plan.changes[0].after.as_ref().unwrap().placement.clone();
    let store = SledStore::new(d.path().join(".skyform/state"));
    let mut st = store.read().unwrap();
    let task = plan.config.tasks[&TaskAddr("task.tiny".into())].clone();
    st.tasks.insert(
        TaskAddr("task.tiny".into()),
        crate::running_task(task, placement, &st.lineage, "lp-gone", "tok-gone", 1, None),
    );
    store.commit(&st).unwrap();
    let serial = store.read().unwrap().serial;

    let o = skyform(d.path(), &["plan", "-refresh-only", "-detailed-exitcode", "-out=r.plan"]);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("  # task.tiny has changed outside skyform: lp-gone is gone (terminated outside skyform); applying this refresh-only plan records it in the state (the next plan runs it again)\n"), "{}", o.stdout);
    assert!(o.stdout.contains("Refresh-only plan: 1 task changed outside skyform; applying it records this in the state and touches no resource."), "{}", o.stdout);
    assert!(!o.stdout.contains("must be replaced"), "no task change: {}", o.stdout);
    assert_eq!(store.read().unwrap().serial, serial, "planning records nothing");

    let o = skyform(d.path(), &["apply", "r.plan"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .contains("Apply complete! Recorded 1 change made outside skyform in the state; no resource was touched."),
        "{}",
        o.stdout
    );
    let st = store.read().unwrap();
    let t = &st.tasks[&TaskAddr("task.tiny".into())];
    assert_eq!(t.status, TaskStatus::Pending);
    assert!(t.allocations[0].released.is_some());
    assert_eq!(t.allocations[0].status, "changed outside skyform: lp-gone is gone (terminated outside skyform)");
    assert_eq!(t.runs[0].status, TaskStatus::Preempted);
    assert!(!d.path().join(".skyform/local").join("lp-gone").exists(), "nothing was created");

    // The state now matches reality; the next apply runs the task again.
    let o = skyform(d.path(), &["plan", "-refresh-only", "-detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("No changes. Your state matches the live allocations."), "{}", o.stdout);
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.tiny will be created"), "{}", o.stdout);
    assert!(o.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", o.stdout);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(store.read().unwrap().tasks[&TaskAddr("task.tiny".into())].status, TaskStatus::Succeeded);
}

/// With a checkpoint, a move within the region continues from it: only the work left is
/// paid for there, so the same prices that leave a task without one in place move it.
#[test]
fn a_checkpointed_task_is_costed_by_the_work_left_when_it_moves() {
    let hcl = JOB.replace("min_saving_usd = 5", "min_saving_usd = 4").replace(
        "run = \"sleep 600\"",
        "run = \"sleep 600\"\n  checkpoint {\n    path  = \"ckpt\"\n    every = \"30m\"\n  }",
    );
    let (d, local, id) = running(&hcl);
    prices(d.path(), 3.1, 2.6);
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 2, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train will be migrated (a cheaper placement)"), "{}", o.stdout);
    assert!(o.stdout.contains("(from its checkpoint: 9.0 h left there)"), "{}", o.stdout);
    // 9 h left at $3.10 against 9 h at $2.60.
    let saving = dollars_after(&o.stdout, "moving saves");
    assert!((saving - 4.50).abs() < 0.05, "{}", o.stdout);
    local.release(&ReleaseRequest::new(id)).unwrap();
}

/// Resuming takes time (`checkpoint { restart }`), paid at the new price: the same move
/// that saves $4.50 with an instant restart saves $1.90 with an hour's, and it stays.
#[test]
fn a_checkpoint_s_restart_time_counts_against_a_move() {
    let hcl = JOB.replace("min_saving_usd = 5", "min_saving_usd = 4").replace(
        "run = \"sleep 600\"",
        "run = \"sleep 600\"\n  checkpoint {\n    path    = \"ckpt\"\n    every   = \"30m\"\n    restart = \"1h\"\n  }",
    );
    let (d, local, id) = running(&hcl);
    prices(d.path(), 3.1, 2.6);
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("(from its checkpoint: 9.0 h left there + 1.0 h to restart)"), "{}", o.stdout);
    // 9 h left at $3.10 against 9 h + 1 h at $2.60.
    let saving = dollars_after(&o.stdout, "moving would save");
    assert!((saving - 1.90).abs() < 0.05, "{}", o.stdout);
    assert!(o.stdout.contains("No changes."), "{}", o.stdout);
    local.release(&ReleaseRequest::new(id)).unwrap();
}

/// A `restart` that is not a duration is an error at its line.
#[test]
fn a_checkpoint_restart_that_is_not_a_duration_is_an_error_at_its_line() {
    let hcl = JOB.replace("run = \"sleep 600\"", "run = \"sleep 600\"\n  checkpoint {\n    restart = \"soon\"\n  }");
    let d = job(&[("main.sky.hcl", hcl.as_str())]);
    let o = skyform(d.path(), &["validate"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    let line = hcl.lines().position(|l| l.contains("restart = \"soon\"")).unwrap() + 1;
    assert!(o.stderr.contains(&format!("main.sky.hcl:{line}")), "{}", o.stderr);
    assert!(o.stderr.contains("`restart` = \"soon\" must be a duration such as \"30m\" or \"1h\"."), "{}", o.stderr);
}

/// `apply` of a migration of a running checkpointed task: the old run is released (its
/// checkpoint synced), the task starts at the new placement from the checkpoint and
/// finishes with the output an unmigrated run gives.
#[test]
fn apply_migrates_a_running_checkpointed_task_and_it_continues_from_its_checkpoint() {
    let marks = tempfile::tempdir().unwrap();
    let starts = marks.path().join("starts");
    let run = format!(
        "n=$(cat $SKYFORM_CHECKPOINT/n 2>/dev/null || echo 0); echo start $n >> {s}; while [ $n -lt 40 ]; do n=$((n+1)); echo $n > $SKYFORM_CHECKPOINT/n; sleep 0.25; done; echo $n > $SKYFORM_OUTPUT_O/n",
        s = starts.display()
    );
    let hcl = JOB.replace(
        "run = \"sleep 600\"",
        &format!(
            "outputs = {{ o = {{ size_gb = 0.001, uri = \"./result\" }} }}\n  run = \"{}\"\n  checkpoint {{\n    path  = \"ckpt\"\n    every = \"1s\"\n  }}",
            run.replace('"', "\\\"")
        ),
    );
    let d = job(&[("main.sky.hcl", hcl.as_str())]);
    prices(d.path(), 3.0, 3.2);
    let o = skyform(d.path(), &["plan", "-out=p.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plan = Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    let task = plan.config.tasks[&TaskAddr("task.train".into())].clone();
    // Start the run as apply would (its checkpoint under the zone's store), recorded as
    // running for an hour.
    let placement = plan.changes[0].after.as_ref().unwrap().placement.clone();
    let providers = Registry::builtin().providers(&plan.config, &BuildContext::new(d.path())).unwrap();
    let local = providers["local"].clone();
    let store = SledStore::new(d.path().join(".skyform/state"));
    let st0 = store.read().unwrap();
    store.commit(&st0).unwrap();
    let mut st = store.read().unwrap();
    let tags: BTreeMap<String, String> = [("skyform:lineage".to_string(), st.lineage.clone())].into();
    let mut req = AllocateRequest::new("task.train", Location::new("local", "local", "zone-a"), "local.big", "tok-m");
    req.spot = true;
    req.owner_tags = tags.clone();
    let id = local.allocate(&req).unwrap().provider_id;
    let mut rr = RunTaskRequest::new(id.clone(), "task.train", task.run.clone());
    rr.outputs = vec!["o".into()];
    rr.checkpoint = Some(format!("local://skyform-{}/checkpoints/task.train/ckpt", &st.lineage[..8]));
    rr.checkpoint_every_secs = 1;
    let log = local.run_task(&rr).unwrap().log;
    let started = skyform::clock::now_secs() - 3600;
    st.tasks.insert(
        TaskAddr("task.train".into()),
        crate::running_task(task, placement, &st.lineage, &id, "tok-m", started, Some(log)),
    );
    store.commit(&st).unwrap();
    drop(providers);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    prices(d.path(), 4.0, 2.0);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train will be migrated (a cheaper placement)"), "{}", o.stdout);
    assert!(o.stdout.contains("from its checkpoint: 9.0 h left there"), "{}", o.stdout);
    let starts: Vec<u32> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("start ").parse().unwrap())
        .collect();
    println!("the runs started at {starts:?}");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0], 0);
    assert!(starts[1] >= 4, "the migrated run continued from the checkpoint: {starts:?}");
    assert_eq!(std::fs::read_to_string(d.path().join("result/n")).unwrap(), "40\n", "the output of an unmigrated run");
    let st = store.read().unwrap();
    let t = &st.tasks[&TaskAddr("task.train".into())];
    assert_eq!(t.status, TaskStatus::Succeeded);
    assert_eq!(t.placement.as_ref().unwrap().zone, "zone-b");
    assert!(t.allocations.iter().all(|a| a.released.is_some()), "nothing left allocated");
}
