//! Azure error codes → skyform's [`ErrorKind`] and the [`Scope`] they block.
//!
//! Failover branches on the kind; Azure's code is kept in [`ProviderError::code`]. The
//! catalog has no Azure zones (a location's zone is its region), so `Scope::Zone` blocks
//! exactly the `(azure, R, R)` location — the placement that failed, every size in that
//! region — while `Scope::Region` says "the whole region whatever the zone" and is what
//! quotas (per region and subscription in Azure) block. Capacity errors use `Zone`, the
//! narrowest scope the catalog can express: Azure's `ZonalAllocationFailed` speaks of an
//! availability zone, `AllocationFailed`/`OverconstrainedAllocationRequest` of the cluster
//! the request was pinned to, `SkuNotAvailable` of the size in that location — all of them
//! about this placement and none about the subscription.
//!
//! Throttling (HTTP 429) carries Azure's `Retry-After` in
//! [`ProviderError::retry_after_secs`] (the engine waits at least that long before its
//! retry) and in the message as `(retry after N s)`; [`retry_after`] reads it back.
//!
//! No I/O.

use skyform_provider::{ErrorKind, Location, ProviderError, Scope};
use std::time::Duration;

/// A failed Resource Manager response as the client's pipeline saw it: status, Azure's
/// error code and message, and `Retry-After` (seconds) when the service sent one.
/// (azure_core's own `HttpError` drops the headers.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {code}: {message}")]
pub struct CloudFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl CloudFailure {
    /// Reads an ARM/Blob error body (`{"error":{"code","message"}}`, or an `x-ms-error-code`
    /// header's code).
    pub fn from_parts(status: u16, header_code: Option<&str>, retry_after: Option<u64>, body: &[u8]) -> CloudFailure {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        let err = v.get("error").unwrap_or(&v);
        let text = |k: &str| err.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let code = header_code.map(str::to_string).or_else(|| text("code")).unwrap_or_else(|| status_code_name(status));
        let message = text("message").unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(400).collect());
        CloudFailure { status, code, message, retry_after }
    }
}

fn status_code_name(status: u16) -> String {
    match status {
        401 => "Unauthorized".into(),
        403 => "Forbidden".into(),
        404 => "NotFound".into(),
        409 => "Conflict".into(),
        412 => "PreconditionFailed".into(),
        429 => "TooManyRequests".into(),
        s => format!("HTTP{s}"),
    }
}

/// The kind and scope of an Azure error (`status` 0 when there was no HTTP response, as
/// for a provisioning failure read from a VM's instance view).
pub fn classify(status: u16, code: &str, message: &str) -> (ErrorKind, Scope) {
    let msg = message.to_ascii_lowercase();
    match code {
        "ZonalAllocationFailed"
        | "AllocationFailed"
        | "OverconstrainedAllocationRequest"
        | "OverconstrainedZonalAllocationRequest"
        | "SkuNotAvailable"
        | "ZonalAllocationFailedSkuNotAvailable" => return (ErrorKind::CapacityUnavailable, Scope::Zone),
        "QuotaExceeded" | "OperationNotAllowed" if code == "QuotaExceeded" || msg.contains("quota") => {
            // Compute quotas are per region and subscription (the message names the
            // location); a quota without a place is the subscription's.
            let regional = msg.contains("location") || msg.contains("region");
            let scope = if !regional && msg.contains("subscription") { Scope::Cloud } else { Scope::Region };
            return (ErrorKind::QuotaExceeded, scope);
        }
        "TooManyRequests" | "SubscriptionRequestsThrottled" | "ResourceRequestsThrottled" => {
            return (ErrorKind::Throttled, Scope::Region)
        }
        // Passing states: a NIC stays reserved for a while after its VM failed or went
        // (`NicReservedForAnotherVm`, 180 s), or is still attached while the VM's deletion
        // finishes; Azure asks to try again.
        "NicReservedForAnotherVm" | "NicInUse" | "RetryableError" | "InternalExecutionError" => {
            return (ErrorKind::Transient, Scope::Zone)
        }
        "AuthenticationFailed"
        | "AuthorizationFailed"
        | "InvalidAuthenticationToken"
        | "InvalidAuthenticationTokenTenant"
        | "ExpiredAuthenticationToken"
        | "LinkedAuthorizationFailed"
        | "SubscriptionNotFound"
        | "AuthorizationPermissionMismatch" => return (ErrorKind::Unauthorized, Scope::Cloud),
        _ => {}
    }
    match status {
        429 => (ErrorKind::Throttled, Scope::Region),
        401 | 403 => (ErrorKind::Unauthorized, Scope::Cloud),
        500..=599 => (ErrorKind::Transient, Scope::Zone),
        _ => (ErrorKind::Other, Scope::Zone),
    }
}

