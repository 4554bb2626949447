//! What runs on the instance: the user-data bootstrap and the task script.
//!
//! Each allocation has a run directory in S3, `s3://BUCKET/skyform-runs/TOKEN/`:
//!
//! | key | written by | |
//! |---|---|---|
//! | `inputs/NAME/…` | skyform (`transfer` to `sandbox://ID/inputs/NAME`) | staged inputs |
//! | `task.sh` | skyform (`run_task`) | setup + run with the task's environment |
//! | `outputs/NAME/…` | the instance | the task's outputs |
//! | `log.txt` | the instance | the run's log (also uploaded every 15 s while it runs) |
//! | `status.json` | the instance | `{"exit_code": N}` when the run ended |
//!
//! The bootstrap (user data) waits for `task.sh`, fetches the inputs, runs, uploads the
//! outputs, log and status, and — if skyform does not release the instance within
//! `idle_shutdown_minutes` — shuts the machine down (the instance terminates on shutdown).
//! It needs bash and the AWS CLI (`aws s3`), as on the default Ubuntu image with the CLI
//! installed by the bootstrap when missing. A task's checkpoint (restore, periodic sync,
//! final sync, sync on SIGTERM) is the shared task script's (`skyform_provider::rundir`)
//! with [`S3Commands`]; while the task runs, the bootstrap passes a shutdown's SIGTERM on to
//! it, waits for it to save its checkpoint, uploads the log and exits without a status.

/// Quotes a string for bash (single quotes).
pub use skyform_provider::rundir::quote as q;

/// Where an allocation's run directory is.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDir {
    pub bucket: String,
    pub prefix: String,
}

impl RunDir {
    pub fn new(bucket: &str, token: &str) -> RunDir {
        RunDir { bucket: bucket.to_string(), prefix: format!("skyform-runs/{token}") }
    }
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
    pub fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }
}

/// The user-data script of an instance.
pub fn user_data(
    run: &RunDir,
    token: &str,
    region: &str,
    endpoint: Option<&str>,
    poll_seconds: u32,
    idle_minutes: u32,
) -> String {
    format!(
        r#"#!/bin/bash
# skyform bootstrap (run directory {uri})
set -u
export AWS_DEFAULT_REGION={region}
export SKYFORM_EP={ep}
export P={uri}
export W="${{SKYFORM_WORK:-/var/lib/skyform}}"/{token}
s3() {{ if [ -n "$SKYFORM_EP" ]; then aws --endpoint-url "$SKYFORM_EP" s3 "$@"; else aws s3 "$@"; fi; }}
export -f s3
command -v aws >/dev/null 2>&1 || {{ (apt-get update -qq && apt-get install -y -qq awscli) >/dev/null 2>&1 || pip3 install -q awscli >/dev/null 2>&1; }}
mkdir -p "$W" && cd "$W" || exit 1
until s3 cp "$P/task.sh" task.sh --only-show-errors >/dev/null 2>&1; do sleep {poll}; done
bash task.sh > log.txt 2>&1 &
pid=$!
# A shutdown (spot interruption, stop, terminate) sends SIGTERM: the task script saves its
# checkpoint; its log goes up; no status (the run did not end).
trap 'trap "" TERM; kill -TERM "$pid" 2>/dev/null; wait "$pid"; s3 cp log.txt "$P/log.txt" --only-show-errors >/dev/null 2>&1; exit 143' TERM
while kill -0 "$pid" 2>/dev/null; do
  for _ in $(seq 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  s3 cp log.txt "$P/log.txt" --only-show-errors >/dev/null 2>&1
done
wait "$pid"
code=$?
trap - TERM
[ -d outputs ] && s3 sync outputs "$P/outputs" --only-show-errors >> log.txt 2>&1
s3 cp log.txt "$P/log.txt" --only-show-errors
printf '{{"exit_code": %d}}\n' "$code" > status.json
s3 cp status.json "$P/status.json" --only-show-errors
if [ -z "${{SKYFORM_NO_SHUTDOWN:-}}" ]; then sleep {idle}; shutdown -h now; fi
"#,
        uri = q(&run.uri()),
        region = q(region),
        ep = q(endpoint.unwrap_or("")),
        token = q(token),
        poll = poll_seconds,
        idle = idle_minutes as u64 * 60,
    )
}

/// The AWS CLI commands of the task script (`skyform_provider::rundir::task_script`):
/// inputs from the run directory `$P`, the checkpoint with `aws s3 sync` (`--delete` on the
/// way up, so the stored tree is the directory's).
pub struct S3Commands;

impl skyform_provider::rundir::VmStore for S3Commands {
    fn fetch_input(&self, n: &str) -> String {
        format!("s3 sync \"$P/inputs/{n}\" \"$W/inputs/{n}\" --only-show-errors")
    }
    fn pull(&self, uri: &str, dir: &str) -> String {
        format!("s3 sync {} {dir} --only-show-errors", q(uri))
    }
    fn push(&self, dir: &str, uri: &str) -> String {
        format!("s3 sync {dir} {} --delete --only-show-errors", q(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse() {
        let rd = RunDir::new("b", "tok");
        let ud = user_data(&rd, "tok", "us-east-1", Some("http://127.0.0.1:1"), 1, 30);
        let mut r = skyform_provider::RunTaskRequest::new("id", "task.a", "echo run");
        r.setup = Some("echo setup".into());
        r.env = [("K".to_string(), "v'v".to_string())].into();
        r.inputs = vec!["data".into()];
        r.outputs = vec!["out".into()];
        r.workdir = Some("sub".into());
        r.checkpoint = Some("s3://b/skyform-l/checkpoints/task.a/ckpt".into());
        let t = skyform_provider::rundir::task_script(&r, &S3Commands);
        for s in [ud, t] {
            let st = std::process::Command::new("bash").arg("-n").arg("-c").arg(&s).status().unwrap();
            assert!(st.success(), "{s}");
        }
    }
}
