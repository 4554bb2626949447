//! The provider against moto server on 127.0.0.1 (feature `testing`): the conformance kit,
//! capacity errors through the fault proxy, zone IDs, S3 trees with multipart, the spot market.

use crate::testing::{set_client_env, Fault, FaultProxy, InstanceAgent, Moto};
use crate::*;
use skyform_provider::conformance;

fn provider(endpoint: &str) -> AwsProvider {
    set_client_env();
    let cfg = AwsConfig {
        regions: vec!["us-east-1".into()],
        endpoint: Some(endpoint.into()),
        bucket: "skyform-test-{region}".into(),
        poll_seconds: 1,
        terminate_wait_seconds: 30,
        ..AwsConfig::default()
    };
    AwsProvider::new(cfg).unwrap()
}

#[test]
fn conformance_kit_passes_against_moto() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.inject(Fault::run_instances("us-east-1c", "InsufficientInstanceCapacity"));
    let work = tempfile::tempdir().unwrap();
    let _agent = InstanceAgent::start(&proxy.endpoint, &["us-east-1"], work.path());
    let p = provider(&proxy.endpoint);
    let (_, s3) = moto.clients("us-east-1");
    p.block(async move { storage::ensure_bucket(&s3, "conformance", "us-east-1").await }).unwrap();
    conformance::lifecycle(&p, &Location::new("aws", "us-east-1", "us-east-1a"), "m5.large", "s3://conformance")
        .unwrap();
    conformance::capacity_error(&p, &Location::new("aws", "us-east-1", "us-east-1c"), "m5.large").unwrap();
    // The error came through the SDK's parsing of AWS's XML, code kept.
    let e = p
        .allocate(&{
            let mut r = AllocateRequest::new("t", Location::new("aws", "us-east-1", "us-east-1c"), "m5.large", "t-ice");
            r.spot = true;
            r
        })
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("InsufficientInstanceCapacity"), "{e}");
    // One call: RunInstances is not retried by the SDK.
    let calls = proxy.seen().iter().filter(|(a, z)| a == "RunInstances" && z.as_deref() == Some("us-east-1c")).count();
    assert_eq!(calls, 2, "{:?}", proxy.seen());
}

#[test]
fn quota_and_throttling_map_to_their_kinds() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.inject(Fault::run_instances("us-east-1a", "VcpuLimitExceeded"));
    let p = provider(&proxy.endpoint);
    let req =
        |zone: &str, tok: &str| AllocateRequest::new("t", Location::new("aws", "us-east-1", zone), "c5.large", tok);
    let e = p.allocate(&req("us-east-1a", "q1")).unwrap_err();
    assert_eq!((e.kind, e.scope), (ErrorKind::QuotaExceeded, Scope::Region), "{e}");
    proxy.clear();
    proxy.inject(Fault::run_instances("us-east-1b", "RequestLimitExceeded"));
    let e = p.allocate(&req("us-east-1b", "q2")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
    // A type the zone does not offer is a capacity error for that zone, before any launch.
    let e = p
        .allocate(&AllocateRequest::new("t", Location::new("aws", "us-east-1", "us-east-1a"), "p3.2xlarge", "q3"))
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope, e.code.as_deref()),
        (ErrorKind::CapacityUnavailable, Scope::Zone, Some("Unsupported"))
    );
}