/// A provider error from a classified failure.
pub fn from_failure(what: &str, location: Option<&Location>, f: &CloudFailure) -> ProviderError {
    let (kind, scope) = classify(f.status, &f.code, &f.message);
    let mut message = format!("{what}: {}: {}", f.code, f.message);
    if let Some(s) = f.retry_after {
        message.push_str(&format!(" (retry after {s} s)"));
    }
    let mut pe = ProviderError::new(kind, location, message);
    pe.scope = scope;
    pe.code = Some(f.code.clone());
    match f.retry_after {
        Some(s) => pe.with_retry_after(s),
        None => pe,
    }
}

/// The [`CloudFailure`] inside an SDK error (anywhere in its source chain), else one made
/// from azure_core's `HttpError`; `None` when there was no HTTP response.
pub fn failure_of(e: &azure_core::Error) -> Option<CloudFailure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(f) = c.downcast_ref::<CloudFailure>() {
            return Some(f.clone());
        }
        cur = c.source();
    }
    let h = e.as_http_error()?;
    let status = u16::from(h.status());
    Some(CloudFailure {
        status,
        code: h.error_code().map(str::to_string).unwrap_or_else(|| status_code_name(status)),
        message: h.error_message().unwrap_or_default().to_string(),
        retry_after: None,
    })
}

/// The HTTP status of an SDK error, when there was a response.
pub fn status(e: &azure_core::Error) -> Option<u16> {
    failure_of(e).map(|f| f.status)
}

/// A provider error from any Azure SDK error.
pub fn from_azure(what: &str, location: Option<&Location>, e: &azure_core::Error) -> ProviderError {
    if let Some(f) = failure_of(e) {
        return from_failure(what, location, &f);
    }
    let chain = source_chain(e);
    match e.kind() {
        azure_core::error::ErrorKind::Credential => ProviderError::new(
            ErrorKind::Unauthorized,
            location,
            format!(
                "{what}: no Azure credential worked: {chain} (set tenant_id/client_id/client_secret, the AZURE_* \
                 variables, or run `az login`)"
            ),
        ),
        azure_core::error::ErrorKind::Io => {
            ProviderError::new(ErrorKind::Transient, location, format!("{what}: {chain}"))
        }
        _ => ProviderError::new(ErrorKind::Other, location, format!("{what}: {chain}")),
    }
}

/// The wait Azure asked for (its `Retry-After`), as a throttling error carries it.
pub fn retry_after(e: &ProviderError) -> Option<Duration> {
    e.retry_after_secs.map(Duration::from_secs)
}

