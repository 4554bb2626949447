//! The provider against Azurite and the Resource Manager fake on 127.0.0.1 (feature
//! `testing`): the conformance kit, the VM a spot GPU allocation creates, Azure's errors
//! through the SDK's parsing, eviction, idempotency, release, read by tags, Blob trees and
//! the azurerm backend.

use crate::testing::{backend_config, provider_config, Azurite, FakeArm, Fault, VmAgent, ACCOUNT};
use crate::*;
use serde_json::json;
use skyform_provider::conformance;

fn provider(arm: &FakeArm, azurite: &Azurite, extra: serde_json::Value) -> AzureProvider {
    let mut body = provider_config(arm, azurite);
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    AzureProvider::new(AzureConfig::from_json(&body).unwrap()).unwrap()
}

fn eastus() -> Location {
    Location::new("azure", "eastus", "eastus")
}

fn tags(job: &str, task: &str) -> BTreeMap<String, String> {
    [("skyform:lineage", "L1"), ("skyform:job", job), ("skyform:task", task), ("skyform:attempt", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn request(task: &str, size: &str, token: &str) -> AllocateRequest {
    let mut r = AllocateRequest::new(task, eastus(), size, token);
    r.owner_tags = tags("job", task);
    r
}

/// Polls task_status until `done` holds (or 30 s pass) and returns the last state.
fn wait_for(p: &AzureProvider, id: &str, done: impl Fn(&RunState) -> bool) -> RunState {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = p.task_status(&TaskStatusRequest::new(id)).unwrap().state;
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn vm_of(id: &str) -> String {
    id.split_once('/').unwrap().1.to_string()
}

#[test]
fn conformance_kit_passes_against_azurite_and_the_arm_fake() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    arm.inject(Fault::capacity("westus2"));
    let work = tempfile::tempdir().unwrap();
    let _agent = VmAgent::start(&arm, work.path());
    let p = provider(&arm, &azurite, json!({}));
    conformance::lifecycle(&p, &eastus(), "Standard_D2s_v5", &format!("az://{ACCOUNT}/conformance")).unwrap();
    conformance::capacity_error(&p, &Location::new("azure", "westus2", "westus2"), "Standard_D2s_v5").unwrap();
    // Everything the allocation made is gone.
    assert!(arm.vm_names().is_empty(), "{:?}", arm.vm_names());
    assert!(arm.nic_names().is_empty(), "{:?}", arm.nic_names());
    assert!(arm.disk_names().is_empty(), "{:?}", arm.disk_names());
}

#[test]
fn spot_gpu_vm_carries_region_size_priority_and_tags() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let p =
        provider(&arm, &azurite, json!({"tags": {"team": "ml"}, "gpu_image": "microsoft-dsvm:ubuntu-hpc:2204:latest"}));
    let mut req = request("task.train", "Standard_NC6s_v3", "tok-spot");
    req.spot = true;
    req.accelerator = Some("V100:1".into());
    req.disk_gb = Some(128);
    let a = p.allocate(&req).unwrap();
    assert_eq!(a.provider_id, "eastus/skyform-tok-spot");
    let puts = arm.vm_puts();
    assert_eq!(puts.len(), 1, "{puts:?}");
    let b = &puts[0].body;
    let props = &b["properties"];
    assert_eq!(b["location"], "eastus");
    assert!(b.get("zones").is_none(), "placement is by region");
    assert_eq!(props["hardwareProfile"]["vmSize"], "Standard_NC6s_v3");
    assert_eq!(props["priority"], "Spot");
    assert_eq!(props["evictionPolicy"], "Delete");
    assert_eq!(props["billingProfile"]["maxPrice"], json!(-1.0));
    assert_eq!(props["storageProfile"]["osDisk"]["diskSizeGB"], json!(128));
    assert_eq!(props["storageProfile"]["osDisk"]["deleteOption"], "Delete");
    // An allocation with accelerators boots the GPU image.
    assert_eq!(props["storageProfile"]["imageReference"]["offer"], "ubuntu-hpc");
    let want = [
        ("skyform-lineage", "L1"),
        ("skyform-job", "job"),
        ("skyform-task", "task.train"),
        ("skyform-attempt", "1"),
        ("skyform-token", "tok-spot"),
        ("team", "ml"),
    ];
    for (k, v) in want {
        assert_eq!(b["tags"][k], v, "tag {k}");
    }
    // Custom data is the bootstrap, reaching the region's container with a SAS.
    let cd = props["osProfile"]["customData"].as_str().unwrap();
    let script = {
        use base64::Engine;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(cd).unwrap()).unwrap()
    };
    assert!(script.starts_with("#!/bin/bash"), "{script}");
    assert!(script.contains(&format!("127.0.0.1:{}/{ACCOUNT}/skyform-eastus", azurite.port)), "{script}");
    assert!(script.contains("sig="), "a SAS token");
    // Its NIC: in the region's VNet (created once, with a Storage service endpoint), no
    // public address.
    let nic = arm.puts().into_iter().find(|p| p.kind == "networkInterfaces").unwrap();
    assert_eq!(nic.name, "skyform-tok-spot-nic");
    let ipc = &nic.body["properties"]["ipConfigurations"][0]["properties"];
    assert!(ipc["subnet"]["id"].as_str().unwrap().ends_with("/virtualNetworks/skyform-eastus/subnets/default"));
    assert!(ipc.get("publicIPAddress").is_none());
    assert_eq!(nic.body["tags"]["skyform-token"], "tok-spot");
    let vnet = arm.puts().into_iter().find(|p| p.kind == "virtualNetworks").unwrap();
    assert_eq!(
        vnet.body["properties"]["subnets"][0]["properties"]["serviceEndpoints"][0]["service"],
        "Microsoft.Storage"
    );
    assert_eq!(p.object_store(&eastus()).as_deref(), Some("az://devstoreaccount1/skyform-eastus"));
    // A second VM in the region reuses the VNet.
    p.allocate(&request("task.b", "Standard_D2s_v5", "tok-cpu")).unwrap();
    assert_eq!(arm.puts().iter().filter(|p| p.kind == "virtualNetworks").count(), 1);
    let cpu = arm.vm_puts().into_iter().find(|p| p.name == "skyform-tok-cpu").unwrap();
    assert_eq!(cpu.body["properties"]["storageProfile"]["imageReference"]["offer"], "ubuntu-24_04-lts");
    assert!(cpu.body["properties"].get("priority").is_none(), "on demand");
    // read reports the seam's tags, the size and the place.
    let found = p.read(&ReadRequest::tagged(tags("job", "task.train"))).unwrap().resources;
    assert_eq!(found.len(), 1, "{found:?}");
    let r = &found[0];
    assert_eq!((r.provider_id.as_str(), r.instance_type.as_str()), ("eastus/skyform-tok-spot", "Standard_NC6s_v3"));
    assert_eq!((r.location.clone(), r.idempotency_token.as_str()), (eastus(), "tok-spot"));
    assert_eq!(r.owner_tags, tags("job", "task.train"));
    assert_eq!(r.state, RunState::Running);
}

#[test]
fn azure_errors_map_to_their_kinds() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let p = provider(&arm, &azurite, json!({"request_timeout_seconds": 2}));
    // Capacity: 409 ZonalAllocationFailed, sent once (no SDK retry), the NIC cleaned up.
    arm.inject(Fault::capacity("eastus").size("Standard_ND96asr_v4").spot(true));
    let mut req = request("t", "Standard_ND96asr_v4", "cap");
    req.spot = true;
    let e = p.allocate(&req).unwrap_err();
    assert_eq!((e.kind, e.scope), (ErrorKind::CapacityUnavailable, Scope::Zone), "{e}");
    assert_eq!(e.code.as_deref(), Some("ZonalAllocationFailed"));
    assert_eq!(e.location.as_deref(), Some(&eastus()));
    assert_eq!(arm.vm_puts().iter().filter(|p| p.name == "skyform-cap").count(), 1);
    assert!(!arm.nic_names().contains(&"skyform-cap-nic".to_string()), "{:?}", arm.nic_names());
    // The same size on demand is not hit by the spot-only fault.
    p.allocate(&request("t", "Standard_ND96asr_v4", "cap-od")).unwrap();
    // Quota: 409 OperationNotAllowed naming the location blocks the region.
    arm.inject(Fault::quota("eastus").size("Standard_D64s_v5"));
    let e = p.allocate(&request("t", "Standard_D64s_v5", "quota")).unwrap_err();
    assert_eq!(
        (e.kind, e.scope, e.code.as_deref()),
        (ErrorKind::QuotaExceeded, Scope::Region, Some("OperationNotAllowed"))
    );
    // Throttling: 429 with Retry-After, carried for the caller's backoff; the NIC stays for
    // the retry, which succeeds once Azure lets it through.
    arm.inject(Fault::throttle("eastus", 7).size("Standard_D4s_v5").times(1));
    let e = p.allocate(&request("t", "Standard_D4s_v5", "throttled")).unwrap_err();
    assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Throttled, Some("TooManyRequests")), "{e}");
    assert_eq!(errors::retry_after(&e), Some(Duration::from_secs(7)));
    assert!(arm.nic_names().contains(&"skyform-throttled-nic".to_string()));
    assert_eq!(
        p.allocate(&request("t", "Standard_D4s_v5", "throttled")).unwrap().provider_id,
        "eastus/skyform-throttled"
    );
    // A provisioning failure (PUT accepted, allocation failed later) is read from the
    // instance view, and the failed VM is deleted with its NIC.
    arm.inject(Fault::provisioning_fails("eastus").size("Standard_D8s_v5"));
    let e = p.allocate(&request("t", "Standard_D8s_v5", "async")).unwrap_err();
    assert_eq!(
        (e.kind, e.scope, e.code.as_deref()),
        (ErrorKind::CapacityUnavailable, Scope::Zone, Some("AllocationFailed"))
    );
    assert!(!arm.vm_names().contains(&"skyform-async".to_string()), "{:?}", arm.vm_names());
    assert!(!arm.nic_names().contains(&"skyform-async-nic".to_string()));
    // A hanging Resource Manager fails transiently after the request timeout.
    arm.inject(Fault::hang("eastus").size("Standard_D16s_v5"));
    let t = Instant::now();
    let e = p.allocate(&request("t", "Standard_D16s_v5", "hang")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn a_request_without_a_token_is_unauthorized_for_the_whole_cloud() {
    let fake = FakeArm::start();
    let rt = Rt::new("test").unwrap();
    let endpoint = fake.endpoint.clone();
    // An empty bearer token: Resource Manager answers 401 AuthenticationFailed.
    let e = rt
        .block(async move {
            let c = azure_mgmt_compute::Client::new(
                azure_core::Url::parse(&endpoint).unwrap(),
                std::sync::Arc::new(crate::arm::StaticToken(String::new())),
                vec![],
                crate::arm::options(crate::arm::http_client(Duration::from_secs(5)).unwrap()),
            );
            c.virtual_machines_client().get("rg", "x", "sub").send().await.map(|_| ())
        })
        .unwrap_err();
    let pe = errors::from_azure("GET", None, &e);
    assert_eq!(
        (pe.kind, pe.scope, pe.code.as_deref()),
        (ErrorKind::Unauthorized, Scope::Cloud, Some("AuthenticationFailed"))
    );
}

#[test]
fn eviction_mid_run_is_preempted_and_stops_the_task() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let work = tempfile::tempdir().unwrap();
    let agent = VmAgent::start(&arm, work.path());
    let p = provider(&arm, &azurite, json!({}));
    let mut req = request("task.spot", "Standard_NC6s_v3", "evict-me");
    req.spot = true;
    let a = p.allocate(&req).unwrap();
    let beat = work.path().join("heartbeat");
    let run = format!("while true; do date +%s%N > '{}'; sleep 0.1; done", beat.display());
    p.run_task(&RunTaskRequest::new(a.provider_id.clone(), "task.spot", run)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !beat.exists() {
        assert!(Instant::now() < deadline, "the VM never ran its task");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(p.task_status(&TaskStatusRequest::new(a.provider_id.clone())).unwrap().state, RunState::Running);
    assert!(arm.evict(&vm_of(&a.provider_id)));
    assert_eq!(p.task_status(&TaskStatusRequest::new(a.provider_id.clone())).unwrap().state, RunState::Preempted);
    // Evicted with evictionPolicy Delete: the VM, NIC and disk are gone, and so is the run.
    assert!(arm.vm_names().is_empty() && arm.nic_names().is_empty() && arm.disk_names().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let before = std::fs::read_to_string(&beat).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&beat).unwrap(), before, "the evicted VM's task still runs");
    assert_eq!(agent.started(), vec![vm_of(&a.provider_id)]);
    // An on-demand VM deleted outside skyform is preempted too, seen by a fresh provider
    // that never saw the allocation (the token comes from the VM's name).
    let b = p.allocate(&request("task.od", "Standard_D2s_v5", "deleted-outside")).unwrap();
    assert!(arm.delete_vm(&vm_of(&b.provider_id)));
    let fresh = provider(&arm, &azurite, json!({}));
    assert_eq!(fresh.task_status(&TaskStatusRequest::new(b.provider_id.clone())).unwrap().state, RunState::Preempted);
    // A VM deallocated under it (evictionPolicy Deallocate, or `az vm deallocate`) as well.
    let c = p.allocate(&request("task.od", "Standard_D2s_v5", "deallocated")).unwrap();
    assert_eq!(p.task_status(&TaskStatusRequest::new(c.provider_id.clone())).unwrap().state, RunState::Running);
    assert!(arm.evict(&vm_of(&c.provider_id)));
    assert_eq!(
        arm.vm(&vm_of(&c.provider_id)).unwrap()["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/deallocated"
    );
    assert_eq!(p.task_status(&TaskStatusRequest::new(c.provider_id.clone())).unwrap().state, RunState::Preempted);
}

#[test]
fn inputs_outputs_log_and_status_follow_the_run_directory() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let work = tempfile::tempdir().unwrap();
    let _agent = VmAgent::start(&arm, work.path());
    let p = provider(&arm, &azurite, json!({}));
    let a = p.allocate(&request("task.io", "Standard_D2s_v5", "io")).unwrap();
    let src = work.path().join("in");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/x.txt"), b"hello from the input\n").unwrap();
    let staged = p
        .transfer(&TransferRequest::new(
            format!("file://{}", src.display()),
            format!("sandbox://{}/inputs/data", a.provider_id),
        ))
        .unwrap();
    assert_eq!(staged.bytes, 21);
    let mut run = RunTaskRequest::new(
        a.provider_id.clone(),
        "task.io",
        "tr a-z A-Z < $SKYFORM_INPUT_DATA/sub/x.txt > $SKYFORM_OUTPUT_OUT/y.txt; head -c 17000000 /dev/zero > $SKYFORM_OUTPUT_OUT/big.bin; echo \"greeting=$GREETING\"; exit 3",
    );
    run.setup = Some("echo setting up".into());
    run.inputs = vec!["data".into()];
    run.outputs = vec!["out".into()];
    run.env = [("GREETING".to_string(), "it's me".to_string())].into();
    let r = p.run_task(&run).unwrap();
    assert_eq!(r.log, "az://devstoreaccount1/skyform-eastus/skyform-runs/io/log.txt");
    let s = wait_for(&p, &a.provider_id, |s| *s != RunState::Running);
    assert_eq!(s, RunState::Failed { exit_code: Some(3) });
    let out = work.path().join("out");
    let got = p
        .transfer(&TransferRequest::new(
            format!("sandbox://{}/outputs/out", a.provider_id),
            format!("file://{}", out.display()),
        ))
        .unwrap();
    assert_eq!(std::fs::read_to_string(out.join("y.txt")).unwrap(), "HELLO FROM THE INPUT\n");
    assert_eq!(got.bytes, 21 + 17_000_000);
    // The VM's client put the big output up in blocks.
    let c = p.blobs().container(ACCOUNT, "skyform-eastus");
    let blocks = p
        .block(async move {
            c.blob_client("skyform-runs/io/outputs/out/big.bin")
                .get_block_list()
                .await
                .map(|l| l.block_with_size_list.blocks.len())
        })
        .unwrap();
    assert_eq!(blocks, 3, "17 MB in 8 MiB blocks");
    let c = p.blobs().container(ACCOUNT, "skyform-eastus");
    let log = p.block(async move { storage::get(&c, "skyform-runs/io/log.txt").await }).unwrap().unwrap().0;
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("setting up") && log.contains("greeting=it's me"), "{log}");
    // Release keeps the log and status for `skyform logs`, drops the rest of the run.
    assert!(p.release(&ReleaseRequest::new(a.provider_id.clone())).unwrap().released);
    let c = p.blobs().container(ACCOUNT, "skyform-eastus");
    let left: Vec<String> = p
        .block(async move { storage::list(&c, "skyform-runs/io").await })
        .unwrap()
        .into_iter()
        .map(|e| e.rel)
        .collect();
    assert_eq!(left, ["log.txt", "status.json"]);
}

