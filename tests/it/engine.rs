//! The apply engine in process: jobs planned through the library pipeline and applied on
//! the local provider (with its fault injection) or on a provider added to the registry by
//! the test, with a recording `Hooks`. Each scenario asserts the sequence of events the
//! engine reports — failover order, retries, preemption recovery, crash adoption — and the
//! state it leaves; no binary is spawned and the test never sleeps to time things.

use skyform::apply::{self, Event, Outcome, Recorder};
use skyform::catalog::Catalog;
use skyform::config::{load, Loaded, TaskAddr};
use skyform::pipeline;
use skyform::plan::Plan;
use skyform::providers::Registry;
use skyform::resolve::ResolvedJob;
use skyform::state::{Allocation, Run, SledStore, StateStore, TaskStatus};
use skyform::tracker::{Tracker, TrackerView};
use skyform_provider::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A job in a temporary directory, with its registry.
struct Job {
    dir: tempfile::TempDir,
    registry: Registry,
}

impl Job {
    fn new(hcl: &str) -> Job {
        Job::with_registry(hcl, Registry::builtin())
    }

    fn with_registry(hcl: &str, registry: Registry) -> Job {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.sky.hcl"), hcl).unwrap();
        Job { dir, registry }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn loaded(&self) -> Loaded {
        let opts = skyform::config::LoadOptions { clouds: self.registry.names(), ..Default::default() };
        let loaded = load(self.path(), &opts).unwrap_or_else(|d| panic!("{}", d.render(false)));
        let checked = self.registry.check(&loaded);
        assert!(!checked.has_errors(), "{}", checked.render(false));
        loaded
    }

    fn store(&self) -> Arc<SledStore> {
        Arc::new(SledStore::new(self.path().join(".skyform/state")))
    }

    fn tracker(&self) -> Arc<Tracker> {
        Arc::new(Tracker::open(&self.path().join(".skyform/tracker")).unwrap())
    }

    fn plan(&self) -> Plan {
        let loaded = self.loaded();
        let catalog = Catalog::for_job(&loaded.spec, &self.registry).unwrap();
        let view = TrackerView { now: skyform::clock::now_secs(), ..Default::default() };
        let state = self.store().read().unwrap();
        let inputs = pipeline::Inputs { spec: &loaded.spec, catalog: &catalog, tracker: &view, state: &state };
        pipeline::plan(&inputs, &Default::default()).unwrap().plan
    }

    fn providers(&self) -> apply::Providers {
        self.registry.providers(&self.loaded().spec, &BuildContext::new(self.path())).unwrap()
    }

    /// The plan's job as resolved (what failover re-solves).
    fn resolved(&self, plan: &Plan) -> ResolvedJob {
        let catalog = Catalog::for_job(&plan.config, &self.registry).unwrap();
        let view = TrackerView { now: skyform::clock::now_secs(), ..Default::default() };
        skyform::resolve::resolve(&plan.config, &catalog, &view).unwrap()
    }

    /// Applies `plan` (failover re-solves, as `skyform apply` does); returns the outcome
    /// and the events in order.
    fn apply(&self, plan: &Plan) -> (Outcome, Vec<Event>) {
        self.apply_with(plan, true)
    }

    /// Applies `plan`; with `resolve` false failover only walks the ranked alternatives.
    fn apply_with(&self, plan: &Plan, resolve: bool) -> (Outcome, Vec<Event>) {
        self.apply_limited(plan, resolve, apply::DEFAULT_RESOLVE_LIMIT)
    }

    /// Applies `plan` with a time limit on failover re-solves.
    fn apply_limited(&self, plan: &Plan, resolve: bool, limit: std::time::Duration) -> (Outcome, Vec<Event>) {
        let rec = Arc::new(Recorder::default());
        let mut ctx = apply::Context::new(
            self.store(),
            self.providers(),
            rec.clone(),
            apply::Options {
                parallelism: 2,
                job_dir: self.path().to_path_buf(),
                resolve_limit: limit,
                ..Default::default()
            },
        );
        let tracker = self.tracker();
        ctx.tracker = Some(tracker.clone());
        ctx.resolved = resolve.then(|| Arc::new(self.resolved(plan)));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let out = rt.block_on(apply::apply(plan, ctx)).unwrap();
        drop(tracker);
        (out, rec.events())
    }
}

/// Events as short lines: what the engine did, where, in order.
fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Recovered { task, action, .. } => Some(format!("recovered {task} {action:?}").to_lowercase()),
            Event::Allocating { task, location, attempt, .. } => Some(format!("allocate {task} {location} #{attempt}")),
            Event::AllocationFailed { task, location, kind, scope, .. } => {
                Some(format!("failed {task} {location} {kind} {scope}"))
            }
            Event::Running { task, run, .. } => Some(format!("run {task} #{run}")),
            Event::RunFailed { task, run, exit_code, retrying, .. } => Some(format!(
                "run-failed {task} #{run} exit {} {}",
                exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                if *retrying { "retrying" } else { "final" }
            )),
            Event::Preempted { task, location, recovery } => Some(format!("preempted {task} {location} {recovery}")),
            Event::TaskDone { task, status, .. } => Some(format!("done {task} {status}")),
            Event::Destroyed { task } => Some(format!("destroyed {task}")),
            Event::Replanned(r) => Some(format!(
                "replanned {} {}{}",
                r.task,
                r.moved.iter().map(|m| format!("{}→{}", m.task, m.to)).collect::<Vec<_>>().join(" "),
                r.fallback.as_ref().map(|f| format!(" fallback: {f}")).unwrap_or_default()
            )),
            Event::Migrating { task, step, to, .. } => Some(format!("migrate {task} {step:?} {to}").to_lowercase()),
            Event::MigrationAbandoned { task, .. } => Some(format!("migration-abandoned {task}")),
            Event::Transferred { .. } | Event::Interrupted { .. } => None,
        })
        .collect()
}

