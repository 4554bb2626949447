//! GCP errors → skyform's [`ErrorKind`] and the [`Scope`] they block.
//!
//! Compute Engine reports a failure in two places: the HTTP error of a call
//! (`{"error": {"code": 429, "errors": [{"reason": "rateLimitExceeded"}], "status": ...}}`)
//! and the `error.errors[]` of a zone operation that finished (`ZONE_RESOURCE_POOL_EXHAUSTED`,
//! `QUOTA_EXCEEDED` with the quota's metric). Both end in [`classify`]; the GCP code is kept in
//! [`ProviderError::code`] for display. Failover branches on the kind only.

use skyform_provider::{ErrorKind, Location, ProviderError, Scope};

/// The kind and scope of a GCP error: `code` is an operation error code, an error reason or
/// a status (`ZONE_RESOURCE_POOL_EXHAUSTED`, `rateLimitExceeded`, `PERMISSION_DENIED`),
/// `http` the HTTP status when there was one, `quota_metric` the quota named by the error.
pub fn classify(http: Option<u16>, code: &str, message: &str, quota_metric: Option<&str>) -> (ErrorKind, Scope) {
    let msg = message.to_ascii_lowercase();
    match code {
        "ZONE_RESOURCE_POOL_EXHAUSTED"
        | "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
        | "STOCKOUT"
        | "RESOURCE_POOL_EXHAUSTED"
        | "resourceNotAvailable" => return (ErrorKind::CapacityUnavailable, Scope::Zone),
        "QUOTA_EXCEEDED" | "quotaExceeded" | "QUOTA_LIMIT_EXCEEDED" => {
            return (ErrorKind::QuotaExceeded, quota_scope(quota_metric, message))
        }
        "rateLimitExceeded" | "userRateLimitExceeded" | "RATE_LIMIT_EXCEEDED" => {
            return (ErrorKind::Throttled, Scope::Region)
        }
        _ => {}
    }
    if msg.contains("resource not available in zone")
        || msg.contains("does not have enough resources available")
        || (msg.contains("does not exist in zone") && (msg.contains("machine type") || msg.contains("accelerator")))
    {
        return (ErrorKind::CapacityUnavailable, Scope::Zone);
    }
    if msg.starts_with("quota '") && msg.contains("exceeded") {
        return (ErrorKind::QuotaExceeded, quota_scope(quota_metric, message));
    }
    match (http, code) {
        (Some(429), _) | (_, "RESOURCE_EXHAUSTED") => (ErrorKind::Throttled, Scope::Region),
        (Some(401 | 403), _)
        | (_, "PERMISSION_DENIED" | "UNAUTHENTICATED" | "forbidden" | "accessNotConfigured" | "authError") => {
            (ErrorKind::Unauthorized, Scope::Cloud)
        }
        (Some(500..=599), _) | (_, "INTERNAL_ERROR" | "UNAVAILABLE" | "backendError" | "internalError") => {
            (ErrorKind::Transient, Scope::Zone)
        }
        _ => (ErrorKind::Other, Scope::Zone),
    }
}

/// The scope of a quota: project-wide quotas (`GPUS_ALL_REGIONS`, "... globally") block the
/// cloud, the others (`NVIDIA_V100_GPUS`, `CPUS`, ... "in region X") their region.
pub fn quota_scope(metric: Option<&str>, message: &str) -> Scope {
    let named = metric
        .map(|m| m.rsplit('/').next().unwrap_or(m).to_ascii_uppercase())
        .or_else(|| quota_in_message(message).map(|m| m.to_ascii_uppercase()));
    let global = named.as_deref().is_some_and(|m| m.contains("ALL_REGIONS") || m.ends_with("_GLOBAL"))
        || message.to_ascii_lowercase().contains("globally");
    if global {
        Scope::Cloud
    } else {
        Scope::Region
    }
}

/// `GPUS_ALL_REGIONS` from "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally."
fn quota_in_message(message: &str) -> Option<&str> {
    let rest = &message[message.find("Quota '")? + 7..];
    Some(&rest[..rest.find('\'')?])
}

