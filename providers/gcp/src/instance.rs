//! The body of `instances.insert` for one allocation (pure): machine type in the zone, boot
//! disk from the image, network, service account, labels, metadata (startup-script, exact
//! owner tags and token), GPUs and scheduling.
//!
//! GPUs: an N1 host gets the offering's accelerators as `guestAccelerators` (`V100:8` →
//! 8 × `nvidia-tesla-v100`); the accelerator-optimized series (A2, A3, A4, G2, G4) carry
//! their GPUs in the machine type and get none attached. Spot instances use
//! `provisioningModel = SPOT` with `instanceTerminationAction = DELETE`; instances with GPUs
//! and spot instances cannot live-migrate (`onHostMaintenance = TERMINATE`).

use google_cloud_compute_v1::model;
use std::collections::BTreeMap;

/// What an instance is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub project: String,
    pub zone: String,
    pub name: String,
    pub machine_type: String,
    pub spot: bool,
    /// `NAME:COUNT` from the offering (`V100:8`).
    pub accelerator: Option<String>,
    pub image: String,
    pub disk_gb: u32,
    pub disk_type: Option<String>,
    pub network: String,
    pub subnetwork: Option<String>,
    pub external_ip: bool,
    pub service_account: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub metadata: Vec<(String, String)>,
}

/// Machine series whose types carry their own GPUs.
const GPU_SERIES: &[&str] = &["a2", "a3", "a4", "a4x", "g2", "g4"];
/// Machine series that only take Hyperdisk boot disks.
const HYPERDISK_SERIES: &[&str] = &["c4", "c4a", "c4d", "n4", "n4a", "n4d", "x4", "a4", "a4x", "m4", "h4d", "c3d"];

fn series(machine_type: &str) -> &str {
    machine_type.split('-').next().unwrap_or(machine_type)
}

/// True for machine types that carry their GPUs (A2, A3, A4, G2, G4).
pub fn has_builtin_gpus(machine_type: &str) -> bool {
    GPU_SERIES.contains(&series(machine_type))
}

/// True for Arm machine types (T2A, C4A, N4A).
pub fn is_arm(machine_type: &str) -> bool {
    matches!(series(machine_type), "t2a" | "c4a" | "n4a")
}

/// The Compute Engine accelerator type of a catalog accelerator name (`V100` →
/// `nvidia-tesla-v100`); names already in GCP's form pass through.
pub fn accelerator_type(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.starts_with("nvidia-") {
        return n;
    }
    match n.as_str() {
        "k80" | "p4" | "p100" | "v100" | "t4" | "a100" => format!("nvidia-tesla-{n}"),
        "a100-80gb" | "a100_80gb" => "nvidia-a100-80gb".into(),
        "l4" => "nvidia-l4".into(),
        "h100" | "h100-80gb" => "nvidia-h100-80gb".into(),
        "h100-mega" | "h100-mega-80gb" => "nvidia-h100-mega-80gb".into(),
        "h200" => "nvidia-h200-141gb".into(),
        "b200" => "nvidia-b200".into(),
        "rtx6000" | "rtx-pro-6000" => "nvidia-rtx-pro-6000".into(),
        other => format!("nvidia-{other}"),
    }
}

/// `V100:8` → (`V100`, 8); a bare name is one.
pub fn parse_accelerator(s: &str) -> Option<(String, i32)> {
    let (name, count) = match s.rsplit_once(':') {
        Some((n, c)) => (n, c.trim().parse::<f64>().ok()?),
        None => (s, 1.0),
    };
    let count = count.round() as i32;
    (!name.trim().is_empty() && count > 0).then(|| (name.trim().to_string(), count))
}

fn disk_type(spec: &InstanceSpec) -> String {
    let t = spec.disk_type.clone().unwrap_or_else(|| {
        if HYPERDISK_SERIES.contains(&series(&spec.machine_type)) {
            "hyperdisk-balanced".into()
        } else {
            "pd-balanced".into()
        }
    });
    if t.contains('/') {
        t
    } else {
        format!("projects/{}/zones/{}/diskTypes/{t}", spec.project, spec.zone)
    }
}

