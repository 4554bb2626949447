//! What runs on the instance: the startup-script and the task script (pure text).
//!
//! Each allocation has a run directory in Cloud Storage, `gs://BUCKET/skyform-runs/TOKEN/`
//! (the same contract as the AWS provider's S3 run directory):
//!
//! | object | written by | |
//! |---|---|---|
//! | `inputs/NAME/…` | skyform (`transfer` to `sandbox://ID/inputs/NAME`) | staged inputs |
//! | `task.sh` | skyform (`run_task`) | setup + run with the task's environment |
//! | `outputs/NAME/…` | the instance | the task's outputs |
//! | `log.txt` | the instance | the run's log (also uploaded every 15 s while it runs) |
//! | `status.json` | the instance | `{"exit_code": N}` when the run ended |
//!
//! The startup-script (instance metadata `startup-script`, run as root at boot by the guest
//! agent of GCE's Ubuntu and Debian images) writes a small Python helper ([`GCS_PY`],
//! standard library only) that speaks the Cloud Storage JSON API: with a bearer token from
//! the metadata server on GCE, or without one against the endpoint baked into the script
//! (an emulator). It waits for `task.sh`, runs it, uploads the log every 15 s, then the
//! outputs, the log and the status, and — when skyform does not release the instance within
//! `idle_shutdown_minutes` — shuts the machine down. A boot that finds `status.json` already
//! there (a restart after the run) does not run the task again. A task's checkpoint
//! (restore, periodic sync, final sync, sync on SIGTERM) is the shared task script's
//! (`skyform_provider::rundir`) with [`GcsCommands`]; while the task runs, the
//! startup-script passes a shutdown's SIGTERM on to it, waits for it to save its
//! checkpoint, uploads the log and exits without a status.

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
        format!("gs://{}/{}", self.bucket, self.prefix)
    }
    pub fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }
}

/// The Cloud Storage helper the instance runs (`python3 gcs.py get|put|pull|push|mirror
/// ...`; `mirror DIR URI` is `push` that sends only the files whose MD5 differs from the
/// object's `md5Hash` and deletes the objects under URI that DIR does not hold). Exit
/// status 3: the object to get does not exist.
pub const GCS_PY: &str = r#"import base64, hashlib, json, os, sys, time, urllib.error, urllib.parse, urllib.request
EP = os.environ.get("SKYFORM_GCS_ENDPOINT", "").rstrip("/")
EMULATOR = bool(EP)
EP = EP or "https://storage.googleapis.com"
META = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
_token = [None, 0.0]

def token():
    if EMULATOR:
        return None
    if _token[0] is None or time.time() > _token[1] - 120:
        r = urllib.request.Request(META, headers={"Metadata-Flavor": "Google"})
        with urllib.request.urlopen(r, timeout=20) as f:
            d = json.load(f)
        _token[0], _token[1] = d["access_token"], time.time() + float(d.get("expires_in", 300))
    return _token[0]

def call(method, url, body=None, headers=None, missing_ok=False):
    for attempt in range(6):
        h = dict(headers or {})
        t = token()
        if t:
            h["Authorization"] = "Bearer " + t
        data = body() if callable(body) else body
        try:
            return urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=h), timeout=600)
        except urllib.error.HTTPError as e:
            if e.code == 404 and missing_ok:
                return None
            if e.code not in (408, 429, 500, 502, 503, 504) or attempt == 5:
                raise
        except (urllib.error.URLError, OSError):
            if attempt == 5:
                raise
        time.sleep(min(2 ** attempt, 30))

def split(uri):
    b, _, k = uri[len("gs://"):].partition("/")
    return b, k.rstrip("/")

def quote(s):
    return urllib.parse.quote(s, safe="")

def get(b, k, path):
    r = call("GET", "%s/storage/v1/b/%s/o/%s?alt=media" % (EP, b, quote(k)), missing_ok=True)
    if r is None:
        return False
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with r, open(path + ".part", "wb") as f:
        while True:
            c = r.read(1 << 20)
            if not c:
                break
            f.write(c)
    os.replace(path + ".part", path)
    return True

def put(path, b, k):
    size = os.path.getsize(path)
    f = open(path, "rb")
    def body():
        f.seek(0)
        return f
    url = "%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (EP, b, quote(k))
    with f:
        call("POST", url, body, {"Content-Type": "application/octet-stream", "Content-Length": str(size)}).close()

def objects(b, prefix):
    out, page = {}, None
    while True:
        url = "%s/storage/v1/b/%s/o?prefix=%s" % (EP, b, quote(prefix + "/"))
        if page:
            url += "&pageToken=" + quote(page)
        with call("GET", url) as r:
            d = json.load(r)
        for i in d.get("items", []):
            if not i["name"].endswith("/"):
                out[i["name"]] = i.get("md5Hash")
        page = d.get("nextPageToken")
        if not page:
            return out

def names(b, prefix):
    return list(objects(b, prefix))

def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""):
            h.update(c)
    return base64.b64encode(h.digest()).decode()