fn task(name: &str) -> TaskAddr {
    TaskAddr(format!("task.{name}"))
}

/// One small task on the local provider; `faults` and `extra` go into its blocks.
fn one_task(faults: &str, extra: &str, run: &str) -> String {
    format!(
        r#"
provider "local" {{
  zones = ["zone-a", "zone-b", "zone-c"]
  faults {{
    {faults}
  }}
}}

task "a" {{
  outputs = {{ o = {{ size_gb = 0.001 }} }}
  run     = "{run}"
  {extra}
  estimate {{
    hours = 0.1
  }}
}}
"#
    )
}

#[test]
fn capacity_failover_walks_the_ranked_zones_and_blocks_the_full_one() {
    let job = Job::new(&one_task(r#"capacity_zones = ["zone-a"]"#, "", "echo hi > $SKYFORM_OUTPUT_O/x"));
    let plan = job.plan();
    let after = &plan.changes[0].after.as_ref().unwrap().placement;
    assert_eq!(after.zone, "zone-a", "equal zones: the first is planned");
    let (out, events) = job.apply(&plan);
    assert_eq!(
        lines(&events),
        [
            "allocate task.a local/zone-a #1",
            "failed task.a local/zone-a capacity_unavailable zone",
            "replanned task.a task.a→local/zone-b (local.small)",
            "allocate task.a local/zone-b #2",
            "run task.a #1",
            "done task.a succeeded",
        ]
    );
    assert_eq!((out.added, out.failed.len()), (1, 0));
    let view = job.tracker().view(skyform::clock::now_secs()).unwrap();
    assert!(view.blocked(&Location::new("local", "local", "zone-a")).is_some(), "the full zone is blocked");
    let st = job.store().read().unwrap();
    let t = &st.tasks[&task("a")];
    assert_eq!(t.status, TaskStatus::Succeeded);
    assert_eq!(t.allocations.len(), 2);
    assert!(t.allocations.iter().all(|a| a.released.is_some()), "nothing is left allocated");
}

#[test]
fn a_failed_run_is_retried_in_place_then_succeeds() {
    let marker = tempfile::tempdir().unwrap();
    let m = marker.path().join("tried");
    let run = format!("if [ -f {m} ]; then echo ok > $SKYFORM_OUTPUT_O/x; else touch {m}; exit 3; fi", m = m.display());
    let job = Job::new(&one_task("", "retries = 2", &run));
    let (out, events) = job.apply(&job.plan());
    assert_eq!(
        lines(&events),
        [
            "allocate task.a local/zone-a #1",
            "run task.a #1",
            "run-failed task.a #1 exit 3 retrying",
            "allocate task.a local/zone-a #1",
            "run task.a #2",
            "done task.a succeeded",
        ]
    );
    assert!(out.failed.is_empty());
    let st = job.store().read().unwrap();
    let runs: Vec<(TaskStatus, Option<i32>)> =
        st.tasks[&task("a")].runs.iter().map(|r| (r.status, r.exit_code)).collect();
    assert_eq!(runs, [(TaskStatus::Failed, Some(3)), (TaskStatus::Succeeded, Some(0))]);
}

#[test]
fn retries_run_out_and_dependents_do_not_start() {
    let hcl = r#"
task "a" {
  outputs = { o = { size_gb = 0.001 } }
  run     = "exit 7"
  retries = 1
  estimate {
    hours = 0.1
  }
}

task "b" {
  inputs = { i = task.a.outputs.o }
  run    = "true"
  estimate {
    hours = 0.1
  }
}
"#;
    let job = Job::new(hcl);
    let (out, events) = job.apply(&job.plan());
    assert_eq!(
        lines(&events),
        [
            "allocate task.a local/zone-a #1",
            "run task.a #1",
            "run-failed task.a #1 exit 7 retrying",
            "allocate task.a local/zone-a #1",
            "run task.a #2",
            "run-failed task.a #2 exit 7 final",
            "done task.a failed",
        ]
    );
    assert_eq!(out.failed, [task("a")]);
    assert_eq!(out.not_started, [task("b")]);
    let st = job.store().read().unwrap();
    assert!(st.tasks[&task("a")].tainted, "a failed task is replaced by the next plan");
}

#[test]
fn a_preempted_run_recovers_in_the_next_zone() {
    let job = Job::new(&one_task(
        r#"preempt_after_secs = 0
    preempt_zones      = ["zone-a"]"#,
        r#"recovery = "next_zone""#,
        "sleep 0.3; echo hi > $SKYFORM_OUTPUT_O/x",
    ));
    let (out, events) = job.apply(&job.plan());
    assert_eq!(
        lines(&events),
        [
            "allocate task.a local/zone-a #1",
            "run task.a #1",
            "preempted task.a local/zone-a NextZone",
            "replanned task.a task.a→local/zone-b (local.small)",
            "allocate task.a local/zone-b #2",
            "run task.a #2",
            "done task.a succeeded",
        ]
    );
    assert!(out.failed.is_empty());
    let view = job.tracker().view(skyform::clock::now_secs()).unwrap();
    assert_eq!(view.preemptions.get(&Location::new("local", "local", "zone-a")), Some(&1));
}

#[test]
fn quota_blocks_the_region_and_the_task_fails_with_no_placement_left() {
    let job = Job::new(&one_task("quota = true", "", "true"));
    let (out, events) = job.apply(&job.plan());
    assert_eq!(
        lines(&events),
        [
            "allocate task.a local/zone-a #1",
            "failed task.a local/zone-a quota_exceeded region",
            "replanned task.a  fallback: task.a: every candidate location is blocked",
            "failed task.a - capacity_unavailable cloud",
            "done task.a failed",
        ],
        "a quota error blocks the whole region: no zone of it is tried again"
    );
    assert_eq!(out.failed, [task("a")]);
}

/// A two-task chain where `a` finished while skyform was down: its run exists at the
/// provider with exit 0, the state still says running. The next apply adopts it (outputs
/// collected, not run again) and runs `b` on its output.
#[test]
fn a_run_that_finished_during_a_crash_is_adopted_not_run_again() {
    let counter = tempfile::tempdir().unwrap();
    let runs = counter.path().join("runs");
    let hcl = format!(
        r#"
task "a" {{
  outputs = {{ o = {{ size_gb = 0.001 }} }}
  run     = "echo ran >> {runs}; echo 42 > $SKYFORM_OUTPUT_O/v"
  estimate {{
    hours = 0.1
  }}
}}

task "b" {{
  inputs  = {{ i = task.a.outputs.o }}
  outputs = {{ r = {{ size_gb = 0.001, uri = "./result" }} }}
  run     = "cat $SKYFORM_INPUT_I/v > $SKYFORM_OUTPUT_R/v"
  estimate {{
    hours = 0.1
  }}
}}
"#,
        runs = runs.display()
    );
    let job = Job::new(&hcl);
    let plan = job.plan();
    // What the first apply left: intent and run recorded, the run finished at the provider.
    let store = job.store();
    let mut st = store.read().unwrap();
    let change = plan.changes.iter().find(|c| c.address == task("a")).unwrap();
    let placement = change.after.as_ref().unwrap().placement.clone();
    let spec = plan.config.tasks[&task("a")].clone();
    let providers = job.providers();
    let local = providers["local"].clone();
    let tags: BTreeMap<String, String> = [
        ("skyform:lineage".to_string(), st.lineage.clone()),
        ("skyform:job".to_string(), plan.config.name.clone()),
        ("skyform:task".to_string(), "task.a".to_string()),
    ]
    .into();
    let mut req = AllocateRequest::new(
        "task.a",
        Location::new("local", "local", placement.zone.as_str()),
        placement.instance_type.as_str(),
        "token-a",
    );
    req.owner_tags = tags.clone();
    let id = local.allocate(&req).unwrap().provider_id;
    let mut run = RunTaskRequest::new(id.clone(), "task.a", spec.run.clone());
    run.outputs = vec!["o".into()];
    let log = local.run_task(&run).unwrap().log;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while local.task_status(&TaskStatusRequest::new(id.clone())).unwrap().state == RunState::Running {
        assert!(std::time::Instant::now() < deadline, "the run did not finish");
        std::thread::yield_now();
    }
    let t = st.tasks.entry(task("a")).or_default();
    t.spec_hash = spec.spec_hash.clone();
    t.spec = Some(spec);
    t.status = TaskStatus::Running;
    t.placement = Some(placement.clone());
    t.allocations.push(Allocation {
        provider: "local".into(),
        placement,
        provider_id: Some(id.clone()),
        owner_tags: tags,
        idempotency_token: "token-a".into(),
        created: 1,
        released: None,
        status: "running".into(),
    });
    t.runs.push(Run {
        attempt: 1,
        status: TaskStatus::Running,
        exit_code: None,
        log: Some(log),
        start: 1,
        end: None,
        cost: 0.0,
    });
    store.commit(&st).unwrap();
    drop(providers);
    let (out, events) = job.apply(&job.plan());
    let l = lines(&events);
    assert_eq!(l[0], "recovered task.a adopted");
    assert!(!l.iter().any(|x| x.starts_with("allocate task.a") || x.starts_with("run task.a")), "{l:?}");
    assert_eq!(&l[1..], ["allocate task.b local/zone-a #1", "run task.b #1", "done task.b succeeded"]);
    assert!(out.failed.is_empty());
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "ran\n", "task.a ran exactly once");
    assert_eq!(std::fs::read_to_string(job.path().join("result/v")).unwrap(), "42\n");
}

/// An allocation carrying this state's lineage that the state does not know (a crash
/// between the provider call and the commit of its id) is released before work starts.
#[test]
fn an_orphan_of_this_lineage_is_released() {
    let job = Job::new(&one_task("", "", "true"));
    let st = job.store().read().unwrap();
    let store = job.store();
    store.commit(&st).unwrap();
    let lineage = store.read().unwrap().lineage;
    let local = job.providers()["local"].clone();
    let mut req = AllocateRequest::new("task.a", Location::new("local", "local", "zone-c"), "local.small", "lost");
    req.owner_tags = [("skyform:lineage".to_string(), lineage.clone())].into();
    let orphan = local.allocate(&req).unwrap().provider_id;
    let (_, events) = job.apply(&job.plan());
    assert!(
        matches!(&events[0], Event::Recovered { provider_id, action: apply::Recovery::Released, .. } if *provider_id == orphan)
    );
    let left = local.read(&ReadRequest::tagged([("skyform:lineage".to_string(), lineage)].into())).unwrap();
    assert!(left.resources.is_empty(), "{:?}", left.resources);
}

/// A provider that is not built into skyform, added through the registry alone: it offers
/// one instance type from its configuration and runs tasks as processes in its own
/// directories. skyform plans a job on it and applies it, moving data to and from the
/// local provider's store in two hops through this host.
mod fake {
    use super::*;
    use std::process::{Child, Command};
    use std::sync::Mutex;

    pub struct FakeFactory;

    impl Factory for FakeFactory {
        fn name(&self) -> &str {
            "fake"
        }
        fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
            match body.get("price") {
                None => Ok(()),
                Some(p) if p.as_f64().is_some_and(|p| p >= 0.0) => Ok(()),
                Some(_) => Err(ConfigError::attribute("price", "`price` must be a non-negative number")),
            }
        }
        fn provider(&self, _body: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
            Ok(Arc::new(Fake { root: ctx.job_dir.join(".fake"), runs: Mutex::default() }))
        }
        fn offerings(&self, body: &serde_json::Value) -> Result<Option<Vec<OfferingSpec>>, ConfigError> {
            let price = body.get("price").and_then(|p| p.as_f64()).unwrap_or(0.001);
            Ok(Some(vec![OfferingSpec::new("rack", "rack-1", "fake.node", 4.0, 8.0, price)]))
        }
    }

    struct Fake {
        root: std::path::PathBuf,
        runs: Mutex<BTreeMap<String, Child>>,
    }

    impl Fake {
        fn path(&self, uri: &str) -> Result<std::path::PathBuf, ProviderError> {
            if let Some(rest) = uri.strip_prefix("sandbox://") {
                return Ok(self.root.join(rest));
            }
            if let Some(p) = uri.strip_prefix("file://") {
                return Ok(p.into());
            }
            Err(ProviderError::new(ErrorKind::Unsupported, None, format!("fake cannot reach {uri}")))
        }
    }

    fn copy(from: &Path, to: &Path) -> std::io::Result<u64> {
        if from.is_file() {
            std::fs::create_dir_all(to.parent().unwrap())?;
            return std::fs::copy(from, to);
        }
        std::fs::create_dir_all(to)?;
        let mut n = 0;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            n += copy(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(n)
    }

    fn other(e: impl std::fmt::Display) -> ProviderError {
        ProviderError::new(ErrorKind::Other, None, e.to_string())
    }

    impl Provider for Fake {
        fn info(&self) -> ProviderInfo {
            ProviderInfo { name: "fake".into(), version: "0".into(), capabilities: Capabilities::new(false, &["file"]) }
        }
        fn read(&self, _req: &ReadRequest) -> Result<ReadResponse, ProviderError> {
            Ok(ReadResponse::default())
        }
        fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
            let id = format!("node-{}", req.idempotency_token);
            std::fs::create_dir_all(self.root.join(&id)).map_err(other)?;
            Ok(AllocateResponse { provider_id: id })
        }
        fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
            let dir = self.root.join(&req.provider_id);
            let mut cmd = Command::new("bash");
            cmd.arg("-c").arg(&req.run).current_dir(&dir);
            for i in &req.inputs {
                cmd.env(format!("SKYFORM_INPUT_{}", i.to_uppercase()), dir.join("inputs").join(i));
            }
            for o in &req.outputs {
                let d = dir.join("outputs").join(o);
                std::fs::create_dir_all(&d).map_err(other)?;
                cmd.env(format!("SKYFORM_OUTPUT_{}", o.to_uppercase()), d);
            }
            let child = cmd.spawn().map_err(other)?;
            self.runs.lock().unwrap().insert(req.provider_id.clone(), child);
            Ok(RunTaskResponse { log: "-".into() })
        }
        fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
            let mut runs = self.runs.lock().unwrap();
            let c = runs.get_mut(&req.provider_id).ok_or_else(|| other("no such run"))?;
            let state = match c.try_wait().map_err(other)? {
                None => RunState::Running,
                Some(s) if s.success() => RunState::Succeeded,
                Some(s) => RunState::Failed { exit_code: s.code() },
            };
            Ok(TaskStatusResponse { state, log: "-".into() })
        }
        fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
            let bytes = copy(&self.path(&req.from)?, &self.path(&req.to)?).map_err(other)?;
            Ok(TransferResponse { bytes, checksum: None })
        }
        fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
            let released = std::fs::remove_dir_all(self.root.join(&req.provider_id)).is_ok();
            Ok(ReleaseResponse { released })
        }
    }
}

