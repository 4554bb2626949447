//! The catalog and tracker from the command line, checked against the shared CSVs.

use super::*;

/// Rows of a shared CSV as header → value maps.
fn rows(cloud: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut r =
        csv::Reader::from_path(shared_catalog().join(cloud).join("vms.csv")).expect("shared catalog beside the clone");
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|rec| h.iter().zip(rec.unwrap().iter()).map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .collect()
}

fn min_price(
    rows: &[std::collections::HashMap<String, String>],
    keep: impl Fn(&std::collections::HashMap<String, String>) -> bool,
    col: &str,
) -> f64 {
    rows.iter().filter(|r| keep(r)).filter_map(|r| r[col].parse::<f64>().ok()).fold(f64::MAX, f64::min)
}

#[test]
fn gpus_v100_matches_the_shared_csvs() {
    let o = skyform(job(&[]).path(), &["catalog", "gpus", "V100", "-json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let row = |cloud: &str, count: f64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["cloud"] == cloud && r["count"] == count)
            .unwrap_or_else(|| panic!("{cloud} V100:{count} missing"))
            .clone()
    };
    // AWS: p3.16xlarge rows carry V100:8 directly.
    let aws = rows("aws");
    let is_v100 = |n: &'static str| {
        move |r: &std::collections::HashMap<String, String>| {
            r["AcceleratorName"] == "V100" && r["AcceleratorCount"].parse::<f64>().ok() == Some(n.parse().unwrap())
        }
    };
    assert_eq!(row("aws", 8.0)["on_demand"]["price"].as_f64().unwrap(), min_price(&aws, is_v100("8"), "Price"));
    assert_eq!(row("aws", 8.0)["spot"]["price"].as_f64().unwrap(), min_price(&aws, is_v100("8"), "SpotPrice"));
    assert_eq!(row("aws", 8.0)["on_demand"]["instance_type"], "p3.16xlarge");
    // Azure: regions are zones.
    let az = rows("azure");
    assert_eq!(row("azure", 1.0)["on_demand"]["price"].as_f64().unwrap(), min_price(&az, is_v100("1"), "Price"));
    assert_eq!(row("azure", 1.0)["spot"]["price"].as_f64().unwrap(), min_price(&az, is_v100("1"), "SpotPrice"));
    // GCP: the GPU row plus its N1 host in the same zone.
    let gcp = rows("gcp");
    let mut best = f64::MAX;
    for g in gcp
        .iter()
        .filter(|r| r["InstanceType"].is_empty() && r["AcceleratorName"] == "V100" && r["AcceleratorCount"] == "1")
    {
        let gp: f64 = g["Price"].parse().unwrap();
        for h in gcp.iter().filter(|h| {
            h["AvailabilityZone"] == g["AvailabilityZone"]
                && h["InstanceType"].starts_with("n1-")
                && !h["InstanceType"].ends_with("-tpu")
        }) {
            let (cpu, mem): (f64, f64) = (h["vCPUs"].parse().unwrap(), h["MemoryGiB"].parse().unwrap());
            if cpu <= 12.0 && mem <= 78.0 {
                best = best.min(gp + h["Price"].parse::<f64>().unwrap());
            }
        }
    }
    assert!(
        (row("gcp", 1.0)["on_demand"]["price"].as_f64().unwrap() - best).abs() < 1e-6,
        "gcp V100:1 host + GPU = {best}"
    );
}

