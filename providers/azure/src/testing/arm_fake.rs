//! [`FakeArm`]: a loopback fake of the Resource Manager routes the provider's SDK clients
//! call, with the state transitions a caller can observe on Azure.
//!
//! | route (under `/subscriptions/S/resourceGroups/RG/providers`) | methods |
//! |---|---|
//! | `Microsoft.Compute/virtualMachines[/NAME]` (`$expand=instanceView`) | PUT GET DELETE, list |
//! | `Microsoft.Compute/virtualMachines/NAME/instanceView` | GET |
//! | `Microsoft.Network/networkInterfaces[/NAME]` | PUT GET DELETE, list |
//! | `Microsoft.Compute/disks[/NAME]` | GET DELETE, list |
//! | `Microsoft.Network/virtualNetworks/NAME` | PUT GET |
//! | `/subscriptions/S/providers/Microsoft.Compute/skus` (pages of 2, `nextLink`) | GET |
//!
//! - A VM PUT answers 201 with `provisioningState: Creating`; GETs show `Succeeded` (and
//!   `PowerState/running`, and an OS disk) once the provisioning delay has passed. A DELETE
//!   answers 202 and the VM shows `Deleting` until the delete delay has passed; its NIC and
//!   OS disk go with it when their `deleteOption` is `Delete` (switch off with
//!   [`FakeArm::set_cascade`] to test callers that delete them themselves). A NIC in use by
//!   a VM refuses deletion (400 `NicInUse`), so does an attached disk (409).
//! - Errors have ARM's shape: `{"error":{"code","message"}}`; a request without a bearer
//!   token is 401; an unknown route is 400 `SkyformFakeUnsupportedRoute`.
//! - [`Fault`]s answer chosen VM PUTs (by region, size, spot) with capacity (409
//!   `ZonalAllocationFailed`), quota (409 `OperationNotAllowed`), throttling (429 with
//!   `Retry-After`), a hang, or a provisioning failure read later from the instance view.
//! - [`FakeArm::evict`] evicts a spot VM as Azure does (deleted with `evictionPolicy
//!   Delete`, deallocated otherwise); [`FakeArm::puts`] returns every PUT body received.
//!
//! It listens on 127.0.0.1 only and stops when dropped.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a fault does to a VM PUT it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this status and ARM error (and `Retry-After` seconds).
    Error { status: u16, code: String, message: String, retry_after: Option<u64> },
    /// Accept the PUT, then fail provisioning with this code (seen in the instance view).
    ProvisioningFails { code: String, message: String },
    /// Never answer.
    Hang,
}

/// A fault for VM PUTs in `region` (any when `None`), of `size` and priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub region: Option<String>,
    pub size: Option<String>,
    /// `Some(true)`: spot PUTs only; `Some(false)`: regular ones only.
    pub spot: Option<bool>,
    pub kind: FaultKind,
    /// How many PUTs it hits (then it is gone); `None`: all.
    pub times: Option<u32>,
}

impl Fault {
    fn error(region: &str, status: u16, code: &str, message: String, retry_after: Option<u64>) -> Fault {
        Fault {
            region: Some(region.into()),
            size: None,
            spot: None,
            kind: FaultKind::Error { status, code: code.into(), message, retry_after },
            times: None,
        }
    }

    /// Azure's capacity failure: 409 `ZonalAllocationFailed`.
    pub fn capacity(region: &str) -> Fault {
        let m = "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone.".into();
        Fault::error(region, 409, "ZonalAllocationFailed", m, None)
    }

    /// A regional vCPU quota: 409 `OperationNotAllowed` naming the location.
    pub fn quota(region: &str) -> Fault {
        let m = format!(
            "Operation could not be completed as it results in exceeding approved Total Regional Cores quota. \
             Additional details - Deployment Model: Resource Manager, Location: {region}, Current Limit: 4, \
             Current Usage: 4, Additional Required: 6, (Minimum) New Limit Required: 10."
        );
        Fault::error(region, 409, "OperationNotAllowed", m, None)
    }

    /// Throttling: 429 `TooManyRequests` with `Retry-After: seconds`.
    pub fn throttle(region: &str, retry_after: u64) -> Fault {
        let m = "The request is being throttled as the limit has been reached for operation type - Write.".into();
        Fault::error(region, 429, "TooManyRequests", m, Some(retry_after))
    }

