//! # skyform-provider-ray — tasks on an existing Ray cluster (a plugin)
//!
//! Runs each task as a Ray job through the Ray Jobs REST API of the cluster's dashboard
//! (`POST /api/jobs/`, `GET /api/jobs/ID`, `/logs`, `/stop`, `DELETE`), served as the plugin
//! `skyform-provider-ray` (`src/main.rs`). `provider "ray" { address, zones, price }`:
//!
//! - a zone is a group of Ray nodes: the head node (no selector), the nodes carrying a
//!   custom resource (`resource = "zone-b"`), or a node label (`label = "zone=b"`); a job is
//!   pinned to its zone by a tiny amount of that resource (`node:__internal_head__` for the
//!   head) or by `entrypoint_label_selector`;
//! - the catalog's `ray` offerings come from the cluster's nodes (`/api/v0/nodes`): one
//!   instance type per zone, `ray-ZONE`, with the largest node's CPUs, memory and GPUs, at
//!   the configured `price` per hour (default 0);
//! - `allocate` checks that a live node of the zone has the type's CPUs and GPUs before
//!   anything is submitted (a job asking for more than the cluster has would wait for Ray's
//!   15-minute start timeout) and answers `capacity_unavailable` otherwise; the allocation is
//!   a record under the job's `.skyform/ray/` (idempotent by token);
//! - `run_task` submits the job with the allocation's id as `submission_id` (a repeated
//!   submission's "already exists" means it was submitted); the task runs in its own process
//!   group, whose id is kept in the sandbox;
//! - `task_status` maps the job's status; a job whose supervisor actor died (its node was
//!   lost) is `preempted`;
//! - `release` stops the job, waits for it to end, kills the task's process group if it
//!   outlived the job (Ray orphans them when a node dies), deletes the job and the sandbox.
//!
//! Data: sandboxes are directories under the job's `.skyform/ray/` that the cluster's nodes
//! reach (a cluster on this host, or a shared filesystem); outputs are collected by
//! `transfer` from them into skyform's local store. Does HTTP and file I/O.

use serde::{Deserialize, Serialize};
use skyform_provider::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cloud name of the Ray provider.
pub const CLOUD: &str = "ray";
/// The single region of a Ray cluster.
pub const REGION: &str = "ray";
/// The resource Ray puts on the head node only.
const HEAD_RESOURCE: &str = "node:__internal_head__";

/// How a zone selects its nodes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneSpec {
    /// Nodes carrying this custom resource.
    pub resource: Option<String>,
    /// Nodes carrying this label, as `KEY=VALUE`.
    pub label: Option<String>,
}

/// `provider "ray" { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RayConfig {
    /// The dashboard's address (the Jobs API).
    pub address: String,
    /// Zones by name; a zone with neither `resource` nor `label` is the head node.
    pub zones: BTreeMap<String, ZoneSpec>,
    /// USD per hour of any Ray node (the cluster is already paid for: default 0).
    pub price: f64,
    /// The accelerator name of the nodes' GPUs in the catalog.
    pub gpu_name: String,
    /// Where allocation records and sandboxes live (relative to the job directory).
    pub root: String,
}

impl Default for RayConfig {
    fn default() -> Self {
        RayConfig {
            address: "http://127.0.0.1:8265".into(),
            zones: [("head".to_string(), ZoneSpec::default())].into_iter().collect(),
            price: 0.0,
            gpu_name: "GPU".into(),
            root: ".skyform/ray".into(),
        }
    }
}

impl RayConfig {
    /// Parses and checks a block (no I/O).
    pub fn from_json(v: &serde_json::Value) -> Result<RayConfig, ConfigError> {
        let c: RayConfig = serde_json::from_value(v.clone()).map_err(|e| ConfigError::block(e.to_string()))?;
        if !(c.address.starts_with("http://") || c.address.starts_with("https://")) {
            return Err(ConfigError::attribute("address", "`address` must be the dashboard's http:// URL"));
        }
        if c.zones.is_empty() {
            return Err(ConfigError::attribute("zones", "`zones` must name at least one zone"));
        }
        for (name, z) in &c.zones {
            if z.resource.is_some() && z.label.is_some() {
                return Err(ConfigError::attribute(
                    "zones",
                    format!("zone {name}: give `resource` or `label`, not both"),
                ));
            }
            if let Some(l) = &z.label {
                if !l.contains('=') {
                    return Err(ConfigError::attribute("zones", format!("zone {name}: `label` must be KEY=VALUE")));
                }
            }
        }
        if !(c.price >= 0.0 && c.price.is_finite()) {
            return Err(ConfigError::attribute("price", "`price` must be a non-negative number"));
        }
        Ok(c)
    }
}

