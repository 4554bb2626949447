//! The provider against the fakes on 127.0.0.1 (feature `testing`): fake-gcs-server for
//! Cloud Storage, the loopback Compute Engine fake, and the agent that plays the VMs. The
//! conformance kit, the insert body of a spot GPU allocation, error mapping through the
//! real client, preemption, idempotency, read/sweep by labels, GCS trees and the gcs state
//! backend.

use crate::testing::{config, FakeGce, FakeGcs, Fault, InstanceAgent, PROJECT};
use crate::*;
use skyform_provider::conformance;
use std::time::Instant;

const REGION: &str = "us-central1";

fn loc(zone: &str) -> Location {
    Location::new(CLOUD, naming::region_of(zone), zone)
}

fn provider(gce: &FakeGce, gcs: &FakeGcs) -> GcpProvider {
    GcpProvider::new(config(gce, gcs, &[REGION]), Path::new(".")).unwrap()
}

fn tags(job: &str, task: &str) -> BTreeMap<String, String> {
    [("skyform:lineage", "Lineage-1"), ("skyform:job", job), ("skyform:task", task), ("skyform:attempt", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn request(task: &str, zone: &str, machine_type: &str, token: &str) -> AllocateRequest {
    let mut r = AllocateRequest::new(task, loc(zone), machine_type, token);
    r.owner_tags = tags("Job.One", task);
    r
}

/// Polls the run until it leaves `Running` (20 s at most).
fn wait_run(p: &GcpProvider, id: &str) -> RunState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = p.task_status(&TaskStatusRequest::new(id)).unwrap();
        if s.state != RunState::Running || Instant::now() > deadline {
            return s.state;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn conformance_kit_passes_against_the_fakes() {
    let (gcs, gce) = (FakeGcs::start(), FakeGce::start(PROJECT));
    gce.inject(Fault::capacity("us-central1-c"));
    let work = tempfile::tempdir().unwrap();
    let _agent = InstanceAgent::start(&gce, work.path());
    gcs.create_bucket("conformance");
    let p = provider(&gce, &gcs);
    conformance::lifecycle(&p, &loc("us-central1-a"), "n1-standard-2", "gs://conformance").unwrap();
    conformance::capacity_error(&p, &loc("us-central1-c"), "n1-standard-2").unwrap();
    // The output reached the store; the run directory keeps only the log and the status.
    assert_eq!(gcs.object("conformance", "conformance/out/hello.txt").as_deref(), Some(&b"conformance\n"[..]));
    let run = "skyform-runs/conformance-token-1/";
    let left = gcs.names("skyform-us-central1", run);
    assert_eq!(left, [format!("{run}log.txt"), format!("{run}status.json")]);
    assert!(String::from_utf8(gcs.object("skyform-us-central1", &format!("{run}log.txt")).unwrap())
        .unwrap()
        .contains("done"));
    // allocate twice: one insert (the second found the instance by name).
    let created: Vec<_> = gce.inserts().into_iter().filter(|i| i.outcome == "created").collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(gce.instances().is_empty(), "released: {:?}", gce.instances());
}

#[test]
fn a_spot_gpu_insert_carries_zone_type_accelerators_scheduling_and_labels() {
    let (gcs, gce) = (FakeGcs::start(), FakeGce::start(PROJECT));
    let p = provider(&gce, &gcs);
    let token = "0b5f3c2a-7d1e-4f6a-9c8b-2e4d6f8a0b1c";
    let mut r = request("task.train", "us-central1-b", "n1-standard-8", token);
    r.spot = true;
    r.accelerator = Some("V100:8".into());
    r.disk_gb = Some(200);
    let a = p.allocate(&r).unwrap();
    assert_eq!(a.provider_id, format!("us-central1-b/skyform-{token}"));
    // The same token again: adopted, not inserted again.
    assert_eq!(p.allocate(&r).unwrap().provider_id, a.provider_id);
    let ins = gce.inserts();
    assert_eq!(ins.len(), 1, "one insert for one token: {ins:?}");
    let i = &ins[0];
    assert_eq!((i.zone.as_str(), i.machine_type().as_str()), ("us-central1-b", "n1-standard-8"));
    assert_eq!(i.accelerators(), [("nvidia-tesla-v100".to_string(), 8)]);
    assert_eq!(i.provisioning_model().as_deref(), Some("SPOT"));
    assert_eq!(i.termination_action().as_deref(), Some("DELETE"));
    assert_eq!(i.on_host_maintenance().as_deref(), Some("TERMINATE"));
    assert_eq!(i.request_id.as_deref(), Some(token), "GCE dedupes the insert by request id");
    assert_eq!(i.body.pointer("/disks/0/initializeParams/diskSizeGb"), Some(&serde_json::json!("200")));
    let labels = i.labels();
    for (k, v) in [
        ("skyform-lineage", "lineage-1"),
        ("skyform-job", "job_one"),
        ("skyform-task", "task_train"),
        ("skyform-attempt", "1"),
        ("skyform-token", token),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k} in {labels:?}");
    }
    let exact: BTreeMap<String, String> = serde_json::from_str(&i.metadata(naming::TAGS_KEY).unwrap()).unwrap();
    assert_eq!(exact, r.owner_tags);
    assert!(i.metadata("startup-script").unwrap().contains(&gcs.endpoint), "the VM talks to the emulator");
    // read gives the exact tags and token back.
    let found = p.read(&ReadRequest::tagged(r.owner_tags.clone())).unwrap().resources;
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].idempotency_token.as_str(), &found[0].owner_tags), (token, &r.owner_tags));
    assert_eq!((found[0].instance_type.as_str(), found[0].location.clone()), ("n1-standard-8", loc("us-central1-b")));
    // An accelerator-optimized type carries its GPUs: none attached.
    let mut r2 = request("task.a2", "us-central1-a", "a2-highgpu-1g", "tok-a2");
    r2.accelerator = Some("A100:1".into());
    p.allocate(&r2).unwrap();
    let a2 = gce.inserts().into_iter().find(|i| i.zone == "us-central1-a").unwrap();
    assert!(a2.accelerators().is_empty(), "{:?}", a2.body);
    assert_eq!(a2.provisioning_model().as_deref(), Some("STANDARD"));
    assert_eq!(a2.on_host_maintenance().as_deref(), Some("TERMINATE"));
}