    /// The PUT is accepted and provisioning fails with `AllocationFailed`.
    pub fn provisioning_fails(region: &str) -> Fault {
        Fault {
            region: Some(region.into()),
            size: None,
            spot: None,
            kind: FaultKind::ProvisioningFails {
                code: "AllocationFailed".into(),
                message: "Allocation failed. If you are trying to add a new VM to an Availability Set ...".into(),
            },
            times: None,
        }
    }

    /// The PUT never gets an answer.
    pub fn hang(region: &str) -> Fault {
        Fault { region: Some(region.into()), size: None, spot: None, kind: FaultKind::Hang, times: None }
    }

    pub fn size(mut self, size: &str) -> Fault {
        self.size = Some(size.into());
        self
    }

    pub fn spot(mut self, spot: bool) -> Fault {
        self.spot = Some(spot);
        self
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }
}

/// One PUT the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedPut {
    /// `virtualMachines`, `networkInterfaces`, `virtualNetworks`.
    pub kind: String,
    pub name: String,
    pub body: Value,
    /// When the fake received it.
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Creating { until: Instant, fails: Option<(String, String)> },
    Succeeded,
    Failed { code: String, message: String },
    Deleting { until: Instant },
}

#[derive(Debug, Clone)]
struct Vm {
    id: String,
    name: String,
    location: String,
    tags: Value,
    zones: Value,
    /// The PUT's properties without the secrets Azure never returns.
    properties: Value,
    custom_data: Option<String>,
    phase: Phase,
    power: &'static str,
}

#[derive(Default)]
pub(crate) struct State {
    vms: BTreeMap<String, Vm>,
    nics: BTreeMap<String, Value>,
    disks: BTreeMap<String, Value>,
    vnets: BTreeMap<String, Value>,
    faults: Vec<Fault>,
    puts: Vec<RecordedPut>,
    requests: Vec<String>,
    provision_delay: Duration,
    delete_delay: Duration,
    cascade: bool,
    /// The resource SKUs the subscription lists ([`FakeArm::set_skus`]).
    skus: Vec<Value>,
}

fn key(name: &str) -> String {
    name.to_lowercase()
}

fn last_segment(id: &str) -> String {
    id.rsplit('/').next().unwrap_or_default().to_string()
}

impl State {
    /// Moves VMs whose delays have passed to their next phase.
    fn settle(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.vms.keys().cloned().collect();
        for k in names {
            let phase = self.vms[&k].phase.clone();
            match phase {
                Phase::Creating { until, fails } if now >= until => match fails {
                    Some((code, message)) => self.vms.get_mut(&k).expect("vm").phase = Phase::Failed { code, message },
                    None => {
                        let vm = self.vms.get_mut(&k).expect("vm");
                        vm.phase = Phase::Succeeded;
                        vm.power = "running";
                        let vm = vm.clone();
                        let disk = vm.properties["storageProfile"]["osDisk"]["name"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("{}_OsDisk_1", vm.name));
                        let id = vm.id.replace(
                            &format!("Microsoft.Compute/virtualMachines/{}", vm.name),
                            &format!("Microsoft.Compute/disks/{disk}"),
                        );
                        self.disks.insert(
                            key(&disk),
                            json!({
                                "id": id, "name": disk, "location": vm.location, "managedBy": vm.id,
                                "properties": {
                                    "creationData": {"createOption": "FromImage"},
                                    "diskSizeGB": vm.properties["storageProfile"]["osDisk"]["diskSizeGB"].as_u64().unwrap_or(30),
                                    "provisioningState": "Succeeded", "diskState": "Attached",
                                },
                            }),
                        );
                    }
                },
                Phase::Deleting { until } if now >= until => self.remove_vm(&k),
                _ => {}
            }
        }
    }

