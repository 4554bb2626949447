//! What runs on the VM: the custom-data bootstrap and the task script.
//!
//! Each allocation has a run directory in Blob storage,
//! `az://ACCOUNT/CONTAINER/skyform-runs/TOKEN/` (the same contract as the AWS provider):
//!
//! | blob | written by | |
//! |---|---|---|
//! | `inputs/NAME/…` | skyform (`transfer` to `sandbox://ID/inputs/NAME`) | staged inputs |
//! | `task.sh` | skyform (`run_task`) | setup + run with the task's environment |
//! | `outputs/NAME/…` | the VM | the task's outputs |
//! | `log.txt` | the VM | the run's log (also uploaded every 15 s while it runs) |
//! | `status.json` | the VM | `{"exit_code": N}` when the run ended |
//!
//! The bootstrap is VM custom data: a bash script that cloud-init runs once as root on
//! first boot (Azure's Ubuntu images). It writes `blob.py` — a Blob REST client on the
//! Python 3 standard library, present on every Ubuntu image — and reaches the container
//! with a SAS token the provider made for it (account key, or a user-delegation key with
//! Entra ID), so the VM needs neither the Azure CLI nor a managed identity. It waits for
//! `task.sh`, runs it, uploads outputs, log and status. A task whose outputs fail to
//! upload ends with exit code 70 instead of 0. A task's checkpoint (restore, periodic
//! sync, final sync, sync on SIGTERM) is the shared task script's
//! (`skyform_provider::rundir`) with [`BlobCommands`]; while the task runs, the bootstrap
//! passes a shutdown's SIGTERM on to it, waits for it to save its checkpoint, uploads the
//! log and exits without a status.
//!
//! Pure functions: no I/O here.

/// The VM's Blob client (see its header for the commands).
pub const BLOB_PY: &str = include_str!("blob.py");

/// Quotes a string for bash (single quotes).
pub use skyform_provider::rundir::quote as q;

/// Where an allocation's run directory is.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDir {
    pub account: String,
    pub container: String,
    pub prefix: String,
}

impl RunDir {
    pub fn new(account: &str, container: &str, token: &str) -> RunDir {
        RunDir { account: account.into(), container: container.into(), prefix: format!("skyform-runs/{token}") }
    }
    pub fn uri(&self) -> String {
        format!("az://{}/{}/{}", self.account, self.container, self.prefix)
    }
    pub fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }
}

