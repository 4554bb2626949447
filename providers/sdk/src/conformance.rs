//! The conformance kit: what every provider must do, as functions a provider's tests call
//! with a real instance of it. Each returns a descriptive error instead of panicking.

use crate::*;
use std::collections::BTreeMap;

fn tags(task: &str) -> BTreeMap<String, String> {
    [
        ("skyform:lineage", "conformance"),
        ("skyform:job", "conformance"),
        ("skyform:task", task),
        ("skyform:attempt", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// allocate → run → status → transfer out → release, plus idempotency and `read`.
/// `store` is a URI prefix of the provider's object store to write under.
pub fn lifecycle(p: &dyn Provider, location: &Location, instance_type: &str, store: &str) -> Result<(), String> {
    let mut req = AllocateRequest::new("task.conformance", location.clone(), instance_type, "conformance-token-1");
    req.owner_tags = tags("task.conformance");
    let a = p.allocate(&req).map_err(|e| format!("allocate: {e}"))?;
    let again = p.allocate(&req).map_err(|e| format!("allocate again: {e}"))?;
    if again.provider_id != a.provider_id {
        return Err(format!("allocate is not idempotent: {} then {}", a.provider_id, again.provider_id));
    }
    let found = p.read(&ReadRequest::tagged(tags("task.conformance"))).map_err(|e| format!("read: {e}"))?;
    if !found.resources.iter().any(|r| r.provider_id == a.provider_id && r.idempotency_token == req.idempotency_token) {
        return Err("read does not find the allocation by its owner tags".into());
    }
    let mut run = RunTaskRequest::new(
        a.provider_id.clone(),
        "task.conformance",
        "echo conformance > $SKYFORM_OUTPUT_OUT/hello.txt; echo done",
    );
    run.outputs = vec!["out".into()];
    p.run_task(&run).map_err(|e| format!("run_task: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s =
            p.task_status(&TaskStatusRequest::new(a.provider_id.clone())).map_err(|e| format!("task_status: {e}"))?;
        match s.state {
            RunState::Running if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            RunState::Succeeded => break,
            other => return Err(format!("the run ended {other:?}; log at {}", s.log)),
        }
    }
    let dst = format!("{store}/conformance/out");
    let t = p
        .transfer(&TransferRequest::new(format!("sandbox://{}/outputs/out", a.provider_id), dst.clone()))
        .map_err(|e| format!("transfer: {e}"))?;
    if t.bytes != "conformance\n".len() as u64 {
        return Err(format!("transfer moved {} bytes, expected {}", t.bytes, "conformance\n".len()));
    }
    let r = p.release(&ReleaseRequest::new(a.provider_id.clone())).map_err(|e| format!("release: {e}"))?;
    if !r.released {
        return Err("release reported nothing released".into());
    }
    let r2 = p.release(&ReleaseRequest::new(a.provider_id.clone())).map_err(|e| format!("release again: {e}"))?;
    if r2.released {
        return Err("a second release must report nothing released".into());
    }
    let left = p.read(&ReadRequest::tagged(tags("task.conformance"))).map_err(|e| format!("read: {e}"))?;
    if left.resources.iter().any(|r| r.provider_id == a.provider_id) {
        return Err("the released allocation is still listed by read".into());
    }
    Ok(())
}

/// A location the provider was told has no capacity must fail with
/// `CapacityUnavailable` at zone scope.
pub fn capacity_error(p: &dyn Provider, full: &Location, instance_type: &str) -> Result<(), String> {
    let mut req = AllocateRequest::new("task.full", full.clone(), instance_type, "conformance-full");
    req.owner_tags = tags("task.full");
    match p.allocate(&req) {
        Err(e) if e.kind == ErrorKind::CapacityUnavailable && e.scope == Scope::Zone => Ok(()),
        Err(e) => Err(format!("expected capacity_unavailable at zone scope, got {} ({})", e.kind, e.scope)),
        Ok(a) => {
            let _ = p.release(&ReleaseRequest::new(a.provider_id));
            Err("allocation succeeded where capacity was unavailable".into())
        }
    }
}

/// A state backend's object store: create-only puts refuse an existing key, a put with a
/// stale version is refused, a put with the current version wins, delete removes. `key` must
/// not exist yet.
pub fn objects(o: &dyn crate::objects::Objects, key: &str) -> Result<(), String> {
    use crate::objects::Put;
    if o.get(key).map_err(|e| format!("get: {e}"))?.is_some() {
        return Err(format!("{} exists already; give a fresh key", o.describe(key)));
    }
    let v1 = match o.put_if(key, b"one".to_vec(), None).map_err(|e| format!("create: {e}"))? {
        Put::Written(v) => v,
        Put::Refused => return Err("create-only put refused on an absent key".into()),
    };
    if o.put_if(key, b"two".to_vec(), None).map_err(|e| format!("second create: {e}"))? != Put::Refused {
        return Err("a create-only put on an existing key must be refused (one lock holder)".into());
    }
    let (data, v) = o.get(key).map_err(|e| format!("get: {e}"))?.ok_or("the object written is not found")?;
    if data != b"one" || v != v1 {
        return Err(format!(
            "get returned {:?} at version {v}, expected \"one\" at {v1}",
            String::from_utf8_lossy(&data)
        ));
    }
    let v2 = match o.put_if(key, b"three".to_vec(), Some(&v1)).map_err(|e| format!("update: {e}"))? {
        Put::Written(v) => v,
        Put::Refused => return Err("a put with the current version was refused".into()),
    };
    if v2 == v1 {
        return Err("an update must change the version".into());
    }
    if o.put_if(key, b"four".to_vec(), Some(&v1)).map_err(|e| format!("stale update: {e}"))? != Put::Refused {
        return Err("a put with a stale version must be refused".into());
    }
    o.delete(key).map_err(|e| format!("delete: {e}"))?;
    if o.get(key).map_err(|e| format!("get after delete: {e}"))?.is_some() {
        return Err("the object is still there after delete".into());
    }
    o.delete(key).map_err(|e| format!("deleting an absent object must succeed: {e}"))?;
    Ok(())
}