#[test]
fn allocate_is_idempotent_across_provider_instances() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    arm.set_delays(Duration::from_millis(1500), Duration::from_millis(200));
    let p = provider(&arm, &azurite, json!({"create_wait_seconds": 0}));
    let req = request("task.a", "Standard_D2s_v5", "same-token");
    // Returned while still creating (the wait is 0): the allocation stands.
    let a = p.allocate(&req).unwrap();
    assert_eq!(arm.vm(&vm_of(&a.provider_id)).unwrap()["properties"]["provisioningState"], "Creating");
    let b = p.allocate(&req).unwrap();
    // A provider started later (skyform restarted) finds the same VM by its name.
    let fresh = provider(&arm, &azurite, json!({}));
    let c = fresh.allocate(&req).unwrap();
    assert_eq!((&a.provider_id, &b.provider_id), (&c.provider_id, &c.provider_id));
    assert_eq!(arm.vm_puts().len(), 1, "one VM PUT for one token");
    assert_eq!(arm.vm(&vm_of(&a.provider_id)).unwrap()["properties"]["provisioningState"], "Succeeded");
    // A VM that holds the name without the token (made outside skyform) is not adopted.
    let subnet = fresh.subnet(&eastus()).unwrap();
    let (a2, sub2) = (fresh.arm.clone(), subnet.clone());
    let nic_id = fresh.arm.nic_id("skyform-stranger-nic");
    let spec = crate::arm::VmSpec {
        name: "skyform-stranger".into(),
        region: "eastus".into(),
        zone: None,
        size: "Standard_D2s_v5".into(),
        spot: false,
        image: fresh.config().image.clone(),
        nic_id,
        tags: [("owner".to_string(), "someone".to_string())].into(),
        custom_data: "#!/bin/bash\n".into(),
        disk_gb: None,
    };
    let body = crate::arm::vm_body(fresh.config(), &spec);
    fresh
        .block(async move {
            a2.put_nic("skyform-stranger-nic", crate::arm::nic_body("eastus", &sub2, &BTreeMap::new())).await?;
            a2.put_vm("skyform-stranger", body).await
        })
        .unwrap();
    let e = fresh.allocate(&request("task.a", "Standard_D2s_v5", "stranger")).unwrap_err();
    assert!(e.message.contains("not this allocation's"), "{e}");
}