/// The custom data of a VM. `container_url` and `sas` reach the run's container.
pub fn custom_data(run: &RunDir, container_url: &str, sas: &str, token: &str, poll_seconds: u32) -> String {
    format!(
        r#"#!/bin/bash
# skyform bootstrap (run directory {uri})
set -u
export SKYFORM_BLOB_URL={url}
export SKYFORM_BLOB_SAS={sas}
export SKYFORM_RUN={run}
export W="${{SKYFORM_WORK:-/var/lib/skyform}}"/{token}
mkdir -p "$W" && cd "$W" || exit 1
cat > "$W/blob.py" <<'SKYFORM_BLOB_PY'
{blob_py}SKYFORM_BLOB_PY
blob() {{ python3 "$W/blob.py" "$@"; }}
export -f blob
until blob get task.sh task.sh >/dev/null 2>&1; do sleep {poll}; done
bash task.sh > log.txt 2>&1 &
pid=$!
# A shutdown (eviction, deallocation, deletion) sends SIGTERM: the task script saves its
# checkpoint; its log goes up; no status (the run did not end).
trap 'trap "" TERM; kill -TERM "$pid" 2>/dev/null; wait "$pid"; blob put log.txt log.txt >/dev/null 2>&1; exit 143' TERM
while kill -0 "$pid" 2>/dev/null; do
  for _ in $(seq 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  blob put log.txt log.txt >/dev/null 2>&1
done
wait "$pid"
code=$?
trap - TERM
if [ -d outputs ] && ! blob put-tree outputs outputs >> log.txt 2>&1; then
  echo "skyform: uploading the outputs failed" >> log.txt
  [ "$code" -eq 0 ] && code=70
fi
blob put log.txt log.txt
printf '{{"exit_code": %d}}\n' "$code" > status.json
blob put status.json status.json
"#,
        uri = run.uri(),
        url = q(container_url),
        sas = q(sas),
        run = q(&run.prefix),
        token = q(token),
        blob_py = BLOB_PY,
        poll = poll_seconds,
    )
}

/// The Blob client's commands in the task script (`skyform_provider::rundir::task_script`):
/// inputs from the run directory, the checkpoint with `get-tree` and `mirror-tree` by its
/// name from the root of the run's container (`container_uri`, `az://ACCOUNT/CONTAINER`,
/// the only container the VM's SAS reaches: [`BlobCommands::reaches`]).
pub struct BlobCommands {
    pub container_uri: String,
}

impl BlobCommands {
    /// The name of `uri` from the container's root (with a leading `/`), when the VM
    /// reaches it.
    pub fn reaches(&self, uri: &str) -> Option<String> {
        let rest = uri.strip_prefix(&self.container_uri)?.strip_prefix('/')?;
        (!rest.is_empty()).then(|| format!("/{}", rest.trim_end_matches('/')))
    }

    fn name(&self, uri: &str) -> String {
        // `run_task` checks `reaches` first; an unreachable URI fails on the VM.
        q(&self.reaches(uri).unwrap_or_else(|| uri.to_string()))
    }
}

impl skyform_provider::rundir::VmStore for BlobCommands {
    fn fetch_input(&self, n: &str) -> String {
        format!("blob get-tree {} \"$W/inputs/{n}\"", q(&format!("inputs/{n}")))
    }
    fn pull(&self, uri: &str, dir: &str) -> String {
        format!("blob get-tree {} {dir}", self.name(uri))
    }
    fn push(&self, dir: &str, uri: &str) -> String {
        format!("blob mirror-tree {dir} {}", self.name(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_and_fit_in_custom_data() {
        let rd = RunDir::new("acct", "skyform-eastus", "tok");
        let cd = custom_data(&rd, "http://127.0.0.1:1/acct/skyform-eastus", "sv=2022&sig=a%2Bb", "tok", 1);
        let mut r = skyform_provider::RunTaskRequest::new("id", "task.a", "echo run");
        r.setup = Some("echo setup".into());
        r.env = [("K".to_string(), "v'v".to_string())].into();
        r.inputs = vec!["data".into()];
        r.outputs = vec!["out".into()];
        r.workdir = Some("sub".into());
        let cmds = BlobCommands { container_uri: "az://acct/skyform-eastus".into() };
        assert_eq!(cmds.reaches("az://acct/skyform-eastus/skyform-l/ck/").as_deref(), Some("/skyform-l/ck"));
        assert_eq!(cmds.reaches("az://acct/other/skyform-l/ck"), None);
        assert_eq!(cmds.reaches("az://acct/skyform-eastus2/x"), None);
        r.checkpoint = Some("az://acct/skyform-eastus/skyform-l/checkpoints/task.a/ckpt".into());
        let t = skyform_provider::rundir::task_script(&r, &cmds);
        for s in [&cd, &t] {
            let st = std::process::Command::new("bash").arg("-n").arg("-c").arg(s).status().unwrap();
            assert!(st.success(), "{s}");
        }
        // Azure takes at most 64 KiB of base64-encoded custom data.
        assert!(crate::base64_encode(cd.as_bytes()).len() < 65_536);
        assert!(cd.contains("def put_tree"), "the Blob client is embedded whole");
    }

    #[test]
    fn blob_py_compiles() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("blob.py");
        std::fs::write(&p, BLOB_PY).unwrap();
        let st = std::process::Command::new("python3").arg("-m").arg("py_compile").arg(&p).status().unwrap();
        assert!(st.success());
    }
}