#[test]
fn capacity_quota_throttling_and_hangs_map_to_their_kinds() {
    let (gcs, gce) = (FakeGcs::start(), FakeGce::start(PROJECT));
    let mut cfg = config(&gce, &gcs, &[REGION]);
    cfg.request_timeout_seconds = 1;
    let p = GcpProvider::new(cfg, Path::new(".")).unwrap();
    gce.inject(Fault::capacity("us-central1-a").spot(true));
    let mut r = request("t", "us-central1-a", "n1-standard-4", "cap-1");
    r.spot = true;
    let e = p.allocate(&r).unwrap_err();
    assert_eq!(
        (e.kind, e.scope, e.code.as_deref()),
        (ErrorKind::CapacityUnavailable, Scope::Zone, Some("ZONE_RESOURCE_POOL_EXHAUSTED")),
        "{e}"
    );
    assert_eq!(e.location.as_deref(), Some(&loc("us-central1-a")));
    // The rule is for spot only: on-demand in the same zone works.
    p.allocate(&request("t", "us-central1-a", "n1-standard-4", "cap-2")).unwrap();

    gce.inject(Fault::quota("GPUS_ALL_REGIONS").machine_type("n1-standard-8"));
    let mut g = request("t", "us-central1-b", "n1-standard-8", "quota-1");
    g.accelerator = Some("V100:1".into());
    let e = p.allocate(&g).unwrap_err();
    assert_eq!(
        (e.kind, e.scope, e.code.as_deref()),
        (ErrorKind::QuotaExceeded, Scope::Cloud, Some("QUOTA_EXCEEDED")),
        "{e}"
    );
    gce.clear_faults();
    gce.inject(Fault::quota("NVIDIA_V100_GPUS"));
    let e = p.allocate(&g).unwrap_err();
    assert_eq!((e.kind, e.scope), (ErrorKind::QuotaExceeded, Scope::Region), "{e}");

    gce.clear_faults();
    gce.inject(Fault::rate_limit("us-central1-f").times(1));
    let e = p.allocate(&request("t", "us-central1-f", "e2-small", "rate-1")).unwrap_err();
    assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Throttled, Some("rateLimitExceeded")), "{e}");
    // Once the limit is gone, the same token allocates.
    p.allocate(&request("t", "us-central1-f", "e2-small", "rate-1")).unwrap();

    gce.inject(Fault::hang("us-central1-c"));
    let t0 = Instant::now();
    let e = p.allocate(&request("t", "us-central1-c", "e2-small", "hang-1")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10), "the request timeout ends a hung call: {:?}", t0.elapsed());
    // The hung insert goes on once the fault is gone (as GCE may have taken it): the retry
    // with the same token ends with one instance either way.
    gce.clear_faults();
    let again = p.allocate(&request("t", "us-central1-c", "e2-small", "hang-1")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gce.instances().iter().filter(|i| i.id == again.provider_id).count(), 1);

    gce.inject(Fault::http("insert", 403, "forbidden"));
    let e = p.allocate(&request("t", "us-central1-c", "e2-small", "auth-1")).unwrap_err();
    assert_eq!((e.kind, e.scope), (ErrorKind::Unauthorized, Scope::Cloud), "{e}");
    let created: Vec<String> = gce.instances().into_iter().map(|i| i.id).collect();
    assert_eq!(created.len(), 3, "only the allocations that succeeded exist: {created:?}");
}

