//! AWS error codes → skyform's [`ErrorKind`] and the [`Scope`] they block.
//!
//! Failover branches on the kind; the AWS code is kept in [`ProviderError::code`] for display.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::error::SdkError;
use skyform_provider::{ErrorKind, Location, ProviderError, Scope};

/// The kind and scope of an AWS error code.
pub fn classify(code: &str) -> (ErrorKind, Scope) {
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InsufficientCapacity"
        | "Unsupported"
        | "SpotMaxPriceTooLow"
        | "InsufficientFreeAddressesInSubnet" => (ErrorKind::CapacityUnavailable, Scope::Zone),
        "InstanceLimitExceeded"
        | "VcpuLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "PendingVerification"
        | "MaxSpotFleetRequestCountExceeded" => (ErrorKind::QuotaExceeded, Scope::Region),
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "SlowDown" | "TooManyRequestsException" => {
            (ErrorKind::Throttled, Scope::Region)
        }
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "OptInRequired"
        | "Blocked"
        | "ExpiredToken"
        | "AccessDenied"
        | "InvalidAccessKeyId" => (ErrorKind::Unauthorized, Scope::Cloud),
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" | "RequestTimeout" => {
            (ErrorKind::Transient, Scope::Zone)
        }
        _ => (ErrorKind::Other, Scope::Zone),
    }
}

/// A provider error from an SDK error of any AWS operation.
pub fn from_sdk<E, R>(what: &str, location: Option<&Location>, e: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("Unknown").to_string();
            let (kind, scope) = classify(&code);
            let mut message = err.message().unwrap_or("").to_string();
            if message.is_empty() {
                // No code or message parsed: show what came back.
                message = format!("{:?}", se.raw()).chars().take(600).collect();
            }
            let mut pe = ProviderError::new(kind, location, format!("{what}: {code}: {message}"));
            pe.scope = scope;
            pe.code = Some(code);
            pe
        }
        _ if source_chain(&e).to_lowercase().contains("credentials") => {
            // No credentials could be loaded: nothing in this cloud can work.
            ProviderError::new(
                ErrorKind::Unauthorized,
                location,
                format!("{what}: {} (set AWS credentials, a profile, or AWS_PROFILE)", source_chain(&e)),
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            ProviderError::new(ErrorKind::Transient, location, format!("{what}: {}", source_chain(&e)))
        }
        _ => ProviderError::new(ErrorKind::Other, location, format!("{what}: {}", source_chain(&e))),
    }
}

/// The error and its sources on one line (the SDK's top-level text is terse).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds_and_scopes() {
        assert_eq!(classify("InsufficientInstanceCapacity"), (ErrorKind::CapacityUnavailable, Scope::Zone));
        assert_eq!(classify("Unsupported"), (ErrorKind::CapacityUnavailable, Scope::Zone));
        assert_eq!(classify("VcpuLimitExceeded"), (ErrorKind::QuotaExceeded, Scope::Region));
        assert_eq!(classify("InstanceLimitExceeded"), (ErrorKind::QuotaExceeded, Scope::Region));
        assert_eq!(classify("MaxSpotInstanceCountExceeded"), (ErrorKind::QuotaExceeded, Scope::Region));
        assert_eq!(classify("RequestLimitExceeded").0, ErrorKind::Throttled);
        assert_eq!(classify("AuthFailure"), (ErrorKind::Unauthorized, Scope::Cloud));
        assert_eq!(classify("InvalidAMIID.NotFound").0, ErrorKind::Other);
    }
}
