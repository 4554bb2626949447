//! `skyform fmt`: -check exit codes, -diff, comments kept, -recursive.

use super::*;

const UGLY: &str = "# the job\ntask \"a\" {\nrun=\"x\"   # inline note\n      retries =2\n\n\n\n  resources {\ncpus = \"8+\"\n  }\n}\n";
const PRETTY: &str = "# the job\ntask \"a\" {\n  run     = \"x\" # inline note\n  retries = 2\n\n  resources {\n    cpus = \"8+\"\n  }\n}\n";

#[test]
fn check_diff_and_rewrite() {
    let d = job(&[("main.sky.hcl", UGLY)]);
    let o = skyform(d.path(), &["fmt", "-check", "-diff"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stdout.contains("-run=\"x\"   # inline note"), "{}", o.stdout);
    assert!(o.stdout.contains("+  run     = \"x\" # inline note"), "{}", o.stdout);
    assert_eq!(std::fs::read_to_string(d.path().join("main.sky.hcl")).unwrap(), UGLY, "-check writes nothing");
    let o = skyform(d.path(), &["fmt"]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout.trim(), "main.sky.hcl");
    assert_eq!(std::fs::read_to_string(d.path().join("main.sky.hcl")).unwrap(), PRETTY);
    let o = skyform(d.path(), &["fmt", "-check"]);
    assert_eq!(o.code, 0, "formatted files pass -check");
    assert!(o.stdout.is_empty());
}

#[test]
fn recursive_and_syntax_errors() {
    let d = job(&[("main.sky.hcl", PRETTY), ("sub/x.sky.hcl", UGLY), ("sub/broken/y.sky.hcl", "task \"a\" {\n")]);
    let o = skyform(d.path(), &["fmt", "-check"]);
    assert_eq!(o.code, 0, "without -recursive only the top directory: {}", o.stderr);
    let o = skyform(d.path(), &["fmt", "-check", "-recursive"]);
    assert_eq!(o.code, 1, "a syntax error is an error");
    assert!(o.stderr.contains("sub/broken/y.sky.hcl:"), "{}", o.stderr);
}

#[test]
fn repository_files_are_formatted() {
    for dir in ["modules", "testdata/jobs/multi-file", "testdata/jobs/module-job"] {
        let o = skyform(&root().join(dir), &["fmt", "-check", "-recursive"]);
        assert_eq!(o.code, 0, "{dir}: {}{}", o.stdout, o.stderr);
    }
}
