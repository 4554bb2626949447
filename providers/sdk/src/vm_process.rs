//! A VM played by a process group on this host: what the cloud providers' test agents
//! run for each instance their fakes (moto, the Compute Engine and Resource Manager fakes)
//! hold, so the real boot scripts do the work.
//!
//! [`VmProcess::boot`] starts a `sh` group leader that runs the script in the
//! background and waits on its stdin. [`VmProcess::stop`] closes that pipe, and the leader
//! stops its group as a machine's shutdown does: SIGTERM to every process, up to
//! [`STOP_GRACE`] for the script to end (the task script saves its checkpoint then),
//! SIGKILL to what is left. The pipe also closes when the test process dies, even by
//! SIGKILL, so no VM outlives its test. Spawns and signals processes.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a stopping VM's processes get between SIGTERM and SIGKILL (a real shutdown
/// waits longer; the task script needs a few seconds to save its checkpoint).
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// The group leader: the script (`$SKYFORM_VM_SCRIPT`) in the background, then, once stdin
/// closes, SIGTERM to the group, [`STOP_GRACE`], SIGKILL.
fn leader() -> String {
    format!(
        r#"bash -c "$SKYFORM_VM_SCRIPT" </dev/null & b=$!; trap '' TERM; read _; kill -TERM 0; (sleep {}; kill -KILL 0) & wait $b; kill -KILL 0"#,
        STOP_GRACE.as_secs()
    )
}

/// One VM: its process group's leader.
pub struct VmProcess {
    child: Child,
}

impl VmProcess {
    /// Boots `script` with `env` in its environment; its output goes to `log` (else
    /// nowhere). None when the process cannot be started.
    pub fn boot<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        script: &str,
        env: impl IntoIterator<Item = (K, V)>,
        log: Option<&Path>,
    ) -> Option<VmProcess> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(leader()).env("SKYFORM_VM_SCRIPT", script).envs(env).stdin(Stdio::piped());
        match log.and_then(|p| std::fs::File::create(p).ok()) {
            Some(f) => {
                let f2 = f.try_clone().ok()?;
                cmd.stdout(f).stderr(f2);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().ok().map(|child| VmProcess { child })
    }

    /// Reaps the leader if it has ended (the script finished and the group is gone).
    pub fn reap(&mut self) {
        let _ = self.child.try_wait();
    }

    /// Stops the VM as a shutdown does (see the module doc) and waits for it. If the leader
    /// is still there [`STOP_GRACE`] + 5 s later, the group is killed from here (only while
    /// the leader runs: once reaped, its pid may belong to someone else).
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + STOP_GRACE + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = self.child.id();
        if matches!(self.child.try_wait(), Ok(None)) && pid > 1 && pid != std::process::id() {
            let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{pid}")).stderr(Stdio::null()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script sees SIGTERM when the VM stops, and gets to act on it.
    #[test]
    fn a_stop_gives_the_script_its_sigterm_then_ends_the_group() {
        let d = tempfile::tempdir().unwrap();
        let mark = d.path().join("mark");
        let script = format!(
            "trap 'echo stopped > {m}; exit 0' TERM; echo up > {m}.up; while :; do sleep 0.1; done",
            m = mark.display()
        );
        let vm = VmProcess::boot(&script, [("X", "1")], None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.path().join("mark.up").exists() {
            assert!(Instant::now() < deadline, "the script never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let t0 = Instant::now();
        vm.stop();
        assert_eq!(std::fs::read_to_string(&mark).unwrap(), "stopped\n");
        assert!(t0.elapsed() < STOP_GRACE, "ended at its SIGTERM, not at the SIGKILL");
    }
}