/// One node of `/api/v0/nodes?detail=true`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Node {
    pub node_id: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub is_head_node: bool,
    #[serde(default)]
    pub resources_total: BTreeMap<String, f64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Node {
    fn alive(&self) -> bool {
        self.state == "ALIVE"
    }

    fn in_zone(&self, z: &ZoneSpec) -> bool {
        match (&z.resource, &z.label) {
            (Some(r), _) => self.resources_total.contains_key(r),
            (None, Some(l)) => {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                self.labels.get(k).map(String::as_str) == Some(v)
            }
            (None, None) => self.is_head_node,
        }
    }

    fn get(&self, r: &str) -> f64 {
        self.resources_total.get(r).copied().unwrap_or(0.0)
    }
}

/// The instance type of a zone: its largest node.
fn zone_type(zone: &str, nodes: &[&Node]) -> Option<(String, f64, f64, f64)> {
    let best = nodes.iter().max_by(|a, b| {
        (a.get("GPU"), a.get("CPU")).partial_cmp(&(b.get("GPU"), b.get("CPU"))).unwrap_or(std::cmp::Ordering::Equal)
    })?;
    Some((format!("ray-{zone}"), best.get("CPU"), best.get("memory") / 1e9, best.get("GPU")))
}

/// Errors of the Jobs API as provider errors (unit-tested: the kind decides failover).
pub fn http_error(status: u16, body: &str, what: &str, location: Option<&Location>) -> ProviderError {
    let kind = match status {
        401 | 403 => ErrorKind::Unauthorized,
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    };
    let mut e = ProviderError::new(kind, location, format!("{what}: HTTP {status}: {}", body.trim()));
    e.code = Some(status.to_string());
    e
}

/// A Ray job's status as a run state.
pub fn run_state(job: &serde_json::Value) -> RunState {
    let s = job.get("status").and_then(|s| s.as_str()).unwrap_or("");
    let error_type = job.get("error_type").and_then(|s| s.as_str()).unwrap_or("");
    match s {
        "SUCCEEDED" => RunState::Succeeded,
        "FAILED" if error_type == "JOB_SUPERVISOR_ACTOR_DIED" => RunState::Preempted,
        "FAILED" => {
            RunState::Failed { exit_code: job.get("driver_exit_code").and_then(|c| c.as_i64()).map(|c| c as i32) }
        }
        "STOPPED" => RunState::Failed { exit_code: None },
        _ => RunState::Running,
    }
}

