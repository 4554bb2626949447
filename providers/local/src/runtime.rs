//! The local provider's [`Provider`]: real processes on this host.
//!
//! Layout under the provider's root (`.skyform/local` in the job directory by default):
//! `alloc/ID.json` (one file per allocation: zone, type, owner tags, token, pid),
//! `sandboxes/ID/{inputs,outputs,work}/` (the task's directories), `sandboxes/ID/log.txt`
//! and `exit_code`, and `store/BUCKET/KEY` for `local://BUCKET/KEY` objects. `file://`
//! URIs are host paths. A zone holds `slots` allocations; a full zone answers
//! `CapacityUnavailable`.
//!
//! Runs are `bash` in their own process group (so release kills everything they started)
//! behind a wrapper that records the exit code, so a run survives a crash of the engine
//! and can be found, adopted or released later. The task's script reaches bash through its
//! environment (`SKYFORM_RUN_SCRIPT`), never a file, so a secret in it is not written to
//! disk; everything under the root is the owner's only (0700 directories, 0600 files, the
//! run under `umask 077`). Faults come from the config's `faults` and
//! `SKYFORM_LOCAL_FAULTS` (JSON). I/O: the root directory and child processes.

use crate::{LocalConfig, CLOUD, REGION};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use skyform_provider::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Injected faults (tests and demos).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Zones whose allocations fail with `CapacityUnavailable`…
    pub capacity_zones: Vec<String>,
    /// …for these tasks only (`task.NAME`; empty: every task), e.g. a zone that fills up
    /// after a job's first task got its place.
    pub capacity_tasks: Vec<String>,
    /// Every allocation fails with `QuotaExceeded` (region scope).
    pub quota: bool,
    /// Preempt a running task after this many seconds…
    pub preempt_after_secs: Option<f64>,
    /// …in these zones (empty: every zone)…
    pub preempt_zones: Vec<String>,
    /// …this many times in all (default 1).
    pub preempt_times: Option<u32>,
    /// Probability that a call fails with `Transient`.
    pub transient_probability: f64,
    pub seed: u64,
    /// Allocation calls hang this long (to test per-call timeouts).
    pub hang_ms: Option<u64>,
}

