//! Plan, state and diff from the command line: the Terraform workflow with cost in it.

use super::*;
use skyform::config::TaskAddr;
use skyform::plan::Plan;
use skyform::state::{PlacementRecord, SledStore, State, StateStore, TaskState, TaskStatus};

fn copy_job(src: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(root().join(src)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
    }
    d
}

/// Writes a state in which every task of a saved plan succeeded where it was planned.
fn mark_applied(dir: &Path, plan_file: &str, status: TaskStatus) -> State {
    let plan = Plan::decode(&std::fs::read_to_string(dir.join(plan_file)).unwrap()).unwrap();
    let store = SledStore::new(dir.join(".skyform/state"));
    let mut st = store.read().unwrap();
    for c in &plan.changes {
        let task = plan.config.tasks[&c.address].clone();
        st.tasks.insert(
            c.address.clone(),
            TaskState {
                spec_hash: task.spec_hash.clone(),
                spec: Some(task),
                status,
                placement: c.after.as_ref().map(|a| a.placement.clone()),
                ..Default::default()
            },
        );
    }
    store.commit(&st).unwrap()
}

fn plan_text(dir: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["plan"];
    args.extend_from_slice(extra);
    skyform(dir, &args)
}

#[test]
fn first_plan_noop_replace_destroy() {
    let d = copy_job("testdata/jobs/plan-basic");
    let first = plan_text(d.path(), &["-detailed-exitcode", "-out", "first.plan"]);
    assert_eq!(first.code, 2, "changes present: {}", first.stderr);
    insta::assert_snapshot!("plan-first", first.stdout);
    assert!(first.stdout.contains("Plan: 3 to add, 0 to change, 0 to destroy. Cost: $0.00 → "));
    assert!(!first.stdout.contains("k-123456"), "sensitive values never print");

    mark_applied(d.path(), "first.plan", TaskStatus::Succeeded);
    let noop = plan_text(d.path(), &["-detailed-exitcode"]);
    assert_eq!(noop.code, 0, "{}", noop.stderr);
    assert!(noop.stdout.starts_with("No changes. Your job matches the configuration."), "{}", noop.stdout);

    // A spec change replaces the task and re-runs what reads its output.
    let main = d.path().join("main.sky.hcl");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        text.replace("--out $SKYFORM_OUTPUT_RESULT/result", "--fast --out $SKYFORM_OUTPUT_RESULT/result"),
    )
    .unwrap();
    let replace = plan_text(d.path(), &[]);
    assert_eq!(replace.code, 0, "{}", replace.stderr);
    insta::assert_snapshot!("plan-replace", replace.stdout);
    std::fs::write(&main, &text).unwrap();

    // A task removed from the configuration is destroyed.
    let without_report = text[..text.find("task \"report\"").unwrap()].to_string()
        + "output \"result\" {\n  value = task.crunch.outputs.result\n}\n";
    std::fs::write(&main, without_report).unwrap();
    let destroy = plan_text(d.path(), &[]);
    insta::assert_snapshot!("plan-destroy", destroy.stdout);
    assert!(destroy.stdout.contains("Plan: 0 to add, 0 to change, 1 to destroy."), "{}", destroy.stdout);
    std::fs::write(&main, &text).unwrap();

    // -replace and -target
    let r = plan_text(d.path(), &["-replace=task.fetch", "-target=task.crunch"]);
    assert!(r.stdout.contains("# task.fetch must be replaced (as requested with -replace)"), "{}", r.stdout);
    assert!(r.stdout.contains("# task.crunch must be replaced (an input changes)"), "{}", r.stdout);
    assert!(!r.stdout.contains("# task.report"), "-target keeps only crunch and what it depends on");
    let bad = plan_text(d.path(), &["-target=task.crnch"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("did you mean task.crunch?"), "{}", bad.stderr);
    let all = plan_text(d.path(), &["-destroy"]);
    assert!(all.stdout.contains("Plan: 0 to add, 0 to change, 3 to destroy."), "{}", all.stdout);
}