    /// Removes a VM; its NIC and OS disk go too when their deleteOption says so (and
    /// cascading is on), else they are detached.
    fn remove_vm(&mut self, k: &str) {
        let Some(vm) = self.vms.remove(k) else { return };
        for nic in vm.properties["networkProfile"]["networkInterfaces"].as_array().cloned().unwrap_or_default() {
            let n = key(&last_segment(nic["id"].as_str().unwrap_or_default()));
            if self.cascade && nic["properties"]["deleteOption"] == "Delete" {
                self.nics.remove(&n);
            } else if let Some(v) = self.nics.get_mut(&n) {
                v["properties"].as_object_mut().map(|p| p.remove("virtualMachine"));
            }
        }
        let disk = &vm.properties["storageProfile"]["osDisk"];
        let d =
            key(disk["name"].as_str().map(str::to_string).unwrap_or_else(|| format!("{}_OsDisk_1", vm.name)).as_str());
        if self.cascade && disk["deleteOption"] == "Delete" {
            self.disks.remove(&d);
        } else if let Some(v) = self.disks.get_mut(&d) {
            v.as_object_mut().map(|o| o.remove("managedBy"));
            v["properties"]["diskState"] = json!("Unattached");
        }
    }

    fn instance_view(vm: &Vm) -> Value {
        let mut statuses = Vec::new();
        match &vm.phase {
            Phase::Creating { .. } => statuses.push(json!({"code": "ProvisioningState/creating", "level": "Info", "displayStatus": "Creating"})),
            Phase::Succeeded => statuses.push(json!({"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"})),
            Phase::Deleting { .. } => statuses.push(json!({"code": "ProvisioningState/deleting", "level": "Info", "displayStatus": "Deleting"})),
            Phase::Failed { code, message } => statuses.push(json!({
                "code": format!("ProvisioningState/failed/{code}"), "level": "Error",
                "displayStatus": "Provisioning failed", "message": message,
            })),
        }
        if matches!(vm.phase, Phase::Succeeded | Phase::Deleting { .. }) {
            let display = if vm.power == "running" { "VM running".to_string() } else { format!("VM {}", vm.power) };
            statuses
                .push(json!({"code": format!("PowerState/{}", vm.power), "level": "Info", "displayStatus": display}));
        }
        json!({"computerName": vm.properties["osProfile"]["computerName"], "statuses": statuses})
    }

    fn vm_json(vm: &Vm, expand: bool) -> Value {
        let mut props = vm.properties.clone();
        props["provisioningState"] = json!(match &vm.phase {
            Phase::Creating { .. } => "Creating",
            Phase::Succeeded => "Succeeded",
            Phase::Failed { .. } => "Failed",
            Phase::Deleting { .. } => "Deleting",
        });
        if expand {
            props["instanceView"] = State::instance_view(vm);
        }
        let mut v = json!({
            "id": vm.id, "name": vm.name, "type": "Microsoft.Compute/virtualMachines",
            "location": vm.location, "tags": vm.tags, "properties": props,
        });
        if vm.zones.as_array().is_some_and(|z| !z.is_empty()) {
            v["zones"] = vm.zones.clone();
        }
        v
    }

    fn subnet_exists(&self, id: &str) -> bool {
        let parts: Vec<&str> = id.split('/').collect();
        let Some(i) = parts.iter().position(|p| p.eq_ignore_ascii_case("virtualNetworks")) else { return false };
        let (Some(vnet), Some(subnet)) = (parts.get(i + 1), parts.get(i + 3)) else { return false };
        self.vnets.get(&key(vnet)).is_some_and(|v| {
            v["properties"]["subnets"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == *subnet))
        })
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, body: &Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ms-request-id", uuid::Uuid::new_v4().to_string())
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    reply(status, &json!({"error": {"code": code, "message": message}}))
}

fn not_found(kind: &str, name: &str, rg: &str) -> Reply {
    error(404, "ResourceNotFound", &format!("The Resource '{kind}/{name}' under resource group '{rg}' was not found."))
}

fn empty(status: u16) -> Reply {
    Response::builder().status(status).body(Full::new(Bytes::new())).expect("response")
}