impl Faults {
    /// The config's faults, overridden by `SKYFORM_LOCAL_FAULTS` (JSON) when set.
    pub fn effective(configured: &Faults) -> Result<Faults, String> {
        match std::env::var("SKYFORM_LOCAL_FAULTS") {
            Ok(s) if !s.trim().is_empty() => serde_json::from_str(&s).map_err(|e| format!("SKYFORM_LOCAL_FAULTS: {e}")),
            _ => Ok(configured.clone()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AllocRecord {
    id: String,
    zone: String,
    instance_type: String,
    owner_tags: BTreeMap<String, String>,
    token: String,
    pid: Option<u32>,
    started: Option<f64>,
    created: f64,
}

/// The local provider.
pub struct LocalProvider {
    config: LocalConfig,
    faults: Faults,
    root: PathBuf,
    children: Mutex<HashMap<String, std::process::Child>>,
    calls: Mutex<u64>,
    lock: Mutex<()>,
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Creates a directory (and its missing parents) readable by the owner only.
fn mkdir_private(p: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(p)
}

/// Writes a file readable by the owner only.
fn write_private(p: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(p)?.write_all(data)
}

fn io_err(kind: ErrorKind, what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(kind, None, format!("{what}: {e}"))
}

impl LocalProvider {
    /// A provider rooted at `config.root` relative to `job_dir`.
    pub fn new(config: LocalConfig, job_dir: &Path) -> Result<LocalProvider, String> {
        config.check()?;
        let faults = Faults::effective(&config.faults)?;
        let base = std::path::absolute(job_dir).map_err(|e| format!("{}: {e}", job_dir.display()))?;
        let root =
            if Path::new(&config.root).is_absolute() { PathBuf::from(&config.root) } else { base.join(&config.root) };
        Ok(LocalProvider {
            config,
            faults,
            root,
            children: Mutex::new(HashMap::new()),
            calls: Mutex::new(0),
            lock: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn alloc_path(&self, id: &str) -> PathBuf {
        self.root.join("alloc").join(format!("{id}.json"))
    }

    fn sandbox(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }

    fn records(&self) -> Vec<AllocRecord> {
        let Ok(rd) = std::fs::read_dir(self.root.join("alloc")) else { return vec![] };
        let mut v: Vec<AllocRecord> = rd
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|s| serde_json::from_str(&s).ok())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn record(&self, id: &str) -> Option<AllocRecord> {
        std::fs::read_to_string(self.alloc_path(id)).ok().and_then(|s| serde_json::from_str(&s).ok())
    }

    fn save(&self, r: &AllocRecord) -> Result<(), ProviderError> {
        let p = self.alloc_path(&r.id);
        mkdir_private(p.parent().expect("parent")).map_err(|e| io_err(ErrorKind::Other, "alloc dir", e))?;
        let tmp = p.with_extension("tmp");
        write_private(&tmp, &serde_json::to_vec_pretty(r).expect("json"))
            .map_err(|e| io_err(ErrorKind::Other, "alloc record", e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io_err(ErrorKind::Other, "alloc record", e))
    }

    fn transient(&self, what: &str) -> Result<(), ProviderError> {
        if self.faults.transient_probability <= 0.0 {
            return Ok(());
        }
        let mut n = self.calls.lock().expect("lock");
        *n += 1;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.faults.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if rng.gen_bool(self.faults.transient_probability.clamp(0.0, 1.0)) {
            return Err(ProviderError::new(ErrorKind::Transient, None, format!("{what}: injected transient error")));
        }
        Ok(())
    }

    /// The host path of a URI (`file://`, `local://`, `sandbox://`).
    pub fn path_of(&self, uri: &str) -> Result<PathBuf, ProviderError> {
        let bad =
            || ProviderError::new(ErrorKind::Unsupported, None, format!("the local provider cannot reach `{uri}`"));
        let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
        match scheme {
            "file" => Ok(PathBuf::from(rest)),
            "local" => Ok(self.root.join("store").join(rest)),
            "sandbox" => {
                let (id, sub) = rest.split_once('/').ok_or_else(bad)?;
                if self.record(id).is_none() {
                    return Err(ProviderError::new(ErrorKind::Other, None, format!("no allocation {id}")));
                }
                Ok(self.sandbox(id).join(sub))
            }
            _ => Err(bad()),
        }
    }

    fn pid_alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
            Err(_) => false,
        }
    }

    /// Kills the process group a run leads. Only a verified group leader that is not this
    /// process's own group is signalled (a pid of 0 or 1 would mean "everything").
    fn kill_group(pid: u32) {
        if pid <= 1 || pid == std::process::id() {
            return;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return };
        // Fields after the command name: state ppid pgrp ...
        let rest: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let pgrp: u32 = rest.get(2).and_then(|x| x.parse().ok()).unwrap_or(0);
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                s.rsplit(')').next().and_then(|r| r.split_whitespace().nth(2)).and_then(|x| x.parse::<u32>().ok())
            })
            .unwrap_or(0);
        if pgrp != pid || pgrp == own {
            return;
        }
        let _ = std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{pid}")])
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Copies a run's checkpoint directory to its store (replacing what was there). At
    /// every moment the store or its `.old` sibling holds a whole checkpoint (see
    /// [`heal_store`]), so a kill in the middle loses nothing.
    fn sync_checkpoint(&self, sb: &Path) {
        let Ok(store) = std::fs::read_to_string(sb.join("checkpoint_store")) else { return };
        let store = PathBuf::from(store.trim());
        heal_store(&store);
        let tmp = sibling(&store, "syncing");
        let old = sibling(&store, "old");
        let _ = std::fs::remove_dir_all(&tmp);
        if mkdir_private(&tmp).is_ok() && copy_tree(&sb.join("checkpoint"), &tmp, &mut 0, true).is_ok() {
            if store.exists() {
                let _ = std::fs::remove_dir_all(&old);
                if std::fs::rename(&store, &old).is_err() {
                    return;
                }
            }
            if std::fs::rename(&tmp, &store).is_ok() {
                let _ = std::fs::remove_dir_all(&old);
            }
        }
    }

    fn preemptions_done(&self) -> u32 {
        std::fs::read_to_string(self.root.join("preemptions")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }
}

/// Copies a tree; with `private` (a destination under the provider's root) directories
/// are 0700 and files 0600.
fn copy_tree(src: &Path, dst: &Path, hash: &mut u64, private: bool) -> std::io::Result<u64> {
    let mkdir = |p: &Path| if private { mkdir_private(p) } else { std::fs::create_dir_all(p) };
    let mut bytes = 0;
    if src.is_dir() {
        mkdir(dst)?;
        let mut entries: Vec<_> = std::fs::read_dir(src)?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            bytes += copy_tree(&p, &dst.join(p.file_name().expect("name")), hash, private)?;
        }
    } else {
        if let Some(parent) = dst.parent() {
            mkdir(parent)?;
        }
        let data = std::fs::read(src)?;
        for b in &data {
            *hash ^= *b as u64;
            *hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        if private {
            write_private(dst, &data)?;
        } else {
            std::fs::write(dst, &data)?;
        }
        bytes += data.len() as u64;
    }
    Ok(bytes)
}

impl Provider for LocalProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: CLOUD.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities::new(true, &["file", "local"]),
        }
    }

    fn object_store(&self, location: &Location) -> Option<String> {
        self.config.zone_stores.then(|| format!("local://{}", location.zone))
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
                location: Location::new(CLOUD, REGION, r.zone.clone()),
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
        if let Some(ms) = self.faults.hang_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        self.transient("allocate")?;
        let _g = self.lock.lock().expect("lock");
        // Idempotency: the same token returns the same allocation.
        if let Some(r) = self.records().into_iter().find(|r| r.token == req.idempotency_token) {
            return Ok(AllocateResponse { provider_id: r.id });
        }
        if loc.cloud != CLOUD || loc.region != REGION || !self.config.zones.contains(&loc.zone) {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                Some(loc),
                format!("the local provider has no zone {loc}"),
            ));
        }
        if !self.config.instance_types.iter().any(|t| t.name == req.instance_type) {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                Some(loc),
                format!("no instance type {}", req.instance_type),
            ));
        }
        if self.faults.quota {
            return Err(ProviderError::new(
                ErrorKind::QuotaExceeded,
                Some(loc),
                "injected quota error: the local vCPU quota is exhausted",
            ));
        }
        let this_task = self.faults.capacity_tasks.is_empty() || self.faults.capacity_tasks.contains(&req.task);
        if self.faults.capacity_zones.contains(&loc.zone) && this_task {
            let mut e = ProviderError::new(
                ErrorKind::CapacityUnavailable,
                Some(loc),
                format!("injected capacity error in {}", loc.zone),
            );
            e.code = Some("InsufficientCapacity".into());
            return Err(e);
        }
        let used = self.records().iter().filter(|r| r.zone == loc.zone).count();
        if used >= self.config.slots as usize {
            return Err(ProviderError::new(
                ErrorKind::CapacityUnavailable,
                Some(loc),
                format!("{} has no free slot ({} in use)", loc.zone, used),
            ));
        }
        let id = format!("lp-{}", &uuid_like(&req.idempotency_token));
        let r = AllocRecord {
            id: id.clone(),
            zone: loc.zone.clone(),
            instance_type: req.instance_type.clone(),
            owner_tags: req.owner_tags.clone(),
            token: req.idempotency_token.clone(),
            pid: None,
            started: None,
            created: now(),
        };
        let sb = self.sandbox(&id);
        for d in ["inputs", "outputs", "work"] {
            mkdir_private(&sb.join(d)).map_err(|e| io_err(ErrorKind::Other, "sandbox", e))?;
        }
        self.save(&r)?;
        Ok(AllocateResponse { provider_id: id })
    }

    fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
        self.transient("run_task")?;
        let mut r = self
            .record(&req.provider_id)
            .ok_or_else(|| ProviderError::new(ErrorKind::Other, None, format!("no allocation {}", req.provider_id)))?;
        let sb = self.sandbox(&r.id);
        let mut env: Vec<(String, String)> = vec![("SKYFORM_TASK".into(), req.task.clone())];
        for i in &req.inputs {
            let d = sb.join("inputs").join(i);
            mkdir_private(&d).map_err(|e| io_err(ErrorKind::Other, "inputs", e))?;
            env.push((format!("SKYFORM_INPUT_{}", i.to_uppercase()), d.display().to_string()));
        }
        for o in &req.outputs {
            let d = sb.join("outputs").join(o);
            mkdir_private(&d).map_err(|e| io_err(ErrorKind::Other, "outputs", e))?;
            env.push((format!("SKYFORM_OUTPUT_{}", o.to_uppercase()), d.display().to_string()));
        }
        // The checkpoint: restored from the store before the run, synced back every
        // interval by a loop beside the run, at its end, and before a preemption kills it.
        let ckpt = sb.join("checkpoint");
        let ckpt_store = match &req.checkpoint {
            Some(uri) => {
                let store = self.path_of(uri)?;
                let _ = std::fs::remove_dir_all(&ckpt);
                mkdir_private(&ckpt).map_err(|e| io_err(ErrorKind::Other, "checkpoint", e))?;
                heal_store(&store);
                if store.is_dir() {
                    copy_tree(&store, &ckpt, &mut 0, true)
                        .map_err(|e| io_err(ErrorKind::Other, "checkpoint restore", e))?;
                }
                write_private(&sb.join("checkpoint_store"), store.display().to_string().as_bytes())
                    .map_err(|e| io_err(ErrorKind::Other, "checkpoint", e))?;
                env.push(("SKYFORM_CHECKPOINT".into(), ckpt.display().to_string()));
                Some(store)
            }
            None => None,
        };
        let mut script = String::from("set -e\n");
        if let Some(s) = &req.setup {
            script.push_str(s);
            script.push('\n');
        }
        script.push_str(&req.run);
        script.push('\n');
        let _ = std::fs::remove_file(sb.join("exit_code"));
        let work = match &req.workdir {
            Some(w) => sb.join("work").join(w),
            None => sb.join("work"),
        };
        mkdir_private(&work).map_err(|e| io_err(ErrorKind::Other, "workdir", e))?;
        let log = sb.join("log.txt");
        // The script goes through the environment (not a file); the log is created private
        // and everything the run writes is the owner's only.
        let exit = sh_quote(&sb.join("exit_code"));
        let wrapper = match &ckpt_store {
            None => format!(
                "umask 077; : > {log}; bash -c \"$SKYFORM_RUN_SCRIPT\" >> {log} 2>&1; echo $? > {exit}.tmp && mv {exit}.tmp {exit}",
                log = sh_quote(&log),
            ),
            Some(store) => format!(
                "umask 077; : > {log}; \
                 sync_ckpt() {{ rm -rf {tmp}; mkdir -p {tmp} && cp -a {ckpt}/. {tmp}/ && \
                   {{ [ ! -e {store} ] || {{ rm -rf {old} && mv {store} {old}; }}; }} && mv {tmp} {store} && rm -rf {old}; }}; \
                 ( trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM; while :; do sleep {every} & wait $!; sync_ckpt; done ) & syncer=$!; \
                 bash -c \"$SKYFORM_RUN_SCRIPT\" >> {log} 2>&1; code=$?; kill $syncer 2>/dev/null; wait $syncer 2>/dev/null; \
                 sync_ckpt; echo $code > {exit}.tmp && mv {exit}.tmp {exit}",
                log = sh_quote(&log),
                ckpt = sh_quote(&ckpt),
                store = sh_quote(store),
                tmp = sh_quote(&sibling(store, "syncing")),
                old = sh_quote(&sibling(store, "old")),
                every = req.checkpoint_every_secs.max(1),
            ),
        };
        if let Some(store) = &ckpt_store {
            if let Some(parent) = store.parent() {
                mkdir_private(parent).map_err(|e| io_err(ErrorKind::Other, "checkpoint", e))?;
            }
            // The store exists from the first run on (empty until a sync), so it can be
            // copied elsewhere whenever the run moves.
            if !store.exists() {
                mkdir_private(store).map_err(|e| io_err(ErrorKind::Other, "checkpoint", e))?;
            }
        }
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
            .arg(wrapper)
            .current_dir(&work)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env.into_iter().chain(req.env.clone()) {
            cmd.env(k, v);
        }
        cmd.env("SKYFORM_RUN_SCRIPT", script);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| io_err(ErrorKind::Other, "spawn bash", e))?;
        r.pid = Some(child.id());
        r.started = Some(now());
        self.save(&r)?;
        self.children.lock().expect("lock").insert(r.id.clone(), child);
        Ok(RunTaskResponse { log: log.display().to_string() })
    }

    fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
        let r = self
            .record(&req.provider_id)
            .ok_or_else(|| ProviderError::new(ErrorKind::Other, None, format!("no allocation {}", req.provider_id)))?;
        let sb = self.sandbox(&r.id);
        let log = sb.join("log.txt").display().to_string();
        if let Some(c) = self.children.lock().expect("lock").get_mut(&r.id) {
            let _ = c.try_wait();
        }
        if sb.join("preempted").exists() {
            return Ok(TaskStatusResponse { state: RunState::Preempted, log });
        }
        if let Ok(s) = std::fs::read_to_string(sb.join("exit_code")) {
            let code: Option<i32> = s.trim().parse().ok();
            let state = if code == Some(0) { RunState::Succeeded } else { RunState::Failed { exit_code: code } };
            return Ok(TaskStatusResponse { state, log });
        }
        let Some(pid) = r.pid else { return Ok(TaskStatusResponse { state: RunState::Running, log }) };
        if let (Some(after), Some(started)) = (self.faults.preempt_after_secs, r.started) {
            let zone_ok = self.faults.preempt_zones.is_empty() || self.faults.preempt_zones.contains(&r.zone);
            let _g = self.lock.lock().expect("lock");
            if zone_ok && now() - started >= after && self.preemptions_done() < self.faults.preempt_times.unwrap_or(1) {
                // The notice a cloud gives before it reclaims a spot machine: the run is
                // stopped and its checkpoint synced as it was left.
                LocalProvider::kill_group(pid);
                self.sync_checkpoint(&sb);
                let _ = write_private(&sb.join("preempted"), b"injected preemption\n");
                let _ =
                    write_private(&self.root.join("preemptions"), (self.preemptions_done() + 1).to_string().as_bytes());
                return Ok(TaskStatusResponse { state: RunState::Preempted, log });
            }
        }
        if LocalProvider::pid_alive(pid) {
            return Ok(TaskStatusResponse { state: RunState::Running, log });
        }
        // The wrapper may have just written the exit code.
        if let Ok(s) = std::fs::read_to_string(sb.join("exit_code")) {
            let code: Option<i32> = s.trim().parse().ok();
            let state = if code == Some(0) { RunState::Succeeded } else { RunState::Failed { exit_code: code } };
            return Ok(TaskStatusResponse { state, log });
        }
        Ok(TaskStatusResponse { state: RunState::Failed { exit_code: None }, log })
    }

    fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
        self.transient("transfer")?;
        let src = self.path_of(&req.from)?;
        let dst = self.path_of(&req.to)?;
        heal_store(&src);
        if !src.exists() {
            return Err(ProviderError::new(ErrorKind::Other, None, format!("transfer: `{}` does not exist", req.from)));
        }
        if dst.exists() && dst.is_dir() {
            let _ = std::fs::remove_dir_all(&dst);
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let private = dst.starts_with(&self.root);
        let bytes = copy_tree(&src, &dst, &mut h, private).map_err(|e| io_err(ErrorKind::Other, "transfer", e))?;
        Ok(TransferResponse { bytes, checksum: Some(format!("{h:016x}")) })
    }

    fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
        let _g = self.lock.lock().expect("lock");
        let Some(r) = self.record(&req.provider_id) else { return Ok(ReleaseResponse { released: false }) };
        if let Some(pid) = r.pid {
            // A run stopped by its release keeps its progress: stopped first (its sync
            // loop with it), then its checkpoint synced as the run left it.
            let alive = LocalProvider::pid_alive(pid);
            LocalProvider::kill_group(pid);
            if alive {
                self.sync_checkpoint(&self.sandbox(&r.id));
            }
        }
        if let Some(mut c) = self.children.lock().expect("lock").remove(&r.id) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(self.sandbox(&r.id));
        let _ = std::fs::remove_file(self.alloc_path(&r.id));
        Ok(ReleaseResponse { released: true })
    }
}

