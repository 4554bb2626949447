//! The run-directory contract the cloud providers share: the task script a VM runs in its
//! working directory `$W` — `set -e`, each input fetched by the provider's own command into
//! `$W/inputs/NAME` (`SKYFORM_INPUT_NAME`), each output an empty `$W/outputs/NAME`
//! (`SKYFORM_OUTPUT_NAME`), the task's environment, then `setup` and `run` in
//! `$W/work[/WORKDIR]` — and the shell quoting it uses. Pure text, no I/O.

use crate::RunTaskRequest;

/// `s` as one single-quoted shell word (any byte but NUL survives `bash`).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The task script for `req`; `fetch(NAME)` is the provider's command that fills
/// `"$W/inputs/NAME"` from the run directory (`s3 sync …`, `gcs pull …`, `blob get-tree …`).
pub fn task_script(req: &RunTaskRequest, fetch: impl Fn(&str) -> String) -> String {
    let mut s = String::from("set -e\n");
    s.push_str(&format!("export SKYFORM_TASK={}\n", quote(&req.task)));
    for n in &req.inputs {
        let u = n.to_uppercase();
        s.push_str(&format!("mkdir -p \"$W/inputs/{n}\"\n{}\nexport SKYFORM_INPUT_{u}=\"$W/inputs/{n}\"\n", fetch(n)));
    }
    for n in &req.outputs {
        let u = n.to_uppercase();
        s.push_str(&format!("mkdir -p \"$W/outputs/{n}\"\nexport SKYFORM_OUTPUT_{u}=\"$W/outputs/{n}\"\n"));
    }
    for (k, v) in &req.env {
        s.push_str(&format!("export {k}={}\n", quote(v)));
    }
    let wd = match &req.workdir {
        Some(w) => format!("$W/work/{w}"),
        None => "$W/work".into(),
    };
    s.push_str(&format!("mkdir -p \"{wd}\" && cd \"{wd}\"\n"));
    if let Some(setup) = &req.setup {
        s.push_str(setup);
        s.push('\n');
    }
    s.push_str(&req.run);
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_bash() {
        let tricky = "it's $HOME `x` \"y\"";
        let out =
            std::process::Command::new("bash").arg("-c").arg(format!("printf %s {}", quote(tricky))).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), tricky);
    }

    #[test]
    fn the_script_runs_the_contract_in_bash() {
        let d = tempfile::tempdir().unwrap();
        let mut r = RunTaskRequest::new("id", "task.a", "cat \"$SKYFORM_INPUT_DATA/x\" > \"$SKYFORM_OUTPUT_OUT/y\"; echo \"$K\" >> \"$SKYFORM_OUTPUT_OUT/y\"; pwd >> \"$SKYFORM_OUTPUT_OUT/y\"");
        r.setup = Some("echo setup > \"$W/setup.txt\"".into());
        r.env = [("K".to_string(), "v'v $HOME".to_string())].into();
        r.inputs = vec!["data".into()];
        r.outputs = vec!["out".into()];
        r.workdir = Some("sub".into());
        // The "provider's fetch" writes one file, as a sync from the run directory would.
        let s = task_script(&r, |n| format!("echo fetched > \"$W/inputs/{n}/x\""));
        let st = std::process::Command::new("bash").arg("-c").arg(&s).env("W", d.path()).status().unwrap();
        assert!(st.success(), "{s}");
        let y = std::fs::read_to_string(d.path().join("outputs/out/y")).unwrap();
        assert_eq!(y, format!("fetched\nv'v $HOME\n{}\n", d.path().join("work/sub").display()));
        assert_eq!(std::fs::read_to_string(d.path().join("setup.txt")).unwrap(), "setup\n");
    }
}