/// The fake. It stops when dropped.
pub struct FakeArm {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

impl FakeArm {
    /// Listens on a free loopback port. VMs provision after 300 ms and delete after 200 ms.
    pub fn start() -> FakeArm {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            provision_delay: Duration::from_millis(300),
            delete_delay: Duration::from_millis(200),
            cascade: true,
            ..State::default()
        }));
        let endpoint = format!("http://127.0.0.1:{port}");
        let s2 = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let s = s2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &s).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        FakeArm { endpoint, state, _rt: rt }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().expect("lock");
        g.settle();
        f(&mut g)
    }

    pub fn inject(&self, f: Fault) {
        self.with(|s| s.faults.push(f));
    }

    pub fn clear_faults(&self) {
        self.with(|s| s.faults.clear());
    }

    /// How long VMs take to provision and to delete.
    pub fn set_delays(&self, provision: Duration, delete: Duration) {
        self.with(|s| {
            s.provision_delay = provision;
            s.delete_delay = delete;
        });
    }

    /// Whether deleting a VM deletes its NIC and disk per their `deleteOption` (on by
    /// default, as on Azure).
    pub fn set_cascade(&self, on: bool) {
        self.with(|s| s.cascade = on);
    }

    /// The resource SKUs (`Microsoft.Compute/skus` items) the subscription lists.
    pub fn set_skus(&self, skus: Vec<Value>) {
        self.with(|s| s.skus = skus);
    }

    /// Every PUT received, in order.
    pub fn puts(&self) -> Vec<RecordedPut> {
        self.with(|s| s.puts.clone())
    }

    /// The bodies of the VM PUTs received.
    pub fn vm_puts(&self) -> Vec<RecordedPut> {
        self.puts().into_iter().filter(|p| p.kind == "virtualMachines").collect()
    }

    /// `METHOD /path?query` of every request, in order.
    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.requests.clone())
    }

    /// A VM as a GET with its instance view shows it.
    pub fn vm(&self, name: &str) -> Option<Value> {
        self.with(|s| s.vms.get(&key(name)).map(|v| State::vm_json(v, true)))
    }

    pub fn vm_names(&self) -> Vec<String> {
        self.with(|s| s.vms.values().map(|v| v.name.clone()).collect())
    }

    pub fn nic_names(&self) -> Vec<String> {
        self.with(|s| s.nics.values().filter_map(|v| v["name"].as_str().map(str::to_string)).collect())
    }

    pub fn disk_names(&self) -> Vec<String> {
        self.with(|s| s.disks.values().filter_map(|v| v["name"].as_str().map(str::to_string)).collect())
    }

    pub fn vnet_names(&self) -> Vec<String> {
        self.with(|s| s.vnets.values().filter_map(|v| v["name"].as_str().map(str::to_string)).collect())
    }

    /// Evicts a VM as Azure evicts spot VMs: deleted (with its NIC and disk per their
    /// deleteOption) under `evictionPolicy: Delete`, deallocated otherwise. False when
    /// there is no such VM.
    pub fn evict(&self, name: &str) -> bool {
        self.with(|s| {
            let k = key(name);
            let Some(vm) = s.vms.get_mut(&k) else { return false };
            if vm.properties["evictionPolicy"] == "Delete" {
                s.remove_vm(&k);
            } else {
                vm.power = "deallocated";
            }
            true
        })
    }

    /// Deletes a VM outside skyform, at once.
    pub fn delete_vm(&self, name: &str) -> bool {
        self.with(|s| {
            let k = key(name);
            let had = s.vms.contains_key(&k);
            s.remove_vm(&k);
            had
        })
    }

    /// The VMs a machine would be running now, with their custom data (base64), for the
    /// [`super::VmAgent`]. Azure never returns custom data through the API.
    pub fn running(&self) -> Vec<(String, String)> {
        FakeArm::running_of(&self.state)
    }

    pub(crate) fn running_of(state: &Arc<Mutex<State>>) -> Vec<(String, String)> {
        let mut g = state.lock().expect("lock");
        g.settle();
        g.vms
            .values()
            .filter(|v| v.phase == Phase::Succeeded && v.power == "running")
            .filter_map(|v| Some((v.name.clone(), v.custom_data.clone()?)))
            .collect()
    }

    pub(crate) fn shared(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }
}

pub(crate) type Shared = Arc<Mutex<State>>;

