//! apply on the local provider, end to end: real processes, real files.

use super::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// A copy of the repository's modules (the quick start refers to `../..`).
fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    copy_dir(&root().join("modules"), &d.path().join("modules"));
    let qs = d.path().join("modules/data-pipeline/examples/quickstart");
    (d, qs)
}

/// Copies a job's sources only — `*.sky.hcl`, `*.skyvars`, READMEs, through module
/// directories — never what a run left there (`.skyform/`, `out/`), so a test starts from
/// what is committed even after the README's quick start ran in the checkout.
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let to = dst.join(&name);
        if p.is_dir() {
            if !name.starts_with('.') && name != "out" {
                copy_dir(&p, &to);
            }
        } else if name.ends_with(".sky.hcl") || name.ends_with(".skyvars") || name.ends_with(".md") {
            std::fs::copy(&p, &to).unwrap();
        }
    }
}

fn sandboxes(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(".skyform/local/sandboxes")).map(|r| r.count()).unwrap_or(0)
}

fn allocations(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(".skyform/local/alloc")).map(|r| r.count()).unwrap_or(0)
}

/// Processes whose command line mentions `dir` (the runs' sandboxes live there).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let s = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if s.contains(&needle) && !s.contains("skyform") {
                out.push(s);
            }
        }
    }
    out
}