#[test]
fn a_cheaper_placement_migrates_a_pending_task() {
    let d = copy_job("testdata/jobs/plan-basic");
    assert_eq!(plan_text(d.path(), &["-out", "p.plan"]).code, 0);
    let store = SledStore::new(d.path().join(".skyform/state"));
    let mut st = mark_applied(d.path(), "p.plan", TaskStatus::Succeeded);
    // crunch is still pending, on a dearer machine than the optimizer now picks.
    let crunch = st.tasks.get_mut(&TaskAddr("task.crunch".into())).unwrap();
    crunch.status = TaskStatus::Pending;
    crunch.placement = Some(PlacementRecord {
        cloud: "local".into(),
        region: "local".into(),
        zone: "zone-b".into(),
        instance_type: "local.gpu4".into(),
        accelerator: Some("LocalGPU:4".into()),
        spot: false,
        hourly: 1.6,
        hours: 2.0,
        cost: 3.2,
    });
    crunch.runs.push(skyform::state::Run {
        attempt: 1,
        status: TaskStatus::Pending,
        exit_code: None,
        log: None,
        start: 1,
        end: None,
        cost: 0.0,
    });
    store.commit(&st).unwrap();
    let out = plan_text(d.path(), &[]);
    insta::assert_snapshot!("plan-migrate", out.stdout);
    assert!(out.stdout.contains("# task.crunch will be migrated (a cheaper placement)"), "{}", out.stdout);
    assert!(out.stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy. Cost: $3.2"), "{}", out.stdout);
}

#[test]
fn show_json_schema_and_markdown() {
    let d = copy_job("testdata/jobs/plan-basic");
    assert_eq!(plan_text(d.path(), &["-out", "p.plan"]).code, 0);
    let o = skyform(d.path(), &["show", "-json", "p.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["format_version"], "1.0");
    let rc = v["resource_changes"].as_array().unwrap();
    assert_eq!(rc.len(), 3);
    for c in rc {
        assert!(c["address"].as_str().unwrap().starts_with("task."));
        assert_eq!(c["change"]["actions"], serde_json::json!(["create"]));
        assert!(c["change"]["before"].is_null());
        assert!(c["change"]["after"]["cloud"].is_string());
        for k in ["before", "after", "delta"] {
            let s = c["cost"][k].as_str().unwrap();
            assert!(s.parse::<rust_decimal::Decimal>().is_ok() && s.contains('.'), "money as a decimal string: {s}");
        }
    }
    // Each edge's data, as the text plan's egress lines: on the consumer and the producer.
    let after = |addr: &str| rc.iter().find(|c| c["address"] == addr).unwrap()["change"]["after"].clone();
    let edge = serde_json::json!([{"what": "raw from task.fetch", "size_gb": 5.0, "cost": "0.00"}]);
    assert_eq!(after("task.crunch")["egress_in"], edge, "the same zone: free");
    assert_eq!(after("task.fetch")["egress_out"][0]["what"], "raw to task.crunch");
    assert_eq!(after("task.fetch")["egress_in"], serde_json::json!([]));
    assert_eq!(v["cost"]["currency"], "USD");
    assert!(v["cost"]["after"].as_str().unwrap().parse::<rust_decimal::Decimal>().is_ok());
    let md = skyform(d.path(), &["show", "-format=markdown", "p.plan"]);
    assert!(md.stdout.starts_with("<!-- skyform-plan-comment job="), "{}", md.stdout);
    assert!(md.stdout.contains("| `task.crunch` | create |"));
    assert!(md.stdout.contains("<details><summary>Details</summary>"));
    assert!(md.stdout.len() < 65_536);
    // plan -json is a stream of events.
    let ev = plan_text(d.path(), &["-json"]);
    let lines: Vec<serde_json::Value> = ev.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["type"], "version");
    assert!(lines.iter().all(|l| l["@level"].is_string() && l["@message"].is_string() && l["@timestamp"].is_string()));
    assert_eq!(lines.last().unwrap()["type"], "change_summary");
    assert_eq!(lines.iter().filter(|l| l["type"] == "planned_change").count(), 3);
}

#[test]
fn guardrails_fail_the_plan_with_the_rule_named() {
    let d = copy_job("testdata/jobs/plan-basic");
    let main = d.path().join("main.sky.hcl");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("policy {{\n  fail_if {{\n    total_cost_over = 0.01\n  }}\n}}\n\n{text}")).unwrap();
    let o = plan_text(d.path(), &[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("guardrail failed: policy.fail_if.total_cost_over: the planned cost $"), "{}", o.stderr);
}

#[test]
fn state_push_refusals_and_round_trip() {
    let d = copy_job("testdata/jobs/plan-basic");
    assert_eq!(plan_text(d.path(), &["-out", "p.plan"]).code, 0);
    let st = mark_applied(d.path(), "p.plan", TaskStatus::Succeeded);
    let pulled = skyform(d.path(), &["state", "pull"]);
    assert_eq!(State::from_json(&pulled.stdout).unwrap(), st, "pull gives what was committed");
    // Round trip into another state.
    std::fs::write(d.path().join("s.json"), &pulled.stdout).unwrap();
    let o = skyform(d.path(), &["state", "push", "-state=other", "s.json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(skyform(d.path(), &["state", "pull", "-state=other"]).stdout, pulled.stdout);
    // Another lineage is refused, then forced.
    let mut other = st.clone();
    other.lineage = "00000000-0000-0000-0000-000000000000".into();
    std::fs::write(d.path().join("o.json"), other.to_json()).unwrap();
    let o = skyform(d.path(), &["state", "push", "o.json"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("lineage"), "{}", o.stderr);
    // A lower serial is refused.
    let mut low = st.clone();
    low.serial = 0;
    std::fs::write(d.path().join("l.json"), low.to_json()).unwrap();
    let o = skyform(d.path(), &["state", "push", "l.json"]);
    assert!(o.stderr.contains("lower"), "{}", o.stderr);
    assert_eq!(skyform(d.path(), &["state", "push", "-force", "o.json"]).code, 0);
    assert_eq!(State::from_json(&skyform(d.path(), &["state", "pull"]).stdout).unwrap().lineage, other.lineage);
    // list / show / rm
    let l = skyform(d.path(), &["state", "list"]);
    assert_eq!(l.stdout, "task.crunch\ntask.fetch\ntask.report\n");
    let o = skyform(d.path(), &["state", "rm", "task.report"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(skyform(d.path(), &["state", "list"]).stdout, "task.crunch\ntask.fetch\n");
}

#[test]
fn a_second_writer_waits_then_fails_naming_the_holder() {
    let d = copy_job("testdata/jobs/plan-basic");
    let state = d.path().join(".skyform/state");
    // This test process holds the lock, as a running apply would.
    let guard = skyform::state::lock::acquire(&state, "apply", std::time::Duration::ZERO, || {}).unwrap();
    let t0 = std::time::Instant::now();
    let o = skyform(d.path(), &["state", "rm", "task.x", "-lock-timeout=1s"]);
    assert!(t0.elapsed() >= std::time::Duration::from_secs(1), "it waited");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Acquiring state lock"), "{}", o.stderr);
    assert!(o.stderr.contains(&guard.info.id) && o.stderr.contains("Operation: apply"), "{}", o.stderr);
    // force-unlock needs the right id.
    assert_eq!(skyform(d.path(), &["force-unlock", "-force", "nope"]).code, 1);
    let o = skyform(d.path(), &["force-unlock", "-force", &guard.info.id]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    drop(guard);
}

#[test]
fn graph_and_output() {
    let d = copy_job("testdata/jobs/plan-basic");
    let g = skyform(d.path(), &["graph"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    assert!(g.stdout.starts_with("digraph"));
    assert!(g.stdout.contains("\"task.fetch\" -> \"task.crunch\" [label = \"raw: 5 GB\"]"), "{}", g.stdout);
    let m = skyform(d.path(), &["graph", "-format=mermaid"]);
    assert!(m.stdout.contains("task_fetch -->|raw: 5 GB| task_crunch"), "{}", m.stdout);
    let o = skyform(d.path(), &["output", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["result"]["value"]["task_output"], "task.crunch.outputs.result");
}

/// The plan is a function of its inputs: two `plan -out` runs of the same job against the
/// same state, catalog and tracker write byte-identical files (no clock, no solve time).
#[test]
fn two_saved_plans_of_the_same_inputs_are_identical() {
    let d = copy_job("testdata/jobs/plan-basic");
    let a = skyform(d.path(), &["plan", "-out=a.plan"]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = skyform(d.path(), &["plan", "-out=b.plan"]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let (x, y) = (std::fs::read(d.path().join("a.plan")).unwrap(), std::fs::read(d.path().join("b.plan")).unwrap());
    assert!(x == y, "the two plan files differ");
    assert!(a.stderr.contains("Optimized in "), "the solve time is reported outside the plan: {}", a.stderr);
}

#[test]
fn the_plan_says_why_a_gpu_host_is_large() {
    let d = job(&[(
        "main.sky.hcl",
        r#"
provider "aws" {}
provider "gcp" {}

task "train" {
  resources {
    accelerators = "V100:8"
    spot         = true
  }
  run = "train"
  estimate {
    hours = 10
  }
}

task "small" {
  resources {
    accelerators = "V100:8"
    cpus         = "1+"
    spot         = true
  }
  run = "train"
  estimate {
    hours = 10
  }
}
"#,
    )]);
    let out = plan_text(d.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.matches("(the default host for V100:8)").count(), 1, "only the task without cpus");
    insta::assert_snapshot!("plan-gpu-default-host", out.stdout);
}

#[test]
fn a_plan_from_a_stopped_search_prints_the_gap() {
    let d = copy_job("testdata/jobs/plan-basic");
    let out = plan_text(d.path(), &["-out", "p.plan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut plan = Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    assert!(
        !skyform::cli::views::plan::text(&plan, false).contains("stopped the optimizer"),
        "a proven plan says nothing"
    );
    plan.report.as_mut().unwrap().stopped = vec![skyform::optimize::Stopped {
        reason: "the time limit (60 s)".into(),
        objective: "cost".into(),
        value: 412.3,
        bound: 398.05,
    }];
    let text = skyform::cli::views::plan::text(&plan, false);
    assert!(
        text.contains(
            "Warning: the time limit (60 s) stopped the optimizer before its proof; the best placement found has a cost of $412.30, and the optimum is at least $398.05."
        ),
        "{text}"
    );
}
