//! A sensitive variable followed everywhere: every command's output, every file skyform
//! writes (saved plans, state, snapshots, tracker, sandboxes, logs) — the value is found
//! nowhere but in the task's environment, and what skyform writes is the owner's only.

use super::*;

const SECRET: &str = "s3cr3t-Zq8-value";

fn secret_job() -> tempfile::TempDir {
    job(&[(
        "main.sky.hcl",
        r#"
variable "token" {
  type      = string
  sensitive = true
}

task "call" {
  env     = { TOKEN = var.token }
  outputs = { o = { size_gb = 0.001 } }
  run     = "test \"$TOKEN\" = \"${var.token}\" && echo authorized > $SKYFORM_OUTPUT_O/answer"
  estimate {
    hours = 0.1
  }
}

output "answer" {
  value = task.call.outputs.o
}

output "token" {
  value     = var.token
  sensitive = true
}
"#,
    )])
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        }
        out.push(p);
    }
}

#[test]
fn a_sensitive_value_is_shown_nowhere_and_skyform_files_are_private() {
    let d = secret_job();
    let var = format!("token={SECRET}");
    let with_var = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["-var", &var]);
        skyform(d.path(), &v)
    };
    let mut seen = String::new();
    let mut run = |o: Out, what: &str, code: i32| {
        assert_eq!(o.code, code, "{what}:\n{}\n{}", o.stdout, o.stderr);
        seen.push_str(&format!("--- {what}\n{}\n{}\n", o.stdout, o.stderr));
    };
    run(with_var(&["validate"]), "validate", 0);
    run(with_var(&["plan"]), "plan", 0);
    run(with_var(&["plan", "-json"]), "plan -json", 0);
    run(with_var(&["plan", "-out=p.plan"]), "plan -out", 0);
    run(skyform(d.path(), &["show", "p.plan"]), "show", 0);
    run(skyform(d.path(), &["show", "-json", "p.plan"]), "show -json", 0);
    run(skyform(d.path(), &["show", "-format=markdown", "p.plan"]), "show markdown", 0);
    run(with_var(&["apply", "p.plan"]), "apply p.plan", 0);
    run(with_var(&["status"]), "status", 0);
    run(with_var(&["status", "-json"]), "status -json", 0);
    run(with_var(&["state", "pull"]), "state pull", 0);
    run(with_var(&["state", "show", "task.call"]), "state show", 0);
    run(with_var(&["output"]), "output", 0);
    run(with_var(&["output", "-json", "answer"]), "output answer", 0);
    run(with_var(&["graph"]), "graph", 0);
    run(with_var(&["logs", "task.call"]), "logs", 0);
    run(with_var(&["show"]), "show state", 0);
    assert!(seen.contains("(sensitive value)"), "sensitive values are marked as hidden");
    assert!(!seen.contains(SECRET), "the secret was printed:\n{seen}");
    // The task got it (through its environment) and used it.
    let out = with_var(&["output", "-json", "answer"]);
    let uri: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(uri["uri"].as_str().unwrap().starts_with("local://"), "{}", out.stdout);
    let mut files = Vec::new();
    files_under(d.path(), &mut files);
    let answer = files.iter().find(|p| p.ends_with("answer")).expect("the output is stored");
    assert_eq!(std::fs::read_to_string(answer).unwrap(), "authorized\n", "the task saw the secret");
    // No file holds it, and skyform's files are the owner's only.
    for f in &files {
        if f.is_file() {
            let bytes = std::fs::read(f).unwrap();
            assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "{} holds the secret", f.display());
        }
        let rel = f.strip_prefix(d.path()).unwrap();
        if rel.starts_with(".skyform") || rel == Path::new("p.plan") {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            let want = if f.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{} is {mode:o}", rel.display());
        }
    }
    let dot = std::fs::metadata(d.path().join(".skyform")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&dot.permissions()) & 0o777, 0o700);
    // A saved plan needs the values again at apply, and refuses a changed one.
    let q = with_var(&["plan", "-replace=task.call", "-out=q.plan"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert!(!q.stdout.contains(SECRET) && !q.stderr.contains(SECRET));
    let other = skyform(d.path(), &["apply", "q.plan", "-var", "token=something-else"]);
    assert_eq!(other.code, 1, "{}", other.stdout);
    assert!(other.stderr.contains("configuration changed since it was made"), "{}", other.stderr);
}

#[test]
fn an_output_showing_a_sensitive_value_must_be_marked_sensitive() {
    let d = job(&[(
        "main.sky.hcl",
        "variable \"token\" {\n  type      = string\n  sensitive = true\n  default   = \"abcdef\"\n}\n\noutput \"leak\" {\n  value = \"Bearer ${var.token}\"\n}\n",
    )]);
    let o = skyform(d.path(), &["validate"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Output refers to sensitive values"), "{}", o.stderr);
    assert!(o.stderr.contains("main.sky.hcl:8:11") && o.stderr.contains("sensitive = true"), "{}", o.stderr);
    assert!(!o.stderr.contains("abcdef"), "{}", o.stderr);
}