#[test]
fn release_deletes_vm_nic_and_disk_itself_when_azure_does_not() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    // No cascade: the VM's deleteOption is not honoured, release deletes NIC and disk.
    arm.set_cascade(false);
    let p = provider(&arm, &azurite, json!({}));
    let a = p.allocate(&request("task.a", "Standard_D2s_v5", "rel")).unwrap();
    assert_eq!(arm.disk_names(), ["skyform-rel-osdisk"]);
    assert_eq!(arm.nic_names(), ["skyform-rel-nic"]);
    assert!(p.release(&ReleaseRequest::new(a.provider_id.clone())).unwrap().released);
    assert!(arm.vm_names().is_empty() && arm.nic_names().is_empty() && arm.disk_names().is_empty());
    assert!(!p.release(&ReleaseRequest::new(a.provider_id.clone())).unwrap().released);
    // A VM deleted outside skyform leaves its NIC and disk: read lists the remains as a
    // preempted allocation, and release removes them.
    let b = p.allocate(&request("task.b", "Standard_D2s_v5", "orphan")).unwrap();
    assert!(arm.delete_vm(&vm_of(&b.provider_id)));
    let found = p.read(&ReadRequest::all()).unwrap().resources;
    let r = found.iter().find(|r| r.provider_id == b.provider_id).expect("the orphaned NIC is listed");
    assert_eq!((r.state.clone(), r.idempotency_token.as_str()), (RunState::Preempted, "orphan"));
    assert!(p.release(&ReleaseRequest::new(b.provider_id.clone())).unwrap().released);
    assert!(arm.nic_names().is_empty() && arm.disk_names().is_empty(), "{:?} {:?}", arm.nic_names(), arm.disk_names());
    assert!(p.read(&ReadRequest::all()).unwrap().resources.is_empty());
}

