//! `skyform tracker refresh` records Azure and GCP spot prices from their price APIs (the
//! sources of `catalog update`), served by the loopback server of `catalog_update` with
//! pages shaped like the real APIs (see `azure_item` and `gcp_sku` there for where each
//! shape comes from): each refresh adds a point per series, and a plan uses the latest.

use super::catalog_update::{azure_item, gcp_sku, sky, Answer, Server, AZURE_FIRST};
use super::*;

/// One task per (cloud, type), 10 hours on spot each. The tasks' and provider blocks'
/// regions keep the resolver (and so the refresh) to eastus + westus2 and us-central1.
const JOB: &str = r#"
provider "azure" {
  regions = ["eastus", "westus2"]
}

provider "gcp" {
  regions = ["us-central1"]
}

task "a_d2" {
  resources {
    cloud         = "azure"
    instance_type = "Standard_D2s_v5"
    region        = "eastus"
    spot          = true
  }
  run = "true"
  estimate {
    hours = 10
  }
}

task "a_e4" {
  resources {
    cloud         = "azure"
    instance_type = "Standard_E4s_v5"
    region        = "westus2"
    spot          = true
  }
  run = "true"
  estimate {
    hours = 10
  }
}

task "g_n2" {
  resources {
    cloud         = "gcp"
    instance_type = "n2-standard-2"
    spot          = true
  }
  run = "true"
  estimate {
    hours = 10
  }
}

task "g_v100" {
  resources {
    cloud         = "gcp"
    instance_type = "n1-standard-8"
    accelerators  = ["V100:1"]
    spot          = true
  }
  run = "true"
  estimate {
    hours = 10
  }
}
"#;

/// The Retail Prices query of one region (what the refresh asks: the job's regions only).
fn azure_query(region: &str) -> String {
    format!("{AZURE_FIRST}%20and%20armRegionName%20eq%20%27{region}%27")
}

fn azure_page(items: &[String], next: Option<String>) -> Vec<u8> {
    serde_json::json!({
        "BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
        "Items": items.iter().map(|i| serde_json::from_str::<serde_json::Value>(i).unwrap()).collect::<Vec<_>>(),
        "NextPageLink": next, "Count": items.len(),
    })
    .to_string()
    .into_bytes()
}

/// Serves the Azure pages with these spot prices of Standard_D2s_v5 (eastus) and
/// Standard_E4s_v5 (westus2); eastus answers two pages (NextPageLink).
fn serve_azure(s: &Server, d2_spot: f64, e4_spot: f64) {
    let (c, h) = ("Consumption", "1 Hour");
    let dsv5 = "Virtual Machines Dsv5 Series";
    let esv5 = "Virtual Machines Esv5 Series";
    let eastus1 = [
        azure_item("Standard_D2s_v5", "eastus", "D2s v5", dsv5, 0.1, c, h),
        azure_item("Standard_D2s_v5", "eastus", "D2s v5", "Virtual Machines Dsv5 Series Windows", 0.188, c, h),
        azure_item("Standard_D2s_v5", "eastus", "D2s v5 Spot", dsv5, d2_spot, c, h),
    ];
    let eastus2 = [
        azure_item("Standard_NC24s_v3", "eastus", "NC24s v3", "Virtual Machines NCSv3 Series", 12.5, c, h),
        azure_item("Standard_NC24s_v3", "eastus", "NC24s v3 Spot", "Virtual Machines NCSv3 Series", 2.5, c, h),
    ];
    let westus2 = [
        azure_item("Standard_E4s_v5", "westus2", "E4s v5", esv5, 0.26, c, h),
        azure_item("Standard_E4s_v5", "westus2", "E4s v5 Spot", esv5, e4_spot, c, h),
    ];
    let next = format!("{}/api/retail/prices?region=eastus&page=2", s.url);
    s.set(&azure_query("eastus"), Answer::Ok { body: azure_page(&eastus1, Some(next)), gzip: false });
    s.set("/api/retail/prices?region=eastus&page=2", Answer::Ok { body: azure_page(&eastus2, None), gzip: true });
    s.set(&azure_query("westus2"), Answer::Ok { body: azure_page(&westus2, None), gzip: false });
}

