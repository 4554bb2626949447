//! VM sizes from Resource Manager's resource SKUs (`GET /subscriptions/{id}/providers/
//! Microsoft.Compute/skus`, paged by `nextLink`, through azure_mgmt_compute's
//! `resource_skus` client): the vCPUs, memory, GPUs and CPU architecture the Retail Prices
//! API does not give, for `skyform catalog update --source azure`.
//!
//! Of each SKU it keeps `resourceType` "virtualMachines", its `name`, the capabilities
//! `vCPUs`, `MemoryGB`, `GPUs` and `CpuArchitectureType`, and its `locations` less those a
//! `Location` restriction (e.g. `NotAvailableForSubscription`) takes away. A SKU without
//! vCPUs or memory is left out. Needs a subscription (`subscription_id` or
//! `AZURE_SUBSCRIPTION_ID`) and a credential; without a subscription there is nothing to
//! ask (`None`). Network I/O on its own runtime.

use crate::arm;
use crate::config::AzureConfig;
use azure_mgmt_compute::models::resource_sku_restrictions::Type as RestrictionType;
use azure_mgmt_compute::models::ResourceSku;
use futures::StreamExt;
use skyform_provider::{InstanceShape, ProviderError};
use std::time::Duration;

/// The VM sizes the subscription can create, or None without a subscription.
pub fn instance_shapes(cfg: &AzureConfig) -> Result<Option<Vec<InstanceShape>>, ProviderError> {
    let Some(subscription) =
        cfg.subscription_id.clone().or_else(|| std::env::var("AZURE_SUBSCRIPTION_ID").ok()).filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let credential = arm::credential(cfg).map_err(crate::other)?;
    let http = arm::http_client(Duration::from_secs(cfg.request_timeout_seconds as u64)).map_err(crate::other)?;
    let endpoint = cfg.arm_endpoint();
    let url = azure_core::Url::parse(&endpoint).map_err(|e| crate::other(format!("provider \"azure\": {e}")))?;
    let scopes = vec![format!("{}/.default", endpoint.trim_end_matches('/'))];
    let client = azure_mgmt_compute::Client::new(url, credential, scopes, arm::options(http));
    let rt = crate::Rt::new("skyform-azure-skus").map_err(crate::other)?;
    let skus = rt.block(async move {
        let mut pages = client.resource_skus_client().list(subscription).into_stream();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page?.value);
        }
        Ok::<_, azure_core::Error>(out)
    });
    let skus = skus.map_err(|e| crate::errors::from_azure("list resource SKUs", None, &e))?;
    Ok(Some(skus.iter().filter_map(shape).collect()))
}

/// A virtual machine SKU as an instance shape.
fn shape(sku: &ResourceSku) -> Option<InstanceShape> {
    if !sku.resource_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("virtualMachines")) {
        return None;
    }
    let cap =
        |name: &str| sku.capabilities.iter().find(|c| c.name.as_deref() == Some(name)).and_then(|c| c.value.as_deref());
    let num = |name: &str| cap(name).and_then(|v| v.trim().parse::<f64>().ok());
    let mut s = InstanceShape::new(sku.name.clone()?, num("vCPUs")?, num("MemoryGB")?);
    s.gpus = num("GPUs").unwrap_or(0.0);
    s.arm64 = cap("CpuArchitectureType").is_some_and(|a| a.eq_ignore_ascii_case("Arm64"));
    let barred: Vec<String> = sku
        .restrictions
        .iter()
        .filter(|r| matches!(r.type_, Some(RestrictionType::Location)))
        .flat_map(|r| r.values.iter().map(|v| v.to_lowercase()))
        .collect();
    s.regions = sku.locations.iter().map(|l| l.to_lowercase()).filter(|l| !barred.contains(l)).collect();
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape of one item of the real answer (Microsoft.Compute/skus, api-version
    /// 2021-07-01), trimmed.
    fn sku(v: serde_json::Value) -> ResourceSku {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_vm_sku_reads_its_capabilities_and_allowed_regions() {
        let s = shape(&sku(json!({
            "resourceType": "virtualMachines",
            "name": "Standard_D4ps_v6",
            "locations": ["eastus", "westus2"],
            "capabilities": [
                {"name": "vCPUs", "value": "4"},
                {"name": "MemoryGB", "value": "16"},
                {"name": "CpuArchitectureType", "value": "Arm64"}
            ],
            "restrictions": [{"type": "Location", "values": ["westus2"], "reasonCode": "NotAvailableForSubscription"}]
        })))
        .unwrap();
        assert_eq!(
            (s.name.as_str(), s.vcpus, s.memory_gb, s.gpus, s.arm64),
            ("Standard_D4ps_v6", 4.0, 16.0, 0.0, true)
        );
        assert_eq!(s.regions, ["eastus"]);
    }

    #[test]
    fn other_resources_and_incomplete_skus_are_left_out() {
        assert!(shape(&sku(json!({"resourceType": "disks", "name": "Premium_LRS", "locations": ["eastus"]}))).is_none());
        let no_memory =
            json!({"resourceType": "virtualMachines", "name": "X", "capabilities": [{"name": "vCPUs", "value": "2"}]});
        assert!(shape(&sku(no_memory)).is_none());
    }
}