#[test]
fn read_finds_allocations_by_tags_and_sweep_finds_all() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let p = provider(&arm, &azurite, json!({}));
    let mut a = request("task.a", "Standard_D2s_v5", "job-a");
    a.owner_tags = tags("ja", "task.a");
    let mut b = request("task.b", "Standard_D2s_v5", "job-b");
    b.owner_tags = tags("jb", "task.b");
    b.location = Location::new("azure", "westeurope", "westeurope");
    let (ra, rb) = (p.allocate(&a).unwrap(), p.allocate(&b).unwrap());
    let ids = |r: ReadRequest| {
        let mut v: Vec<String> = p.read(&r).unwrap().resources.into_iter().map(|x| x.provider_id).collect();
        v.sort();
        v
    };
    let job_a: BTreeMap<String, String> = [("skyform:job".to_string(), "ja".to_string())].into();
    assert_eq!(ids(ReadRequest::tagged(job_a)), [ra.provider_id.as_str()]);
    assert_eq!(ids(ReadRequest::all()), [ra.provider_id.clone(), rb.provider_id.clone()]);
    assert_eq!(rb.provider_id, "westeurope/skyform-job-b");
    let wb =
        p.read(&ReadRequest::all()).unwrap().resources.into_iter().find(|r| r.provider_id == rb.provider_id).unwrap();
    assert_eq!(wb.location, Location::new("azure", "westeurope", "westeurope"));
    // What sweep does: release everything read lists.
    for id in ids(ReadRequest::all()) {
        assert!(p.release(&ReleaseRequest::new(id)).unwrap().released);
    }
    assert!(ids(ReadRequest::all()).is_empty());
    assert!(arm.vm_names().is_empty() && arm.nic_names().is_empty() && arm.disk_names().is_empty());
}