#[test]
fn spot_allocation_carries_type_zone_market_and_tags() {
    let moto = Moto::start();
    let p = provider(&moto.endpoint);
    let tags: BTreeMap<String, String> =
        [("skyform:lineage", "L"), ("skyform:job", "j"), ("skyform:task", "task.a"), ("skyform:attempt", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let a = p
        .allocate(&{
            let mut r =
                AllocateRequest::new("task.a", Location::new("aws", "us-east-1", "us-east-1b"), "m5.large", "tok-spot");
            r.spot = true;
            r.owner_tags = tags.clone();
            r
        })
        .unwrap();
    let (ec2, _) = moto.clients("us-east-1");
    let id = a.provider_id.split_once('/').unwrap().1.to_string();
    let d = p.block(async move { ec2.describe_instances().instance_ids(id).send().await.unwrap() });
    let i = d.reservations()[0].instances()[0].clone();
    assert_eq!(i.instance_type().unwrap().as_str(), "m5.large");
    assert_eq!(i.placement().unwrap().availability_zone(), Some("us-east-1b"));
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    let got: BTreeMap<String, String> =
        i.tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect();
    for (k, v) in &tags {
        assert_eq!(got.get(k), Some(v), "tag {k}");
    }
    assert_eq!(got.get(TOKEN_TAG).map(String::as_str), Some("tok-spot"));
    // Without an agent nothing runs the bootstrap: the run is still running; once the
    // instance is terminated outside skyform, it shows as preempted.
    p.run_task(&RunTaskRequest::new(a.provider_id.clone(), "", "true")).unwrap();
    let s = p.task_status(&TaskStatusRequest::new(a.provider_id.clone())).unwrap();
    assert_eq!(s.state, RunState::Running);
    let (ec2, _) = moto.clients("us-east-1");
    let id = a.provider_id.split_once('/').unwrap().1.to_string();
    p.block(async move { ec2.terminate_instances().instance_ids(id).send().await.unwrap() });
    let s = p.task_status(&TaskStatusRequest::new(a.provider_id.clone())).unwrap();
    assert_eq!(s.state, RunState::Preempted);
    assert!(p.read(&ReadRequest::tagged(tags)).unwrap().resources.is_empty());
}

/// SkyPilot's v6+ catalogs name AWS zones by zone ID: an allocation at one lands in the
/// zone of this account whose ZoneId it is.
#[test]
fn an_allocation_at_a_zone_id_lands_in_the_accounts_zone_of_that_id() {
    let moto = Moto::start();
    let p = provider(&moto.endpoint);
    let (ec2, _) = moto.clients("us-east-1");
    let zones = p.block(async move { ec2.describe_availability_zones().send().await.unwrap() });
    let pairs: Vec<(String, String)> = zones
        .availability_zones()
        .iter()
        .map(|z| (z.zone_id().unwrap().to_string(), z.zone_name().unwrap().to_string()))
        .collect();
    // Not the first zone, and an ID whose number differs from the name's letter order.
    let (id, name) = pairs.iter().find(|(id, n)| n != "us-east-1a" && id.starts_with("use1-az")).unwrap().clone();
    println!("zone {id} is {name} in moto's account ({pairs:?})");
    let a = p
        .allocate(&AllocateRequest::new("task.z", Location::new("aws", "us-east-1", &id), "m5.large", "tok-zid"))
        .unwrap();
    let (ec2, _) = moto.clients("us-east-1");
    let iid = a.provider_id.split_once('/').unwrap().1.to_string();
    let d = p.block(async move { ec2.describe_instances().instance_ids(iid).send().await.unwrap() });
    let i = d.reservations()[0].instances()[0].clone();
    assert_eq!(i.placement().unwrap().availability_zone(), Some(name.as_str()));
    // An ID the region does not have is a capacity error for that zone, before any launch.
    let e = p
        .allocate(&AllocateRequest::new("task.z", Location::new("aws", "us-east-1", "use1-az99"), "m5.large", "tok-z2"))
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope, e.code.as_deref()),
        (ErrorKind::CapacityUnavailable, Scope::Zone, Some("UnknownZoneId"))
    );
    p.release(&ReleaseRequest::new(a.provider_id)).unwrap();
}

#[test]
fn s3_trees_round_trip_with_multipart() {
    let moto = Moto::start();
    let p = provider(&moto.endpoint);
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let big: Vec<u8> =
        (0..(storage::MULTIPART_THRESHOLD as usize + 3 * 1024 * 1024)).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/small.txt"), b"hello\n").unwrap();
    let (_, s3) = moto.clients("us-east-1");
    let s3b = s3.clone();
    p.block(async move {
        storage::ensure_bucket(&s3b, "bucket-one", "us-east-1").await?;
        storage::ensure_bucket(&s3b, "bucket-two", "eu-west-1").await
    })
    .unwrap();
    let up = p.transfer(&TransferRequest::new(format!("file://{}", src.display()), "s3://bucket-one/data/in")).unwrap();
    assert_eq!(up.bytes, big.len() as u64 + 6);
    let cp = p.transfer(&TransferRequest::new("s3://bucket-one/data/in", "s3://bucket-two/copy")).unwrap();
    assert_eq!(cp.bytes, up.bytes);
    let dst = d.path().join("dst");
    let down = p.transfer(&TransferRequest::new("s3://bucket-two/copy", format!("file://{}", dst.display()))).unwrap();
    assert_eq!(down.bytes, up.bytes);
    assert_eq!(down.checksum, up.checksum, "same content hash both ways");
    assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(dst.join("sub/small.txt")).unwrap(), "hello\n");
    // Conditional writes (the state backend's lock).
    let r = p.block(async move {
        let a = storage::put_conditional(&s3, "bucket-one", "lock", b"a".to_vec(), None).await?;
        let b = storage::put_conditional(&s3, "bucket-one", "lock", b"b".to_vec(), None).await?;
        Ok::<_, ProviderError>((a, b))
    });
    let (a, b) = r.unwrap();
    assert!(matches!(a, storage::Conditional::Written(_)));
    assert_eq!(b, storage::Conditional::Refused);
    // A bucket's region is discovered (requests for it then go to that region).
    assert_eq!(p.bucket_region("bucket-two"), "eu-west-1");
    assert_eq!(p.bucket_region("bucket-one"), "us-east-1");
    let e = p.transfer(&TransferRequest::new("s3://bucket-one/nothing", "s3://bucket-two/x")).unwrap_err();
    assert!(e.message.contains("nothing at s3://bucket-one/nothing"), "{e}");
}

#[test]
fn spot_price_history_feeds_observations() {
    let moto = Moto::start();
    let p = std::sync::Arc::new(provider(&moto.endpoint));
    let m = market::AwsMarket::new(p);
    let r = m
        .spot_prices(&{
            let mut r = SpotPricesRequest::at(1_700_000_000);
            r.instance_types = vec!["m5.large".into()];
            r.regions = vec!["us-east-1".into()];
            r
        })
        .unwrap();
    // moto answers placeholder rows: the plumbing is what is tested.
    assert!(!r.prices.is_empty());
    assert!(r.prices.iter().all(|p| p.location.cloud == "aws" && p.location.region == "us-east-1"));
    assert!(r.prices.iter().all(|p| p.location.zone.starts_with("us-east-1") && p.price > 0.0));
    assert!(r.prices.iter().all(|p| p.at == 1_700_000_000), "observed at the request's time");
}