/// The error and its sources on one line.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_codes_block_the_placement() {
        for code in ["ZonalAllocationFailed", "AllocationFailed", "OverconstrainedAllocationRequest", "SkuNotAvailable"]
        {
            assert_eq!(classify(409, code, "x"), (ErrorKind::CapacityUnavailable, Scope::Zone), "{code}");
        }
        // A provisioning failure read from the instance view has no HTTP status.
        assert_eq!(classify(0, "AllocationFailed", ""), (ErrorKind::CapacityUnavailable, Scope::Zone));
    }

    #[test]
    fn quotas_block_the_region_or_the_subscription() {
        let regional = "Operation could not be completed as it results in exceeding approved standardNCSv3Family \
                        Cores quota. Additional details - Deployment Model: Resource Manager, Location: eastus, \
                        Current Limit: 0, Current Usage: 0, Additional Required: 6";
        assert_eq!(classify(409, "OperationNotAllowed", regional), (ErrorKind::QuotaExceeded, Scope::Region));
        assert_eq!(classify(409, "QuotaExceeded", "Total regional cores"), (ErrorKind::QuotaExceeded, Scope::Region));
        assert_eq!(
            classify(409, "QuotaExceeded", "The subscription has reached its limit of 980 public IPs"),
            (ErrorKind::QuotaExceeded, Scope::Cloud)
        );
        // OperationNotAllowed without a quota is something else.
        assert_eq!(classify(409, "OperationNotAllowed", "VM is being deleted").0, ErrorKind::Other);
    }

    #[test]
    fn statuses_and_other_codes() {
        assert_eq!(classify(429, "TooManyRequests", ""), (ErrorKind::Throttled, Scope::Region));
        assert_eq!(classify(429, "Whatever", ""), (ErrorKind::Throttled, Scope::Region));
        assert_eq!(classify(401, "InvalidAuthenticationToken", ""), (ErrorKind::Unauthorized, Scope::Cloud));
        assert_eq!(classify(403, "SomethingNew", ""), (ErrorKind::Unauthorized, Scope::Cloud));
        assert_eq!(classify(503, "ServerBusy", ""), (ErrorKind::Transient, Scope::Zone));
        assert_eq!(classify(400, "InvalidParameter", ""), (ErrorKind::Other, Scope::Zone));
        assert_eq!(classify(400, "NicReservedForAnotherVm", ""), (ErrorKind::Transient, Scope::Zone));
        assert_eq!(classify(400, "NicInUse", ""), (ErrorKind::Transient, Scope::Zone));
    }

    #[test]
    fn failures_keep_code_and_retry_after() {
        let body = br#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#;
        let f = CloudFailure::from_parts(429, None, Some(17), body);
        assert_eq!((f.code.as_str(), f.message.as_str()), ("TooManyRequests", "slow down"));
        let loc = Location::new("azure", "eastus", "eastus");
        let e = from_failure("PUT virtualMachines/x", Some(&loc), &f);
        assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Throttled, Some("TooManyRequests")));
        assert_eq!(retry_after(&e), Some(Duration::from_secs(17)));
        assert_eq!(e.retry_after_secs, Some(17));
        assert!(e.message.ends_with("(retry after 17 s)"), "{}", e.message);
        let f =
            CloudFailure::from_parts(409, None, None, br#"{"error":{"code":"ZonalAllocationFailed","message":"m"}}"#);
        let e = from_failure("PUT", Some(&loc), &f);
        assert_eq!(
            (e.kind, e.scope, e.code.as_deref()),
            (ErrorKind::CapacityUnavailable, Scope::Zone, Some("ZonalAllocationFailed"))
        );
        assert_eq!(retry_after(&e), None);
        // A body without Azure's shape keeps the status as the code.
        let f = CloudFailure::from_parts(404, None, None, b"not found");
        assert_eq!((f.code.as_str(), f.message.as_str()), ("NotFound", "not found"));
        let f = CloudFailure::from_parts(409, Some("BlobAlreadyExists"), None, b"<?xml?>");
        assert_eq!(f.code, "BlobAlreadyExists");
    }

    #[test]
    fn failures_are_found_through_context() {
        let f =
            CloudFailure { status: 409, code: "ZonalAllocationFailed".into(), message: "m".into(), retry_after: None };
        let e = azure_core::Error::full(
            azure_core::error::ErrorKind::HttpResponse { status: azure_core::StatusCode::Conflict, error_code: None },
            f.clone(),
            "failed",
        )
        .context("non-io error occurred which will not be retried");
        assert_eq!(failure_of(&e), Some(f));
        assert_eq!(status(&e), Some(409));
        let io = azure_core::Error::message(azure_core::error::ErrorKind::Io, "connection refused");
        assert_eq!(from_azure("GET", None, &io).kind, ErrorKind::Transient);
        let cred = azure_core::Error::message(azure_core::error::ErrorKind::Credential, "az not found");
        let pe = from_azure("GET", None, &cred);
        assert_eq!((pe.kind, pe.scope), (ErrorKind::Unauthorized, Scope::Cloud));
    }
}