fn terminal(job: &serde_json::Value) -> bool {
    matches!(job.get("status").and_then(|s| s.as_str()), Some("SUCCEEDED" | "FAILED" | "STOPPED"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    zone: String,
    instance_type: String,
    owner_tags: BTreeMap<String, String>,
    token: String,
    submitted: bool,
}

/// The Ray provider.
pub struct RayProvider {
    config: RayConfig,
    root: PathBuf,
    http: reqwest::blocking::Client,
    lock: Mutex<()>,
}

fn io(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, format!("{what}: {e}"))
}

fn hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl RayProvider {
    pub fn new(config: RayConfig, job_dir: &Path) -> Result<RayProvider, ProviderError> {
        let base = std::path::absolute(job_dir).map_err(|e| io("job directory", e))?;
        let root = base.join(&config.root);
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| io("http client", e))?;
        Ok(RayProvider { config, root, http, lock: Mutex::new(()) })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.address.trim_end_matches('/'))
    }

    fn loc(&self, zone: &str) -> Location {
        Location::new(CLOUD, REGION, zone)
    }

    fn send(&self, what: &str, rb: reqwest::blocking::RequestBuilder) -> Result<(u16, String), ProviderError> {
        let r = rb.send().map_err(|e| {
            ProviderError::new(
                ErrorKind::Transient,
                None,
                format!("{what}: the Ray dashboard at {}: {e}", self.config.address),
            )
        })?;
        let status = r.status().as_u16();
        let body = r.text().unwrap_or_default();
        Ok((status, body))
    }

    fn get_json(&self, what: &str, path: &str) -> Result<Option<serde_json::Value>, ProviderError> {
        let (status, body) = self.send(what, self.http.get(self.url(path)))?;
        match status {
            200 => serde_json::from_str(&body).map(Some).map_err(|e| io(what, e)),
            404 => Ok(None),
            s => Err(http_error(s, &body, what, None)),
        }
    }

    /// The cluster's nodes.
    pub fn nodes(&self) -> Result<Vec<Node>, ProviderError> {
        let v = self.get_json("list nodes", "/api/v0/nodes?detail=true&limit=10000")?.unwrap_or_default();
        let list = v.pointer("/data/result/result").cloned().unwrap_or(serde_json::Value::Array(vec![]));
        serde_json::from_value(list).map_err(|e| io("list nodes", e))
    }

    /// Offerings of every zone that has a live node.
    pub fn offerings(&self) -> Result<Vec<OfferingSpec>, ProviderError> {
        let nodes = self.nodes()?;
        let mut out = Vec::new();
        for (zone, spec) in &self.config.zones {
            let members: Vec<&Node> = nodes.iter().filter(|n| n.alive() && n.in_zone(spec)).collect();
            if let Some((name, cpus, mem, gpus)) = zone_type(zone, &members) {
                let mut o =
                    OfferingSpec::new(REGION, zone.clone(), name, cpus.max(1.0), mem.max(0.5), self.config.price);
                if gpus > 0.0 {
                    o.accelerator = Some(self.config.gpu_name.clone());
                    o.accelerator_count = gpus;
                }
                o.arch = Some(std::env::consts::ARCH.to_string());
                out.push(o);
            }
        }
        Ok(out)
    }

    fn rec_path(&self, id: &str) -> PathBuf {
        self.root.join("alloc").join(format!("{id}.json"))
    }

    fn record(&self, id: &str) -> Option<Record> {
        std::fs::read(self.rec_path(id)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn save(&self, r: &Record) -> Result<(), ProviderError> {
        std::fs::create_dir_all(self.root.join("alloc")).map_err(|e| io("record", e))?;
        let tmp = self.root.join("alloc").join(format!("{}.json.tmp", r.id));
        std::fs::write(&tmp, serde_json::to_vec(r).expect("record")).map_err(|e| io("record", e))?;
        std::fs::rename(&tmp, self.rec_path(&r.id)).map_err(|e| io("record", e))
    }

    fn records(&self) -> Vec<Record> {
        let mut v: Vec<Record> = std::fs::read_dir(self.root.join("alloc"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a: &Record, b| a.id.cmp(&b.id));
        v
    }

    fn sandbox(&self, id: &str) -> PathBuf {
        self.root.join("sandbox").join(id)
    }

    fn path_of(&self, uri: &str) -> Result<PathBuf, ProviderError> {
        let bad = || ProviderError::new(ErrorKind::Unsupported, None, format!("the Ray provider cannot reach `{uri}`"));
        let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
        match scheme {
            "file" => Ok(PathBuf::from(rest)),
            "ray" => Ok(self.root.join("store").join(rest)),
            "sandbox" => {
                let (id, sub) = rest.split_once('/').ok_or_else(bad)?;
                if self.record(id).is_none() {
                    return Err(io("transfer", format!("no allocation {id}")));
                }
                Ok(self.sandbox(id).join(sub))
            }
            _ => Err(bad()),
        }
    }

    fn job(&self, id: &str) -> Result<Option<serde_json::Value>, ProviderError> {
        self.get_json("get job", &format!("/api/jobs/{id}"))
    }

    /// Kills the task's process group if it outlived its job (a lost node orphans it).
    fn kill_task(&self, id: &str) {
        let Ok(pid) = std::fs::read_to_string(self.sandbox(id).join("pgid")) else { return };
        let Ok(pid) = pid.trim().parse::<u32>() else { return };
        if pid <= 1 {
            return;
        }
        let _ = std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{pid}")])
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// True when a process of the task's group is still alive.
    pub fn task_alive(&self, id: &str) -> bool {
        let Ok(pid) = std::fs::read_to_string(self.sandbox(id).join("pgid")) else { return false };
        let pgid = pid.trim();
        std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                        let f: Vec<&str> = s.rsplit(')').next().unwrap_or("").split_whitespace().collect();
                        f.first() != Some(&"Z") && f.get(2) == Some(&pgid)
                    })
                })
            })
            .unwrap_or(false)
    }
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    if src.is_dir() {
        std::fs::create_dir_all(dst)?;
        let mut entries: Vec<_> = std::fs::read_dir(src)?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            bytes += copy_tree(&p, &dst.join(p.file_name().expect("name")))?;
        }
    } else {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        bytes += std::fs::copy(src, dst)?;
    }
    Ok(bytes)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Provider for RayProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: CLOUD.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities::new(false, &["file", "ray"]),
        }
    }

    fn read(&self, req: &ReadRequest) -> Result<ReadResponse, ProviderError> {
        let mut out = Vec::new();
        for r in self.records() {
            if !req.owner_tags.iter().all(|(k, v)| r.owner_tags.get(k) == Some(v)) {
                continue;
            }
            let state =
                self.task_status(&TaskStatusRequest::new(r.id.clone())).map(|s| s.state).unwrap_or(RunState::Running);
            out.push(ResourceInfo {
                provider_id: r.id.clone(),
                location: self.loc(&r.zone),
                instance_type: r.instance_type.clone(),
                owner_tags: r.owner_tags.clone(),
                idempotency_token: r.token.clone(),
                state,
            });
        }
        Ok(ReadResponse { resources: out })
    }

    fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
        let loc = &req.location;
        let Some(spec) = self.config.zones.get(&loc.zone).filter(|_| loc.cloud == CLOUD) else {
            return Err(ProviderError::new(ErrorKind::Other, Some(loc), format!("the Ray cluster has no zone {loc}")));
        };
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = self.records().into_iter().find(|r| r.token == req.idempotency_token) {
            return Ok(AllocateResponse { provider_id: r.id });
        }
        // What the type needs, from the zone's nodes now (a lost node shrinks the zone).
        let nodes = self.nodes().map_err(|mut e| {
            e.location = Some(Box::new(loc.clone()));
            e
        })?;
        let want = self
            .offerings()?
            .into_iter()
            .find(|o| o.instance_type == req.instance_type)
            .map(|o| (o.vcpus, o.accelerator_count));
        let fits = want.is_some_and(|(cpus, gpus)| {
            nodes.iter().any(|n| n.alive() && n.in_zone(spec) && n.get("CPU") >= cpus && n.get("GPU") >= gpus)
        });
        if !fits {
            return Err(ProviderError::new(
                ErrorKind::CapacityUnavailable,
                Some(loc),
                format!("no live node of zone {} has what {} needs", loc.zone, req.instance_type),
            ));
        }
        let id = format!("ray-{}", &hash(&req.idempotency_token)[..12]);
        let r = Record {
            id: id.clone(),
            zone: loc.zone.clone(),
            instance_type: req.instance_type.clone(),
            owner_tags: req.owner_tags.clone(),
            token: req.idempotency_token.clone(),
            submitted: false,
        };
        self.save(&r)?;
        Ok(AllocateResponse { provider_id: id })
    }

    fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
        let mut r = self
            .record(&req.provider_id)
            .ok_or_else(|| io("run_task", format!("no allocation {}", req.provider_id)))?;
        let spec = self.config.zones.get(&r.zone).cloned().unwrap_or_default();
        let sb = self.sandbox(&r.id);
        let mut script = String::from("set -e\n");
        for (kind, names) in [("INPUT", &req.inputs), ("OUTPUT", &req.outputs)] {
            for n in names {
                let d = sb.join(format!("{}s", kind.to_lowercase())).join(n);
                std::fs::create_dir_all(&d).map_err(|e| io("sandbox", e))?;
                script.push_str(&format!(
                    "export SKYFORM_{kind}_{}={}\n",
                    n.to_uppercase(),
                    shell_quote(&d.display().to_string())
                ));
            }
        }
        let work = sb.join("work");
        std::fs::create_dir_all(&work).map_err(|e| io("sandbox", e))?;
        script.push_str(&format!("cd {}\n", shell_quote(&req.workdir.clone().unwrap_or(work.display().to_string()))));
        if let Some(s) = &req.setup {
            script.push_str(s);
            script.push('\n');
        }
        script.push_str(&req.run);
        script.push('\n');
        std::fs::write(sb.join("task.sh"), script).map_err(|e| io("sandbox", e))?;
        // The task in its own process group (its id kept for release), the job's exit code
        // the task's.
        let entrypoint = format!(
            "cd {sb} || exit 1; setsid bash task.sh & echo $! > {sb}/pgid; wait $!",
            sb = shell_quote(&sb.display().to_string())
        );
        let mut body = serde_json::json!({
            "entrypoint": format!("bash -c {}", shell_quote(&entrypoint)),
            "submission_id": r.id,
            "runtime_env": { "env_vars": req.env },
            "metadata": r.owner_tags,
        });
        match (&spec.resource, &spec.label) {
            (Some(res), _) => body["entrypoint_resources"] = serde_json::json!({ res: 0.001 }),
            (None, Some(l)) => {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                body["entrypoint_label_selector"] = serde_json::json!({ k: v });
            }
            (None, None) => body["entrypoint_resources"] = serde_json::json!({ HEAD_RESOURCE: 0.001 }),
        }
        let (status, text) = self.send("submit job", self.http.post(self.url("/api/jobs/")).json(&body))?;
        // A repeated submission (a retry after a lost answer) finds the job there already.
        if !(status == 200 || (status >= 500 && text.contains("already exists"))) {
            return Err(http_error(status, &text, "submit job", Some(&self.loc(&r.zone))));
        }
        r.submitted = true;
        self.save(&r)?;
        Ok(RunTaskResponse { log: sb.join("log.txt").display().to_string() })
    }

    fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
        let r = self
            .record(&req.provider_id)
            .ok_or_else(|| io("task_status", format!("no allocation {}", req.provider_id)))?;
        let log = self.sandbox(&r.id).join("log.txt");
        let state = match self.job(&r.id)? {
            Some(job) => {
                let state = run_state(&job);
                if terminal(&job) {
                    if let Ok(Some(l)) = self.get_json("job logs", &format!("/api/jobs/{}/logs", r.id)) {
                        let text = l.get("logs").and_then(|x| x.as_str()).unwrap_or("");
                        let _ = std::fs::write(&log, text);
                    }
                }
                state
            }
            // Never submitted (or deleted): nothing runs.
            None => RunState::Failed { exit_code: None },
        };
        Ok(TaskStatusResponse { state, log: log.display().to_string() })
    }

    fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
        let (src, dst) = (self.path_of(&req.from)?, self.path_of(&req.to)?);
        if !src.exists() {
            return Err(io("transfer", format!("nothing at {}", req.from)));
        }
        let bytes = copy_tree(&src, &dst).map_err(|e| io("transfer", e))?;
        Ok(TransferResponse { bytes, checksum: None })
    }

    fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
        let Some(r) = self.record(&req.provider_id) else { return Ok(ReleaseResponse { released: false }) };
        if r.submitted {
            if let Some(job) = self.job(&r.id)? {
                if !terminal(&job) {
                    self.send("stop job", self.http.post(self.url(&format!("/api/jobs/{}/stop", r.id))))?;
                    let deadline = std::time::Instant::now() + Duration::from_secs(20);
                    while std::time::Instant::now() < deadline {
                        if self.job(&r.id)?.as_ref().is_none_or(terminal) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
            // The job's processes can outlive it (a lost node): make sure they are gone.
            self.kill_task(&r.id);
            let (status, text) = self.send("delete job", self.http.delete(self.url(&format!("/api/jobs/{}", r.id))))?;
            if !(status == 200 || status == 404) {
                return Err(http_error(status, &text, "delete job", Some(&self.loc(&r.zone))));
            }
        }
        // Keep the log for `skyform logs`.
        let sb = self.sandbox(&r.id);
        for sub in ["inputs", "outputs", "work"] {
            let _ = std::fs::remove_dir_all(sb.join(sub));
        }
        std::fs::remove_file(self.rec_path(&r.id)).map_err(|e| io("release", e))?;
        Ok(ReleaseResponse { released: true })
    }
}

/// The Ray provider's factory (served by the plugin binary).
#[derive(Debug, Clone, Copy, Default)]
pub struct RayFactory;

impl Factory for RayFactory {
    fn name(&self) -> &str {
        CLOUD
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
        RayConfig::from_json(body).map(|_| ())
    }

    fn provider(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let cfg = RayConfig::from_json(body).map_err(|e| ProviderError::new(ErrorKind::Other, None, e.message))?;
        Ok(Arc::new(RayProvider::new(cfg, &ctx.job_dir)?))
    }

    fn offerings(&self, body: &serde_json::Value) -> Result<Option<Vec<OfferingSpec>>, ConfigError> {
        let cfg = RayConfig::from_json(body)?;
        let dir = std::env::temp_dir();
        let p = RayProvider::new(cfg.clone(), &dir).map_err(|e| ConfigError::block(e.message))?;
        // The cluster's shape: an unreachable cluster offers nothing (plan says so).
        p.offerings()
            .map(Some)
            .map_err(|e| ConfigError::block(format!("provider \"ray\" at {}: {}", cfg.address, e.message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_to_run_states() {
        assert_eq!(run_state(&json!({"status": "PENDING"})), RunState::Running);
        assert_eq!(run_state(&json!({"status": "RUNNING"})), RunState::Running);
        assert_eq!(run_state(&json!({"status": "SUCCEEDED"})), RunState::Succeeded);
        assert_eq!(
            run_state(
                &json!({"status": "FAILED", "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR", "driver_exit_code": 3})
            ),
            RunState::Failed { exit_code: Some(3) }
        );
        assert_eq!(
            run_state(&json!({"status": "FAILED", "error_type": "JOB_SUPERVISOR_ACTOR_DIED"})),
            RunState::Preempted,
            "a lost node is a preemption: the task is re-run per `recovery`"
        );
        assert_eq!(run_state(&json!({"status": "STOPPED"})), RunState::Failed { exit_code: None });
    }

    #[test]
    fn http_errors_map_to_kinds() {
        assert_eq!(http_error(500, "boom", "x", None).kind, ErrorKind::Transient);
        assert_eq!(http_error(429, "", "x", None).kind, ErrorKind::Throttled);
        assert_eq!(http_error(403, "", "x", None).kind, ErrorKind::Unauthorized);
        assert_eq!(http_error(400, "bad", "x", None).kind, ErrorKind::Other);
    }

    #[test]
    fn config_checks_zones_and_address() {
        assert!(RayConfig::from_json(&json!({})).is_ok());
        let e = RayConfig::from_json(&json!({"address": "127.0.0.1:8265"})).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("address"));
        let e = RayConfig::from_json(&json!({"zones": {"b": {"resource": "r", "label": "k=v"}}})).unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        assert!(RayConfig::from_json(&json!({"zonez": {}})).unwrap_err().message.contains("zonez"));
    }

    #[test]
    fn zones_select_nodes() {
        let node = |head: bool, res: &[(&str, f64)], labels: &[(&str, &str)]| Node {
            node_id: "n".into(),
            state: "ALIVE".into(),
            is_head_node: head,
            resources_total: res.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let head = node(true, &[("CPU", 2.0), ("memory", 4e9)], &[]);
        let b = node(false, &[("CPU", 1.0), ("zone-b", 1000.0), ("memory", 2e9)], &[("zone", "b")]);
        let by_res = ZoneSpec { resource: Some("zone-b".into()), label: None };
        let by_label = ZoneSpec { resource: None, label: Some("zone=b".into()) };
        assert!(head.in_zone(&ZoneSpec::default()) && !b.in_zone(&ZoneSpec::default()));
        assert!(b.in_zone(&by_res) && !head.in_zone(&by_res));
        assert!(b.in_zone(&by_label) && !head.in_zone(&by_label));
        assert_eq!(zone_type("b", &[&b]), Some(("ray-b".into(), 1.0, 2.0, 0.0)));
    }
}