/// Serves two pages of Compute Engine SKUs: N2 (on-demand and spot) on the first, N1 and
/// the V100 on the second; `n2_spot_core` and `v100_spot` in nanos.
fn serve_gcp(s: &Server, n2_spot_core: i64, v100_spot: i64) {
    let page1 = serde_json::json!({"skus": [
        gcp_sku("N2 Instance Core running in Americas", "CPU", "OnDemand", "h", 31_611_000),
        gcp_sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", "GiBy.h", 4_237_000),
        gcp_sku("Spot Preemptible N2 Instance Core running in Americas", "CPU", "Preemptible", "h", n2_spot_core),
        gcp_sku("Spot Preemptible N2 Instance Ram running in Americas", "RAM", "Preemptible", "GiBy.h", 1_030_000),
    ], "nextPageToken": "p2"});
    let page2 = serde_json::json!({"skus": [
        gcp_sku("N1 Predefined Instance Core running in Americas", "N1Standard", "OnDemand", "h", 31_611_000),
        gcp_sku("N1 Predefined Instance Ram running in Americas", "N1Standard", "OnDemand", "GiBy.h", 4_237_000),
        gcp_sku("Spot Preemptible N1 Predefined Instance Core running in Americas", "N1Standard", "Preemptible", "h", 6_600_000),
        gcp_sku("Spot Preemptible N1 Predefined Instance Ram running in Americas", "N1Standard", "Preemptible", "GiBy.h", 890_000),
        gcp_sku("Nvidia Tesla V100 GPU running in Americas", "GPU", "OnDemand", "h", 2_480_000_000),
        gcp_sku("Nvidia Tesla V100 GPU attached to Spot Preemptible VMs running in Americas", "GPU", "Preemptible", "h", v100_spot),
    ], "nextPageToken": ""});
    s.set(
        "/v1/services/6F81-5844-456A/skus?currencyCode=USD&key=test-key",
        Answer::Ok { body: page1.to_string().into_bytes(), gzip: false },
    );
    s.set(
        "/v1/services/6F81-5844-456A/skus?currencyCode=USD&pageToken=p2&key=test-key",
        Answer::Ok { body: page2.to_string().into_bytes(), gzip: true },
    );
}

