//! skyform's integration tests: one binary, one module per area. Each test runs the real
//! `skyform` binary (or the library) on files under `testdata/` and `modules/`, with
//! `SKYFORM_HOME` pointed at a temporary directory and colour off.

mod apply;
mod automation;
mod aws;
mod aws_reoptimize;
mod azure;
mod catalog;
mod catalog_update;
mod checkpoints;
mod comment;
mod compare;
mod config;
mod crash;
mod engine;
mod examples;
mod fmt;
mod fuzz;
mod gcp;
mod html;
mod migration;
mod optimize;
mod plan;
mod plugins;
mod reliability;
mod reoptimize;
mod secrets;
mod tracker_prices;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared catalog CSVs (`../shared/catalog/skypilot` beside the clone).
pub fn shared_catalog() -> PathBuf {
    root().join("../shared/catalog/skypilot")
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `skyform ARGS` in `dir` with a private SKYFORM_HOME.
pub fn skyform(dir: &Path, args: &[&str]) -> Out {
    skyform_env(dir, args, &[])
}

pub fn skyform_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyform"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1").env("SKYFORM_HOME", home.path());
    no_public_price_apis(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("skyform runs");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Points the price APIs that `tracker refresh` and `plan` ask for Azure and GCP spot
/// prices at a closed loopback port, so that no test reaches the public ones (a test that
/// serves them passes its own URL, which wins).
pub fn no_public_price_apis(cmd: &mut Command) {
    cmd.env("SKYFORM_AZURE_PRICES_URL", "http://127.0.0.1:9").env("SKYFORM_GCP_BILLING_URL", "http://127.0.0.1:9");
}

/// Writes files into a fresh temporary directory.
pub fn job(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let p = d.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }
    d
}

/// A child process that is killed (and reaped) when dropped, so a failing test leaves no
/// `skyform apply` running behind it.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("a child").id()
    }

    /// Kills it now (SIGKILL, as `kill -9`) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    /// Waits for it to end and returns what it printed.
    pub fn wait(mut self) -> Out {
        let o = self.0.take().expect("a child").wait_with_output().expect("wait");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `skyform ARGS` in `dir` in the background (output piped) with its own
/// SKYFORM_HOME, which it returns; the child is killed if the test ends first.
pub fn spawn_skyform(dir: &Path, args: &[&str], env: &[(String, String)]) -> (KillOnDrop, tempfile::TempDir) {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyform"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("SKYFORM_HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    no_public_price_apis(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    (KillOnDrop(Some(cmd.spawn().expect("skyform runs"))), home)
}

/// An HCL block (`provider "gcp"`, `backend "gcs"`) with the attributes of a JSON object,
/// each value written as its JSON text (a valid HCL expression).
pub fn hcl_block(header: &str, body: &serde_json::Value) -> String {
    let mut s = format!("{header} {{\n");
    for (k, v) in body.as_object().expect("a JSON object") {
        s.push_str(&format!("  {k} = {v}\n"));
    }
    s.push_str("}\n");
    s
}

/// The job's state as `skyform state pull` prints it.
pub fn state_json(dir: &Path) -> serde_json::Value {
    let o = skyform(dir, &["state", "pull"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap()
}

/// The tracker's blocks in force, from `skyform tracker show -json`.
pub fn tracker_blocks(dir: &Path) -> Vec<serde_json::Value> {
    let t: serde_json::Value = serde_json::from_str(&skyform(dir, &["tracker", "show", "-json"]).stdout).unwrap();
    t["blocks"].as_array().unwrap().clone()
}

/// Waits up to 60 s until `path` exists (a VM's script runs on this host).
pub fn wait_file(path: &Path, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{what}: {} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `task` recorded as running on the local provider since `started`: one allocation
/// (`provider_id`, idempotency `token`, tagged with the state's `lineage`) and one running
/// run writing to `log`, as an apply that is still going leaves them.
pub fn running_task(
    task: skyform::config::Task,
    placement: skyform::state::PlacementRecord,
    lineage: &str,
    provider_id: &str,
    token: &str,
    started: u64,
    log: Option<String>,
) -> skyform::state::TaskState {
    use skyform::state::{Allocation, Run, TaskState, TaskStatus};
    TaskState {
        spec_hash: task.spec_hash.clone(),
        spec: Some(task),
        status: TaskStatus::Running,
        placement: Some(placement.clone()),
        allocations: vec![Allocation {
            provider: "local".into(),
            placement,
            provider_id: Some(provider_id.into()),
            owner_tags: [("skyform:lineage".to_string(), lineage.to_string())].into(),
            idempotency_token: token.into(),
            created: started,
            released: None,
            status: "running".into(),
        }],
        runs: vec![Run {
            attempt: 1,
            status: TaskStatus::Running,
            exit_code: None,
            log,
            start: started,
            end: None,
            cost: 0.0,
        }],
        ..Default::default()
    }
}
