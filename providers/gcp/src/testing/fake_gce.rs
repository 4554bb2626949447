//! [`FakeGce`]: a loopback fake of the Compute Engine REST routes skyform calls, for the
//! real `google-cloud-compute-v1` client (no GCE emulator exists). In-memory, on 127.0.0.1.
//!
//! Routes (under `/compute/v1/projects/PROJECT`): `zones/Z/instances` POST (insert) and GET
//! (list), `zones/Z/instances/N` GET and DELETE, `aggregated/instances` GET, and
//! `zones/Z/operations/OP` GET (and `.../wait` POST). What the client and skyform rely on:
//! numeric ids (as JSON strings, like GCE), zone operations that end `DONE` (failures as
//! `error.errors[0].code`, with `errorDetails[].quotaInfo` for quotas), label filters
//! (`(labels.K = "V") AND ...`, `labels.K:*`), HTTP errors shaped like GCE's
//! (`{"error": {"code", "message", "errors": [{"reason"}], "status": "NOT_FOUND"}}`), and a
//! state progression PROVISIONING → STAGING → RUNNING, STOPPING → gone (delete) or
//! TERMINATED.
//!
//! Tests steer it with [`Fault`] rules (per call, zone, machine type, provisioning model:
//! capacity, quota, rate limit, any HTTP error, hang), with [`FakeGce::preempt`] (spot
//! preemption mid-run) and read back every insert request ([`FakeGce::inserts`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BASE: &str = "https://www.googleapis.com/compute/v1";
const TIME: &str = "2026-01-01T00:00:00.000-08:00";

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The insert's operation ends DONE with this error code (`ZONE_RESOURCE_POOL_EXHAUSTED`,
    /// `STOCKOUT`, ...).
    Capacity(String),
    /// The insert's operation ends DONE with `QUOTA_EXCEEDED` for this metric
    /// (`GPUS_ALL_REGIONS`: "globally"; others "in region R" of the zone).
    Quota(String),
    /// HTTP 429 `rateLimitExceeded`.
    RateLimit,
    /// An HTTP error with this status and reason (`403`, `forbidden`).
    Http(u16, String),
    /// The request is not answered while the fault is in place.
    Hang,
}

/// One fault rule: calls of `call` (`insert`, `get`, `delete`, `list`, `operation`, `*`)
/// matching the zone, machine type and provisioning model (`None`: any) get `effect`,
/// `times` times (`None`: every time).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub call: String,
    pub zone: Option<String>,
    pub machine_type: Option<String>,
    /// `Some(true)`: spot inserts only; `Some(false)`: standard ones only.
    pub spot: Option<bool>,
    pub effect: Effect,
    pub times: Option<u32>,
}

impl Fault {
    fn insert(zone: Option<&str>, effect: Effect) -> Fault {
        Fault {
            call: "insert".into(),
            zone: zone.map(str::to_string),
            machine_type: None,
            spot: None,
            effect,
            times: None,
        }
    }

    /// Inserts in `zone` fail with `ZONE_RESOURCE_POOL_EXHAUSTED`.
    pub fn capacity(zone: &str) -> Fault {
        Fault::insert(Some(zone), Effect::Capacity("ZONE_RESOURCE_POOL_EXHAUSTED".into()))
    }

    /// Inserts in `zone` fail with a capacity `code` (`STOCKOUT`, ...).
    pub fn capacity_code(zone: &str, code: &str) -> Fault {
        Fault::insert(Some(zone), Effect::Capacity(code.into()))
    }

    /// Inserts anywhere fail with `QUOTA_EXCEEDED` for `metric` (`GPUS_ALL_REGIONS`).
    pub fn quota(metric: &str) -> Fault {
        Fault::insert(None, Effect::Quota(metric.into()))
    }

    /// Inserts in `zone` get HTTP 429.
    pub fn rate_limit(zone: &str) -> Fault {
        Fault::insert(Some(zone), Effect::RateLimit)
    }

    /// Inserts in `zone` hang while the fault is in place.
    pub fn hang(zone: &str) -> Fault {
        Fault::insert(Some(zone), Effect::Hang)
    }

    /// Any call of `call` gets an HTTP error.
    pub fn http(call: &str, status: u16, reason: &str) -> Fault {
        Fault { call: call.into(), ..Fault::insert(None, Effect::Http(status, reason.into())) }
    }