#[test]
fn quickstart_runs_then_destroy_leaves_nothing() {
    let (_d, qs) = quickstart();
    let o = skyform(&qs, &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Apply complete! Resources: 5 added, 0 changed, 0 destroyed. Cost: $"), "{}", o.stdout);
    let summary = std::fs::read_to_string(qs.join("out/summary.txt")).unwrap();
    assert_eq!(summary, "rows=10000 sum_squares=333383335000 sum_evens=100010000\n");
    assert_eq!(sandboxes(&qs), 0, "every allocation is released as soon as its task ends");
    let st = skyform(&qs, &["status", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert!(v["tasks"].as_array().unwrap().iter().all(|t| t["status"] == "succeeded"), "{}", st.stdout);
    let out = skyform(&qs, &["output", "-json"]);
    assert!(out.stdout.contains("local://skyform-"), "outputs point at where the data is: {}", out.stdout);
    let logs = skyform(&qs, &["logs", "module.pipeline.task.report"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    // Nothing to do the second time.
    let again = skyform(&qs, &["plan", "-detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    let again = skyform(&qs, &["apply", "-auto-approve"]);
    assert!(again.stdout.contains("Resources: 0 added, 0 changed, 0 destroyed"), "{}", again.stdout);
    // Destroy.
    let o = skyform(&qs, &["destroy", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Destroy complete! Resources: 0 added, 0 changed, 5 destroyed."), "{}", o.stdout);
    assert_eq!(skyform(&qs, &["state", "list"]).stdout, "");
    assert_eq!((sandboxes(&qs), allocations(&qs)), (0, 0));
    assert!(processes_under(&qs).is_empty());
    assert!(skyform(&qs, &["sweep"]).stdout.starts_with("Nothing to sweep"));
}

const ONE_TASK: &str = r#"
provider "local" {
  zones = ["zone-a", "zone-b", "zone-c"]
}

task "work" {
  resources {
    cpus = "2+"
  }
  outputs  = { result = { size_gb = 0.001, uri = "./result" } }
  run      = "sleep ${var.seconds}; echo done > $SKYFORM_OUTPUT_RESULT/r.txt"
  retries  = 1
  recovery = var.recovery

  estimate {
    hours = 0.01
  }
}

variable "seconds" {
  default = "0"
}

variable "recovery" {
  default = "next_zone"
}
"#;

#[test]
fn a_capacity_error_fails_over_to_the_next_zone_and_blocks_the_first() {
    let d = job(&[("main.sky.hcl", ONE_TASK)]);
    let plan = skyform(d.path(), &["plan"]);
    assert!(plan.stdout.contains("placement     = \"local/zone-a\""), "{}", plan.stdout);
    let o = skyform_env(
        d.path(),
        &["apply", "-auto-approve"],
        &[("SKYFORM_LOCAL_FAULTS", r#"{"capacity_zones": ["zone-a"]}"#)],
    );
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("task.work: capacity_unavailable in local/zone-a"), "the attempt is shown: {}", o.stderr);
    assert!(o.stderr.contains("allocating local.small in local/zone-b (attempt 2)"), "{}", o.stderr);
    let st: serde_json::Value = serde_json::from_str(&skyform(d.path(), &["status", "-json"]).stdout).unwrap();
    assert_eq!(st["tasks"][0]["placement"]["zone"], "zone-b");
    let t: serde_json::Value = serde_json::from_str(&skyform(d.path(), &["tracker", "show", "-json"]).stdout).unwrap();
    let blocks = t["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["location"]["zone"], "zone-a");
    assert_eq!(blocks[0]["kind"], "capacity_unavailable");
    assert_eq!(std::fs::read_to_string(d.path().join("result/r.txt")).unwrap(), "done\n");
    // While the block lasts, a new plan avoids the zone.
    let plan = skyform(d.path(), &["plan", "-replace=task.work"]);
    assert!(plan.stdout.contains("local/zone-b"), "{}", plan.stdout);
}

#[test]
fn preemption_is_recovered_per_the_recovery_setting() {
    for (recovery, zone) in [("next_zone", "zone-b"), ("same_zone", "zone-a")] {
        let d = job(&[("main.sky.hcl", ONE_TASK)]);
        let o = skyform_env(
            d.path(),
            &["apply", "-auto-approve", "-var", "seconds=2", "-var", &format!("recovery={recovery}")],
            &[("SKYFORM_LOCAL_FAULTS", r#"{"preempt_after_secs": 0.3, "preempt_zones": ["zone-a"]}"#)],
        );
        assert_eq!(o.code, 0, "{recovery}: {}\n{}", o.stdout, o.stderr);
        assert!(o.stderr.contains("task.work: preempted in local/zone-a"), "{}", o.stderr);
        let st: serde_json::Value = serde_json::from_str(&skyform(d.path(), &["status", "-json"]).stdout).unwrap();
        assert_eq!(st["tasks"][0]["placement"]["zone"], zone, "{recovery}");
        assert_eq!(st["tasks"][0]["runs"], 2);
        let t: serde_json::Value =
            serde_json::from_str(&skyform(d.path(), &["tracker", "show", "-json"]).stdout).unwrap();
        assert_eq!(t["preemptions"].as_array().unwrap().len(), 1, "{recovery}: the preemption is recorded");
    }
}

/// A run preempted while no apply watched it (its apply was killed, the run went on alone)
/// counts as a watched one: the next apply records the preemption, blocks the zone per
/// `recovery`, and runs the task again where that setting says.
#[test]
fn a_preemption_found_by_recovery_follows_the_recovery_setting() {
    for (recovery, zone, blocks) in [("next_zone", "zone-b", 1), ("same_zone", "zone-a", 0)] {
        let d = job(&[("main.sky.hcl", ONE_TASK)]);
        let recovery_var = format!("recovery={recovery}");
        let apply = ["apply", "-auto-approve", "-var", "seconds=8", "-var", recovery_var.as_str()];
        let (mut first, _home) = spawn_skyform(d.path(), &apply, &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = state_json(d.path());
            if st["tasks"]["task.work"]["status"] == "running" {
                break;
            }
            assert!(Instant::now() < deadline, "{recovery}: the run never started: {st}");
            std::thread::sleep(Duration::from_millis(50));
        }
        first.kill();
        // The machine is reclaimed while nobody watches; the next apply finds it.
        let faults = [("SKYFORM_LOCAL_FAULTS", r#"{"preempt_after_secs": 0, "preempt_zones": ["zone-a"]}"#)];
        let o = crate::crash::unlocking(d.path(), &apply, &faults);
        assert_eq!(o.code, 0, "{recovery}: {}\n{}", o.stdout, o.stderr);
        assert!(o.stderr.contains("task.work: preempted in local/zone-a"), "{recovery}: {}", o.stderr);
        let st = state_json(d.path());
        let t = &st["tasks"]["task.work"];
        assert_eq!(t["placement"]["zone"], zone, "{recovery}: {t}");
        let runs: Vec<&str> = t["runs"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
        assert_eq!(runs, ["preempted", "succeeded"], "{recovery}");
        assert_eq!(std::fs::read_to_string(d.path().join("result/r.txt")).unwrap(), "done\n");
        let tr: serde_json::Value =
            serde_json::from_str(&skyform(d.path(), &["tracker", "show", "-json"]).stdout).unwrap();
        assert_eq!(tr["preemptions"].as_array().unwrap().len(), 1, "{recovery}: the preemption is recorded: {tr}");
        let b = tracker_blocks(d.path());
        assert_eq!(b.len(), blocks, "{recovery}: {b:?}");
        if blocks == 1 {
            assert_eq!((&b[0]["location"]["zone"], &b[0]["kind"]), (&"zone-a".into(), &"preempted".into()), "{b:?}");
        }
        assert!(processes_under(d.path()).is_empty(), "{recovery}");
    }
}

#[test]
fn a_failing_task_is_retried_then_failed_and_dependents_do_not_start() {
    let d = job(&[(
        "main.sky.hcl",
        r#"
task "flaky" {
  outputs = { o = { size_gb = 0.001 } }
  run     = "echo trying; exit 3"
  retries = 2
}

task "after" {
  inputs = { o = task.flaky.outputs.o }
  run    = "true"
}
"#,
    )]);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr.matches("failed (exit 3)").count(), 3, "1 run + 2 retries: {}", o.stderr);
    assert!(o.stderr.contains("Error: task.flaky failed; log: "), "{}", o.stderr);
    assert!(o.stderr.contains("task.after did not start"), "{}", o.stderr);
    let st: serde_json::Value = serde_json::from_str(&skyform(d.path(), &["status", "-json"]).stdout).unwrap();
    let flaky = st["tasks"].as_array().unwrap().iter().find(|t| t["address"] == "task.flaky").unwrap().clone();
    assert_eq!(flaky["status"], "failed");
    assert_eq!(flaky["tainted"], true);
    assert_eq!(flaky["runs"], 3);
    assert_eq!(sandboxes(d.path()), 0);
    // The next plan replaces the tainted task.
    let p = skyform(d.path(), &["plan"]);
    assert!(p.stdout.contains("# task.flaky must be replaced (tainted after a failure)"), "{}", p.stdout);
}

const CHAIN: &str = r#"
provider "local" {
  zones = ["zone-a", "zone-b"]
}

variable "counter" {
  type = string
}

task "a" {
  outputs = { o = { size_gb = 0.001 } }
  run     = "sleep 0.4; echo a >> ${var.counter}; echo a > $SKYFORM_OUTPUT_O/x"
}

task "b" {
  inputs  = { i = task.a.outputs.o }
  outputs = { o = { size_gb = 0.001 } }
  run     = "sleep 0.4; echo b >> ${var.counter}; cat $SKYFORM_INPUT_I/x > $SKYFORM_OUTPUT_O/x; echo b >> $SKYFORM_OUTPUT_O/x"
}

task "c" {
  inputs  = { i = task.b.outputs.o }
  outputs = { o = { size_gb = 0.001 } }
  run     = "sleep 0.4; echo c >> ${var.counter}; cat $SKYFORM_INPUT_I/x > $SKYFORM_OUTPUT_O/x; echo c >> $SKYFORM_OUTPUT_O/x"
}

task "d" {
  inputs  = { i = task.c.outputs.o }
  outputs = { o = { size_gb = 0.001, uri = "./final" } }
  run     = "sleep 0.4; echo d >> ${var.counter}; cat $SKYFORM_INPUT_I/x > $SKYFORM_OUTPUT_O/x; echo d >> $SKYFORM_OUTPUT_O/x"
}
"#;

#[test]
fn sigkill_during_apply_then_apply_again_runs_every_task_once() {
    for kill_after_ms in [300u64, 700, 1100, 1500] {
        let d = job(&[("main.sky.hcl", CHAIN)]);
        let counter = d.path().join("counter.txt");
        let var = format!("counter={}", counter.display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_skyform"))
            .args(["apply", "-auto-approve", "-var", &var])
            .current_dir(d.path())
            .env("NO_COLOR", "1")
            .env("SKYFORM_HOME", d.path().join("home"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // The dead apply's lock is reported as stale, never broken silently.
        let o = skyform(d.path(), &["apply", "-auto-approve", "-var", &var]);
        let code = if o.stderr.contains("the lock is stale") {
            let id =
                o.stderr.split("skyform force-unlock ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
            assert_eq!(skyform(d.path(), &["force-unlock", "-force", &id]).code, 0);
            let again = skyform(d.path(), &["apply", "-auto-approve", "-var", &var]);
            assert_eq!(again.code, 0, "after {kill_after_ms} ms: {}\n{}", again.stdout, again.stderr);
            again.code
        } else {
            o.code
        };
        assert_eq!(code, 0, "after {kill_after_ms} ms");
        let mut lines: Vec<String> = std::fs::read_to_string(&counter).unwrap().lines().map(str::to_string).collect();
        lines.sort();
        assert_eq!(lines, ["a", "b", "c", "d"], "after {kill_after_ms} ms every task completed exactly once");
        assert_eq!(std::fs::read_to_string(d.path().join("final/x")).unwrap(), "a\nb\nc\nd\n");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !processes_under(d.path()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(processes_under(d.path()).is_empty(), "no process left: {:?}", processes_under(d.path()));
        assert_eq!((sandboxes(d.path()), allocations(d.path())), (0, 0), "no sandbox or allocation left");
        let sw = skyform(d.path(), &["sweep", "-var", &var]);
        assert!(sw.stdout.starts_with("Nothing to sweep"), "after {kill_after_ms} ms: {}{}", sw.stdout, sw.stderr);
    }
}

#[test]
fn sweep_releases_what_the_state_does_not_know() {
    let d = job(&[("main.sky.hcl", ONE_TASK)]);
    assert_eq!(skyform(d.path(), &["apply", "-auto-approve"]).code, 0);
    // Forget the task while something of it still exists at the provider: an allocation
    // made outside the state's knowledge.
    let p =
        skyform_provider_local::runtime::LocalProvider::new(skyform_provider_local::LocalConfig::default(), d.path())
            .unwrap();
    use skyform_provider::Provider;
    // This job's (a lost state's lineage, the job's name) and another job's.
    let name = d.path().file_name().unwrap().to_string_lossy().to_string();
    for (task, lineage, job) in [("task.ghost", "lost-lineage", name.as_str()), ("task.other", "other", "other-job")] {
        let tags = [
            ("skyform:lineage".to_string(), lineage.to_string()),
            ("skyform:job".to_string(), job.to_string()),
            ("skyform:task".to_string(), task.to_string()),
        ]
        .into();
        let mut req = skyform_provider::AllocateRequest::new(
            task,
            skyform_provider::Location::new("local", "local", "zone-c"),
            "local.small",
            task,
        );
        req.owner_tags = tags;
        p.allocate(&req).unwrap();
    }
    let dry = skyform(d.path(), &["sweep", "-dry-run"]);
    assert!(dry.stdout.contains("found local") && dry.stdout.contains("task=task.ghost"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("task.other"), "another job's resources are not ours: {}", dry.stdout);
    let o = skyform(d.path(), &["sweep"]);
    assert!(o.stdout.contains("released local"), "{}", o.stdout);
    assert_eq!(allocations(d.path()), 1, "only the other job's allocation is left");
}

#[test]
fn a_hanging_zone_times_out_and_the_task_fails_over() {
    let d = job(&[("main.sky.hcl", ONE_TASK)]);
    // Every allocation in this provider hangs 400 ms; with a 100 ms call timeout each zone
    // times out (after its retries) and is blocked in turn, so the apply ends instead of
    // stalling, with every zone blocked.
    let t0 = Instant::now();
    let o = skyform_env(
        d.path(),
        &["apply", "-auto-approve", "-call-timeout=0.1"],
        &[("SKYFORM_LOCAL_FAULTS", r#"{"hang_ms": 400}"#)],
    );
    assert!(t0.elapsed() < Duration::from_secs(30), "the run did not stall");
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("the call timed out"), "{}", o.stderr);
    let t: serde_json::Value = serde_json::from_str(&skyform(d.path(), &["tracker", "show", "-json"]).stdout).unwrap();
    assert!(t["blocks"].as_array().unwrap().len() >= 2, "the hanging zones are blocked: {t}");
    assert_eq!(allocations(d.path()) + sandboxes(d.path()), 0);
}

#[test]
fn ctrl_c_stops_new_work_and_the_next_apply_finishes() {
    let d = job(&[("main.sky.hcl", CHAIN)]);
    let counter = d.path().join("counter.txt");
    let var = format!("counter={}", counter.display());
    let child = Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(["apply", "-auto-approve", "-grace=0", "-var", &var])
        .current_dir(d.path())
        .env("NO_COLOR", "1")
        .env("SKYFORM_HOME", d.path().join("home"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once work is under way (the first commit comes after the handler is set).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.path().join(".skyform/state.snapshot.json").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Interrupt received") && stderr.contains("Apply interrupted"), "{stderr}");
    assert_eq!((sandboxes(d.path()), allocations(d.path())), (0, 0), "the cancelled run was released");
    let o = skyform(d.path(), &["apply", "-auto-approve", "-var", &var]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let mut lines: Vec<String> = std::fs::read_to_string(&counter).unwrap().lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["a", "b", "c", "d"]);
}

#[test]
fn a_saved_plan_is_refused_once_the_state_moved() {
    let d = job(&[("main.sky.hcl", ONE_TASK)]);
    assert_eq!(skyform(d.path(), &["plan", "-out", "old.plan"]).code, 0);
    assert_eq!(skyform(d.path(), &["apply", "-auto-approve"]).code, 0);
    let o = skyform(d.path(), &["apply", "old.plan"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Saved plan is stale"), "{}", o.stderr);
    // A fresh saved plan applies without a prompt.
    assert_eq!(skyform(d.path(), &["plan", "-replace=task.work", "-out", "new.plan"]).code, 0);
    let o = skyform(d.path(), &["apply", "new.plan"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
}