#[test]
fn a_provider_added_through_the_registry_alone_plans_and_applies() {
    let registry = Registry::builtin().with(Arc::new(fake::FakeFactory));
    let words = tempfile::tempdir().unwrap();
    std::fs::write(words.path().join("list.txt"), "a\nb\nc\n").unwrap();
    let hcl = r#"
provider "fake" {
  price = 0.0001
}

storage "words" {
  uri     = "file://WORDS"
  size_gb = 0.001
}

task "count" {
  resources {
    cloud = "fake"
  }
  inputs  = { w = storage.words }
  outputs = { n = { size_gb = 0.001, uri = "./out" } }
  run     = "wc -l < $SKYFORM_INPUT_W/list.txt | tr -d ' ' > $SKYFORM_OUTPUT_N/count"
  estimate {
    hours = 0.1
  }
}
"#
    .replace("WORDS", &words.path().display().to_string());
    let job = Job::with_registry(&hcl, registry);
    // A bad block is checked by the fake's factory and points at the attribute.
    let bad = Job::with_registry(&hcl.replace("0.0001", "-1"), Registry::builtin().with(Arc::new(fake::FakeFactory)));
    let opts = skyform::config::LoadOptions { clouds: bad.registry.names(), ..Default::default() };
    let d = bad.registry.check(&load(bad.path(), &opts).unwrap());
    assert!(d.render(false).contains("`price` must be a non-negative number"), "{}", d.render(false));
    assert_eq!(d.0[0].pos.as_ref().map(|p| p.line), Some(3), "the diagnostic points at `price`");

    let plan = job.plan();
    let p = &plan.changes[0].after.as_ref().unwrap().placement;
    assert_eq!((p.cloud.as_str(), p.instance_type.as_str()), ("fake", "fake.node"));
    let (out, events) = job.apply(&plan);
    assert_eq!(
        lines(&events),
        ["allocate task.count fake/rack/rack-1 #1", "run task.count #1", "done task.count succeeded"]
    );
    assert!(out.failed.is_empty());
    assert_eq!(std::fs::read_to_string(job.path().join("out/count")).unwrap(), "3\n");
}