fn network_path(spec: &InstanceSpec) -> String {
    if spec.network.contains('/') {
        spec.network.clone()
    } else {
        format!("projects/{}/global/networks/{}", spec.project, spec.network)
    }
}

fn subnetwork_path(spec: &InstanceSpec, s: &str) -> String {
    if s.contains('/') {
        s.to_string()
    } else {
        format!("projects/{}/regions/{}/subnetworks/{s}", spec.project, crate::naming::region_of(&spec.zone))
    }
}

/// The accelerators to attach: none for types that carry their own.
pub fn guest_accelerators(spec: &InstanceSpec) -> Vec<(String, i32)> {
    match spec.accelerator.as_deref().and_then(parse_accelerator) {
        Some((name, count)) if !has_builtin_gpus(&spec.machine_type) => vec![(accelerator_type(&name), count)],
        _ => Vec::new(),
    }
}

/// The instance to insert.
pub fn build(spec: &InstanceSpec) -> model::Instance {
    let gpus = spec.accelerator.is_some() || has_builtin_gpus(&spec.machine_type);
    let disk = model::AttachedDisk::new().set_boot(true).set_auto_delete(true).set_initialize_params(
        model::AttachedDiskInitializeParams::new()
            .set_source_image(spec.image.clone())
            .set_disk_size_gb(spec.disk_gb as i64)
            .set_disk_type(disk_type(spec)),
    );
    let mut nic = model::NetworkInterface::new().set_network(network_path(spec));
    if let Some(s) = &spec.subnetwork {
        nic = nic.set_subnetwork(subnetwork_path(spec, s));
    }
    if spec.external_ip {
        nic = nic.set_access_configs([model::AccessConfig::new()
            .set_name("External NAT")
            .set_type(model::access_config::Type::OneToOneNat)]);
    }
    let sa = model::ServiceAccount::new()
        .set_email(spec.service_account.clone().unwrap_or_else(|| "default".into()))
        .set_scopes(["https://www.googleapis.com/auth/cloud-platform"]);
    let mut sched = model::Scheduling::new();
    if spec.spot {
        sched = sched
            .set_provisioning_model(model::scheduling::ProvisioningModel::Spot)
            .set_instance_termination_action(model::scheduling::InstanceTerminationAction::Delete)
            .set_automatic_restart(false);
    } else {
        sched = sched.set_provisioning_model(model::scheduling::ProvisioningModel::Standard);
    }
    if spec.spot || gpus {
        sched = sched.set_on_host_maintenance(model::scheduling::OnHostMaintenance::Terminate);
    }
    let mut items: Vec<model::metadata::Items> = spec
        .metadata
        .iter()
        .map(|(k, v)| model::metadata::Items::new().set_key(k.clone()).set_value(v.clone()))
        .collect();
    if gpus {
        items.push(model::metadata::Items::new().set_key("install-nvidia-driver").set_value("True"));
    }
    model::Instance::new()
        .set_name(spec.name.clone())
        .set_machine_type(format!("zones/{}/machineTypes/{}", spec.zone, spec.machine_type))
        .set_disks([disk])
        .set_network_interfaces([nic])
        .set_service_accounts([sa])
        .set_scheduling(sched)
        .set_labels(spec.labels.clone())
        .set_metadata(model::Metadata::new().set_items(items))
        .set_guest_accelerators(guest_accelerators(spec).into_iter().map(|(t, n)| {
            model::AcceleratorConfig::new()
                .set_accelerator_type(format!("projects/{}/zones/{}/acceleratorTypes/{t}", spec.project, spec.zone))
                .set_accelerator_count(n)
        }))
}