#[test]
fn inputs_run_outputs_and_failures_go_through_the_run_directory() {
    let (gcs, gce) = (FakeGcs::start(), FakeGce::start(PROJECT));
    let work = tempfile::tempdir().unwrap();
    let _agent = InstanceAgent::start(&gce, work.path());
    let p = provider(&gce, &gcs);
    let a = p.allocate(&request("task.up", "us-central1-a", "e2-standard-2", "io-1")).unwrap();
    let src = work.path().join("in");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/x.txt"), "hello gcp\n").unwrap();
    let staged = p
        .transfer(&TransferRequest::new(
            format!("file://{}", src.display()),
            format!("sandbox://{}/inputs/data", a.provider_id),
        ))
        .unwrap();
    assert_eq!(staged.bytes, 10);
    let mut run = RunTaskRequest::new(
        a.provider_id.clone(),
        "task.up",
        "tr a-z A-Z < $SKYFORM_INPUT_DATA/sub/x.txt > $SKYFORM_OUTPUT_OUT/y.txt; echo \"$GREETING\"",
    );
    run.inputs = vec!["data".into()];
    run.outputs = vec!["out".into()];
    run.env = [("GREETING".to_string(), "it's $fine".to_string())].into();
    run.setup = Some("echo setup-ran".into());
    let log = p.run_task(&run).unwrap().log;
    assert_eq!(log, "gs://skyform-us-central1/skyform-runs/io-1/log.txt");
    assert_eq!(wait_run(&p, &a.provider_id), RunState::Succeeded);
    let dst = work.path().join("out");
    let got = p
        .transfer(&TransferRequest::new(
            format!("sandbox://{}/outputs/out", a.provider_id),
            format!("file://{}", dst.display()),
        ))
        .unwrap();
    assert_eq!(std::fs::read_to_string(dst.join("y.txt")).unwrap(), "HELLO GCP\n");
    assert_eq!(got.bytes, 10);
    let text = String::from_utf8(gcs.object("skyform-us-central1", "skyform-runs/io-1/log.txt").unwrap()).unwrap();
    assert!(text.contains("setup-ran") && text.contains("it's $fine"), "{text}");
    // A failing run on a fresh allocation reports its exit code.
    let b = p.allocate(&request("task.fail", "us-central1-a", "e2-standard-2", "io-2")).unwrap();
    p.run_task(&RunTaskRequest::new(b.provider_id.clone(), "task.fail", "echo failing; exit 3")).unwrap();
    assert_eq!(wait_run(&p, &b.provider_id), RunState::Failed { exit_code: Some(3) });
    for id in [&a.provider_id, &b.provider_id] {
        assert!(p.release(&ReleaseRequest::new(id.clone())).unwrap().released);
    }
}