/// The local provider behind a gate that throttles its first allocation and asks, as
/// Azure's and Google's APIs do with Retry-After, to wait a second; it records when each
/// allocation arrived.
mod throttling {
    use super::*;
    use skyform_provider_local::LocalFactory;
    use std::sync::Mutex;
    use std::time::Instant;

    pub struct ThrottlingFactory(pub Arc<Mutex<Vec<Instant>>>);

    impl Factory for ThrottlingFactory {
        fn name(&self) -> &str {
            skyform_provider_local::CLOUD
        }
        fn check(&self, body: &serde_json::Value) -> Result<(), ConfigError> {
            LocalFactory.check(body)
        }
        fn provider(&self, body: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
            Ok(Arc::new(Throttling { inner: LocalFactory.provider(body, ctx)?, calls: self.0.clone() }))
        }
        fn offerings(&self, body: &serde_json::Value) -> Result<Option<Vec<OfferingSpec>>, ConfigError> {
            LocalFactory.offerings(body)
        }
    }

    struct Throttling {
        inner: Arc<dyn Provider>,
        calls: Arc<Mutex<Vec<Instant>>>,
    }

    impl Provider for Throttling {
        fn info(&self) -> ProviderInfo {
            self.inner.info()
        }
        fn read(&self, req: &ReadRequest) -> Result<ReadResponse, ProviderError> {
            self.inner.read(req)
        }
        fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ProviderError> {
            let first = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(Instant::now());
                calls.len() == 1
            };
            if first {
                let e = ProviderError::new(ErrorKind::Throttled, Some(&req.location), "too many requests");
                return Err(e.with_retry_after(1));
            }
            self.inner.allocate(req)
        }
        fn run_task(&self, req: &RunTaskRequest) -> Result<RunTaskResponse, ProviderError> {
            self.inner.run_task(req)
        }
        fn task_status(&self, req: &TaskStatusRequest) -> Result<TaskStatusResponse, ProviderError> {
            self.inner.task_status(req)
        }
        fn transfer(&self, req: &TransferRequest) -> Result<TransferResponse, ProviderError> {
            self.inner.transfer(req)
        }
        fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, ProviderError> {
            self.inner.release(req)
        }
        fn object_store(&self, location: &Location) -> Option<String> {
            self.inner.object_store(location)
        }
    }
}