/// The facts of an error body (`{"error": {...}}` of Compute Engine or Cloud Storage):
/// (code, message, quota metric). The code is the first `errors[].reason`, else an
/// `ErrorInfo` reason of `details`, else `status`.
pub fn parse_body(body: &[u8]) -> Option<(String, String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let message = e.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_string();
    let reason = e
        .get("errors")
        .and_then(|x| x.as_array())
        .and_then(|a| a.iter().find_map(|x| x.get("reason").and_then(|r| r.as_str())))
        .filter(|r| !r.is_empty());
    let details = e.get("details").and_then(|x| x.as_array());
    let info_reason =
        details.and_then(|d| d.iter().find_map(|x| x.get("reason").and_then(|r| r.as_str()))).filter(|r| !r.is_empty());
    let metric = details
        .and_then(|d| {
            d.iter().find_map(|x| x.pointer("/metadata/quota_metric").or_else(|| x.pointer("/metadata/quotaMetric")))
        })
        .and_then(|m| m.as_str())
        .map(str::to_string);
    let status = e.get("status").and_then(|s| s.as_str());
    let code = reason.or(info_reason).or(status).unwrap_or("UNKNOWN").to_string();
    Some((code, message, metric))
}

/// A provider error from an HTTP status and error body (JSON API calls made directly).
pub fn from_http(what: &str, location: Option<&Location>, status: u16, body: &[u8]) -> ProviderError {
    let (code, message, metric) = parse_body(body)
        .unwrap_or_else(|| (format!("HTTP_{status}"), String::from_utf8_lossy(body).chars().take(400).collect(), None));
    let pe = error(what, location, Some(status), code, message, metric.as_deref());
    match retry_delay(body) {
        Some(s) => pe.with_retry_after(s),
        None => pe,
    }
}