#[test]
fn blob_trees_round_trip_with_blocks_hashes_and_copies() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let p = provider(&arm, &azurite, json!({}));
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let big: Vec<u8> = (0..(storage::SINGLE_PUT_LIMIT as usize + 3 * 1024 * 1024)).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/small.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let up = p
        .transfer(&TransferRequest::new(format!("file://{}", src.display()), format!("az://{ACCOUNT}/one/data/in")))
        .unwrap();
    assert_eq!(up.bytes, big.len() as u64 + 6);
    // The content hash is FNV-1a over the files in key order, the AWS provider's scheme.
    let mut h = storage::Fnv::default();
    h.update(&big);
    h.update(b"hello\n");
    assert_eq!(up.checksum.as_deref(), Some(h.hex().as_str()));
    // The big file went up in blocks.
    let c = p.blobs().container(ACCOUNT, "one");
    let blocks = p
        .block(async move {
            c.blob_client("data/in/big.bin").get_block_list().await.map(|l| l.block_with_size_list.blocks.len())
        })
        .unwrap();
    assert_eq!(blocks, 3, "19 MiB in 8 MiB blocks");
    // A server-side copy into another container (created for it).
    let cp = p
        .transfer(&TransferRequest::new(format!("az://{ACCOUNT}/one/data/in"), format!("az://{ACCOUNT}/two/copy")))
        .unwrap();
    assert_eq!(cp.bytes, up.bytes);
    let dst = d.path().join("dst");
    let down = p
        .transfer(&TransferRequest::new(format!("az://{ACCOUNT}/two/copy"), format!("file://{}", dst.display())))
        .unwrap();
    assert_eq!(down.bytes, up.bytes);
    assert_eq!(down.checksum, up.checksum, "same content hash both ways");
    assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(dst.join("sub/small.txt")).unwrap(), "hello\n");
    assert_eq!(std::fs::read(dst.join("empty")).unwrap(), b"");
    // One blob is a tree of one.
    let one = d.path().join("one");
    let r = p
        .transfer(&TransferRequest::new(
            format!("az://{ACCOUNT}/two/copy/sub/small.txt"),
            format!("file://{}", one.display()),
        ))
        .unwrap();
    assert_eq!((r.bytes, std::fs::read_to_string(one.join("small.txt")).unwrap()), (6, "hello\n".to_string()));
    let e = p
        .transfer(&TransferRequest::new(format!("az://{ACCOUNT}/one/nothing"), format!("az://{ACCOUNT}/two/x")))
        .unwrap_err();
    assert!(e.message.contains("nothing at az://devstoreaccount1/one/nothing"), "{e}");
    let e = p.transfer(&TransferRequest::new("gs://b/x", format!("az://{ACCOUNT}/two/x"))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
}