#[test]
fn a_throttled_call_is_retried_in_place_after_the_wait_the_cloud_asked_for() {
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let registry = Registry::builtin().with(Arc::new(throttling::ThrottlingFactory(calls.clone())));
    let job = Job::with_registry(&one_task("", "", "echo hi > $SKYFORM_OUTPUT_O/x"), registry);
    let (out, events) = job.apply(&job.plan());
    // A throttle blocks nothing: the same zone, no failover, no event for the retry.
    assert_eq!(lines(&events), ["allocate task.a local/zone-a #1", "run task.a #1", "done task.a succeeded"]);
    assert!(out.failed.is_empty());
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2, "one throttled allocation, one retry");
    let waited = calls[1] - calls[0];
    // The engine's own backoff is 100 ms: only the Retry-After makes it a second.
    assert!(waited >= std::time::Duration::from_secs(1), "retried after {waited:?}, before the 1 s asked for");
    let view = job.tracker().view(skyform::clock::now_secs()).unwrap();
    assert!(view.blocked(&Location::new("local", "local", "zone-a")).is_none(), "throttling blocks no zone");
}

/// producer → consumer → sink on three local zones with a simulated inter-zone egress
/// price; the sink may only run in zones ending in 1. The consumer's planned zone
/// (`zone-a1`) runs out of capacity after the producer finished there.
const CHAIN: &str = r#"
provider "local" {
  zones             = ["zone-a1", "zone-b2", "zone-c1"]
  inter_zone_egress = 0.02
  faults {
    capacity_zones = ["zone-a1"]
    capacity_tasks = ["task.consumer"]
  }
}

