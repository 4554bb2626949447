//! Crash injection: `kill -9` at a random moment of an apply of a 12-task DAG on the local
//! provider (slow tasks in some trials, very short ones in others), then recover as the
//! messages say (`force-unlock` the stale lock) and apply again. Per trial: the result is
//! right, every task completed exactly once (a marker line written as each task's last
//! act), no process of the job is left, and `sweep` finds nothing.
//!
//! CI runs `SKYFORM_CRASH_TRIALS` trials (default 4); a long run:
//! `SKYFORM_CRASH_TRIALS=200 cargo test --test it crash -- --nocapture`.

use super::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Twelve tasks: a fan-out of three chains that join; every task adds its number to the
/// sum of its inputs and appends its name to `marks` when done.
fn dag(marks: &Path, short: bool) -> String {
    let pause = if short { String::new() } else { "sleep 0.$((RANDOM % 4 + 1)); ".to_string() };
    let mut s = String::from("provider \"local\" {\n  slots = 16\n}\n\n");
    let parents: [(usize, &[usize]); 12] = [
        (0, &[]),
        (1, &[0]),
        (2, &[0]),
        (3, &[0]),
        (4, &[1]),
        (5, &[2]),
        (6, &[3]),
        (7, &[4]),
        (8, &[5]),
        (9, &[6]),
        (10, &[7, 8, 9]),
        (11, &[10]),
    ];
    for (i, ps) in parents {
        let inputs: Vec<String> = ps.iter().map(|p| format!("p{p} = task.t{p}.outputs.v")).collect();
        let sum: String = ps.iter().map(|p| format!("$(cat $SKYFORM_INPUT_P{p}/n) + ")).collect();
        let pinned = if i == 11 { ", uri = \"./out\"" } else { "" };
        s.push_str(&format!(
            "task \"t{i}\" {{\n  inputs  = {{ {} }}\n  outputs = {{ v = {{ size_gb = 0.000001{pinned} }} }}\n  run     = \"{pause}echo $(( {sum}{i} )) > $SKYFORM_OUTPUT_V/n; echo t{i} >> {marks}\"\n  estimate {{\n    hours = 0.01\n  }}\n}}\n\n",
            inputs.join(", "),
            marks = marks.display(),
        ));
    }
    s
}

/// The sum the last task writes: every task adds its number to the sums of its inputs.
fn expected() -> u64 {
    let v: Vec<u64> = {
        let mut v = vec![0u64; 12];
        v[0] = 0;
        for (i, p) in [(1, 0), (2, 0), (3, 0), (4, 1), (5, 2), (6, 3), (7, 4), (8, 5), (9, 6)] {
            v[i] = v[p] + i as u64;
        }
        v[10] = v[7] + v[8] + v[9] + 10;
        v[11] = v[10] + 11;
        v
    };
    v[11]
}

/// Processes whose command line or working directory is under `dir`.
pub(crate) fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).replace('\0', " "));
        let cwd = std::fs::read_link(e.path().join("cwd")).map(|p| p.display().to_string());
        if cmd.as_deref().is_ok_and(|c| c.contains(&needle)) || cwd.as_deref().is_ok_and(|c| c.starts_with(&needle)) {
            out.push(cmd.unwrap_or_default());
        }
    }
    out
}

/// `apply`, following the printed way out of a stale lock.
pub(crate) fn apply_recovering(dir: &Path) -> Out {
    unlocking(dir, &["apply", "-auto-approve"], &[])
}

/// `skyform ARGS` with `env`, as a user runs it after a killed apply: the lock it left is
/// force-unlocked as the message prints, then the command runs again.
pub(crate) fn unlocking(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    for _ in 0..3 {
        let o = skyform_env(dir, args, env);
        if let Some(id) = o.stderr.split("skyform force-unlock ").nth(1) {
            let id = id.split_whitespace().next().unwrap_or_default();
            let u = skyform(dir, &["force-unlock", "-force", id]);
            assert_eq!(u.code, 0, "force-unlock as printed: {}", u.stderr);
            continue;
        }
        return o;
    }
    panic!("apply kept failing on the lock");
}

/// One trial; returns how many task completions were repeats.
fn trial(n: u64) -> usize {
    let short = n % 2 == 1;
    let marks_dir = tempfile::tempdir().unwrap();
    let marks = marks_dir.path().join("marks");
    let d = job(&[("main.sky.hcl", &dag(&marks, short))]);
    let home = tempfile::tempdir().unwrap();
    // A kill at a pseudo-random moment: 30–1500 ms into the apply.
    let at = Duration::from_millis(30 + (n.wrapping_mul(2_654_435_761) % 1470));
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(["apply", "-auto-approve", "-parallelism=4"])
        .current_dir(d.path())
        .env("NO_COLOR", "1")
        .env("SKYFORM_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < at {
        if c.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = c.kill();
    let _ = c.wait();
    let o = apply_recovering(d.path());
    assert_eq!(o.code, 0, "trial {n} ({}): {}\n{}", if short { "short" } else { "slow" }, o.stdout, o.stderr);
    let out = std::fs::read_to_string(d.path().join("out/n")).unwrap();
    assert_eq!(out.trim(), expected().to_string(), "trial {n}: the result");
    let text = std::fs::read_to_string(&marks).unwrap();
    let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in text.lines() {
        *count.entry(l).or_default() += 1;
    }
    assert_eq!(count.len(), 12, "trial {n}: every task completed: {text}");
    let again = skyform(d.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(again.code, 0, "trial {n}: nothing left to do:\n{}", again.stdout);
    let sweep = skyform(d.path(), &["sweep", "-dry-run"]);
    assert!(sweep.stdout.starts_with("Nothing to sweep"), "trial {n}: {}", sweep.stdout);
    let left = processes_under(d.path());
    assert!(left.is_empty(), "trial {n}: processes left: {left:?}");
    count.values().map(|c| c - 1).sum()
}

#[test]
fn kill_9_at_random_points_then_apply_runs_every_task_exactly_once() {
    let trials: u64 = std::env::var("SKYFORM_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut reruns = 0;
    for n in 0..trials {
        reruns += trial(n);
    }
    eprintln!("crash trials: {trials}, finished tasks run again: {reruns}");
    assert_eq!(reruns, 0, "a task that had completed ran again");
}
