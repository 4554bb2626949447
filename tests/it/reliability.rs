//! What users rely on when things go wrong: damaged state is reported (never read as
//! empty) and recovered, readers work while an apply runs, lock files left by a crash can
//! be removed, a closed pipe ends quietly.

use super::*;
use std::process::Stdio;

/// A small DAG whose tasks append to `runs` each time they run.
fn counted_job(runs: &Path) -> tempfile::TempDir {
    let mut hcl = String::new();
    for (name, input) in [("a", None), ("b", Some("a")), ("c", Some("a")), ("d", Some("b"))] {
        let inputs = input.map(|i| format!("inputs = {{ i = task.{i}.outputs.o }}\n  ")).unwrap_or_default();
        hcl.push_str(&format!(
            "task \"{name}\" {{\n  {inputs}outputs = {{ o = {{ size_gb = 0.001 }} }}\n  run = \"echo {name} >> {runs}; echo {name} > $SKYFORM_OUTPUT_O/v\"\n  estimate {{\n    hours = 0.1\n  }}\n}}\n\n",
            runs = runs.display()
        ));
    }
    job(&[("main.sky.hcl", &hcl)])
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

#[test]
fn damaged_or_missing_state_is_an_error_and_state_recover_restores_it() {
    let marks = tempfile::tempdir().unwrap();
    let runs = marks.path().join("runs");
    let d = counted_job(&runs);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 4);
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 5] = [
        ("emptied", |db| std::fs::write(db.join("db"), b"").unwrap()),
        ("zeroed", |db| {
            let n = std::fs::metadata(db.join("db")).unwrap().len() as usize;
            std::fs::write(db.join("db"), vec![0u8; n]).unwrap()
        }),
        ("garbled", |db| {
            let mut b = std::fs::read(db.join("db")).unwrap();
            let n = b.len();
            for (i, x) in b[n / 4..].iter_mut().enumerate() {
                *x = (i * 131 % 251) as u8;
            }
            std::fs::write(db.join("db"), b).unwrap()
        }),
        ("truncated to half", |db| {
            let b = std::fs::read(db.join("db")).unwrap();
            std::fs::write(db.join("db"), &b[..b.len() / 2]).unwrap()
        }),
        ("deleted", |db| std::fs::remove_dir_all(db).unwrap()),
    ];
    for (what, damage) in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(d.path(), copy.path());
        damage(&copy.path().join(".skyform/state"));
        let before = std::fs::read_to_string(&runs).unwrap();
        for args in [&["status"][..], &["plan"], &["apply", "-auto-approve"], &["state", "list"]] {
            let o = skyform(copy.path(), args);
            assert_eq!(o.code, 1, "{what}: `{}` must fail:\n{}\n{}", args.join(" "), o.stdout, o.stderr);
            assert!(
                o.stderr.contains("is damaged") && o.stderr.contains("skyform state recover"),
                "{what}: {}",
                o.stderr
            );
            assert!(!o.stdout.contains("to add"), "{what}: a damaged state is not planned as empty: {}", o.stdout);
        }
        assert_eq!(std::fs::read_to_string(&runs).unwrap(), before, "{what}: nothing ran");
        let r = skyform(copy.path(), &["state", "recover"]);
        assert_eq!(r.code, 0, "{what}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("Restored state serial") && r.stdout.contains("4 task(s)"), "{what}: {}", r.stdout);
        let p = skyform(copy.path(), &["plan", "-detailed-exitcode"]);
        assert_eq!(p.code, 0, "{what}: after recovery the plan has no changes:\n{}\n{}", p.stdout, p.stderr);
        assert!(p.stdout.contains("No changes."), "{what}: {}", p.stdout);
        let again = skyform(copy.path(), &["state", "recover"]);
        assert!(again.stderr.contains("nothing to recover"), "{what}: {}", again.stderr);
    }
}