policy {
  failover {
    max_cost_increase = 0.5
  }
}

task "producer" {
  outputs = { o = { size_gb = 5 } }
  run     = "echo p > $SKYFORM_OUTPUT_O/v"
  estimate {
    hours = 100
  }
}

task "consumer" {
  inputs  = { i = task.producer.outputs.o }
  outputs = { o = { size_gb = 20 } }
  run     = "cat $SKYFORM_INPUT_I/v > $SKYFORM_OUTPUT_O/v; echo c >> $SKYFORM_OUTPUT_O/v"
  estimate {
    hours = 100
  }
}

task "sink" {
  resources {
    zone = "*1"
  }
  inputs  = { i = task.consumer.outputs.o }
  outputs = { r = { size_gb = 0.001, uri = "./result" } }
  run     = "cat $SKYFORM_INPUT_I/v > $SKYFORM_OUTPUT_R/v"
  estimate {
    hours = 100
  }
}
"#;

/// Event lines per task (`VERB TASK REST` → TASK → `VERB REST`), in order.
fn by_task(l: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for x in l {
        let mut w = x.splitn(3, ' ');
        let (verb, task, rest) = (w.next().unwrap_or(""), w.next().unwrap_or(""), w.next().unwrap_or(""));
        out.entry(task.to_string()).or_default().push(format!("{verb} {rest}").trim_end().to_string());
    }
    out
}

