//! Terraform's CLI habits in CI: `-input=false`, `-lock=false`, `-refresh=false`,
//! `-compact-warnings`, `SKYFORM_IN_AUTOMATION`, and money that never reads `$-0.00`.

use super::*;
use skyform::config::TaskAddr;
use skyform::state::{PlacementRecord, SledStore, StateStore};

/// A job whose one task costs a fraction of a cent (it rounds to $0.00).
const TINY: &str = "task \"tiny\" {\n  run = \"echo hi\"\n\n  estimate {\n    hours = 0.001\n  }\n}\n";

#[test]
fn apply_and_destroy_run_unattended_with_input_false() {
    let d = job(&[("main.sky.hcl", TINY)]);
    // Approval is needed and nobody can give it: refused, nothing runs.
    let o = skyform(d.path(), &["apply", "-input=false"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(
        o.stderr.contains(
            "Error: apply needs approval and -input=false forbids the prompt; run skyform apply -auto-approve"
        ),
        "{}",
        o.stderr
    );
    // No terminal on stdin: never a prompt either.
    let o = skyform(d.path(), &["apply"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("apply needs approval and there is no terminal to ask on"), "{}", o.stderr);
    assert_eq!(skyform(d.path(), &["state", "list"]).stdout, "", "nothing ran");

    let o = skyform(d.path(), &["apply", "-auto-approve", "-input=false"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("Apply complete! Resources: 1 added, 0 changed, 0 destroyed. Cost: $0.00 (planned $0.00)."),
        "{}",
        o.stdout
    );

    // A plan from $0.00 to $0.00 has no percentage and no negative zero.
    let p = skyform(d.path(), &["plan", "-destroy", "-input=false", "-lock=false"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    insta::assert_snapshot!("plan-zero-to-zero", p.stdout);
    assert!(p.stdout.contains("Cost: $0.00 → $0.00 (+$0.00)."), "{}", p.stdout);

    let o = skyform(d.path(), &["destroy", "-input=false"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("destroy needs approval"), "{}", o.stderr);
    let o = skyform(d.path(), &["destroy", "-auto-approve", "-input=false"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    insta::assert_snapshot!("destroy-zero", o.stdout);
    assert!(!o.stdout.contains("-0.00"), "{}", o.stdout);
    assert_eq!(skyform(d.path(), &["state", "list"]).stdout, "");
}

#[test]
fn lock_false_skips_the_lock_of_a_local_state() {
    let d = job(&[("main.sky.hcl", TINY)]);
    let state = d.path().join(".skyform/state");
    let guard = skyform::state::lock::acquire(&state, "apply", std::time::Duration::ZERO, || {}).unwrap();
    let o = skyform(d.path(), &["state", "rm", "task.tiny"]);
    assert_eq!(o.code, 1, "the lock is held");
    assert!(o.stderr.contains(&guard.info.id), "{}", o.stderr);
    let o = skyform(d.path(), &["plan", "-input=false", "-lock=false"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = skyform(d.path(), &["state", "rm", "-lock=false", "task.tiny"]);
    assert!(!o.stderr.contains("lock"), "no lock taken: {}", o.stderr);
    drop(guard);
}

#[test]
fn automation_quiets_next_step_hints() {
    let d = job(&[("main.sky.hcl", TINY)]);
    let o = skyform(d.path(), &["plan", "-out=p.plan"]);
    assert!(o.stdout.contains("To perform exactly these actions, run: skyform apply p.plan"), "{}", o.stdout);
    let o = skyform_env(d.path(), &["plan", "-out=p.plan"], &[("SKYFORM_IN_AUTOMATION", "1")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("Saved the plan to: p.plan"), "{}", o.stdout);
    assert!(!o.stdout.contains("To perform"), "{}", o.stdout);
    let o = skyform(d.path(), &["init"]);
    assert!(o.stdout.contains("Next steps:"), "{}", o.stdout);
    let o = skyform_env(d.path(), &["init", "-input=false"], &[("SKYFORM_IN_AUTOMATION", "1")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("successfully initialized") && !o.stdout.contains("Next steps"), "{}", o.stdout);
}

#[test]
fn compact_warnings_take_one_line_per_kind() {
    let t = |n: &str| format!("task \"{n}\" {{\n  run = \"true\"\n}}\n");
    let d = job(&[("main.sky.hcl", &format!("{}{}{}", t("a"), t("b"), t("c")))]);
    let o = skyform(d.path(), &["plan"]);
    assert_eq!(o.stderr.matches("Warning: ").count(), 3, "{}", o.stderr);
    assert!(
        o.stderr.contains("Warning: task.a: no `estimate { hours = ... }`, so 1 hour per run is assumed"),
        "{}",
        o.stderr
    );
    let o = skyform(d.path(), &["plan", "-compact-warnings"]);
    let warnings: Vec<&str> = o.stderr.lines().filter(|l| l.starts_with("Warning: ")).collect();
    assert_eq!(
        warnings,
        ["Warning: no `estimate { hours = ... }`, so 1 hour per run is assumed (3 tasks: task.a, task.b, task.c)"],
        "{}",
        o.stderr
    );
}

/// A running task whose allocation the provider no longer has: `plan` refreshes, notes
/// the change and replaces the task; `-refresh=false` plans from the state alone.
#[test]
fn plan_refreshes_live_allocations_and_notes_what_changed_outside() {
    let d = job(&[("main.sky.hcl", TINY)]);
    let p = skyform(d.path(), &["plan", "-out=p.plan"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let plan = skyform::plan::Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    let c = &plan.changes[0];
    let placement: PlacementRecord = c.after.as_ref().unwrap().placement.clone();
    let store = SledStore::new(d.path().join(".skyform/state"));
    let mut st = store.read().unwrap();
    let task = plan.config.tasks[&c.address].clone();
    st.tasks.insert(TaskAddr("task.tiny".into()), {
        let mut t = crate::running_task(task, placement, &st.lineage, "lp-gone", "tok-gone", 1, None);
        t.runs.clear();
        t
    });
    store.commit(&st).unwrap();

    let o = skyform(d.path(), &["plan", "-input=false"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("Note: Tasks have changed outside skyform\n"), "{}", o.stdout);
    assert!(
        o.stdout.contains("  # task.tiny has changed outside skyform: lp-gone is gone (terminated outside skyform); it will be released and run again\n"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("# task.tiny must be replaced (it changed outside skyform)"), "{}", o.stdout);
    let j = skyform(d.path(), &["plan", "-json"]);
    let drift: Vec<serde_json::Value> = j
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "resource_drift")
        .collect();
    assert_eq!(drift.len(), 1, "{}", j.stdout);
    assert_eq!(drift[0]["change"]["resource"]["addr"], "task.tiny");

    let o = skyform(d.path(), &["plan", "-refresh=false"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stdout.contains("changed outside"), "{}", o.stdout);
    assert!(o.stdout.starts_with("No changes."), "{}", o.stdout);
}

/// A task that succeeded while its allocation was being released (an apply stopped
/// mid-release) is not "changed outside": its allocation's absence is expected.
#[test]
fn a_succeeded_task_whose_allocation_is_gone_is_left_alone() {
    let d = job(&[("main.sky.hcl", TINY)]);
    assert_eq!(skyform(d.path(), &["apply", "-auto-approve"]).code, 0);
    let store = SledStore::new(d.path().join(".skyform/state"));
    let mut st = store.read().unwrap();
    for a in &mut st.tasks.get_mut(&TaskAddr("task.tiny".into())).unwrap().allocations {
        a.released = None;
    }
    store.commit(&st).unwrap();
    let o = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("changed outside"), "{}", o.stdout);
}