/// A child process that is killed when the test ends early (a failed assertion).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn plan_and_status_work_while_an_apply_holds_the_state_and_tracker() {
    let job_dir =
        job(&[("main.sky.hcl", "task \"slow\" {\n  run = \"sleep 3\"\n  estimate {\n    hours = 0.1\n  }\n}\n")]);
    let home = tempfile::tempdir().unwrap();
    let apply = std::process::Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(["apply", "-auto-approve"])
        .current_dir(job_dir.path())
        .env("NO_COLOR", "1")
        .env("SKYFORM_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut apply = KillOnDrop(Some(apply));
    // Wait until the task runs (the apply holds the state and the tracker by then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let st = skyform(job_dir.path(), &["status", "-json", "-refresh=false"]);
        if st.stdout.contains("\"running\"") {
            break;
        }
        if std::time::Instant::now() > deadline {
            let mut c = apply.0.take().unwrap();
            let _ = c.kill();
            let o = c.wait_with_output().unwrap();
            panic!("the task did not start: {}{}\napply: {}", st.stdout, st.stderr, String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let p = skyform(job_dir.path(), &["plan", "-lock-timeout=30s"]);
    assert_eq!(p.code, 0, "plan during apply:\n{}\n{}", p.stdout, p.stderr);
    assert!(!p.stderr.contains("could not acquire lock"), "{}", p.stderr);
    let t = skyform(job_dir.path(), &["tracker", "show"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let o = apply.0.take().unwrap().wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn an_unreadable_lock_file_is_named_and_force_unlock_force_removes_it() {
    let d = job(&[("main.sky.hcl", "task \"a\" {\n  run = \"true\"\n  estimate {\n    hours = 0.1\n  }\n}\n")]);
    std::fs::create_dir_all(d.path().join(".skyform")).unwrap();
    // What a crash between creating the lock file and writing it leaves.
    std::fs::write(d.path().join(".skyform/state.lock"), b"").unwrap();
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("unreadable") && o.stderr.contains("skyform force-unlock -force"), "{}", o.stderr);
    let u = skyform(d.path(), &["force-unlock", "-force"]);
    assert_eq!(u.code, 0, "{}\n{}", u.stdout, u.stderr);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let d = job(&[("main.sky.hcl", "task \"a\" {\n  run = \"true\"\n  estimate {\n    hours = 0.1\n  }\n}\n")]);
    let home = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(["catalog", "search", "--limit", "0"])
        .current_dir(d.path())
        .env("SKYFORM_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe (as `| head -1` does).
    let mut out = c.stdout.take().unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read(&mut out, &mut first).unwrap();
    drop(out);
    let o = c.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(o.status.code(), Some(141), "{stderr}");
}

#[test]
fn a_failed_tasks_log_is_kept_until_the_task_is_destroyed() {
    let d = job(&[(
        "main.sky.hcl",
        "task \"bad\" {\n  run = \"echo something broke; exit 4\"\n  estimate {\n    hours = 0.1\n  }\n}\n",
    )]);
    let o = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(o.code, 1);
    let log = o.stderr.split("log: ").last().unwrap().lines().next().unwrap().trim().to_string();
    assert!(log.contains(".skyform/logs/task.bad/run-1.log"), "the message points at the kept log: {}", o.stderr);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "something broke\n");
    let l = skyform(d.path(), &["logs", "task.bad"]);
    assert_eq!((l.code, l.stdout.as_str()), (0, "something broke\n"), "{}", l.stderr);
    let x = skyform(d.path(), &["destroy", "-auto-approve"]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert!(!Path::new(&log).exists(), "destroy forgets the task's logs");
}

#[test]
fn unbounded_input_is_refused_or_summarized() {
    // file() of something endless is an error, at once.
    let d = job(&[("main.sky.hcl", "locals {\n  x = file(\"/dev/zero\")\n}\n")]);
    let t0 = std::time::Instant::now();
    let o = skyform(d.path(), &["validate"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not a regular file"), "{}", o.stderr);
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    // Thousands of problems on one long line: each shown around its caret, and counted.
    let refs: Vec<String> = (0..4000).map(|i| format!("var.undefined_{i}")).collect();
    let d = job(&[("main.sky.hcl", &format!("locals {{\n  x = [{}]\n}}\n", refs.join(", ")))]);
    let o = skyform(d.path(), &["validate"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.len() < 64 * 1024, "stderr is {} bytes", o.stderr.len());
    assert!(o.stderr.contains("…and 3,950 more problems"), "{}", &o.stderr[o.stderr.len().saturating_sub(300)..]);
    let j = skyform(d.path(), &["validate", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["error_count"], 4000, "-json lists every problem");
}