/// The VM's `blob.py mirror-tree` (checkpoint syncs) sends only the files whose MD5
/// differs from the blob's Content-MD5 and deletes the blobs the directory no longer holds.
#[test]
fn the_vm_helper_mirrors_a_tree_sending_only_what_changed() {
    let azurite = Azurite::start();
    let arm = FakeArm::start();
    let p = provider(&arm, &azurite, json!({}));
    let d = tempfile::tempdir().unwrap();
    // The container, made by a first upload.
    std::fs::create_dir_all(d.path().join("seed")).unwrap();
    std::fs::write(d.path().join("seed/x"), b"x").unwrap();
    let seed = format!("file://{}", d.path().join("seed").display());
    p.transfer(&TransferRequest::new(seed, format!("az://{ACCOUNT}/ckpts/seed"))).unwrap();
    let c = p.blobs().container(ACCOUNT, "ckpts");
    let url = c.url().unwrap().to_string();
    let (blobs, c2) = (p.blobs().clone(), c.clone());
    let sas = p.block(async move { blobs.sas(&c2, true, Duration::from_secs(3600)).await }).unwrap();
    std::fs::write(d.path().join("blob.py"), bootstrap::BLOB_PY).unwrap();
    let dir = d.path().join("checkpoint");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("model.bin"), vec![7u8; 100_000]).unwrap();
    std::fs::write(dir.join("sub/step"), b"1").unwrap();
    let mirror = || {
        let o = std::process::Command::new("python3")
            .arg(d.path().join("blob.py"))
            .args(["mirror-tree", &dir.display().to_string(), "/task/ckpt"])
            .env("SKYFORM_BLOB_URL", &url)
            .env("SKYFORM_BLOB_SAS", &sas)
            .env("SKYFORM_RUN", "skyform-runs/tok")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let etag = |name: &str| {
        let b = c.blob_client(name);
        p.block(async move { b.get_properties().await.map(|r| format!("{:?}", r.blob.properties.etag)).ok() })
    };
    mirror();
    let (model, step) = (etag("task/ckpt/model.bin"), etag("task/ckpt/sub/step"));
    assert!(model.is_some() && step.is_some(), "both uploaded from the container's root");
    std::fs::write(dir.join("sub/step"), b"2").unwrap();
    std::fs::write(dir.join("sub/extra"), b"x").unwrap();
    mirror();
    assert_eq!(etag("task/ckpt/model.bin"), model, "an unchanged file is not sent again");
    assert_ne!(etag("task/ckpt/sub/step"), step, "a changed file is");
    assert!(etag("task/ckpt/sub/extra").is_some());
    std::fs::remove_file(dir.join("model.bin")).unwrap();
    mirror();
    assert_eq!(etag("task/ckpt/model.bin"), None, "what the directory no longer holds goes");
    assert!(etag("task/ckpt/sub/step").is_some());
}

#[test]
fn azurerm_backend_objects_conform() {
    let azurite = Azurite::start();
    let f = AzureFactory;
    let body = backend_config(&azurite, "tfstate", "jobs/train.json");
    f.check_backend("azurerm", &body).unwrap();
    let store = f.backend("azurerm", &body).unwrap();
    assert_eq!(store.key, "jobs/train.json");
    conformance::objects(store.objects.as_ref(), "jobs/train.json.lock").unwrap();
    assert_eq!(store.objects.describe("k"), "az://devstoreaccount1/tfstate/k");
    // Two backends on the same blob: one create wins.
    let other = f.backend("azurerm", &body).unwrap();
    let first = store.objects.put_if("lock", b"a".to_vec(), None).unwrap();
    assert!(matches!(first, skyform_provider::objects::Put::Written(_)));
    assert_eq!(other.objects.put_if("lock", b"b".to_vec(), None).unwrap(), skyform_provider::objects::Put::Refused);
}