/// The latest spot price of a series in `tracker show -json`.
fn latest(dir: &Path, home: &Path, zone: &str, instance_type: &str) -> f64 {
    let o = sky(dir, home, &["tracker", "show", "-json"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let row = v["spot"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["location"]["zone"] == zone && r["instance_type"] == instance_type)
        .unwrap_or_else(|| panic!("no series {zone} {instance_type} in {}", v["spot"]));
    row["price"].as_f64().unwrap()
}

/// `Spot observations: N stored` of `tracker show`.
fn stored(dir: &Path, home: &Path) -> usize {
    let o = sky(dir, home, &["tracker", "show"], &[]);
    let line = o.stdout.lines().find(|l| l.starts_with("Spot observations: ")).unwrap();
    line["Spot observations: ".len()..].split_whitespace().next().unwrap().parse().unwrap()
}

/// The total cost of a fresh plan (`show -json` of a saved plan).
fn plan_cost(dir: &Path, home: &Path, env: &[(&str, &str)]) -> String {
    let o = sky(dir, home, &["plan", "-out", "p.plan"], env);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let o = sky(dir, home, &["show", "-json", "p.plan"], env);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    v["cost"]["after"].as_str().unwrap().to_string()
}

#[test]
fn tracker_refresh_records_azure_and_gcp_spot_prices_and_plans_use_the_latest() {
    let s = Server::start();
    serve_azure(&s, 0.021, 0.052);
    serve_gcp(&s, 7_650_000, 740_000_000);
    let home = tempfile::tempdir().unwrap();
    let d = job(&[("main.sky.hcl", JOB)]);
    let env = [("SKYFORM_GCP_API_KEY", "test-key")];
    let refresh = |env: &[(&str, &str)]| {
        // Observations are dated to the second: each refresh is a new point.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let args = ["tracker", "refresh", "--azure-base-url", &s.url, "--gcp-base-url", &s.url];
        sky(d.path(), home.path(), &args, env)
    };

    // The embedded catalog's spot prices: 10 h each of D2s_v5 $0.0204, E4s_v5 $0.0804,
    // n2-standard-2 $0.0314 and n1-standard-8 + V100:1 $1.3795.
    assert_eq!(plan_cost(d.path(), home.path(), &[]), "15.12");

    let o = refresh(&env);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains(&format!("azure: recorded 2 spot price observations from {}{}", s.url, AZURE_FIRST)),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("gcp: recorded "), "{}", o.stderr);
    assert!(!o.stderr.contains("test-key"), "the key is not shown: {}", o.stderr);
    // Azure: the Spot meters of the job's types (NC24s_v3 is not one of them).
    assert_eq!(latest(d.path(), home.path(), "eastus", "Standard_D2s_v5"), 0.021);
    assert_eq!(latest(d.path(), home.path(), "westus2", "Standard_E4s_v5"), 0.052);
    // GCP: n2-standard-2 = 2 × 0.00765 + 8 × 0.00103; n1-standard-8 + V100:1 =
    // 8 × 0.0066 + 30 × 0.00089 + 0.74, in every zone of us-central1 the catalog has.
    for z in ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"] {
        assert_eq!(latest(d.path(), home.path(), z, "n2-standard-2"), 0.02354);
        assert_eq!(latest(d.path(), home.path(), z, "n1-standard-8+V100:1"), 0.8195);
    }
    let first = stored(d.path(), home.path());
    // 10 h each at 0.021 + 0.052 + 0.02354 + 0.8195 = 9.1604.
    assert_eq!(plan_cost(d.path(), home.path(), &[]), "9.16");

    // Prices moved: a second refresh adds a second point to each series.
    serve_azure(&s, 0.025, 0.06);
    serve_gcp(&s, 10_000_000, 800_000_000);
    let o = refresh(&env);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert_eq!(stored(d.path(), home.path()), 2 * first, "one more point per series");
    assert_eq!(latest(d.path(), home.path(), "eastus", "Standard_D2s_v5"), 0.025);
    // 2 × 0.01 + 8 × 0.00103 = 0.02824; 8 × 0.0066 + 30 × 0.00089 + 0.8 = 0.8795.
    assert_eq!(latest(d.path(), home.path(), "us-central1-b", "n2-standard-2"), 0.02824);
    assert_eq!(latest(d.path(), home.path(), "us-central1-b", "n1-standard-8+V100:1"), 0.8795);
    // 10 h each at 0.025 + 0.06 + 0.02824 + 0.8795 = 9.9274.
    assert_eq!(plan_cost(d.path(), home.path(), &[]), "9.93");

    // A catalog update after those observations: its data is newer, so its spot prices
    // win over the tracker's until the next refresh.
    let (c, h) = ("Consumption", "1 Hour");
    let items = [
        azure_item("Standard_D2s_v5", "eastus", "D2s v5", "Virtual Machines Dsv5 Series", 0.1, c, h),
        azure_item("Standard_D2s_v5", "eastus", "D2s v5 Spot", "Virtual Machines Dsv5 Series", 0.03, c, h),
        azure_item("Standard_E4s_v5", "westus2", "E4s v5", "Virtual Machines Esv5 Series", 0.26, c, h),
        azure_item("Standard_E4s_v5", "westus2", "E4s v5 Spot", "Virtual Machines Esv5 Series", 0.07, c, h),
    ];
    s.set(AZURE_FIRST, Answer::Ok { body: azure_page(&items, None), gzip: false });
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = sky(d.path(), home.path(), &["catalog", "update", "--source", "azure", "--base-url", &s.url], &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    // 10 h each at 0.03 + 0.07 (the catalog's) + 0.02824 + 0.8795 (the tracker's) = 10.0774.
    assert_eq!(plan_cost(d.path(), home.path(), &[]), "10.08");
    let o = refresh(&env);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert_eq!(plan_cost(d.path(), home.path(), &[]), "9.93", "newer observations win again");

    // A source that fails: a warning naming the URL, the other cloud still recorded, exit 1.
    s.set(&azure_query("westus2"), Answer::Status(500));
    let o = refresh(&env);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "Warning: azure: no spot prices recorded: {}{} answered HTTP 500",
            s.url,
            azure_query("westus2")
        )),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("gcp: recorded "), "{}", o.stderr);
    assert_eq!(stored(d.path(), home.path()), 4 * first - 2, "GCP's points only");
    // Without the API key, GCP's prices come from the catalog (no failure, no request).
    s.set(&azure_query("westus2"), Answer::Ok { body: azure_page(&[], None), gzip: false });
    s.log();
    let o = refresh(&[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("gcp: no market to ask; its spot prices come from the catalog (the Cloud Billing Catalog API needs an API key: set SKYFORM_GCP_API_KEY)"),
        "{}",
        o.stderr
    );
    assert!(s.log().iter().all(|(path, _)| path.starts_with("/api/retail/prices")), "only Azure was asked");
    assert!(o.stderr.contains("azure: recorded 1 spot price observations"), "{}", o.stderr);
}

/// A price API that does not answer: after `--timeout` the cloud is reported and the
/// others are recorded; the command does not wait for it.
#[test]
fn a_price_api_that_hangs_is_given_up_after_the_timeout_and_the_others_are_recorded() {
    let s = Server::start();
    serve_azure(&s, 0.021, 0.052);
    serve_gcp(&s, 7_650_000, 740_000_000);
    s.set(&azure_query("westus2"), Answer::Hang(std::time::Duration::from_secs(20)));
    let home = tempfile::tempdir().unwrap();
    let d = job(&[("main.sky.hcl", JOB)]);
    let args = ["tracker", "refresh", "--azure-base-url", &s.url, "--gcp-base-url", &s.url, "--timeout", "2s"];
    let t0 = std::time::Instant::now();
    let o = sky(d.path(), home.path(), &args, &[("SKYFORM_GCP_API_KEY", "test-key")]);
    let took = t0.elapsed();
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("Warning: azure: no spot prices recorded: no answer within 2 s"), "{}", o.stderr);
    assert!(o.stderr.contains("gcp: recorded "), "{}", o.stderr);
    assert!(took < std::time::Duration::from_secs(15), "the refresh waited for the hanging API: {took:?}");
    assert_eq!(latest(d.path(), home.path(), "us-central1-b", "n2-standard-2"), 0.02354);
}