/// A metadata value of an instance.
pub fn metadata<'a>(i: &'a model::Instance, key: &str) -> Option<&'a str> {
    i.metadata.as_ref()?.items.iter().find(|x| x.key.as_deref() == Some(key))?.value.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(machine_type: &str, accelerator: Option<&str>, spot: bool) -> InstanceSpec {
        InstanceSpec {
            project: "p".into(),
            zone: "us-central1-a".into(),
            name: "skyform-x".into(),
            machine_type: machine_type.into(),
            spot,
            accelerator: accelerator.map(str::to_string),
            image: "img".into(),
            disk_gb: 100,
            disk_type: None,
            network: "default".into(),
            subnetwork: Some("sub".into()),
            external_ip: true,
            service_account: None,
            labels: [("skyform-job".to_string(), "j".to_string())].into(),
            metadata: vec![("startup-script".into(), "echo hi".into())],
        }
    }

    fn json(i: &model::Instance) -> serde_json::Value {
        serde_json::to_value(i).unwrap()
    }

    #[test]
    fn spot_n1_with_v100s_attaches_them() {
        let v = json(&build(&spec("n1-standard-8", Some("V100:8"), true)));
        assert_eq!(v["machineType"], "zones/us-central1-a/machineTypes/n1-standard-8");
        assert_eq!(
            v["guestAccelerators"][0]["acceleratorType"],
            "projects/p/zones/us-central1-a/acceleratorTypes/nvidia-tesla-v100"
        );
        assert_eq!(v["guestAccelerators"][0]["acceleratorCount"], 8);
        assert_eq!(v["scheduling"]["provisioningModel"], "SPOT");
        assert_eq!(v["scheduling"]["instanceTerminationAction"], "DELETE");
        assert_eq!(v["scheduling"]["onHostMaintenance"], "TERMINATE");
        assert_eq!(v["labels"]["skyform-job"], "j");
        assert_eq!(v["networkInterfaces"][0]["subnetwork"], "projects/p/regions/us-central1/subnetworks/sub");
        assert_eq!(
            v["disks"][0]["initializeParams"]["diskType"],
            "projects/p/zones/us-central1-a/diskTypes/pd-balanced"
        );
        let items = v["metadata"]["items"].as_array().unwrap();
        assert!(items.iter().any(|i| i["key"] == "startup-script" && i["value"] == "echo hi"));
    }

    #[test]
    fn gpu_series_carry_their_own() {
        let v = json(&build(&spec("a2-highgpu-1g", Some("A100:1"), false)));
        assert!(v.get("guestAccelerators").is_none_or(|g| g.as_array().unwrap().is_empty()), "{v}");
        assert_eq!(v["scheduling"]["provisioningModel"], "STANDARD");
        assert_eq!(v["scheduling"]["onHostMaintenance"], "TERMINATE");
        let v = json(&build(&spec("e2-standard-4", None, false)));
        assert!(v["scheduling"].get("onHostMaintenance").is_none(), "{v}");
        let v = json(&build(&spec("c4-standard-8", None, false)));
        assert_eq!(
            v["disks"][0]["initializeParams"]["diskType"],
            "projects/p/zones/us-central1-a/diskTypes/hyperdisk-balanced"
        );
    }

    #[test]
    fn accelerator_names() {
        assert_eq!(accelerator_type("V100"), "nvidia-tesla-v100");
        assert_eq!(accelerator_type("T4"), "nvidia-tesla-t4");
        assert_eq!(accelerator_type("L4"), "nvidia-l4");
        assert_eq!(accelerator_type("H100"), "nvidia-h100-80gb");
        assert_eq!(accelerator_type("nvidia-tesla-p4"), "nvidia-tesla-p4");
        assert_eq!(parse_accelerator("V100:8"), Some(("V100".into(), 8)));
        assert_eq!(parse_accelerator("T4"), Some(("T4".into(), 1)));
        assert_eq!(parse_accelerator("T4:0"), None);
        assert!(is_arm("t2a-standard-4") && !is_arm("n2-standard-4"));
    }
}
