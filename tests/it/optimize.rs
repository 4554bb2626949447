//! The optimizer on the real catalog: hand checks against the shared CSVs and the egress
//! break-even on both sides.

use super::*;
use skyform::catalog::Catalog;
use skyform::config::{load, LoadOptions};
use skyform::optimize::{optimize, Assignment};
use skyform::providers::Registry;
use skyform::tracker::TrackerView;

fn plan(files: &[(&str, &str)]) -> Assignment {
    let d = job(files);
    let spec = load(d.path(), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}")).spec;
    let catalog = Catalog::for_job(&spec, &Registry::builtin()).unwrap();
    let resolved = skyform::resolve::resolve(&spec, &catalog, &TrackerView::default()).unwrap();
    optimize(&resolved).unwrap()
}

#[test]
fn cheapest_v100x8_spot_for_ten_hours_matches_a_hand_check() {
    // By hand from the CSVs: AWS and Azure rows carry V100:8; GCP adds the V100:8 GPU row
    // to the cheapest N1 host (≤ 96 vCPUs, ≤ 624 GiB) with a spot price in the same zone.
    // With no cpus or memory, the host is the default for V100:8: ≥ 32 vCPUs, ≥ 128 GiB.
    let default_host = |cpus: f64, gib: f64| cpus >= 32.0 && gib >= 128.0;
    let mut expected = f64::MAX;
    for cloud in ["aws", "azure"] {
        let mut r = csv::Reader::from_path(shared_catalog().join(cloud).join("vms.csv")).unwrap();
        let h = r.headers().unwrap().clone();
        for rec in r.records() {
            let rec = rec.unwrap();
            let get = |k: &str| rec.get(h.iter().position(|x| x == k).unwrap()).unwrap().to_string();
            if get("AcceleratorName") == "V100"
                && get("AcceleratorCount").parse::<f64>().ok() == Some(8.0)
                && default_host(get("vCPUs").parse().unwrap(), get("MemoryGiB").parse().unwrap())
            {
                if let Ok(p) = get("SpotPrice").parse::<f64>() {
                    expected = expected.min(p);
                }
            }
        }
    }
    let mut r = csv::Reader::from_path(shared_catalog().join("gcp/vms.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let col = |k: &str| h.iter().position(|x| x == k).unwrap();
    for g in recs.iter().filter(|r| {
        r[col("InstanceType")].is_empty() && &r[col("AcceleratorName")] == "V100" && &r[col("AcceleratorCount")] == "8"
    }) {
        let Ok(gs) = g[col("SpotPrice")].parse::<f64>() else { continue };
        for host in recs.iter().filter(|x| {
            x[col("AvailabilityZone")] == g[col("AvailabilityZone")]
                && x[col("InstanceType")].starts_with("n1-")
                && !x[col("InstanceType")].ends_with("-tpu")
        }) {
            let (cpus, gib) =
                (host[col("vCPUs")].parse::<f64>().unwrap(), host[col("MemoryGiB")].parse::<f64>().unwrap());
            let ok = cpus <= 96.0 && gib <= 624.0 && default_host(cpus, gib);
            if let (true, Ok(hs)) = (ok, host[col("SpotPrice")].parse::<f64>()) {
                expected = expected.min(gs + hs);
            }
        }
    }
    let a = plan(&[(
        "main.sky.hcl",
        r#"
provider "aws" {}
provider "gcp" {}
provider "azure" {}

task "train" {
  resources {
    accelerators = "V100:8"
    spot         = true
  }
  run = "train"
  estimate {
    hours = 10
  }
}
"#,
    )]);
    let p = &a.placements[0];
    assert!(p.choice.spot);
    assert!(
        (p.choice.hourly - expected).abs() < 1e-6,
        "chose {} at {} $/h, hand check {expected}",
        p.choice.label(),
        p.choice.hourly
    );
    assert!((a.total_cost - expected * 10.0).abs() < 1e-6);
    assert!(
        !p.fallbacks.is_empty()
            && p.fallbacks.iter().all(|f| f.delta >= 0.0 && f.candidate.location != p.choice.location)
    );
}

/// Cheapest T4:1 on-demand $/h in one region, from `catalog search`.
fn cheapest_t4(cloud: &str, region: &str) -> f64 {
    let o = skyform(
        job(&[]).path(),
        &["catalog", "search", "--gpu", "T4:1", "--cloud", cloud, "--region", region, "--limit", "1", "-json"],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    v["offerings"][0]["price"].as_f64().unwrap()
}

fn s3_job(size_gb: f64) -> String {
    format!(
        r#"
provider "aws" {{}}
provider "gcp" {{}}

policy {{
  regions = ["aws:us-east-1", "gcp:us-central1"]
}}

storage "data" {{
  uri     = "s3://corp-data/set"
  size_gb = {size_gb}
  region  = "us-east-1"
}}

task "infer" {{
  resources {{
    accelerators = "T4:1"
    cpus         = "1+"
  }}
  inputs = {{ data = storage.data }}
  run    = "infer"
  estimate {{
    hours = 10
  }}
}}
"#
    )
}

#[test]
fn data_in_s3_stays_on_aws_exactly_when_egress_outweighs_a_cheaper_gpu() {
    let aws = cheapest_t4("aws", "us-east-1") * 10.0;
    let gcp = cheapest_t4("gcp", "us-central1") * 10.0;
    assert!(gcp < aws, "the test needs GCP to be cheaper for compute ({gcp} vs {aws})");
    // Reading S3 from us-east-1 is free; from GCP it is AWS internet egress ($0.09/GB).
    let break_even = (aws - gcp) / 0.09;
    let below = plan(&[("main.sky.hcl", &s3_job((break_even * 0.9 * 100.0).round() / 100.0))]);
    assert_eq!(
        below.placements[0].choice.location.cloud, "gcp",
        "below break-even ({break_even:.1} GB) the cheaper GPU wins"
    );
    let above = plan(&[("main.sky.hcl", &s3_job((break_even * 1.1 * 100.0).round() / 100.0))]);
    assert_eq!(above.placements[0].choice.location.cloud, "aws", "above break-even the data keeps the task on AWS");
    assert!((above.total_cost - aws).abs() < 1e-6);
}

#[test]
fn deterministic_plans() {
    let dir = root().join("testdata/jobs/multi-file");
    let run = || {
        let spec = load(&dir, &LoadOptions::default()).unwrap().spec;
        let c = Catalog::for_job(&spec, &Registry::builtin()).unwrap();
        let r = skyform::resolve::resolve(&spec, &c, &TrackerView::default()).unwrap();
        let mut a = optimize(&r).unwrap();
        a.report.solve_ms = 0.0;
        serde_json::to_string(&a).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn infeasible_jobs_name_the_filter() {
    let d = job(&[(
        "main.sky.hcl",
        r#"
provider "gcp" {}

policy {
  regions = ["gcp:europe-*"]
}

task "train" {
  resources {
    accelerators = "V100:3"
  }
  run = "x"
}

task "big" {
  resources {
    accelerators = "A100:8"
    cloud        = "aws"
  }
  run = "x"
}
"#,
    )]);
    let spec = load(d.path(), &LoadOptions::default()).unwrap().spec;
    let c = Catalog::for_job(&spec, &Registry::builtin()).unwrap();
    let err = skyform::resolve::resolve(&spec, &c, &TrackerView::default()).unwrap_err().to_string();
    assert!(
        err.contains(
            "task.train: no offering in the catalog matches the resources: V100:3 (counts offered: 1, 2, 4, 8)"
        ),
        "{err}"
    );
    assert!(err.contains("task.big:") && err.contains("resources.cloud/region/zone removed the last of them"), "{err}");
}

fn v100x8_job(extra: &str) -> tempfile::TempDir {
    job(&[(
        "main.sky.hcl",
        &format!(
            r#"
provider "aws" {{}}
provider "gcp" {{}}
provider "azure" {{}}

task "train" {{
  resources {{
    accelerators = "V100:8"
    {extra}
  }}
  run = "train"
  estimate {{
    hours = 10
  }}
}}
"#
        ),
    )])
}

/// The candidates of the job's one task, and its optimal placement.
fn v100x8(extra: &str) -> (Vec<skyform::resolve::Candidate>, Assignment) {
    let d = v100x8_job(extra);
    let spec = load(d.path(), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}")).spec;
    let catalog = Catalog::for_job(&spec, &skyform::providers::Registry::builtin()).unwrap();
    let resolved = skyform::resolve::resolve(&spec, &catalog, &TrackerView::default()).unwrap();
    (resolved.tasks[0].candidates.to_vec(), optimize(&resolved).unwrap())
}

#[test]
fn a_gpu_task_without_cpus_gets_a_host_sized_for_its_gpus_unless_it_asks_otherwise() {
    // Default: ≥ 32 vCPUs and ≥ 128 GiB for V100:8, on every cloud that sells V100:8.
    let (cands, a) = v100x8("");
    let c = &a.placements[0].choice;
    assert!(c.vcpus >= 32.0 && c.memory_gb >= 128.0, "{}", c.label());
    assert!(cands.iter().all(|c| c.vcpus >= 32.0 && c.memory_gb >= 128.0));
    let clouds: std::collections::BTreeSet<&str> = cands.iter().map(|c| c.location.cloud.as_str()).collect();
    assert_eq!(clouds.into_iter().collect::<Vec<_>>(), ["aws", "gcp"], "both clouds that sell V100:8 stay");
    // `cpus = "1+"`: the user wants the smallest host, and gets it (GCP's 1-vCPU N1).
    let (_, small) = v100x8(r#"cpus = "1+""#);
    assert_eq!(small.placements[0].choice.vcpus, 1.0, "{}", small.placements[0].choice.label());
    assert!(small.total_cost < a.total_cost);
    // An explicit count wins over the default, even below it.
    let (_, eight) = v100x8(r#"cpus = "8+""#);
    assert!(eight.placements[0].choice.vcpus >= 8.0 && eight.placements[0].choice.vcpus < 32.0);
}
