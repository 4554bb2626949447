//! The run-directory contract the cloud providers share: the task script a VM runs in its
//! working directory `$W` — `set -e`, each input fetched by the provider's own command into
//! `$W/inputs/NAME` (`SKYFORM_INPUT_NAME`), each output an empty `$W/outputs/NAME`
//! (`SKYFORM_OUTPUT_NAME`), the task's environment, then `setup` and `run` in
//! `$W/work[/WORKDIR]` — and the shell quoting it uses. Pure text, no I/O.
//!
//! A task with a checkpoint (`RunTaskRequest::checkpoint`, a URI in the provider's object
//! store) gets `SKYFORM_CHECKPOINT=$W/checkpoint`: the script restores the tree at the URI
//! into it before `setup` (an empty directory when nothing is there yet), syncs it back every
//! `checkpoint_every_secs` while the run goes on, once more when the run ends (success or
//! failure, before the script exits with the run's code), and when the script gets SIGTERM —
//! what a VM's shutdown sends to every process, as on a spot interruption or a preemption —
//! after giving the run a few seconds to stop. The provider supplies the commands that move
//! the trees ([`VmStore`]); the logic is here once.

use crate::RunTaskRequest;

/// Seconds the run gets to stop after the script's SIGTERM before the checkpoint is saved.
pub const STOP_GRACE_SECS: u32 = 5;

/// `s` as one single-quoted shell word (any byte but NUL survives `bash`).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell commands a provider's VM moves trees with (the AWS CLI, the provider's own
/// helper script, ...). Each returns one command line; `dir` is a shell word (already
/// quoted, e.g. `"$SKYFORM_CHECKPOINT"`), `uri` the URI as the request gave it.
pub trait VmStore {
    /// Fills `"$W/inputs/NAME"` from the run directory.
    fn fetch_input(&self, name: &str) -> String;
    /// Fills the empty directory `dir` with the tree at `uri`; nothing there is success.
    fn pull(&self, uri: &str, dir: &str) -> String;
    /// Makes the tree at `uri` hold the files of `dir`.
    fn push(&self, dir: &str, uri: &str) -> String;
}

