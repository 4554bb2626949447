//! The job language: valid jobs validate, every bad input gives its pinned diagnostic.

use super::*;
use skyform::config::{load, LoadOptions, VarArg};
use std::collections::BTreeMap;

fn examples() -> Vec<PathBuf> {
    let mut v = vec![root().join("testdata/jobs/multi-file"), root().join("testdata/jobs/module-job")];
    for m in std::fs::read_dir(root().join("modules")).unwrap() {
        let ex = m.unwrap().path().join("examples");
        if ex.is_dir() {
            for e in std::fs::read_dir(ex).unwrap() {
                v.push(e.unwrap().path());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn every_example_validates() {
    let all = examples();
    assert!(all.len() >= 4, "{all:?}");
    for dir in all {
        let o = skyform(&dir, &["validate"]);
        assert_eq!(o.code, 0, "{}: {}", dir.display(), o.stderr);
        assert_eq!(o.stdout.trim(), "Success! The job is valid.");
    }
}

#[test]
fn every_bad_input_gives_its_diagnostic() {
    let bad = root().join("testdata/jobs/bad");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&bad).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 20);
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let o = skyform(&dir, &["validate"]);
        assert_eq!(o.code, 1, "{name} must fail validation: {}", o.stdout);
        assert!(!o.stderr.contains("panicked"), "{name}: {}", o.stderr);
        insta::assert_snapshot!(format!("bad-{name}"), o.stderr);
    }
}

#[test]
fn validate_json_has_positions() {
    let o = skyform(&root().join("testdata/jobs/bad/undefined-task"), &["validate", "-json"]);
    assert_eq!(o.code, 1);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["error_count"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["summary"], "Undefined task");
    assert_eq!(d["pos"], serde_json::json!({"file": "main.sky.hcl", "line": 7, "col": 23}));
    assert_eq!(d["hint"], "did you mean `task.prep`?");
}

#[test]
fn all_problems_are_reported_at_once() {
    let d = job(&[(
        "main.sky.hcl",
        "task \"a\" {\n  run = var.nope\n  retires = 1\n}\n\ntask \"b\" {\n  inputs = { x = task.zz.outputs.y }\n  run = \"true\"\n}\n",
    )]);
    let o = skyform(d.path(), &["validate", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let summaries: Vec<&str> =
        v["diagnostics"].as_array().unwrap().iter().map(|d| d["summary"].as_str().unwrap()).collect();
    assert_eq!(summaries, ["Undefined variable", "Unsupported attribute", "Undefined task"]);
}

const VARS_JOB: &str = r#"
variable "a" {
  default = "default"
}
variable "b" {
  default = "default"
}
variable "c" {
  default = "default"
}
variable "d" {
  default = "default"
}
variable "n" {
  type    = number
  default = 1
}
task "t" {
  run = "echo ${var.a} ${var.b} ${var.c} ${var.d} ${var.n}"
}
"#;

#[test]
fn variable_precedence_follows_terraform() {
    // default < environment < *.auto.skyvars (lexical order) < -var / -var-file in order.
    let d = job(&[
        ("main.sky.hcl", VARS_JOB),
        ("a.auto.skyvars", "b = \"auto-a\"\nc = \"auto-a\"\n"),
        ("b.auto.skyvars", "c = \"auto-b\"\n"),
        ("extra.skyvars", "d = \"file\"\nn = 5\n"),
    ]);
    let mut env = BTreeMap::new();
    env.insert("a".to_string(), "env".to_string());
    env.insert("b".to_string(), "env".to_string());
    let opts = LoadOptions {
        var_args: vec![
            VarArg::Var("n=2".into()),
            VarArg::File(d.path().join("extra.skyvars")),
            VarArg::Var("d=cli".into()),
        ],
        env_vars: env,
        ..Default::default()
    };
    let spec = load(d.path(), &opts).unwrap().spec;
    let v = |k: &str| spec.variables[k].value.clone();
    assert_eq!(v("a"), "env");
    assert_eq!(v("b"), "auto-a");
    assert_eq!(v("c"), "auto-b");
    assert_eq!(v("d"), "cli", "a later -var beats an earlier -var-file");
    assert_eq!(v("n"), 5.0, "a later -var-file beats an earlier -var");
    assert_eq!(spec.tasks.values().next().unwrap().run, "echo env auto-a auto-b cli 5");
}

#[test]
fn cli_vars_and_errors() {
    let d = job(&[("main.sky.hcl", VARS_JOB)]);
    let o = skyform(d.path(), &["validate", "-var", "n=abc"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Invalid value for variable") && o.stderr.contains("-var n"), "{}", o.stderr);
    let o = skyform(d.path(), &["validate", "-var", "nn=3"]);
    assert!(
        o.stderr.contains("Value for undeclared variable") && o.stderr.contains("did you mean `n`?"),
        "{}",
        o.stderr
    );
    let o = skyform_env(d.path(), &["validate", "-var", "n=3"], &[("SKYFORM_VAR_n", "oops")]);
    assert_eq!(o.code, 1, "a bad env value is an error even when -var overrides it: {}", o.stderr);
}

#[test]
fn modules_get_addresses_and_dag_edges() {
    let spec = load(&root().join("testdata/jobs/module-job"), &LoadOptions::default()).unwrap().spec;
    let names: Vec<&str> = spec.tasks.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "module.pipeline.task.evens",
            "module.pipeline.task.generate",
            "module.pipeline.task.join",
            "module.pipeline.task.report",
            "module.pipeline.task.squares",
            "task.archive"
        ]
    );
    let archive = &spec.tasks[&"task.archive".parse().unwrap()];
    assert_eq!(archive.upstream(), vec!["module.pipeline.task.report".parse().unwrap()]);
    let order: Vec<String> = spec.topo_order().iter().map(|t| t.to_string()).collect();
    assert_eq!(order.first().unwrap(), "module.pipeline.task.generate");
    assert_eq!(order.last().unwrap(), "task.archive");
    assert_eq!(spec.edges.len(), 6);
}

#[test]
fn estimate_is_kept_unevaluated() {
    let spec = load(&root().join("testdata/jobs/multi-file"), &LoadOptions::default()).unwrap().spec;
    let train = &spec.tasks[&"task.train".parse().unwrap()];
    let e = train.estimate.as_ref().unwrap();
    assert_eq!(e.source, "80 / resource.accelerator_count / (resource.accelerator == \"A100\" ? 2.2 : 1)");
    assert_eq!(e.pos.as_ref().unwrap().to_string(), "tasks.sky.hcl:28:13");
    assert!(spec.variables["token"].sensitive);
    assert_eq!(spec.policy.deadline_hours, Some(36.0));
    assert_eq!(spec.policy.failover.max_cost_increase, 0.25);
}

#[test]
fn init_creates_the_state_directory() {
    let d = job(&[("main.sky.hcl", "task \"t\" {\n  run = \"true\"\n}\n")]);
    let o = skyform(d.path(), &["init"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(d.path().join(".skyform").is_dir());
    assert!(o.stdout.contains("skyform plan"));
    let v = skyform(d.path(), &["version", "-json"]);
    let j: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(j["skyform_version"], env!("CARGO_PKG_VERSION"));
}
