//! A migration killed at each of its steps. A checkpointed spot task runs on the local
//! provider (started by an apply that was then killed, so its run goes on alone); prices
//! move and `apply` migrates it — allocate in zone-b, checkpoint and stop the run in
//! zone-a, move the checkpoint, start from it — and is killed (`kill -9`, at a crash point
//! of the test build) at one step; then `apply` again, as a user would.
//!
//! Per step: right after the kill at most one run of the task is alive (the old one until
//! it was stopped, the new one once it was started); no two runs ever overlap (each run
//! holds an exclusive `flock` while it lives); the task finishes with the output of an
//! unmigrated run; no run after the first started from zero (the checkpoint was never
//! lost); nothing is left allocated, running or for `sweep`.

use crate::checkpoints::starts;
use crate::crash::{apply_recovering, processes_under, unlocking};
use crate::reoptimize::prices;
use crate::{job, skyform, spawn_skyform, state_json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Counts to 30 in steps of 0.2 s, its progress in the checkpoint (synced every second).
fn hcl(marks: &Path) -> String {
    let m = marks.display();
    let run = format!(
        "echo $BASHPID >> {m}/pids; exec 9>>{m}/lock; flock -n 9 || echo overlap >> {m}/overlaps; \
         n=$(cat $SKYFORM_CHECKPOINT/n 2>/dev/null || echo 0); echo start $n >> {m}/starts; \
         while [ $n -lt 30 ]; do n=$((n+1)); echo $n > $SKYFORM_CHECKPOINT/n; sleep 0.2; done; \
         echo $n > $SKYFORM_OUTPUT_O/n"
    );
    format!(
        r#"
provider "local" {{
  zones          = ["zone-a", "zone-b"]
  price_trace    = "prices.csv"
  zone_stores    = true
  instance_types = [{{ name = "local.big", vcpus = 8, memory_gb = 32, price = 10, spot_price = 3 }}]
}}

policy {{
  reoptimize {{
    min_saving     = "10%"
    min_saving_usd = 5
  }}
}}

task "train" {{
  resources {{
    spot = true
  }}
  outputs = {{ o = {{ size_gb = 0.001, uri = "./result" }} }}
  run     = "{run}"
  checkpoint {{
    path  = "ckpt"
    every = "1s"
  }}
  estimate {{
    hours = 10
  }}
}}
"#
    )
}

/// The runs of the task alive now (their pids are in `marks/pids`).
fn alive(marks: &Path) -> usize {
    let pids = std::fs::read_to_string(marks.join("pids")).unwrap_or_default();
    pids.lines()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        })
        .count()
}