async fn handle(req: Request<Incoming>, state: &Shared) -> Reply {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let expand = query.contains("expand=instanceView");
    {
        let mut g = state.lock().expect("lock");
        g.requests.push(format!(
            "{} {}{}",
            parts.method,
            path,
            if query.is_empty() { String::new() } else { format!("?{query}") }
        ));
    }
    let authorized = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    if !authorized {
        return error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.");
    }
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    // subscriptions/S/providers/Microsoft.Compute/skus: two SKUs a page, the next page's
    // link carrying `$skiptoken` (as Resource Manager pages).
    if parts.method == Method::GET && seg.len() == 5 && seg[2].eq_ignore_ascii_case("providers") && seg[4] == "skus" {
        let skip: usize = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("$skiptoken=").or_else(|| kv.strip_prefix("%24skiptoken=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let all = state.lock().expect("lock").skus.clone();
        let page: Vec<Value> = all.iter().skip(skip).take(2).cloned().collect();
        let mut body = serde_json::json!({ "value": page });
        if skip + 2 < all.len() {
            body["nextLink"] = Value::String(format!(
                "{}{path}?api-version=2021-07-01&$skiptoken={}",
                parts
                    .headers
                    .get(hyper::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| format!("http://{h}"))
                    .unwrap_or_default(),
                skip + 2
            ));
        }
        return reply(200, &body);
    }
    // subscriptions/S/resourceGroups/RG/providers/NS/TYPE[/NAME[/SUB]]
    if seg.len() < 7
        || !seg[0].eq_ignore_ascii_case("subscriptions")
        || !seg[2].eq_ignore_ascii_case("resourceGroups")
        || !seg[4].eq_ignore_ascii_case("providers")
    {
        return error(400, "SkyformFakeUnsupportedRoute", &format!("{} {path}", parts.method));
    }
    let (rg, kind) = (seg[3].to_string(), format!("{}/{}", seg[5], seg[6]).to_lowercase());
    let name = seg.get(7).map(|s| s.to_string());
    let sub = seg.get(8).map(|s| s.to_string());
    let base = format!("/subscriptions/{}/resourceGroups/{rg}/providers/{}/{}", seg[1], seg[5], seg[6]);
    let json_body = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let m = &parts.method;
    match (kind.as_str(), name, sub) {
        ("microsoft.compute/virtualmachines", Some(n), None) if m == Method::PUT => {
            put_vm(state, &base, &n, json_body()).await
        }
        ("microsoft.compute/virtualmachines", Some(n), Some(s))
            if m == Method::GET && s.eq_ignore_ascii_case("instanceView") =>
        {
            let mut g = state.lock().expect("lock");
            g.settle();
            match g.vms.get(&key(&n)) {
                Some(vm) => reply(200, &State::instance_view(vm)),
                None => not_found("Microsoft.Compute/virtualMachines", &n, &rg),
            }
        }
        ("microsoft.compute/virtualmachines", Some(n), None) => {
            let mut g = state.lock().expect("lock");
            g.settle();
            let delay = g.delete_delay;
            match (m.clone(), g.vms.get_mut(&key(&n))) {
                (Method::GET, Some(vm)) => reply(200, &State::vm_json(vm, expand)),
                (Method::DELETE, Some(vm)) => {
                    if !matches!(vm.phase, Phase::Deleting { .. }) {
                        vm.phase = Phase::Deleting { until: Instant::now() + delay };
                    }
                    empty(202)
                }
                (Method::GET, None) => not_found("Microsoft.Compute/virtualMachines", &n, &rg),
                (Method::DELETE, None) => empty(204),
                _ => error(405, "MethodNotAllowed", "method"),
            }
        }
        ("microsoft.compute/virtualmachines", None, None) if m == Method::GET => {
            let mut g = state.lock().expect("lock");
            g.settle();
            let value: Vec<Value> = g.vms.values().map(|v| State::vm_json(v, expand)).collect();
            reply(200, &json!({"value": value}))
        }
        ("microsoft.network/networkinterfaces", Some(n), None) => {
            let mut g = state.lock().expect("lock");
            g.settle();
            let k = key(&n);
            match m.clone() {
                Method::PUT => {
                    let b = json_body();
                    g.puts.push(RecordedPut {
                        kind: "networkInterfaces".into(),
                        name: n.clone(),
                        body: b.clone(),
                        at: Instant::now(),
                    });
                    let mut configs = b["properties"]["ipConfigurations"].as_array().cloned().unwrap_or_default();
                    for (i, c) in configs.iter_mut().enumerate() {
                        let subnet = c["properties"]["subnet"]["id"].as_str().unwrap_or_default().to_string();
                        if !g.subnet_exists(&subnet) {
                            return error(
                                400,
                                "InvalidResourceReference",
                                &format!("Resource {subnet} referenced by resource {base}/{n} was not found."),
                            );
                        }
                        let cname =
                            c["name"].as_str().map(str::to_string).unwrap_or_else(|| format!("ipconfig{}", i + 1));
                        c["id"] = json!(format!("{base}/{n}/ipConfigurations/{cname}"));
                        c["properties"]["privateIPAddress"] = json!(format!("10.64.0.{}", 4 + g.nics.len()));
                        c["properties"]["provisioningState"] = json!("Succeeded");
                    }
                    let existed = g.nics.get(&k).cloned();
                    let mut props = json!({"ipConfigurations": configs, "provisioningState": "Succeeded"});
                    if let Some(vm) = existed.as_ref().and_then(|e| e["properties"].get("virtualMachine")) {
                        props["virtualMachine"] = vm.clone();
                    }
                    let v = json!({"id": format!("{base}/{n}"), "name": n, "type": "Microsoft.Network/networkInterfaces",
                        "location": b["location"], "tags": b["tags"], "properties": props});
                    g.nics.insert(k, v.clone());
                    reply(if existed.is_some() { 200 } else { 201 }, &v)
                }
                Method::GET => match g.nics.get(&k) {
                    Some(v) => reply(200, v),
                    None => not_found("Microsoft.Network/networkInterfaces", &n, &rg),
                },
                Method::DELETE => match g.nics.get(&k) {
                    None => empty(204),
                    Some(v) if v["properties"].get("virtualMachine").is_some() => error(
                        400,
                        "NicInUse",
                        &format!(
                            "Network Interface {base}/{n} is used by existing resource {}.",
                            v["properties"]["virtualMachine"]["id"]
                        ),
                    ),
                    Some(_) => {
                        g.nics.remove(&k);
                        empty(200)
                    }
                },
                _ => error(405, "MethodNotAllowed", "method"),
            }
        }
        ("microsoft.network/networkinterfaces", None, None) if m == Method::GET => {
            let mut g = state.lock().expect("lock");
            g.settle();
            reply(200, &json!({"value": g.nics.values().cloned().collect::<Vec<_>>()}))
        }
        ("microsoft.compute/disks", Some(n), None) => {
            let mut g = state.lock().expect("lock");
            g.settle();
            let k = key(&n);
            match (m.clone(), g.disks.get(&k)) {
                (Method::GET, Some(v)) => reply(200, v),
                (Method::GET, None) => not_found("Microsoft.Compute/disks", &n, &rg),
                (Method::DELETE, None) => empty(204),
                (Method::DELETE, Some(v)) if v.get("managedBy").is_some() => {
                    error(409, "OperationNotAllowed", &format!("Disk {n} is attached to VM {}.", v["managedBy"]))
                }
                (Method::DELETE, Some(_)) => {
                    g.disks.remove(&k);
                    empty(200)
                }
                _ => error(405, "MethodNotAllowed", "method"),
            }
        }
        ("microsoft.compute/disks", None, None) if m == Method::GET => {
            let mut g = state.lock().expect("lock");
            g.settle();
            reply(200, &json!({"value": g.disks.values().cloned().collect::<Vec<_>>()}))
        }
        ("microsoft.network/virtualnetworks", Some(n), None) => {
            let mut g = state.lock().expect("lock");
            let k = key(&n);
            match m.clone() {
                Method::PUT => {
                    let b = json_body();
                    g.puts.push(RecordedPut {
                        kind: "virtualNetworks".into(),
                        name: n.clone(),
                        body: b.clone(),
                        at: Instant::now(),
                    });
                    let mut subnets = b["properties"]["subnets"].as_array().cloned().unwrap_or_default();
                    for s in subnets.iter_mut() {
                        s["id"] = json!(format!("{base}/{n}/subnets/{}", s["name"].as_str().unwrap_or_default()));
                        s["properties"]["provisioningState"] = json!("Succeeded");
                    }
                    let v = json!({"id": format!("{base}/{n}"), "name": n, "type": "Microsoft.Network/virtualNetworks",
                        "location": b["location"], "tags": b["tags"], "properties": {
                            "addressSpace": b["properties"]["addressSpace"], "subnets": subnets, "provisioningState": "Succeeded"}});
                    let existed = g.vnets.insert(k, v.clone()).is_some();
                    reply(if existed { 200 } else { 201 }, &v)
                }
                Method::GET => match g.vnets.get(&k) {
                    Some(v) => reply(200, v),
                    None => not_found("Microsoft.Network/virtualNetworks", &n, &rg),
                },
                _ => error(405, "MethodNotAllowed", "method"),
            }
        }
        _ => error(400, "SkyformFakeUnsupportedRoute", &format!("{} {path}", parts.method)),
    }
}

async fn put_vm(state: &Shared, base: &str, name: &str, body: Value) -> Reply {
    let fault = {
        let mut g = state.lock().expect("lock");
        g.settle();
        g.puts.push(RecordedPut {
            kind: "virtualMachines".into(),
            name: name.into(),
            body: body.clone(),
            at: Instant::now(),
        });
        let region = body["location"].as_str().unwrap_or_default().to_string();
        let size = body["properties"]["hardwareProfile"]["vmSize"].as_str().unwrap_or_default().to_string();
        let spot = body["properties"]["priority"] == "Spot";
        let hit = g.faults.iter().position(|f| {
            f.region.as_ref().is_none_or(|r| *r == region)
                && f.size.as_ref().is_none_or(|s| *s == size)
                && f.spot.is_none_or(|s| s == spot)
        });
        hit.map(|i| {
            let f = g.faults[i].clone();
            if let Some(n) = f.times {
                if n <= 1 {
                    g.faults.remove(i);
                } else {
                    g.faults[i].times = Some(n - 1);
                }
            }
            f.kind
        })
    };
    let mut fails = None;
    match fault {
        Some(FaultKind::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return error(504, "GatewayTimeout", "hung");
        }
        Some(FaultKind::Error { status, code, message, retry_after }) => {
            let mut r = error(status, &code, &message);
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", s.to_string().parse().expect("header"));
            }
            return r;
        }
        Some(FaultKind::ProvisioningFails { code, message }) => fails = Some((code, message)),
        None => {}
    }
    let mut g = state.lock().expect("lock");
    let nic_ids: Vec<String> = body["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if nic_ids.is_empty() {
        return error(400, "InvalidParameter", "Required parameter 'networkProfile' is missing (null).");
    }
    for id in &nic_ids {
        if !g.nics.contains_key(&key(&last_segment(id))) {
            return error(
                400,
                "InvalidResourceReference",
                &format!("Resource {id} referenced by resource {base}/{name} was not found."),
            );
        }
    }
    let k = key(name);
    let id = format!("{base}/{name}");
    if let Some(vm) = g.vms.get_mut(&k) {
        // An update: tags and properties change, the machine stays.
        vm.tags = body["tags"].clone();
        return reply(200, &State::vm_json(vm, false));
    }
    let mut props = body["properties"].clone();
    let custom_data = props["osProfile"]["customData"].as_str().map(str::to_string);
    if let Some(os) = props["osProfile"].as_object_mut() {
        os.remove("customData");
        os.remove("adminPassword");
    }
    props["vmId"] = json!(uuid::Uuid::new_v4().to_string());
    let until = Instant::now() + g.provision_delay;
    let vm = Vm {
        id: id.clone(),
        name: name.to_string(),
        location: body["location"].as_str().unwrap_or_default().to_string(),
        tags: body["tags"].clone(),
        zones: body.get("zones").cloned().unwrap_or(json!([])),
        properties: props,
        custom_data,
        phase: Phase::Creating { until, fails },
        power: "starting",
    };
    for nic in &nic_ids {
        if let Some(v) = g.nics.get_mut(&key(&last_segment(nic))) {
            v["properties"]["virtualMachine"] = json!({"id": id});
        }
    }
    let v = State::vm_json(&vm, false);
    g.vms.insert(k, vm);
    reply(201, &v)
}