    /// Only inserts of this machine type.
    pub fn machine_type(mut self, t: &str) -> Fault {
        self.machine_type = Some(t.into());
        self
    }

    /// Only spot (`true`) or only standard (`false`) inserts.
    pub fn spot(mut self, spot: bool) -> Fault {
        self.spot = Some(spot);
        self
    }

    /// Only the next `n` matching calls.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// In any zone.
    pub fn any_zone(mut self) -> Fault {
        self.zone = None;
        self
    }
}

/// An insert request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertRecord {
    pub zone: String,
    pub name: String,
    /// The request body as sent by the client.
    pub body: Value,
    pub request_id: Option<String>,
    /// `created`, `exists`, or the fault's error code.
    pub outcome: String,
}

fn labels_of(body: &Value) -> BTreeMap<String, String> {
    body.get("labels")
        .and_then(|l| l.as_object())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

fn metadata_of<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.pointer("/metadata/items")?.as_array()?.iter().find(|i| i["key"] == key)?.get("value")?.as_str()
}

fn short(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

impl InsertRecord {
    /// The machine type's short name.
    pub fn machine_type(&self) -> String {
        short(self.body["machineType"].as_str().unwrap_or_default()).to_string()
    }
    /// (accelerator type short name, count) of `guestAccelerators`.
    pub fn accelerators(&self) -> Vec<(String, i64)> {
        self.body["guestAccelerators"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|g| {
                        (
                            short(g["acceleratorType"].as_str().unwrap_or_default()).to_string(),
                            g["acceleratorCount"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    /// `scheduling.provisioningModel`.
    pub fn provisioning_model(&self) -> Option<String> {
        self.body.pointer("/scheduling/provisioningModel").and_then(|v| v.as_str()).map(str::to_string)
    }
    /// `scheduling.instanceTerminationAction`.
    pub fn termination_action(&self) -> Option<String> {
        self.body.pointer("/scheduling/instanceTerminationAction").and_then(|v| v.as_str()).map(str::to_string)
    }
    /// `scheduling.onHostMaintenance`.
    pub fn on_host_maintenance(&self) -> Option<String> {
        self.body.pointer("/scheduling/onHostMaintenance").and_then(|v| v.as_str()).map(str::to_string)
    }
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels_of(&self.body)
    }
    pub fn metadata(&self, key: &str) -> Option<String> {
        metadata_of(&self.body, key).map(str::to_string)
    }
}

/// An instance as the fake holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeInstance {
    /// `ZONE/NAME` (skyform's provider id).
    pub id: String,
    pub zone: String,
    pub name: String,
    pub status: String,
    /// The instance resource as `instances.get` returns it.
    pub body: Value,
}

impl FakeInstance {
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels_of(&self.body)
    }
    pub fn metadata(&self, key: &str) -> Option<String> {
        metadata_of(&self.body, key).map(str::to_string)
    }
}

#[derive(Debug, Clone)]
enum Step {
    Status(&'static str),
    Remove,
}

#[derive(Debug, Clone)]
struct Inst {
    id: u64,
    zone: String,
    name: String,
    status: &'static str,
    body: Value,
    due: VecDeque<(Instant, Step)>,
}

#[derive(Debug, Clone)]
struct Op {
    id: u64,
    zone: String,
    kind: &'static str,
    target: String,
    target_id: u64,
    done_at: Instant,
    error: Option<Value>,
    http_error: Option<(u16, &'static str)>,
}

/// The fake's state (shared with [`super::InstanceAgent`]).
pub(crate) struct State {
    project: String,
    next_id: u64,
    instances: BTreeMap<(String, String), Inst>,
    ops: HashMap<String, Op>,
    faults: Vec<(u64, Fault)>,
    inserts: Vec<InsertRecord>,
    calls: Vec<String>,
    boot: Duration,
    stop: Duration,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Applies every state change that is due.
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (k, i) in self.instances.iter_mut() {
            while i.due.front().is_some_and(|(t, _)| *t <= now) {
                match i.due.pop_front().map(|x| x.1) {
                    Some(Step::Status(s)) => i.status = s,
                    Some(Step::Remove) => gone.push(k.clone()),
                    None => {}
                }
            }
        }
        for k in gone {
            self.instances.remove(&k);
        }
    }

    pub(crate) fn snapshot(&mut self) -> Vec<FakeInstance> {
        self.tick();
        self.instances.values().map(|i| self.view(i)).collect()
    }

    fn zone_url(&self, zone: &str) -> String {
        format!("{BASE}/projects/{}/zones/{zone}", self.project)
    }

    fn view(&self, i: &Inst) -> FakeInstance {
        let mut body = i.body.clone();
        let zone_url = self.zone_url(&i.zone);
        let mt = short(body["machineType"].as_str().unwrap_or_default()).to_string();
        body["kind"] = json!("compute#instance");
        body["id"] = json!(i.id.to_string());
        body["status"] = json!(i.status);
        body["zone"] = json!(zone_url);
        body["machineType"] = json!(format!("{zone_url}/machineTypes/{mt}"));
        body["selfLink"] = json!(format!("{zone_url}/instances/{}", i.name));
        body["creationTimestamp"] = json!(TIME);
        body["cpuPlatform"] = json!("Intel Broadwell");
        FakeInstance {
            id: format!("{}/{}", i.zone, i.name),
            zone: i.zone.clone(),
            name: i.name.clone(),
            status: i.status.into(),
            body,
        }
    }

    fn op_json(&self, name: &str, op: &Op) -> Value {
        let done = Instant::now() >= op.done_at;
        let zone_url = self.zone_url(&op.zone);
        let mut v = json!({
            "kind": "compute#operation",
            "id": op.id.to_string(),
            "name": name,
            "zone": zone_url,
            "operationType": op.kind,
            "targetLink": format!("{zone_url}/instances/{}", op.target),
            "targetId": op.target_id.to_string(),
            "status": if done { "DONE" } else { "RUNNING" },
            "progress": if done { 100 } else { 0 },
            "user": "skyform-tests@example.com",
            "insertTime": TIME,
            "startTime": TIME,
            "selfLink": format!("{zone_url}/operations/{name}"),
        });
        if done {
            v["endTime"] = json!(TIME);
            if let Some(e) = &op.error {
                v["error"] = e.clone();
            }
            if let Some((code, msg)) = op.http_error {
                v["httpErrorStatusCode"] = json!(code);
                v["httpErrorMessage"] = json!(msg);
            }
        }
        v
    }

    fn new_op(
        &mut self,
        zone: &str,
        kind: &'static str,
        target: &str,
        target_id: u64,
        after: Duration,
    ) -> (String, Op) {
        let id = self.id();
        let name = format!("operation-{id}-{kind}");
        let op = Op {
            id,
            zone: zone.into(),
            kind,
            target: target.into(),
            target_id,
            done_at: Instant::now() + after,
            error: None,
            http_error: None,
        };
        (name, op)
    }

    /// The first fault for this call, counting it down.
    fn fault(&mut self, call: &str, zone: &str, machine_type: &str, spot: bool) -> Option<(u64, Effect)> {
        let i = self.faults.iter().position(|(_, f)| {
            (f.call == call || f.call == "*")
                && f.zone.as_deref().is_none_or(|z| z == zone)
                && f.machine_type.as_deref().is_none_or(|m| m == machine_type)
                && f.spot.is_none_or(|s| s == spot)
        })?;
        let (id, f) = self.faults[i].clone();
        if let Some(n) = f.times {
            if n <= 1 {
                self.faults.remove(i);
            } else {
                self.faults[i].1.times = Some(n - 1);
            }
        }
        Some((id, f.effect))
    }

    /// Spot preemption or a stop: STOPPING, then gone (`DELETE` action) or TERMINATED.
    fn stop_instance(&mut self, zone: &str, name: &str, delete: Option<bool>) -> bool {
        self.tick();
        let stop = self.stop;
        let Some(i) = self.instances.get_mut(&(zone.to_string(), name.to_string())) else { return false };
        let delete =
            delete.unwrap_or_else(|| i.body.pointer("/scheduling/instanceTerminationAction") == Some(&json!("DELETE")));
        i.status = "STOPPING";
        i.due.clear();
        i.due.push_back((Instant::now() + stop, if delete { Step::Remove } else { Step::Status("TERMINATED") }));
        true
    }
}

/// The fake. It stops when dropped.
pub struct FakeGce {
    pub endpoint: String,
    pub project: String,
    pub(crate) state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

fn split_id(id: &str) -> (&str, &str) {
    id.split_once('/').unwrap_or((id, ""))
}

impl FakeGce {
    /// Listens on a free loopback port for `project`'s calls. Instances boot in 200 ms and
    /// stop in 200 ms (see [`FakeGce::set_delays`]).
    pub fn start(project: &str) -> FakeGce {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            project: project.into(),
            next_id: 4_000_000_000_000_000_000,
            instances: BTreeMap::new(),
            ops: HashMap::new(),
            faults: Vec::new(),
            inserts: Vec::new(),
            calls: Vec::new(),
            boot: Duration::from_millis(200),
            stop: Duration::from_millis(200),
        }));
        let s2 = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = s2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &st).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        FakeGce { endpoint: format!("http://127.0.0.1:{port}"), project: project.into(), state, _rt: rt }
    }

    /// How long instances take to boot (PROVISIONING → RUNNING) and to stop.
    pub fn set_delays(&self, boot: Duration, stop: Duration) {
        let mut s = self.state.lock().expect("lock");
        s.boot = boot;
        s.stop = stop;
    }

    /// Adds a fault rule.
    pub fn inject(&self, f: Fault) {
        let mut s = self.state.lock().expect("lock");
        let id = s.id();
        s.faults.push((id, f));
    }

    /// Removes every fault rule (hanging calls go on).
    pub fn clear_faults(&self) {
        self.state.lock().expect("lock").faults.clear();
    }

    /// Every insert request received, in order.
    pub fn inserts(&self) -> Vec<InsertRecord> {
        self.state.lock().expect("lock").inserts.clone()
    }

    /// `METHOD PATH` of every call received, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }

    /// The instances that exist now.
    pub fn instances(&self) -> Vec<FakeInstance> {
        self.state.lock().expect("lock").snapshot()
    }

    /// One instance by provider id (`ZONE/NAME`).
    pub fn instance(&self, id: &str) -> Option<FakeInstance> {
        self.instances().into_iter().find(|i| i.id == id)
    }

    /// Preempts an instance as GCE does a spot VM: STOPPING, then deleted (termination
    /// action `DELETE`) or TERMINATED. False when there is no such instance.
    pub fn preempt(&self, id: &str) -> bool {
        let (z, n) = split_id(id);
        self.state.lock().expect("lock").stop_instance(z, n, None)
    }

    /// Stops an instance outside skyform: STOPPING, then TERMINATED (it stays).
    pub fn terminate(&self, id: &str) -> bool {
        let (z, n) = split_id(id);
        self.state.lock().expect("lock").stop_instance(z, n, Some(false))
    }
}

fn reply(status: u16, v: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("response")
}

/// An HTTP error as GCE shapes it.
fn error(status: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let st = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    let domain = if reason == "rateLimitExceeded" { "usageLimits" } else { "global" };
    reply(
        status,
        &json!({"error": {"code": status, "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}], "status": st}}),
    )
}

fn query(uri: &hyper::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().to_string())
    })
}

/// A clause of a list filter.
#[derive(Debug, Clone, PartialEq)]
enum Clause {
    Has(String),
    Eq(String, String),
}

/// Parses the filters skyform sends: `(labels.K = "V") AND (labels.K:*)`.
fn parse_filter(f: &str) -> Result<Vec<Clause>, String> {
    let f = f.trim();
    if f.is_empty() {
        return Ok(Vec::new());
    }
    f.split(" AND ")
        .map(|c| {
            let c = c.trim().trim_start_matches('(').trim_end_matches(')').trim();
            let rest = c.strip_prefix("labels.").ok_or_else(|| format!("unsupported filter clause `{c}`"))?;
            if let Some(k) = rest.strip_suffix(":*") {
                return Ok(Clause::Has(k.trim().to_string()));
            }
            let (k, v) = rest.split_once('=').ok_or_else(|| format!("unsupported filter clause `{c}`"))?;
            Ok(Clause::Eq(k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

fn matches(labels: &BTreeMap<String, String>, clauses: &[Clause]) -> bool {
    clauses.iter().all(|c| match c {
        Clause::Has(k) => labels.contains_key(k),
        Clause::Eq(k, v) => labels.get(k) == Some(v),
    })
}

async fn handle(req: Request<Incoming>, st: &Arc<Mutex<State>>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    st.lock().expect("lock").calls.push(format!("{method} {path}"));
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let project = st.lock().expect("lock").project.clone();
    if seg.len() < 4 || seg[0] != "compute" || seg[1] != "v1" || seg[2] != "projects" {
        return error(404, "notFound", &format!("no route {path}"));
    }
    if seg[3] != project {
        return error(404, "notFound", &format!("The resource 'projects/{}' was not found", seg[3]));
    }
    let rest = &seg[4..];
    let (call, zone, name) = match (&method, rest) {
        (&Method::POST, ["zones", z, "instances"]) => ("insert", *z, ""),
        (&Method::GET, ["zones", z, "instances"]) => ("list", *z, ""),
        (&Method::GET, ["zones", z, "instances", n]) => ("get", *z, *n),
        (&Method::DELETE, ["zones", z, "instances", n]) => ("delete", *z, *n),
        (&Method::GET, ["aggregated", "instances"]) => ("list", "", ""),
        (&Method::GET, ["zones", z, "operations", o]) | (&Method::POST, ["zones", z, "operations", o, "wait"]) => {
            ("operation", *z, *o)
        }
        _ => return error(404, "notFound", &format!("no route {method} {path}")),
    };
    let body: Value = if call == "insert" {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(400, "parseError", &format!("bad instance body: {e}")),
        }
    } else {
        Value::Null
    };
    let machine_type = short(body["machineType"].as_str().unwrap_or_default()).to_string();
    let spot = body.pointer("/scheduling/provisioningModel") == Some(&json!("SPOT"));
    // Faults first; a hang holds the call while its rule is in place.
    let fault = st.lock().expect("lock").fault(call, zone, &machine_type, spot);
    if let Some((id, Effect::Hang)) = &fault {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !st.lock().expect("lock").faults.iter().any(|(i, _)| i == id) {
                break;
            }
        }
    }
    let fault = fault.filter(|(_, e)| *e != Effect::Hang).map(|(_, e)| e);
    let mut s = st.lock().expect("lock");
    s.tick();
    match fault {
        Some(Effect::RateLimit) => return error(429, "rateLimitExceeded", "Rate Limit Exceeded"),
        Some(Effect::Http(code, reason)) => return error(code, &reason, &format!("injected {code} {reason}")),
        _ => {}
    }
    match call {
        "insert" => insert(&mut s, zone, body, query(&parts.uri, "requestId"), fault),
        "get" => match s.instances.get(&(zone.to_string(), name.to_string())) {
            Some(i) => reply(200, &s.view(i).body),
            None => error(
                404,
                "notFound",
                &format!("The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found"),
            ),
        },
        "delete" => {
            let key = (zone.to_string(), name.to_string());
            let Some(i) = s.instances.get(&key) else {
                return error(
                    404,
                    "notFound",
                    &format!("The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found"),
                );
            };
            let target_id = i.id;
            let stop = s.stop;
            let (op_name, op) = s.new_op(zone, "delete", name, target_id, stop);
            if let Some(i) = s.instances.get_mut(&key) {
                i.status = "STOPPING";
                i.due.clear();
                i.due.push_back((op.done_at, Step::Remove));
            }
            let v = s.op_json(&op_name, &op);
            s.ops.insert(op_name, op);
            reply(200, &v)
        }
        "operation" => match s.ops.get(name) {
            Some(op) => reply(200, &s.op_json(name, op)),
            None => error(
                404,
                "notFound",
                &format!("The resource 'projects/{project}/zones/{zone}/operations/{name}' was not found"),
            ),
        },
        _ => list(&s, zone, query(&parts.uri, "filter").unwrap_or_default()),
    }
}

fn insert(
    s: &mut State,
    zone: &str,
    body: Value,
    request_id: Option<String>,
    fault: Option<Effect>,
) -> Response<Full<Bytes>> {
    let Some(name) = body["name"].as_str().map(str::to_string) else {
        return error(400, "required", "Required field 'resource.name' not specified");
    };
    let mut record =
        InsertRecord { zone: zone.into(), name: name.clone(), body: body.clone(), request_id, outcome: String::new() };
    let region = zone.rsplit_once('-').map(|(r, _)| r).unwrap_or(zone).to_string();
    let op_error = match &fault {
        Some(Effect::Capacity(code)) => Some((
            json!({"errors": [{"code": code, "message": format!(
                "The zone 'projects/{}/zones/{zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.", s.project)}]}),
            None,
            code.clone(),
        )),
        Some(Effect::Quota(metric)) => {
            let global = metric.contains("ALL_REGIONS");
            let scope = if global { "globally".to_string() } else { format!("in region {region}") };
            let mut info = json!({"metricName": format!("compute.googleapis.com/{}", metric.to_ascii_lowercase()),
                "limitName": format!("{}-per-project{}", metric.replace('_', "-"), if global { "" } else { "-region" }),
                "limit": 0.0});
            if !global {
                info["dimensions"] = json!({"region": region});
            }
            Some((
                json!({"errors": [{"code": "QUOTA_EXCEEDED",
                    "message": format!("Quota '{metric}' exceeded.  Limit: 0.0 {scope}."),
                    "errorDetails": [{"quotaInfo": info}]}]}),
                Some((403u16, "FORBIDDEN")),
                "QUOTA_EXCEEDED".to_string(),
            ))
        }
        _ => None,
    };
    if let Some((err, http, code)) = op_error {
        record.outcome = code;
        s.inserts.push(record);
        let (op_name, mut op) = s.new_op(zone, "insert", &name, 0, Duration::from_millis(50));
        op.error = Some(err);
        op.http_error = http;
        let v = s.op_json(&op_name, &op);
        s.ops.insert(op_name, op);
        return reply(200, &v);
    }
    let key = (zone.to_string(), name.clone());
    if s.instances.contains_key(&key) {
        record.outcome = "exists".into();
        s.inserts.push(record);
        return error(
            409,
            "alreadyExists",
            &format!("The resource 'projects/{}/zones/{zone}/instances/{name}' already exists", s.project),
        );
    }
    record.outcome = "created".into();
    s.inserts.push(record);
    let id = s.id();
    let boot = s.boot;
    let now = Instant::now();
    let inst = Inst {
        id,
        zone: zone.into(),
        name: name.clone(),
        status: "PROVISIONING",
        body,
        due: VecDeque::from([(now + boot / 2, Step::Status("STAGING")), (now + boot, Step::Status("RUNNING"))]),
    };
    s.instances.insert(key, inst);
    let (op_name, op) = s.new_op(zone, "insert", &name, id, boot / 2);
    let v = s.op_json(&op_name, &op);
    s.ops.insert(op_name, op);
    reply(200, &v)
}

fn list(s: &State, zone: &str, filter: String) -> Response<Full<Bytes>> {
    let clauses = match parse_filter(&filter) {
        Ok(c) => c,
        Err(e) => return error(400, "invalid", &format!("Invalid value for field 'filter': '{filter}'. {e}")),
    };
    let hits: Vec<FakeInstance> = s
        .instances
        .values()
        .filter(|i| zone.is_empty() || i.zone == zone)
        .map(|i| s.view(i))
        .filter(|v| matches(&v.labels(), &clauses))
        .collect();
    if !zone.is_empty() {
        let items: Vec<Value> = hits.into_iter().map(|i| i.body).collect();
        return reply(
            200,
            &json!({"kind": "compute#instanceList", "id": format!("projects/{}/zones/{zone}/instances", s.project), "items": items}),
        );
    }
    let mut items = serde_json::Map::new();
    for i in hits {
        let e = items.entry(format!("zones/{}", i.zone)).or_insert_with(|| json!({"instances": []}));
        e["instances"].as_array_mut().expect("array").push(i.body);
    }
    reply(
        200,
        &json!({"kind": "compute#instanceAggregatedList", "id": format!("projects/{}/aggregated/instances", s.project), "items": items}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() {
        assert_eq!(parse_filter("(labels.skyform-lineage:*)").unwrap(), vec![Clause::Has("skyform-lineage".into())]);
        assert_eq!(
            parse_filter("(labels.a = \"x\") AND (labels.b = \"y\")").unwrap(),
            vec![Clause::Eq("a".into(), "x".into()), Clause::Eq("b".into(), "y".into())]
        );
        assert!(parse_filter("name = foo").is_err());
    }
}