/// The runs alive right after an apply was killed. A run started just before the kill
/// writes its pid a moment later (after its checkpoint is restored), so this waits up to
/// 10 s for `expected` runs; when none is expected it checks that none appears within 2 s.
fn alive_after_kill(marks: &Path, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(if expected == 0 { 2 } else { 10 });
    loop {
        let n = alive(marks);
        if (expected > 0 && n == expected) || Instant::now() >= deadline {
            return n;
        }
        if expected == 0 && n > 0 {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `apply` with the crash point `point` armed, after force-unlocking the lock a killed
/// apply left; returns what it printed before it was killed.
fn apply_killed_at(dir: &Path, point: &str) -> crate::Out {
    unlocking(dir, &["apply", "-auto-approve"], &[("FAILPOINTS", format!("{point}=return").as_str())])
}

/// The job with its run going on alone in zone-a (started by an apply that was killed),
/// then prices moved so that zone-b is worth migrating to.
fn running_then_prices_move(marks: &Path) -> tempfile::TempDir {
    let d = job(&[("main.sky.hcl", hcl(marks).as_str())]);
    prices(d.path(), 3.0, 3.2);
    let (mut first, _home) = spawn_skyform(d.path(), &["apply", "-auto-approve"], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while starts(marks).is_empty() {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    first.kill();
    assert_eq!(alive(marks), 1, "the run outlives its apply");
    prices(d.path(), 4.0, 2.0);
    d
}

/// One trial: the migration killed at `point`. Returns a line for the summary.
fn trial(point: &str, expect_alive: usize, unrecorded_stop: bool) -> String {
    let marks_dir = tempfile::tempdir().unwrap();
    let marks = marks_dir.path();
    let d = running_then_prices_move(marks);
    // The apply migrates it, and is killed at `point`.
    let o = apply_killed_at(d.path(), point);
    assert_eq!(o.code, -1, "{point}: the apply was killed (exit {}):\n{}\n{}", o.code, o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train will be migrated"), "{point}: {}", o.stdout);
    let steps: Vec<&str> = o.stderr.lines().filter(|l| l.contains(": migrating ")).collect();
    let live = alive_after_kill(marks, expect_alive);
    assert_eq!(live, expect_alive, "{point}: live runs right after the kill; steps: {steps:#?}");
    // `status` shows the migration the killed apply left.
    let st = skyform(d.path(), &["status", "-refresh=false"]);
    assert!(st.stdout.contains("(migrating)"), "{point}: {}", st.stdout);
    assert!(
        st.stdout.contains("Migration: task.train: local/local/zone-a → local/local/zone-b, at step `"),
        "{point}: {}",
        st.stdout
    );

    // Apply again, as the messages say.
    let o = apply_recovering(d.path());
    assert_eq!(o.code, 0, "{point}: {}\n{}", o.stdout, o.stderr);
    // An old run stopped but not recorded as such: the next plan says what stopped it.
    let said = o.stdout.contains("an interrupted apply's migration to local/local/zone-b stopped it (at step `");
    assert_eq!(said, unrecorded_stop, "{point}: {}", o.stdout);
    let s = starts(marks);
    assert_eq!(s[0], 0, "{point}: {s:?}");
    assert!(s[1..].iter().all(|n| *n > 0), "{point}: a run after the first started from zero: {s:?}\n{}", o.stderr);
    assert!(s.len() >= 2, "{point}: the task ran again after the kill: {s:?}");
    assert!(!marks.join("overlaps").exists(), "{point}: two runs were alive at once");
    assert_eq!(
        std::fs::read_to_string(d.path().join("result/n")).unwrap(),
        "30\n",
        "{point}: an unmigrated run's output"
    );
    let st = state_json(d.path());
    let t = &st["tasks"]["task.train"];
    assert_eq!(t["status"], "succeeded", "{point}: {t}");
    assert!(t["migration"].is_null(), "{point}: {t}");
    let allocs = t["allocations"].as_array().unwrap();
    assert!(allocs.iter().all(|a| !a["released"].is_null()), "{point}: nothing left allocated: {allocs:#?}");
    assert_eq!(alive(marks), 0, "{point}");
    let left = processes_under(d.path());
    assert!(left.is_empty(), "{point}: processes left: {left:?}");
    let sweep = skyform(d.path(), &["sweep", "-dry-run"]);
    assert!(sweep.stdout.starts_with("Nothing to sweep"), "{point}: {}", sweep.stdout);
    format!("{point:<18} live after kill {live}, runs started at {s:?}, {} allocations", allocs.len())
}

/// kill -9 at each step of a migration, then apply.
#[test]
fn a_migration_killed_at_any_step_leaves_one_run_and_its_checkpoint() {
    // (crash point, runs alive right after the kill, the old run stopped but not recorded)
    let points = [
        ("migrate-allocate", 1, false),  // its step committed, before the new allocation
        ("migrate-allocated", 1, false), // the new allocation made, not recorded
        ("migrate-stop", 1, false),      // before the old run is stopped
        ("migrate-stopped", 0, true),    // the old run stopped (checkpoint synced), not recorded
        ("migrate-move", 0, false),      // before the checkpoint is copied to zone-b's store
        ("migrate-moved", 0, false),     // copied and recorded, before the start
        ("run-start", 0, false),         // before the new run starts
        ("run-started", 1, false),       // the new run started, not recorded
    ];
    let mut summary = Vec::new();
    for (point, alive, unrecorded_stop) in points {
        summary.push(trial(point, alive, unrecorded_stop));
    }
    println!("{}", summary.join("\n"));
}

/// A migration whose new zone has no capacity is not completed: the old run goes on and
/// finishes where it is, never stopped or started again; the zone is blocked.
#[test]
fn a_migration_to_a_zone_without_capacity_leaves_the_run_where_it_is() {
    let marks_dir = tempfile::tempdir().unwrap();
    let marks = marks_dir.path();
    let d = running_then_prices_move(marks);
    let faults = r#"{"capacity_zones":["zone-b"]}"#;
    let o = unlocking(d.path(), &["apply", "-auto-approve"], &[("SKYFORM_LOCAL_FAULTS", faults)]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train will be migrated"), "{}", o.stdout);
    assert!(o.stderr.contains("task.train: capacity_unavailable in local/zone-b"), "{}", o.stderr);
    assert!(
        o.stderr.contains("task.train: migration not completed: no better placement could be allocated; the run goes on in local/zone-a"),
        "{}",
        o.stderr
    );
    assert_eq!(starts(marks), vec![0], "the run was neither stopped nor started again");
    assert_eq!(std::fs::read_to_string(d.path().join("result/n")).unwrap(), "30\n");
    let st = state_json(d.path());
    let t = &st["tasks"]["task.train"];
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["placement"]["zone"], "zone-a", "{t}");
    assert!(t["migration"].is_null(), "{t}");
    assert!(crate::tracker_blocks(d.path()).iter().any(|b| b["location"]["zone"] == "zone-b"), "zone-b is blocked");
}

/// A run that finished while no apply watched it is adopted by the next apply, not run
/// again, even when that apply's plan moves it.
#[test]
fn a_run_that_finished_before_its_migration_is_adopted_not_run_again() {
    let marks_dir = tempfile::tempdir().unwrap();
    let marks = marks_dir.path();
    let d = running_then_prices_move(marks);
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(marks) > 0 {
        assert!(Instant::now() < deadline, "the run never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = apply_recovering(d.path());
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("# task.train will be migrated"), "{}", o.stdout);
    assert!(o.stderr.contains("its run had finished: adopted"), "{}", o.stderr);
    assert!(!o.stderr.contains("migrating"), "{}", o.stderr);
    assert_eq!(starts(marks), vec![0], "it ran once");
    assert_eq!(std::fs::read_to_string(d.path().join("result/n")).unwrap(), "30\n");
    let st = state_json(d.path());
    assert_eq!(st["tasks"]["task.train"]["status"], "succeeded");
    assert_eq!(st["tasks"]["task.train"]["placement"]["zone"], "zone-a");
}