#[test]
fn search_filters_and_sorts() {
    let o = skyform(
        job(&[]).path(),
        &[
            "catalog",
            "search",
            "--cpus",
            "8+",
            "--memory",
            "32+",
            "--cloud",
            "aws",
            "--region",
            "us-west-*",
            "--limit",
            "0",
            "-json",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let offers = v["offerings"].as_array().unwrap();
    assert!(offers.len() > 100);
    let mut last = 0.0;
    for x in offers {
        assert_eq!(x["cloud"], "aws");
        assert!(x["region"].as_str().unwrap().starts_with("us-west-"));
        assert!(x["vcpus"].as_f64().unwrap() >= 8.0 && x["memory_gb"].as_f64().unwrap() >= 32.0);
        assert!(x["accelerator"].is_null() || x["accelerator"].is_string());
        let p = x["price"].as_f64().unwrap();
        assert!(p >= last, "sorted by price");
        last = p;
    }
    let o = skyform(job(&[]).path(), &["catalog", "search", "--gpu", "V100", "--spot", "--max-price", "1.0", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    for x in v["offerings"].as_array().unwrap() {
        assert!(x["spot_price"].as_f64().unwrap() <= 1.0);
        assert_eq!(x["accelerator"], "V100");
    }
}

#[test]
fn unknown_gpu_gets_a_suggestion() {
    let o = skyform(job(&[]).path(), &["catalog", "search", "--gpu", "V1OO:8"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("unknown accelerator `V1OO`. Did you mean `V100`?"), "{}", o.stderr);
    let o = skyform(job(&[]).path(), &["catalog", "gpus", "a10g"]);
    assert_eq!(o.code, 0, "names are case-insensitive: {}", o.stderr);
    assert!(o.stdout.contains("A10G"));
}

#[test]
fn import_reports_bad_rows_and_keeps_the_installed_snapshot() {
    let d = job(&[(
        "csv/aws/vms.csv",
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n\
         m5.large,,,2.0,8.0,,0.096,0.03,us-east-1,us-east-1a\n\
         m5.xlarge,,,2.0,8.0,,cheap,0.03,us-east-1,us-east-1a\n",
    )]);
    let out = d.path().join("installed.bin");
    std::fs::write(&out, b"previous snapshot").unwrap();
    let o = skyform(d.path(), &["catalog", "import", "--from", "csv", "--out", "installed.bin"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("csv/aws/vms.csv:3: column Price: `cheap` is not a non-negative number"), "{}", o.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), b"previous snapshot");
    // A good import installs a snapshot that skyform then uses.
    std::fs::write(d.path().join("csv/aws/vms.csv"), "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\nm5.large,,,2.0,8.0,,0.096,0.03,us-east-1,us-east-1a\n").unwrap();
    let o =
        skyform(d.path(), &["catalog", "import", "--from", "csv", "--out", "installed.bin", "--date", "2024-01-02"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = skyform_env(d.path(), &["catalog", "info", "-json"], &[("SKYFORM_CATALOG", out.to_str().unwrap())]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["clouds"]["aws"]["offerings"], 1);
    assert_eq!(v["created"], "2024-01-02");
    assert!(v["origin"].as_str().unwrap().ends_with("installed.bin"));
}

#[test]
fn embedded_catalog_is_what_import_produces() {
    // The committed snapshot is the import of the shared CSVs (run `skyform catalog import
    // --from ../shared/catalog/skypilot --out src/catalog/data/catalog.bin --date 2026-05-20`).
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("c.bin");
    let o = skyform(
        &root(),
        &[
            "catalog",
            "import",
            "--from",
            shared_catalog().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--date",
            "2026-05-20",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(std::fs::read(out).unwrap(), std::fs::read(root().join("src/catalog/data/catalog.bin")).unwrap());
}

#[test]
fn tracker_block_show_unblock() {
    let d = job(&[("main.sky.hcl", "task \"t\" {\n  run = \"true\"\n}\n")]);
    let o = skyform(d.path(), &["tracker", "block", "aws:us-east-1:us-east-1a", "--ttl", "30m", "--reason", "ICE"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = skyform(d.path(), &["tracker", "show", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["blocks"][0]["location"]["zone"], "us-east-1a");
    assert_eq!(v["blocks"][0]["until"].as_u64().unwrap() - v["blocks"][0]["since"].as_u64().unwrap(), 1800);
    let o = skyform(d.path(), &["tracker", "refresh"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("local: recorded"), "{}", o.stderr);
    let o = skyform(d.path(), &["tracker", "unblock", "aws:us-east-1:us-east-1a"]);
    assert_eq!(o.code, 0);
    let o = skyform(d.path(), &["tracker", "show", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(v["blocks"].as_array().unwrap().is_empty());
    assert!(!v["spot"].as_array().unwrap().is_empty(), "the refresh was recorded");
    let o = skyform(d.path(), &["tracker", "block", "aws::x"]);
    assert_eq!(o.code, 1);
}