/// The placement of every task where the state says it ran.
fn placed(job: &Job) -> BTreeMap<TaskAddr, skyform::optimize::replan::Pin> {
    job.store()
        .read()
        .unwrap()
        .tasks
        .iter()
        .map(|(a, t)| {
            let p = t.placement.as_ref().unwrap();
            let l = Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str());
            (a.clone(), skyform::optimize::replan::Pin::new(l, p.instance_type.as_str(), p.spot))
        })
        .collect()
}

#[test]
fn failover_re_solves_and_moves_the_unstarted_sink_for_less_than_the_ranked_alternatives() {
    // Walking the consumer's ranked alternatives (neighbours fixed): it goes to zone-b2
    // (its cheapest alternative next to a sink planned in zone-a1), the sink then finds
    // zone-a1 blocked and walks to zone-c1, so the 20 GB edge crosses zones.
    let walking = Job::new(CHAIN);
    let plan = walking.plan();
    for c in &plan.changes {
        assert_eq!(c.after.as_ref().unwrap().placement.zone, "zone-a1", "{} is planned next to its data", c.address);
    }
    let (out, events) = walking.apply_with(&plan, false);
    assert!(out.failed.is_empty(), "{:?}", lines(&events));
    // A task may start between its producer's commit and the producer's `done` event:
    // each task's own sequence is what is fixed.
    let by = by_task(&lines(&events));
    assert_eq!(by["task.producer"], ["allocate local/zone-a1 #1", "run #1", "done succeeded"]);
    assert_eq!(
        by["task.consumer"],
        [
            "allocate local/zone-a1 #1",
            "failed local/zone-a1 capacity_unavailable zone",
            "allocate local/zone-b2 #2",
            "run #1",
            "done succeeded",
        ]
    );
    assert_eq!(by["task.sink"], ["allocate local/zone-c1 #1", "run #1", "done succeeded"]);
    let resolved = walking.resolved(&plan);
    let walked = skyform::optimize::replan::cost_of(&resolved, &placed(&walking)).unwrap();

    // Re-solving: the consumer and the not-yet-started sink both go to zone-c1.
    let resolving = Job::new(CHAIN);
    let plan = resolving.plan();
    let (out, events) = resolving.apply(&plan);
    assert!(out.failed.is_empty(), "{:?}", lines(&events));
    let by = by_task(&lines(&events));
    assert_eq!(by["task.producer"], ["allocate local/zone-a1 #1", "run #1", "done succeeded"]);
    assert_eq!(
        by["task.consumer"],
        [
            "allocate local/zone-a1 #1",
            "failed local/zone-a1 capacity_unavailable zone",
            "replanned task.consumer→local/zone-c1 (local.small) task.sink→local/zone-c1 (local.small)",
            "allocate local/zone-c1 #2",
            "run #1",
            "done succeeded",
        ]
    );
    assert_eq!(by["task.sink"], ["allocate local/zone-c1 #1", "run #1", "done succeeded"]);
    let re_solved = skyform::optimize::replan::cost_of(&resolved, &placed(&resolving)).unwrap();
    let Some(Event::Replanned(r)) = events.iter().find(|e| matches!(e, Event::Replanned(_))) else { unreachable!() };
    println!("{}", r.summary());
    println!("whole job, walking the ranked alternatives: ${walked:.2}; re-solved: ${re_solved:.2}");
    // 5 GB zone-a1 → zone-c1 at $0.02/GB, against that plus 20 GB zone-b2 → zone-c1.
    assert!((r.cost_delta - 0.10).abs() < 1e-6, "{}", r.summary());
    assert!((r.alternatives_delta.unwrap() - 0.50).abs() < 1e-6, "{}", r.summary());
    assert!((walked - re_solved - 0.40).abs() < 1e-6, "walked ${walked}, re-solved ${re_solved}");
    assert_eq!(std::fs::read_to_string(resolving.path().join("result/v")).unwrap(), "p\nc\n");
    // The re-plan is in the state, with both figures.
    let st = resolving.store().read().unwrap();
    let recorded = &st.tasks[&task("consumer")].replans;
    assert_eq!(recorded.len(), 1);
    // The wall time goes through JSON in the store (its last bit may differ).
    let same = |x: &skyform::state::Replan| skyform::state::Replan { solve_ms: 0.0, ..x.clone() };
    assert_eq!(same(&recorded[0]), same(r));
    assert_eq!(st.tasks[&task("sink")].placement.as_ref().unwrap().zone, "zone-c1");
}

