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
    let req = AllocateRequest {
        task: "task.conformance".into(),
        location: location.clone(),
        instance_type: instance_type.into(),
        spot: false,
        num_nodes: 1,
        owner_tags: tags("task.conformance"),
        idempotency_token: "conformance-token-1".into(),
    };
    let a = p.allocate(&req).map_err(|e| format!("allocate: {e}"))?;
    let again = p.allocate(&req).map_err(|e| format!("allocate again: {e}"))?;
    if again.provider_id != a.provider_id {
        return Err(format!("allocate is not idempotent: {} then {}", a.provider_id, again.provider_id));
    }
    let found = p.read(&ReadRequest { owner_tags: tags("task.conformance") }).map_err(|e| format!("read: {e}"))?;
    if !found.resources.iter().any(|r| r.provider_id == a.provider_id && r.idempotency_token == req.idempotency_token) {
        return Err("read does not find the allocation by its owner tags".into());
    }
    let run = RunTaskRequest {
        provider_id: a.provider_id.clone(),
        task: "task.conformance".into(),
        run: "echo conformance > $SKYFORM_OUTPUT_OUT/hello.txt; echo done".into(),
        outputs: vec!["out".into()],
        ..Default::default()
    };
    p.run_task(&run).map_err(|e| format!("run_task: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = p
            .task_status(&TaskStatusRequest { provider_id: a.provider_id.clone() })
            .map_err(|e| format!("task_status: {e}"))?;
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
        .transfer(&TransferRequest { from: format!("sandbox://{}/outputs/out", a.provider_id), to: dst.clone() })
        .map_err(|e| format!("transfer: {e}"))?;
    if t.bytes != "conformance\n".len() as u64 {
        return Err(format!("transfer moved {} bytes, expected {}", t.bytes, "conformance\n".len()));
    }
    let r = p.release(&ReleaseRequest { provider_id: a.provider_id.clone() }).map_err(|e| format!("release: {e}"))?;
    if !r.released {
        return Err("release reported nothing released".into());
    }
    let r2 =
        p.release(&ReleaseRequest { provider_id: a.provider_id.clone() }).map_err(|e| format!("release again: {e}"))?;
    if r2.released {
        return Err("a second release must report nothing released".into());
    }
    let left = p.read(&ReadRequest { owner_tags: tags("task.conformance") }).map_err(|e| format!("read: {e}"))?;
    if left.resources.iter().any(|r| r.provider_id == a.provider_id) {
        return Err("the released allocation is still listed by read".into());
    }
    Ok(())
}

/// A location the provider was told has no capacity must fail with
/// `CapacityUnavailable` at zone scope.
pub fn capacity_error(p: &dyn Provider, full: &Location, instance_type: &str) -> Result<(), String> {
    let req = AllocateRequest {
        task: "task.full".into(),
        location: full.clone(),
        instance_type: instance_type.into(),
        spot: false,
        num_nodes: 1,
        owner_tags: tags("task.full"),
        idempotency_token: "conformance-full".into(),
    };
    match p.allocate(&req) {
        Err(e) if e.kind == ErrorKind::CapacityUnavailable && e.scope == Scope::Zone => Ok(()),
        Err(e) => Err(format!("expected capacity_unavailable at zone scope, got {} ({})", e.kind, e.scope)),
        Ok(a) => {
            let _ = p.release(&ReleaseRequest { provider_id: a.provider_id });
            Err("allocation succeeded where capacity was unavailable".into())
        }
    }
}