/// The task script for `req`, moving its data with `store`'s commands.
pub fn task_script(req: &RunTaskRequest, store: &dyn VmStore) -> String {
    let mut s = String::from("set -e\n");
    s.push_str(&format!("export SKYFORM_TASK={}\n", quote(&req.task)));
    for n in &req.inputs {
        let u = n.to_uppercase();
        s.push_str(&format!(
            "mkdir -p \"$W/inputs/{n}\"\n{}\nexport SKYFORM_INPUT_{u}=\"$W/inputs/{n}\"\n",
            store.fetch_input(n)
        ));
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
    let mut work = format!("mkdir -p \"{wd}\" && cd \"{wd}\"\n");
    if let Some(setup) = &req.setup {
        work.push_str(setup);
        work.push('\n');
    }
    work.push_str(&req.run);
    work.push('\n');
    match &req.checkpoint {
        None => s.push_str(&work),
        Some(uri) => s.push_str(&checkpointed(uri, req.checkpoint_every_secs.max(1), &work, store)),
    }
    s
}

/// `work` (setup and run) with the checkpoint at `uri` restored before it, synced every
/// `every` seconds while it runs, when it ends and on SIGTERM.
fn checkpointed(uri: &str, every: u64, work: &str, store: &dyn VmStore) -> String {
    let dir = "\"$SKYFORM_CHECKPOINT\"";
    let shown = quote(uri);
    format!(
        r#"export SKYFORM_CHECKPOINT="$W/checkpoint"
rm -rf "$SKYFORM_CHECKPOINT" "$W/checkpoint.stop"
mkdir -p "$SKYFORM_CHECKPOINT"
skyform_ckpt_pull() {{ {pull}; }}
skyform_ckpt_push() {{ {push}; }}
if ! skyform_ckpt_pull; then echo "skyform: restoring the checkpoint from "{shown}" failed" >&2; exit 1; fi
echo "skyform: checkpoint restored from "{shown}" ($(find "$SKYFORM_CHECKPOINT" -type f | wc -l) files)"
(
  i=0
  while sleep 1 && [ ! -e "$W/checkpoint.stop" ]; do
    i=$((i+1))
    if [ "$i" -ge {every} ]; then
      i=0
      skyform_ckpt_push || echo "skyform: syncing the checkpoint to "{shown}" failed" >&2
    fi
  done
) &
skyform_ckpt_loop=$!
(
{work})&
skyform_run=$!
set +e
skyform_ckpt_save() {{
  touch "$W/checkpoint.stop"
  wait "$skyform_ckpt_loop" 2>/dev/null
  skyform_ckpt_push || echo "skyform: saving the checkpoint to "{shown}" failed" >&2
}}
skyform_stop() {{
  trap '' TERM
  kill -TERM "$skyform_run" 2>/dev/null
  for _ in $(seq {grace}); do kill -0 "$skyform_run" 2>/dev/null || break; sleep 1; done
  echo "skyform: stopped; saving the checkpoint" >&2
  skyform_ckpt_save
  exit 143
}}
trap skyform_stop TERM
wait "$skyform_run"
code=$?
trap '' TERM
skyform_ckpt_save
exit "$code"
"#,
        pull = store.pull(uri, dir),
        push = store.push(dir, uri),
        grace = STOP_GRACE_SECS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A "provider" whose object store is this host's file system: a URI is a directory.
    struct HostStore;

    impl VmStore for HostStore {
        fn fetch_input(&self, n: &str) -> String {
            format!("echo fetched > \"$W/inputs/{n}/x\"")
        }
        fn pull(&self, uri: &str, dir: &str) -> String {
            let u = quote(uri);
            format!("if [ -d {u} ]; then cp -R {u}/. {dir}; fi")
        }
        fn push(&self, dir: &str, uri: &str) -> String {
            let (u, t) = (quote(uri), quote(&format!("{uri}.tmp")));
            format!("rm -rf {t} && cp -R {dir} {t} && rm -rf {u} && mv {t} {u}")
        }
    }

    #[test]
    fn quoting_survives_bash() {
        let tricky = "it's $HOME `x` \"y\"";
        let out = Command::new("bash").arg("-c").arg(format!("printf %s {}", quote(tricky))).output().unwrap();
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
        let s = task_script(&r, &HostStore);
        let st = Command::new("bash").arg("-c").arg(&s).env("W", d.path()).status().unwrap();
        assert!(st.success(), "{s}");
        let y = std::fs::read_to_string(d.path().join("outputs/out/y")).unwrap();
        assert_eq!(y, format!("fetched\nv'v $HOME\n{}\n", d.path().join("work/sub").display()));
        assert_eq!(std::fs::read_to_string(d.path().join("setup.txt")).unwrap(), "setup\n");
        assert!(!d.path().join("checkpoint").exists(), "no checkpoint asked for, none made");
    }

    /// A run that counts to `to` in `$SKYFORM_CHECKPOINT/n` from where the checkpoint left
    /// it, noting each start in `$W/starts`.
    fn counting(store: &Path, to: u32, every: u64) -> RunTaskRequest {
        let run = format!(
            "n=$(cat \"$SKYFORM_CHECKPOINT/n\" 2>/dev/null || echo 0); echo \"start $n\" >> \"$W/starts\"; while [ $n -lt {to} ]; do n=$((n+1)); echo $n > \"$SKYFORM_CHECKPOINT/n.tmp\"; mv \"$SKYFORM_CHECKPOINT/n.tmp\" \"$SKYFORM_CHECKPOINT/n\"; sleep 0.2; done; echo $n > \"$SKYFORM_OUTPUT_OUT/n\""
        );
        let mut r = RunTaskRequest::new("id", "task.a", run);
        r.outputs = vec!["out".into()];
        r.checkpoint = Some(store.display().to_string());
        r.checkpoint_every_secs = every;
        r
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn a_checkpoint_is_restored_before_the_run_and_saved_when_it_ends_even_on_failure() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("store/ckpt");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("n"), "5\n").unwrap();
        let w = d.path().join("w");
        std::fs::create_dir_all(&w).unwrap();
        // The interval is longer than the run: only the final sync can save it.
        let s = task_script(&counting(&store, 8, 3600), &HostStore);
        let st = Command::new("bash").arg("-c").arg(&s).env("W", &w).status().unwrap();
        assert!(st.success(), "{s}");
        assert_eq!(read(&w.join("starts")), "start 5\n", "the run began from the restored checkpoint");
        assert_eq!(read(&w.join("outputs/out/n")), "8\n");
        assert_eq!(read(&store.join("n")), "8\n", "saved when the run ended");

        // A failing run keeps its exit code, and its checkpoint is saved all the same.
        let mut r = RunTaskRequest::new("id", "task.a", "echo 9 > \"$SKYFORM_CHECKPOINT/n\"; exit 7");
        r.checkpoint = Some(store.display().to_string());
        r.checkpoint_every_secs = 3600;
        let st = Command::new("bash").arg("-c").arg(task_script(&r, &HostStore)).env("W", &w).status().unwrap();
        assert_eq!(st.code(), Some(7));
        assert_eq!(read(&store.join("n")), "9\n");

        // Nothing at the URI: the run starts from an empty directory.
        let empty = d.path().join("store/none");
        let w2 = d.path().join("w2");
        std::fs::create_dir_all(&w2).unwrap();
        let st = Command::new("bash")
            .arg("-c")
            .arg(task_script(&counting(&empty, 2, 3600), &HostStore))
            .env("W", &w2)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(read(&w2.join("starts")), "start 0\n");
        assert_eq!(read(&empty.join("n")), "2\n");
    }

    /// A process group that is killed when the test ends, even by a failed assertion.
    struct Group(std::process::Child);

    impl Drop for Group {
        fn drop(&mut self) {
            if matches!(self.0.try_wait(), Ok(None)) {
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
            }
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_checkpoint_is_synced_while_the_run_goes_on_and_saved_on_sigterm() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("store/ckpt");
        let w = d.path().join("w");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::create_dir_all(d.path().join("store")).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(task_script(&counting(&store, 1000, 1), &HostStore)).env("W", &w).stdout(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = Group(cmd.spawn().unwrap());
        let child = &mut child.0;
        // The periodic sync brings the count to the store while the run goes on.
        let deadline = Instant::now() + Duration::from_secs(20);
        while read(&store.join("n")).trim().parse::<u32>().unwrap_or(0) < 3 {
            assert!(Instant::now() < deadline, "no periodic sync");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(child.try_wait().unwrap().is_none(), "the run goes on");
        // A VM's shutdown: SIGTERM to every process of the group.
        let pg = format!("-{}", child.id());
        assert!(Command::new("kill").args(["-TERM", "--", &pg]).status().unwrap().success());
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(143), "stopped, not finished");
        let local = read(&w.join("checkpoint/n"));
        assert!(!local.is_empty());
        assert_eq!(read(&store.join("n")), local, "the last count was saved at the stop");
        assert!(!w.join("outputs/out/n").exists(), "the run did not finish");
    }
}