/// A re-solve that cannot finish within its time limit is not used: failover walks the
/// ranked alternatives (the consumer to zone-b2, the sink to zone-c1), and the state says
/// why.
#[test]
fn a_re_solve_past_its_time_limit_falls_back_to_the_ranked_alternatives() {
    let job = Job::new(CHAIN);
    let plan = job.plan();
    let (out, events) = job.apply_limited(&plan, true, std::time::Duration::ZERO);
    assert!(out.failed.is_empty(), "{:?}", lines(&events));
    let by = by_task(&lines(&events));
    assert_eq!(by["task.consumer"][2], "replanned  fallback: the re-solve took longer than 0 s");
    assert_eq!(by["task.consumer"][3], "allocate local/zone-b2 #2");
    assert_eq!(by["task.sink"][0], "allocate local/zone-c1 #1");
    let st = job.store().read().unwrap();
    let r = &st.tasks[&task("consumer")].replans;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].fallback.as_deref(), Some("the re-solve took longer than 0 s"));
    assert!(r[0].moved.is_empty());
}

/// A checkpointed task preempted mid-run: the checkpoint is synced before the run is
/// killed and restored before the next run, which continues from it instead of starting
/// over (the run counts in its checkpoint and says where it started).
#[test]
fn a_preempted_run_with_a_checkpoint_resumes_from_it() {
    let marks = tempfile::tempdir().unwrap();
    let starts = marks.path().join("starts");
    let run = format!(
        "n=$(cat $SKYFORM_CHECKPOINT/n 2>/dev/null || echo 0); echo start $n >> {s}; while [ $n -lt 8 ]; do n=$((n+1)); echo $n > $SKYFORM_CHECKPOINT/n; sleep 0.25; done; echo $n > $SKYFORM_OUTPUT_O/n",
        s = starts.display()
    );
    let job = Job::new(&one_task(
        r#"preempt_after_secs = 1.2
    preempt_zones      = ["zone-a"]"#,
        r#"recovery = "same_zone"
  checkpoint {
    path  = "ckpt"
    every = "1s"
  }"#,
        &run,
    ));
    let (out, events) = job.apply(&job.plan());
    assert!(out.failed.is_empty(), "{:?}", lines(&events));
    assert_eq!(
        lines(&events),
        [
            "allocate task.a local/zone-a #1",
            "run task.a #1",
            "preempted task.a local/zone-a SameZone",
            "allocate task.a local/zone-a #2",
            "run task.a #2",
            "done task.a succeeded",
        ]
    );
    let starts = std::fs::read_to_string(&starts).unwrap();
    let starts: Vec<u32> = starts.lines().map(|l| l.trim_start_matches("start ").parse().unwrap()).collect();
    println!("the runs started at {starts:?}");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0], 0, "the first run starts from nothing");
    assert!(starts[1] >= 3, "the second run continues from the checkpoint, not from zero: {starts:?}");
    let st = job.store().read().unwrap();
    let o = st.tasks[&task("a")].data.iter().find(|d| d.name == "o").unwrap();
    let p = o.uri.strip_prefix("local://").map(|k| job.path().join(".skyform/local/store").join(k)).unwrap();
    assert_eq!(std::fs::read_to_string(p.join("n")).unwrap(), "8\n", "the task finished its work");
}
