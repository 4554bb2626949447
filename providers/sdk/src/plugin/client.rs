//! skyform's side of the protocol: [`PluginFactory`], a [`Factory`] whose provider is a
//! child process.
//!
//! Each built provider owns one plugin process (started and configured when it is built,
//! restarted on the next call after it died). Calls are multiplexed on the process by id,
//! each with a deadline. What can go wrong with a plugin becomes a [`PluginError`] naming
//! the plugin and its executable, then a [`ProviderError`] the engine handles like any
//! other: a crash or a hang is `transient` (the call is retried on a fresh process), a
//! line that is not the protocol is `other`, a process that cannot start or speaks another
//! protocol version is `other` at cloud scope. The plugin's stderr is appended to a log
//! file when one is given, and its last lines are quoted when it dies.

use super::*;
use crate::{
    AllocateRequest, AllocateResponse, BuildContext, ConfigError, ErrorKind, Factory, Location, Market, OfferingSpec,
    Provider, ProviderError, ProviderInfo, ReadRequest, ReadResponse, ReleaseRequest, ReleaseResponse, RunTaskRequest,
    RunTaskResponse, Scope, SpotPricesRequest, SpotPricesResponse, TaskStatusRequest, TaskStatusResponse,
    TransferRequest, TransferResponse,
};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The per-call deadline when the block sets no `plugin_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How many lines of the plugin's stderr an error quotes.
const TAIL_LINES: usize = 10;

/// Why a call to a plugin failed (other than the provider's own errors, which cross the
/// wire as they are).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    #[error("cannot start plugin {plugin} ({path}): {error}")]
    Start { plugin: String, path: String, error: String },
    #[error(
        "plugin {plugin} ({path}) speaks protocol version {got}; this skyform speaks {want}: install a build of the plugin for protocol {want}"
    )]
    Version { plugin: String, path: String, got: u32, want: u32 },
    #[error("plugin {plugin} ({path}) did not answer `{verb}` within {secs} s; it was stopped")]
    Timeout { plugin: String, path: String, verb: String, secs: u64 },
    #[error("plugin {plugin} ({path}) exited during `{verb}` ({status}){tail}")]
    Exited { plugin: String, path: String, verb: String, status: String, tail: String },
    #[error("plugin {plugin} ({path}) answered `{verb}` with a line that is not the protocol: {line}")]
    Garbage { plugin: String, path: String, verb: String, line: String },
    #[error("plugin {plugin} ({path}) is `{announced}`, not `{plugin}`")]
    WrongName { plugin: String, path: String, announced: String },
}

impl PluginError {
    /// The kind the engine sees: crashes and hangs are retried on a fresh process.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PluginError::Timeout { .. } | PluginError::Exited { .. } => ErrorKind::Transient,
            _ => ErrorKind::Other,
        }
    }
}

impl From<PluginError> for ProviderError {
    fn from(e: PluginError) -> ProviderError {
        let kind = e.kind();
        let mut p = ProviderError::new(kind, None, e.to_string());
        if kind == ErrorKind::Other {
            // The plugin is unusable for every location of its cloud.
            p.scope = Scope::Cloud;
        }
        p.code = Some("plugin".into());
        p
    }
}

/// Where and how to start a plugin.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    path: PathBuf,
    timeout: Duration,
    log: Option<PathBuf>,
}

impl Spec {
    fn path_text(&self) -> String {
        self.path.display().to_string()
    }
}

/// One running plugin process.
struct Conn {
    spec: Spec,
    child: Arc<Mutex<Child>>,
    stdin: Mutex<Option<ChildStdin>>,
    pending: Arc<Mutex<HashMap<u64, mpsc::Sender<Response>>>>,
    /// Set when the process is unusable: the error every later call gets.
    broken: Arc<Mutex<Option<Broken>>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    next: AtomicU64,
    hello: Handshake,
}

#[derive(Debug, Clone)]
enum Broken {
    Garbage(String),
    Closed,
    Stopped(PluginError),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn clip(s: &str) -> String {
    let s = s.trim_end();
    if s.chars().count() > 200 {
        format!("`{}…`", s.chars().take(200).collect::<String>())
    } else {
        format!("`{s}`")
    }
}

impl Conn {
    fn start(spec: &Spec) -> Result<Conn, PluginError> {
        let start_err = |error: String| PluginError::Start { plugin: spec.name.clone(), path: spec.path_text(), error };
        let mut child = Command::new(&spec.path)
            .env(PROTOCOL_ENV, PROTOCOL_VERSION.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| start_err(e.to_string()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stdin = child.stdin.take();
        let child = Arc::new(Mutex::new(child));
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        {
            let tail = tail.clone();
            let log = spec.log.clone();
            std::thread::spawn(move || {
                let mut file = log.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(f) = file.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    let mut t = lock(&tail);
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        let pending: Arc<Mutex<HashMap<u64, mpsc::Sender<Response>>>> = Arc::default();
        let broken: Arc<Mutex<Option<Broken>>> = Arc::default();
        let (hs_tx, hs_rx) = mpsc::channel::<String>();
        {
            let (pending, broken, child) = (pending.clone(), broken.clone(), child.clone());
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                match lines.next() {
                    Some(Ok(l)) => {
                        if hs_tx.send(l).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
                let why = loop {
                    match lines.next() {
                        Some(Ok(l)) if l.trim().is_empty() => {}
                        Some(Ok(l)) => match serde_json::from_str::<Response>(&l) {
                            Ok(r) => {
                                if let Some(tx) = lock(&pending).remove(&r.id) {
                                    let _ = tx.send(r);
                                }
                            }
                            Err(_) => {
                                let _ = lock(&child).kill();
                                break Broken::Garbage(l);
                            }
                        },
                        _ => break Broken::Closed,
                    }
                };
                lock(&broken).get_or_insert(why);
                // Dropping the senders wakes every waiting call.
                lock(&pending).clear();
            });
        }
        let conn_timeout = spec.timeout.min(Duration::from_secs(30));
        let hello_line = hs_rx.recv_timeout(conn_timeout);
        let kill = || {
            let _ = lock(&child).kill();
        };
        let line = match hello_line {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill();
                return Err(PluginError::Timeout {
                    plugin: spec.name.clone(),
                    path: spec.path_text(),
                    verb: "handshake".into(),
                    secs: conn_timeout.as_secs(),
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = exit_status(&child);
                return Err(PluginError::Exited {
                    plugin: spec.name.clone(),
                    path: spec.path_text(),
                    verb: "handshake".into(),
                    status,
                    tail: tail_text(&tail),
                });
            }
        };
        let hello: Handshake = match serde_json::from_str(&line) {
            Ok(h) => h,
            Err(_) => {
                kill();
                // An older or newer protocol may still say its version.
                if let Some(got) = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("protocol").and_then(|p| p.as_u64()))
                {
                    return Err(PluginError::Version {
                        plugin: spec.name.clone(),
                        path: spec.path_text(),
                        got: got as u32,
                        want: PROTOCOL_VERSION,
                    });
                }
                return Err(PluginError::Garbage {
                    plugin: spec.name.clone(),
                    path: spec.path_text(),
                    verb: "handshake".into(),
                    line: clip(&line),
                });
            }
        };
        if hello.protocol != PROTOCOL_VERSION {
            kill();
            return Err(PluginError::Version {
                plugin: spec.name.clone(),
                path: spec.path_text(),
                got: hello.protocol,
                want: PROTOCOL_VERSION,
            });
        }
        if hello.plugin != spec.name {
            kill();
            return Err(PluginError::WrongName {
                plugin: spec.name.clone(),
                path: spec.path_text(),
                announced: hello.plugin,
            });
        }
        Ok(Conn {
            spec: spec.clone(),
            child,
            stdin: Mutex::new(stdin),
            pending,
            broken,
            tail,
            next: AtomicU64::new(1),
            hello,
        })
    }

    fn is_broken(&self) -> bool {
        lock(&self.broken).is_some()
    }

    /// The error for a call to `verb` on a broken process.
    fn failure(&self, verb: &str) -> PluginError {
        let (plugin, path, verb_s) = (self.spec.name.clone(), self.spec.path_text(), verb.to_string());
        match lock(&self.broken).clone() {
            Some(Broken::Garbage(line)) => PluginError::Garbage { plugin, path, verb: verb_s, line: clip(&line) },
            Some(Broken::Stopped(e)) => e,
            Some(Broken::Closed) | None => PluginError::Exited {
                plugin,
                path,
                verb: verb_s,
                status: exit_status(&self.child),
                tail: tail_text(&self.tail),
            },
        }
    }

    fn call(&self, verb: &str, params: serde_json::Value) -> Result<serde_json::Value, ProviderError> {
        if self.is_broken() {
            return Err(self.failure(verb).into());
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(id, tx);
        let mut line = serde_json::to_string(&Request { id, verb: verb.to_string(), params })
            .map_err(|e| ProviderError::new(ErrorKind::Other, None, format!("cannot encode `{verb}`: {e}")))?;
        line.push('\n');
        let written = match lock(&self.stdin).as_mut() {
            Some(w) => w.write_all(line.as_bytes()).and_then(|_| w.flush()),
            None => Err(std::io::Error::other("stdin closed")),
        };
        if written.is_err() {
            lock(&self.pending).remove(&id);
            lock(&self.broken).get_or_insert(Broken::Closed);
            return Err(self.failure(verb).into());
        }
        match rx.recv_timeout(self.spec.timeout) {
            Ok(Response { error: Some(e), .. }) => Err(e),
            Ok(Response { result, .. }) => Ok(result.unwrap_or(serde_json::Value::Null)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.pending).remove(&id);
                let e = PluginError::Timeout {
                    plugin: self.spec.name.clone(),
                    path: self.spec.path_text(),
                    verb: verb.to_string(),
                    secs: self.spec.timeout.as_secs(),
                };
                *lock(&self.broken) = Some(Broken::Stopped(e.clone()));
                let mut child = lock(&self.child);
                let _ = child.kill();
                let _ = child.wait();
                Err(e.into())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.failure(verb).into()),
        }
    }

    fn call_as<T: serde::de::DeserializeOwned>(&self, verb: &str, params: impl Serialize) -> Result<T, ProviderError> {
        let p = serde_json::to_value(params)
            .map_err(|e| ProviderError::new(ErrorKind::Other, None, format!("cannot encode `{verb}`: {e}")))?;
        let v = self.call(verb, p)?;
        serde_json::from_value(v.clone()).map_err(|e| {
            PluginError::Garbage {
                plugin: self.spec.name.clone(),
                path: self.spec.path_text(),
                verb: verb.to_string(),
                line: format!("{} ({e})", clip(&v.to_string())),
            }
            .into()
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing stdin asks the plugin to finish; one that does not is stopped.
        lock(&self.stdin).take();
        let mut child = lock(&self.child);
        for _ in 0..100 {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn exit_status(child: &Mutex<Child>) -> String {
    let mut c = lock(child);
    for _ in 0..100 {
        match c.try_wait() {
            Ok(Some(s)) => return s.to_string(),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return e.to_string(),
        }
    }
    let _ = c.kill();
    "closed its stdout and was stopped".into()
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    // The stderr reader may still be draining the last lines.
    std::thread::sleep(Duration::from_millis(20));
    let t = lock(tail);
    if t.is_empty() {
        String::new()
    } else {
        format!("; its last stderr lines:\n  {}", t.iter().cloned().collect::<Vec<_>>().join("\n  "))
    }
}

/// The attributes of a `provider` block that are skyform's, not the plugin's.
pub const BLOCK_ATTRIBUTES: &[&str] = &["plugin", "plugin_timeout"];

/// A provider served by a plugin executable.
pub struct PluginFactory {
    spec: Spec,
    /// The process that answers the factory verbs (`check`, `offerings`) and the handshake.
    shared: Mutex<Option<Arc<Conn>>>,
    hello: OnceLock<Result<Handshake, PluginError>>,
}

impl std::fmt::Debug for PluginFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginFactory").field("name", &self.spec.name).field("path", &self.spec.path).finish()
    }
}

impl PluginFactory {
    /// The plugin `name` at `path` (not started until it is needed).
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        PluginFactory {
            spec: Spec { name: name.into(), path: path.into(), timeout: DEFAULT_TIMEOUT, log: None },
            shared: Mutex::new(None),
            hello: OnceLock::new(),
        }
    }

    /// The per-call deadline (a block's `plugin_timeout` overrides it).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout = timeout;
        self
    }

    /// Appends the plugin's stderr to `log`.
    pub fn with_log(mut self, log: impl Into<PathBuf>) -> Self {
        self.spec.log = Some(log.into());
        self
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    /// The plugin's handshake (starting it once to get it).
    pub fn handshake(&self) -> Result<Handshake, PluginError> {
        self.hello
            .get_or_init(|| match self.shared_conn() {
                Ok(c) => Ok(c.hello.clone()),
                Err(e) => Err(e),
            })
            .clone()
    }

    fn shared_conn(&self) -> Result<Arc<Conn>, PluginError> {
        let mut slot = lock(&self.shared);
        if let Some(c) = slot.as_ref().filter(|c| !c.is_broken()) {
            return Ok(c.clone());
        }
        let c = Arc::new(Conn::start(&self.spec)?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The block without skyform's own attributes, and the spec with its timeout.
    fn split(&self, body: &serde_json::Value) -> Result<(serde_json::Value, Spec), ConfigError> {
        let mut spec = self.spec.clone();
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut() {
            if let Some(t) = o.remove("plugin_timeout") {
                let secs = t.as_f64().filter(|s| *s > 0.0 && s.is_finite()).ok_or_else(|| {
                    ConfigError::attribute("plugin_timeout", "`plugin_timeout` must be a positive number of seconds")
                })?;
                spec.timeout = Duration::from_secs_f64(secs);
            }
            if let Some(p) = o.remove("plugin") {
                if !p.is_string() {
                    return Err(ConfigError::attribute("plugin", "`plugin` must be the path of an executable"));
                }
            }
        }
        Ok((body, spec))
    }

    fn factory_call<T: serde::de::DeserializeOwned>(
        &self,
        verb: &str,
        config: serde_json::Value,
    ) -> Result<T, ProviderError> {
        let c = self.shared_conn()?;
        c.call_as(verb, ConfigParams { config })
    }
}

impl Factory for PluginFactory {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn version(&self) -> String {
        match self.handshake() {
            Ok(h) => h.version,
            Err(_) => "unavailable".into(),
        }
    }

    fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
        let (config, _) = self.split(body)?;
        let r: CheckResult = self.factory_call(verb::CHECK, config).map_err(|e| ConfigError::block(e.message))?;
        match r.problem {
            None => Ok(()),
            Some(p) => Err(ConfigError { attribute: p.attribute, message: p.message }),
        }
    }

    fn provider(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(self.plugin_provider(body, ctx)?))
    }

    fn market(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Option<Box<dyn Market>>, ProviderError> {
        let p = self.plugin_provider(body, ctx)?;
        Ok(p.has_market.then(|| Box::new(PluginMarket(p)) as Box<dyn Market>))
    }

    fn price_source(&self) -> &str {
        "the catalog (the plugin has no market)"
    }

    fn offerings(&self, body: &serde_json::Value) -> Result<Option<Vec<OfferingSpec>>, ConfigError> {
        let (config, _) = self.split(body)?;
        let r: OfferingsResult =
            self.factory_call(verb::OFFERINGS, config).map_err(|e| ConfigError::block(e.message))?;
        Ok(r.offerings)
    }
}

impl PluginFactory {
    /// Starts and configures a plugin process for a job.
    pub fn plugin_provider(
        &self,
        body: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<PluginProvider, ProviderError> {
        let (config, spec) = self.split(body).map_err(|e| ProviderError::new(ErrorKind::Other, None, e.message))?;
        let job_dir = std::path::absolute(&ctx.job_dir).unwrap_or_else(|_| ctx.job_dir.clone());
        let p = PluginProvider {
            spec,
            configure: ConfigureParams { config, job_dir },
            conn: Mutex::new(None),
            info: OnceLock::new(),
            has_market: false,
            stores: Mutex::default(),
        };
        let c = p.conn()?;
        let has_market = c.1;
        Ok(PluginProvider { has_market, ..p })
    }
}

#[derive(Debug, Deserialize)]
struct Configured {
    info: ProviderInfo,
    #[serde(default)]
    market: bool,
}

/// A provider whose calls go to a plugin process.
pub struct PluginProvider {
    spec: Spec,
    configure: ConfigureParams,
    conn: Mutex<Option<Arc<Conn>>>,
    info: OnceLock<ProviderInfo>,
    has_market: bool,
    /// `object_store` answers by location: the engine asks for every output it collects,
    /// and the answer is a function of the location and the configuration.
    stores: Mutex<HashMap<Location, Option<String>>>,
}

impl PluginProvider {
    /// The running, configured process (started again after it died), and whether the
    /// plugin has a market.
    fn conn(&self) -> Result<(Arc<Conn>, bool), ProviderError> {
        let mut slot = lock(&self.conn);
        if let Some(c) = slot.as_ref().filter(|c| !c.is_broken()) {
            return Ok((c.clone(), self.has_market));
        }
        *slot = None;
        let c = Arc::new(Conn::start(&self.spec)?);
        let done: Configured = c.call_as(verb::CONFIGURE, &self.configure)?;
        let _ = self.info.set(done.info);
        *slot = Some(c.clone());
        Ok((c, done.market))
    }

    fn call<T: serde::de::DeserializeOwned>(&self, verb: &str, params: impl Serialize) -> Result<T, ProviderError> {
        let (c, _) = self.conn()?;
        c.call_as(verb, params)
    }

    /// The plugin's pid (tests kill it).
    pub fn pid(&self) -> Option<u32> {
        lock(&self.conn).as_ref().map(|c| lock(&c.child).id())
    }
}

impl Provider for PluginProvider {
    fn info(&self) -> ProviderInfo {
        if let Some(i) = self.info.get() {
            return i.clone();
        }
        let _ = self.conn();
        self.info.get().cloned().unwrap_or_else(|| ProviderInfo {
            name: self.spec.name.clone(),
            version: String::new(),
            capabilities: Default::default(),
        })
    }
    fn read(&self, req: &ReadRequest) -> Result<ReadResponse, ProviderError> {
        self.call(verb::READ, req)
    }
    fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
        self.call(verb::ALLOCATE, req)
    }
    fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
        self.call(verb::RUN_TASK, req)
    }
    fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
        self.call(verb::TASK_STATUS, req)
    }
    fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
        self.call(verb::TRANSFER, req)
    }
    fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
        self.call(verb::RELEASE, req)
    }
    fn object_store(&self, location: &Location) -> Option<String> {
        if let Some(s) = lock(&self.stores).get(location) {
            return s.clone();
        }
        // The seam has no error here: a failing plugin means the engine's local store (not
        // remembered), and the next call reports the failure.
        let r = self.call::<ObjectStoreResult>(verb::OBJECT_STORE, ObjectStoreParams { location: location.clone() });
        let uri = r.as_ref().ok().and_then(|r| r.uri.clone());
        if r.is_ok() {
            lock(&self.stores).insert(location.clone(), uri.clone());
        }
        uri
    }
}

/// The market of a plugin (its `spot_prices` verb).
pub struct PluginMarket(PluginProvider);

impl Market for PluginMarket {
    fn cloud(&self) -> &str {
        &self.0.spec.name
    }
    fn spot_prices(&self, req: &SpotPricesRequest) -> Result<SpotPricesResponse, ProviderError> {
        self.0.call(verb::SPOT_PRICES, req)
    }
}