/// `PATH.SUFFIX` beside `path` (a checkpoint store's staging and previous copies).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// A checkpoint store replaced by a sync is moved aside to `.old` before the new copy
/// takes its place: when a kill fell between the two renames, the previous whole copy is
/// put back.
fn heal_store(store: &Path) {
    let old = sibling(store, "old");
    if !store.exists() && old.is_dir() {
        let _ = std::fs::rename(&old, store);
    }
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// A short stable id from a token.
fn uuid_like(token: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyform_provider::conformance;

    fn provider(faults: Faults) -> (tempfile::TempDir, LocalProvider) {
        let d = tempfile::tempdir().unwrap();
        let cfg = LocalConfig { faults, ..LocalConfig::default() };
        let p = LocalProvider::new(cfg, d.path()).unwrap();
        (d, p)
    }

    #[test]
    fn conformance_kit_passes() {
        let (_d, p) = provider(Faults { capacity_zones: vec!["zone-c".into()], ..Default::default() });
        conformance::lifecycle(&p, &Location::new("local", "local", "zone-a"), "local.small", "local://conformance")
            .unwrap();
        conformance::capacity_error(&p, &Location::new("local", "local", "zone-c"), "local.small").unwrap();
    }

    #[test]
    fn release_kills_the_process_group() {
        let (_d, p) = provider(Faults::default());
        let a = p
            .allocate(&AllocateRequest::new("t", Location::new("local", "local", "zone-a"), "local.small", "tok"))
            .unwrap();
        p.run_task(&RunTaskRequest::new(a.provider_id.clone(), "t", "sleep 300 & sleep 300")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pid = p.record(&a.provider_id).unwrap().pid.unwrap();
        assert!(LocalProvider::pid_alive(pid));
        assert!(p.release(&ReleaseRequest::new(a.provider_id.clone())).unwrap().released);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!LocalProvider::pid_alive(pid), "the run's process group is gone");
        assert!(!p.sandbox(&a.provider_id).exists(), "the sandbox is removed");
    }

    #[test]
    fn slots_quota_and_preemption() {
        let (_d, p) = provider(Faults { preempt_after_secs: Some(0.2), ..Default::default() });
        let req = |i: usize| {
            let mut r =
                AllocateRequest::new("t", Location::new("local", "local", "zone-b"), "local.small", format!("tok-{i}"));
            r.spot = true;
            r
        };
        for i in 0..8 {
            p.allocate(&req(i)).unwrap();
        }
        let e = p.allocate(&req(8)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::CapacityUnavailable, "a full zone has no capacity");
        let id = p.allocate(&req(0)).unwrap().provider_id;
        p.run_task(&RunTaskRequest::new(id.clone(), "t", "sleep 30")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(p.task_status(&TaskStatusRequest::new(id.clone())).unwrap().state, RunState::Preempted);
        p.release(&ReleaseRequest::new(id)).unwrap();
        let (_d2, q) = provider(Faults { quota: true, ..Default::default() });
        let e = q.allocate(&req(0)).unwrap_err();
        assert_eq!((e.kind, e.scope), (ErrorKind::QuotaExceeded, Scope::Region));
    }
}