#[test]
fn a_spot_instance_preempted_mid_run_is_preempted() {
    let (gcs, gce) = (FakeGcs::start(), FakeGce::start(PROJECT));
    let work = tempfile::tempdir().unwrap();
    let agent = InstanceAgent::start(&gce, work.path());
    let p = provider(&gce, &gcs);
    let mut r = request("task.long", "us-central1-b", "n1-standard-4", "preempt-1");
    r.spot = true;
    let a = p.allocate(&r).unwrap();
    let marker = work.path().join("us-central1-b").join(naming::instance_name("preempt-1")).join("preempt-1/started");
    p.run_task(&RunTaskRequest::new(
        a.provider_id.clone(),
        "task.long",
        format!("touch {}; sleep 60", marker.display()),
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the task never started; agent booted {:?}", agent.started());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(p.task_status(&TaskStatusRequest::new(a.provider_id.clone())).unwrap().state, RunState::Running);
    assert!(gce.preempt(&a.provider_id));
    assert_eq!(wait_run(&p, &a.provider_id), RunState::Preempted);
    // Deleted (termination action DELETE): nothing left to read, nothing to release.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gce.instance(&a.provider_id).is_some() {
        assert!(Instant::now() < deadline, "the preempted instance stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(p.read(&ReadRequest::tagged(r.owner_tags.clone())).unwrap().resources.is_empty());
    assert!(!p.release(&ReleaseRequest::new(a.provider_id.clone())).unwrap().released);
    // A provider that never saw the allocation knows its run directory from the name.
    let fresh = provider(&gce, &gcs);
    assert_eq!(fresh.task_status(&TaskStatusRequest::new(a.provider_id.clone())).unwrap().state, RunState::Preempted);
    // An instance stopped outside skyform (TERMINATED, still there) is preempted too.
    let b = p.allocate(&request("task.b", "us-central1-b", "n1-standard-4", "preempt-2")).unwrap();
    assert!(gce.terminate(&b.provider_id));
    assert_eq!(wait_run(&p, &b.provider_id), RunState::Preempted);
    assert!(
        p.release(&ReleaseRequest::new(b.provider_id.clone())).unwrap().released,
        "a TERMINATED instance is deleted"
    );
}

#[test]
fn read_finds_by_owner_tags_and_sweep_releases_everything() {
    let (gcs, gce) = (FakeGcs::start(), FakeGce::start(PROJECT));
    let p = provider(&gce, &gcs);
    let mut ids = Vec::new();
    for (job, task, zone, tok) in [
        ("Job.One", "task.a", "us-central1-a", "sweep-1"),
        ("Job.One", "task.b", "us-central1-b", "sweep-2"),
        ("job_one", "task.a", "us-central1-a", "sweep-3"),
    ] {
        let mut r = request(task, zone, "e2-small", tok);
        r.owner_tags = tags(job, task);
        ids.push(p.allocate(&r).unwrap().provider_id);
    }
    // An instance in a region this provider does not use (made by another one) is not its
    // business.
    let other = GcpProvider::new(config(&gce, &gcs, &["europe-west4"]), Path::new(".")).unwrap();
    let mut far = request("task.a", "europe-west4-a", "e2-small", "sweep-far");
    far.owner_tags = tags("Job.One", "task.a");
    let far_id = other.allocate(&far).unwrap().provider_id;
    let job: BTreeMap<String, String> = [("skyform:job".to_string(), "Job.One".to_string())].into();
    let one = p.read(&ReadRequest::tagged(job)).unwrap().resources;
    // "job_one" has the same label value as "Job.One"; the exact tags tell them apart.
    assert_eq!(one.iter().map(|r| r.provider_id.clone()).collect::<Vec<_>>(), [ids[0].clone(), ids[1].clone()]);
    let all = p.read(&ReadRequest::all()).unwrap().resources;
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|r| r.state == RunState::Running && r.location.region == REGION));
    assert_eq!(all.iter().find(|r| r.idempotency_token == "sweep-3").unwrap().owner_tags, tags("job_one", "task.a"));
    // Sweep: release everything read lists.
    for r in &all {
        assert!(p.release(&ReleaseRequest::new(r.provider_id.clone())).unwrap().released);
    }
    assert!(p.read(&ReadRequest::all()).unwrap().resources.is_empty());
    assert_eq!(gce.instances().into_iter().map(|i| i.id).collect::<Vec<_>>(), [far_id]);
}

#[test]
fn gcs_trees_round_trip_with_resumable_uploads_and_copies() {
    let (gcs, gce) = (FakeGcs::start(), FakeGce::start(PROJECT));
    let p = provider(&gce, &gcs);
    gcs.create_bucket("bucket-one");
    gcs.create_bucket("bucket-two");
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let big: Vec<u8> = (0..(storage::RESUMABLE_THRESHOLD + 3 * 1024 * 1024 + 7)).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/small.txt"), b"hello\n").unwrap();
    let up = p.transfer(&TransferRequest::new(format!("file://{}", src.display()), "gs://bucket-one/data/in")).unwrap();
    assert_eq!(up.bytes, big.len() as u64 + 6);
    assert_eq!(gcs.object("bucket-one", "data/in/big.bin").unwrap(), big, "the resumable upload stored every byte");
    let cp = p.transfer(&TransferRequest::new("gs://bucket-one/data/in", "gs://bucket-two/copy")).unwrap();
    assert_eq!((cp.bytes, cp.checksum.as_deref()), (up.bytes, None));
    assert_eq!(gcs.names("bucket-two", "copy/"), ["copy/big.bin", "copy/sub/small.txt"]);
    let dst = d.path().join("dst");
    let down = p.transfer(&TransferRequest::new("gs://bucket-two/copy", format!("file://{}", dst.display()))).unwrap();
    assert_eq!(down.bytes, up.bytes);
    assert_eq!(down.checksum, up.checksum, "same content hash both ways");
    let mut h = storage::Fnv::default();
    h.update(&big);
    h.update(b"hello\n");
    assert_eq!(up.checksum.as_deref(), Some(h.hex().as_str()), "FNV-1a over the files in key order");
    assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(dst.join("sub/small.txt")).unwrap(), "hello\n");
    // A single object is a tree of one.
    let one = p
        .transfer(&TransferRequest::new(
            "gs://bucket-one/data/in/sub/small.txt",
            format!("file://{}/one", d.path().display()),
        ))
        .unwrap();
    assert_eq!(one.bytes, 6);
    assert_eq!(std::fs::read_to_string(d.path().join("one/small.txt")).unwrap(), "hello\n");
    let e = p.transfer(&TransferRequest::new("gs://bucket-one/nothing", "gs://bucket-two/x")).unwrap_err();
    assert!(e.message.contains("nothing at gs://bucket-one/nothing"), "{e}");
    let e = p.transfer(&TransferRequest::new("s3://elsewhere/x", "gs://bucket-two/x")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert_eq!(p.object_store(&loc("us-central1-a")).as_deref(), Some("gs://skyform-us-central1"));
}

/// The VM's `gcs.py mirror` (checkpoint syncs) sends only the files whose MD5 differs from
/// the object's and deletes the objects the directory no longer holds.
#[test]
fn the_vm_helper_mirrors_a_directory_sending_only_what_changed() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("ckpt");
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("gcs.py"), bootstrap::GCS_PY).unwrap();
    let dir = d.path().join("checkpoint");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("model.bin"), vec![7u8; 100_000]).unwrap();
    std::fs::write(dir.join("sub/step"), b"1").unwrap();
    let mirror = || {
        let o = std::process::Command::new("python3")
            .arg(d.path().join("gcs.py"))
            .args(["mirror", &dir.display().to_string(), "gs://ckpt/task/ckpt"])
            .env("SKYFORM_GCS_ENDPOINT", &gcs.endpoint)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    mirror();
    assert_eq!(gcs.names("ckpt", "task/ckpt/"), ["task/ckpt/model.bin", "task/ckpt/sub/step"]);
    let (model, step) = (gcs.generation("ckpt", "task/ckpt/model.bin"), gcs.generation("ckpt", "task/ckpt/sub/step"));
    assert!(model.is_some() && step.is_some());
    // The step changes, the model does not; a new file appears.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.join("sub/step"), b"2").unwrap();
    std::fs::write(dir.join("sub/extra"), b"x").unwrap();
    mirror();
    assert_eq!(gcs.generation("ckpt", "task/ckpt/model.bin"), model, "an unchanged file is not sent again");
    assert_ne!(gcs.generation("ckpt", "task/ckpt/sub/step"), step, "a changed file is");
    assert_eq!(gcs.object("ckpt", "task/ckpt/sub/step").unwrap(), b"2");
    // What the directory no longer holds goes.
    std::fs::remove_file(dir.join("model.bin")).unwrap();
    mirror();
    assert_eq!(gcs.names("ckpt", "task/ckpt/"), ["task/ckpt/sub/extra", "task/ckpt/sub/step"]);
}