def main(argv):
    op = argv[0]
    if op == "get":
        b, k = split(argv[1])
        return 0 if get(b, k, argv[2]) else 3
    if op == "put":
        b, k = split(argv[2])
        put(argv[1], b, k)
        return 0
    if op == "pull":
        b, p = split(argv[1])
        for n in names(b, p):
            get(b, n, os.path.join(argv[2], n[len(p) + 1:]))
        return 0
    if op in ("push", "mirror"):
        b, p = split(argv[2])
        # A mirror sends only what changed (the object's MD5 differs).
        there = objects(b, p) if op == "mirror" else {}
        keep = set()
        for root, _, files in os.walk(argv[1]):
            for name in sorted(files):
                full = os.path.join(root, name)
                k = p + "/" + os.path.relpath(full, argv[1]).replace(os.sep, "/")
                if there.get(k) is None or there[k] != md5(full):
                    put(full, b, k)
                keep.add(k)
        if op == "mirror":
            for n in there:
                if n not in keep:
                    call("DELETE", "%s/storage/v1/b/%s/o/%s" % (EP, b, quote(n)), missing_ok=True)
        return 0
    print("usage: gcs.py get|put|pull|push|mirror ...", file=sys.stderr)
    return 2

if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except urllib.error.HTTPError as e:
        print("gcs.py: %s %s: %s" % (e.code, e.reason, e.read()[:400]), file=sys.stderr)
        sys.exit(1)
"#;

/// The startup-script of an instance. `storage_endpoint` is an emulator's endpoint (no
/// token is asked for then); `SKYFORM_WORK` and `SKYFORM_NO_SHUTDOWN` in its environment
/// redirect the work directory and skip the final shutdown (the test agent sets them).
pub fn startup_script(
    run: &RunDir,
    token: &str,
    storage_endpoint: Option<&str>,
    poll_seconds: u32,
    idle_minutes: u32,
) -> String {
    format!(
        r#"#!/bin/bash
# skyform startup-script (run directory {uri})
set -u
export SKYFORM_GCS_ENDPOINT={ep}
export P={uri}
export W="${{SKYFORM_WORK:-/var/lib/skyform}}"/{token}
mkdir -p "$W" && cd "$W" || exit 1
cat > "$W/gcs.py" <<'SKYFORM_GCS_PY'
{py}SKYFORM_GCS_PY
gcs() {{ python3 "$W/gcs.py" "$@"; }}
export -f gcs
# A boot after the run ended (a restart) does not run the task again.
if ! gcs get "$P/status.json" "$W/status.prev" 2>/dev/null; then
  until gcs get "$P/task.sh" task.sh 2>/dev/null; do sleep {poll}; done
  bash task.sh > log.txt 2>&1 &
  pid=$!
  # A shutdown (preemption, stop, delete) sends SIGTERM: the task script saves its
  # checkpoint; its log goes up; no status (the run did not end).
  trap 'trap "" TERM; kill -TERM "$pid" 2>/dev/null; wait "$pid"; gcs put log.txt "$P/log.txt" 2>/dev/null; exit 143' TERM
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    gcs put log.txt "$P/log.txt" 2>/dev/null
  done
  wait "$pid"
  code=$?
  trap - TERM
  [ -d outputs ] && gcs push outputs "$P/outputs" >> log.txt 2>&1
  gcs put log.txt "$P/log.txt"
  printf '{{"exit_code": %d}}\n' "$code" > status.json
  gcs put status.json "$P/status.json"
fi
if [ -z "${{SKYFORM_NO_SHUTDOWN:-}}" ]; then sleep {idle}; shutdown -h now; fi
"#,
        uri = q(&run.uri()),
        ep = q(storage_endpoint.unwrap_or("")),
        token = q(token),
        py = GCS_PY,
        poll = poll_seconds,
        idle = idle_minutes as u64 * 60,
    )
}

/// The helper's commands in the task script (`skyform_provider::rundir::task_script`):
/// inputs from the run directory `$P`, the checkpoint with `pull` and `mirror`.
pub struct GcsCommands;

impl skyform_provider::rundir::VmStore for GcsCommands {
    fn fetch_input(&self, n: &str) -> String {
        format!("gcs pull \"$P/inputs/{n}\" \"$W/inputs/{n}\"")
    }
    fn pull(&self, uri: &str, dir: &str) -> String {
        format!("gcs pull {} {dir}", q(uri))
    }
    fn push(&self, dir: &str, uri: &str) -> String {
        format!("gcs mirror {dir} {}", q(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse() {
        let rd = RunDir::new("b", "tok");
        assert_eq!(rd.uri(), "gs://b/skyform-runs/tok");
        let ud = startup_script(&rd, "tok", Some("http://127.0.0.1:1"), 1, 30);
        let mut r = skyform_provider::RunTaskRequest::new("id", "task.a", "echo run");
        r.setup = Some("echo setup".into());
        r.env = [("K".to_string(), "v'v".to_string())].into();
        r.inputs = vec!["data".into()];
        r.outputs = vec!["out".into()];
        r.workdir = Some("sub".into());
        r.checkpoint = Some("gs://b/skyform-l/checkpoints/task.a/ckpt".into());
        let t = skyform_provider::rundir::task_script(&r, &GcsCommands);
        for s in [&ud, &t] {
            let st = std::process::Command::new("bash").arg("-n").arg("-c").arg(s).status().unwrap();
            assert!(st.success(), "{s}");
        }
    }

    #[test]
    fn the_helper_compiles_under_python3() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("gcs.py");
        std::fs::write(&f, GCS_PY).unwrap();
        let st = std::process::Command::new("python3").arg("-m").arg("py_compile").arg(&f).status().unwrap();
        assert!(st.success());
        // No arguments it knows: usage, exit 2, no network.
        let st = std::process::Command::new("python3")
            .arg(&f)
            .arg("help")
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(2));
    }
}
