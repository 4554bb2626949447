//! skyform's integration tests: one binary, one module per area. Each test runs the real
//! `skyform` binary (or the library) on files under `testdata/` and `modules/`, with
//! `SKYFORM_HOME` pointed at a temporary directory and colour off.

mod apply;
mod automation;
mod aws;
mod catalog;
mod comment;
mod compare;
mod config;
mod crash;
mod engine;
mod examples;
mod fmt;
mod fuzz;
mod html;
mod optimize;
mod plan;
mod reliability;
mod secrets;

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