#[test]
fn the_gcs_backend_passes_the_objects_conformance() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("tf-state");
    let body = serde_json::json!({"bucket": "tf-state", "prefix": "team/job", "storage_endpoint": gcs.endpoint, "credentials": "anonymous"});
    let store = GcpFactory.backend("gcs", &body).unwrap();
    assert_eq!(store.key, "team/job/default.state.json");
    conformance::objects(&*store.objects, &store.key).unwrap();
    conformance::objects(&*store.objects, &format!("{}.lock", store.key)).unwrap();
    assert_eq!(store.objects.describe(&store.key), "gs://tf-state/team/job/default.state.json");
}

/// Runs a startup-script as the agent would, to its end (20 s at most).
fn run_startup_script(script: &str, work: &Path) -> std::process::ExitStatus {
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("SKYFORM_WORK", work)
        .env("SKYFORM_NO_SHUTDOWN", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the startup-script did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_restarted_instance_does_not_run_its_task_again() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("runs");
    let work = tempfile::tempdir().unwrap();
    // First boot: the task runs and its status lands in the run directory.
    gcs.put("runs", "skyform-runs/tok/task.sh", b"echo ran >> \"$W/runs.txt\"");
    let script = bootstrap::startup_script(&bootstrap::RunDir::new("runs", "tok"), "tok", Some(&gcs.endpoint), 1, 0);
    assert!(run_startup_script(&script, work.path()).success());
    assert_eq!(gcs.object("runs", "skyform-runs/tok/status.json").as_deref(), Some(&b"{\"exit_code\": 0}\n"[..]));
    // A restart finds the status and leaves the task alone.
    assert!(run_startup_script(&script, work.path()).success());
    assert_eq!(std::fs::read_to_string(work.path().join("tok/runs.txt")).unwrap(), "ran\n");
}