/// Google's Retry-After in an error body: the `retryDelay` of a `google.rpc.RetryInfo`
/// detail (`"30s"`, `"1.5s"`), in whole seconds rounded up.
fn retry_delay(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let d = v
        .pointer("/error/details")?
        .as_array()?
        .iter()
        .find(|d| d.get("@type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("google.rpc.RetryInfo")))?;
    let secs: f64 = d.get("retryDelay")?.as_str()?.strip_suffix('s')?.parse().ok()?;
    (secs >= 0.0).then(|| secs.ceil() as u64)
}

fn error(
    what: &str,
    location: Option<&Location>,
    http: Option<u16>,
    code: String,
    message: String,
    metric: Option<&str>,
) -> ProviderError {
    let (kind, scope) = classify(http, &code, &message, metric);
    let mut pe = ProviderError::new(kind, location, format!("{what}: {code}: {message}"));
    pe.scope = scope;
    pe.code = Some(code);
    pe
}

/// A provider error from an error of the googleapis clients.
pub fn from_gax(what: &str, location: Option<&Location>, e: &google_cloud_gax::error::Error) -> ProviderError {
    if e.is_authentication() {
        return ProviderError::new(
            ErrorKind::Unauthorized,
            location,
            format!(
                "{what}: no usable GCP credentials: {} (set `credentials` in provider \"gcp\", \
                 GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`)",
                chain(e)
            ),
        );
    }
    if let Some(s) = e.status() {
        // The client parsed the error body: `errors[].reason` (and `ErrorInfo` details)
        // arrive as `ErrorInfo`, the status string as the code.
        let info = s.details.iter().find_map(|d| match d {
            google_cloud_gax::error::rpc::StatusDetails::ErrorInfo(i) if !i.reason.is_empty() => Some(i),
            _ => None,
        });
        let code = info.map(|i| i.reason.clone()).unwrap_or_else(|| s.code.name().to_string());
        let metric = info.and_then(|i| i.metadata.get("quota_metric").or_else(|| i.metadata.get("quotaMetric")));
        let pe = error(what, location, e.http_status_code(), code, s.message.clone(), metric.map(String::as_str));
        // Google's Retry-After: a `RetryInfo` detail (whole seconds, rounded up).
        let delay = s.details.iter().find_map(|d| match d {
            google_cloud_gax::error::rpc::StatusDetails::RetryInfo(r) => r.retry_delay,
            _ => None,
        });
        return match delay {
            Some(d) if d.seconds() >= 0 => pe.with_retry_after(d.seconds() as u64 + u64::from(d.nanos() > 0)),
            _ => pe,
        };
    }
    if let Some(status) = e.http_status_code() {
        if let Some((code, message, metric)) = e.http_payload().and_then(|b| parse_body(b)) {
            return error(what, location, Some(status), code, message, metric.as_deref());
        }
        return error(what, location, Some(status), format!("HTTP_{status}"), chain(e), None);
    }
    if e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport() || e.is_exhausted() {
        return ProviderError::new(ErrorKind::Transient, location, format!("{what}: {}", chain(e)));
    }
    ProviderError::new(ErrorKind::Other, location, format!("{what}: {}", chain(e)))
}

/// A provider error from the `error` of a finished zone operation (its first error; the
/// quota metric from its `errorDetails[].quotaInfo`).
pub fn from_operation(
    what: &str,
    location: Option<&Location>,
    op: &google_cloud_compute_v1::model::Operation,
) -> Option<ProviderError> {
    let err = op.error.as_ref();
    let v = err.and_then(|e| serde_json::to_value(e).ok()).unwrap_or_default();
    let first = v.pointer("/errors/0");
    let http = op.http_error_status_code.and_then(|c| u16::try_from(c).ok());
    if first.is_none() && http.is_none_or(|c| c < 400) {
        return None;
    }
    let code = first
        .and_then(|f| f.get("code"))
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .or_else(|| http.map(|h| format!("HTTP_{h}")))
        .unwrap_or_else(|| "UNKNOWN".into());
    let message = first
        .and_then(|f| f.get("message"))
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .or_else(|| op.http_error_message.clone())
        .unwrap_or_default();
    let metric = first
        .and_then(|f| f.get("errorDetails"))
        .and_then(|d| d.as_array())
        .and_then(|d| d.iter().find_map(|x| x.pointer("/quotaInfo/metricName").and_then(|m| m.as_str())));
    Some(error(what, location, http, code, message, metric))
}

/// The error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
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
    fn capacity_codes_block_the_zone() {
        for code in ["ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "STOCKOUT"] {
            assert_eq!(classify(None, code, "", None), (ErrorKind::CapacityUnavailable, Scope::Zone), "{code}");
        }
        let m = "The zone 'projects/p/zones/us-central1-a' does not have enough resources available to fulfill the request.";
        assert_eq!(classify(Some(503), "UNKNOWN", m, None), (ErrorKind::CapacityUnavailable, Scope::Zone));
        let m = "The resource 'projects/p/zones/z/acceleratorTypes/nvidia-tesla-v100' was not found: resource not available in zone";
        assert_eq!(classify(Some(400), "invalid", m, None).0, ErrorKind::CapacityUnavailable);
        let m = "Invalid value for field 'resource.machineType'. Machine type with name 'a2-highgpu-8g' does not exist in zone 'us-east1-b'.";
        assert_eq!(classify(Some(400), "invalid", m, None), (ErrorKind::CapacityUnavailable, Scope::Zone));
    }

    #[test]
    fn quotas_block_by_their_metric() {
        let q = |metric: Option<&str>, msg: &str| classify(Some(403), "QUOTA_EXCEEDED", msg, metric);
        assert_eq!(
            q(
                Some("compute.googleapis.com/gpus_all_regions"),
                "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally."
            ),
            (ErrorKind::QuotaExceeded, Scope::Cloud)
        );
        assert_eq!(
            q(None, "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally."),
            (ErrorKind::QuotaExceeded, Scope::Cloud)
        );
        assert_eq!(
            q(
                Some("compute.googleapis.com/nvidia_v100_gpus"),
                "Quota 'NVIDIA_V100_GPUS' exceeded. Limit: 0.0 in region us-central1."
            ),
            (ErrorKind::QuotaExceeded, Scope::Region)
        );
        assert_eq!(
            q(None, "Quota 'CPUS' exceeded. Limit: 24.0 in region us-central1."),
            (ErrorKind::QuotaExceeded, Scope::Region)
        );
        // An HTTP 403 whose reason is a quota is a quota, not a permission problem.
        assert_eq!(classify(Some(403), "quotaExceeded", "Quota 'CPUS' exceeded.", None).0, ErrorKind::QuotaExceeded);
    }

    #[test]
    fn throttling_auth_and_server_errors() {
        assert_eq!(classify(Some(403), "rateLimitExceeded", "Rate Limit Exceeded", None).0, ErrorKind::Throttled);
        assert_eq!(classify(Some(429), "RESOURCE_EXHAUSTED", "", None).0, ErrorKind::Throttled);
        assert_eq!(
            classify(Some(403), "forbidden", "Required 'compute.instances.create' permission", None),
            (ErrorKind::Unauthorized, Scope::Cloud)
        );
        assert_eq!(
            classify(Some(401), "authError", "Invalid Credentials", None),
            (ErrorKind::Unauthorized, Scope::Cloud)
        );
        assert_eq!(classify(Some(503), "backendError", "", None).0, ErrorKind::Transient);
        assert_eq!(classify(Some(500), "UNKNOWN", "", None).0, ErrorKind::Transient);
        assert_eq!(
            classify(Some(400), "invalid", "Invalid value for field 'resource.name'", None),
            (ErrorKind::Other, Scope::Zone)
        );
    }

    #[test]
    fn bodies_keep_the_gcp_code() {
        let body = br#"{"error":{"code":429,"message":"Rate Limit Exceeded","errors":[{"message":"Rate Limit Exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED"}}"#;
        let e = from_http("instances.insert", None, 429, body);
        assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Throttled, Some("rateLimitExceeded")));
        let body = br#"{"error":{"code":403,"message":"Quota exceeded for quota metric 'Queries'","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED","metadata":{"quota_metric":"compute.googleapis.com/default"}}]}}"#;
        let e = from_http("instances.get", None, 403, body);
        assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Throttled, Some("RATE_LIMIT_EXCEEDED")));
        assert_eq!(e.retry_after_secs, None);
        let body = br#"{"error":{"code":429,"message":"Rate Limit Exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}"#;
        let e = from_http("instances.insert", None, 429, body);
        assert_eq!((e.kind, e.retry_after_secs), (ErrorKind::Throttled, Some(2)), "{e}");
        let e = from_http("x", None, 502, b"<html>bad gateway</html>");
        assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Transient, Some("HTTP_502")));
        assert!(e.message.contains("bad gateway"), "{e}");
    }

    #[test]
    fn client_errors_keep_the_reason() {
        use google_cloud_gax::error::{rpc::Status, Error};
        let body = bytes::Bytes::from_static(
            br#"{"error":{"code":429,"message":"Rate Limit Exceeded","errors":[{"message":"Rate Limit Exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED"}}"#,
        );
        let e = Error::service_with_http_metadata(Status::try_from(&body).unwrap(), Some(429), None);
        let pe = from_gax("instances.insert", None, &e);
        assert_eq!((pe.kind, pe.code.as_deref()), (ErrorKind::Throttled, Some("rateLimitExceeded")));
        let body = bytes::Bytes::from_static(br#"{"error":{"code":403,"message":"Required 'compute.instances.create' permission","status":"PERMISSION_DENIED"}}"#);
        let e = Error::service_with_http_metadata(Status::try_from(&body).unwrap(), Some(403), None);
        let pe = from_gax("instances.insert", None, &e);
        assert_eq!(
            (pe.kind, pe.scope, pe.code.as_deref()),
            (ErrorKind::Unauthorized, Scope::Cloud, Some("PERMISSION_DENIED"))
        );
        assert_eq!(pe.retry_after_secs, None);
        let body = bytes::Bytes::from_static(
            br#"{"error":{"code":429,"message":"Rate Limit Exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}"#,
        );
        let e = Error::service_with_http_metadata(Status::try_from(&body).unwrap(), Some(429), None);
        let pe = from_gax("instances.insert", None, &e);
        assert_eq!((pe.kind, pe.retry_after_secs), (ErrorKind::Throttled, Some(30)), "{pe}");
        let e = Error::http(502, Default::default(), bytes::Bytes::from_static(b"bad gateway"));
        assert_eq!(from_gax("x", None, &e).kind, ErrorKind::Transient);
    }

    #[test]
    fn failed_operations_are_errors() {
        use google_cloud_compute_v1::model::Operation;
        let op: Operation = serde_json::from_value(serde_json::json!({
            "name": "operation-1", "status": "DONE", "httpErrorStatusCode": 403,
            "error": {"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally.",
                "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/gpus_all_regions", "limit": 0}}]}]}
        }))
        .unwrap();
        let loc = Location::new("gcp", "us-central1", "us-central1-a");
        let e = from_operation("instances.insert", Some(&loc), &op).unwrap();
        assert_eq!(
            (e.kind, e.scope, e.code.as_deref()),
            (ErrorKind::QuotaExceeded, Scope::Cloud, Some("QUOTA_EXCEEDED"))
        );
        let ok: Operation =
            serde_json::from_value(serde_json::json!({"name": "operation-2", "status": "DONE"})).unwrap();
        assert!(from_operation("x", None, &ok).is_none());
    }
}
