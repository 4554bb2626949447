//! The sanity checks of `catalog update`: bad data never poisons plans.
//!
//! - [`region_zone`]: a row's region and zone must look like the cloud's (AWS
//!   `us-east-1` / `us-east-1a` or a zone ID `use1-az2`; GCP `us-central1` /
//!   `us-central1-a`; Azure `eastus`), and an AWS/GCP zone must belong to its region.
//!   These are name checks, not a list, so a region a cloud opens tomorrow passes.
//! - [`Offerings`]: an offering's on-demand price must be above 0 and at most
//!   [`ABSURD_PRICE`] $/h (spot likewise when present), and must not have moved more than a
//!   factor (default [`DEFAULT_MAX_CHANGE`]) from the previous snapshot's price of the same
//!   offering.
//!
//! Pure functions; the caller reports what fails as `URL:LINE: why`.

use crate::catalog::import::Candidate;
use crate::catalog::Snapshot;
use std::collections::HashMap;

/// The highest believable $/h for one instance (the largest GPU VMs list near $300/h).
pub const ABSURD_PRICE: f64 = 2_000.0;
/// How far a price may move between two snapshots (a factor either way).
pub const DEFAULT_MAX_CHANGE: f64 = 10.0;

fn lower_alnum(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// `us-east-1`, `us-gov-west-1`, `ap-southeast-5`: a two-letter area, words, a number.
fn aws_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts.last().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
}

/// `us-central1`, `europe-west10`: a word, then a word ending in a number.
fn gcp_region(r: &str) -> bool {
    let Some((a, b)) = r.split_once('-') else { return false };
    let digits = b.trim_start_matches(|c: char| c.is_ascii_lowercase());
    !a.is_empty()
        && a.chars().all(|c| c.is_ascii_lowercase())
        && digits.len() < b.len()
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// The region/zone check of a row (see the module doc).
pub fn region_zone(cloud: &str, region: &str, zone: &str) -> Result<(), String> {
    let ok = match cloud {
        "aws" => {
            let zone_name = zone.strip_prefix(region).is_some_and(|rest| {
                let rest = rest.trim_start_matches('-');
                lower_alnum(&rest.replace('-', ""))
            });
            // A zone ID: `use1-az2`, `usw2-lax1-az1`.
            let zone_id = zone.rsplit_once("-az").is_some_and(|(head, n)| {
                !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && lower_alnum(&head.replace('-', ""))
            });
            if !aws_region(region) {
                return Err(format!("unknown AWS region `{region}`"));
            }
            zone_name || zone_id
        }
        "gcp" => {
            if !gcp_region(region) {
                return Err(format!("unknown GCP region `{region}`"));
            }
            zone.strip_prefix(region).and_then(|r| r.strip_prefix('-')).is_some_and(lower_alnum)
        }
        "azure" => {
            if !lower_alnum(region) {
                return Err(format!("unknown Azure region `{region}`"));
            }
            zone == region
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("zone `{zone}` is not in region `{region}`"))
    }
}

/// An offering: (type, accelerator, count bits, region, zone).
type Key = (String, Option<String>, u64, String, String);

/// The offering checks against the previous snapshot.
pub struct Offerings {
    /// (on-demand, spot) of the previous snapshot's offerings.
    previous: HashMap<Key, (f64, Option<f64>)>,
    pub max_change: f64,
}

impl Offerings {
    /// Checks against `previous` (the cloud's offerings before the update; None: no
    /// previous data, so no price-move check).
    pub fn new(cloud: &str, previous: Option<&Snapshot>, max_change: f64) -> Offerings {
        let mut m = HashMap::new();
        if let Some(p) = previous {
            for s in p.shapes.iter().filter(|s| s.cloud == cloud) {
                for z in &p.zones[s.start as usize..s.end as usize] {
                    let key = (
                        s.instance_type.clone(),
                        s.accelerator.clone(),
                        s.accelerator_count.to_bits(),
                        p.names[z.region as usize].clone(),
                        p.names[z.zone as usize].clone(),
                    );
                    m.insert(key, (z.price, z.spot_price));
                }
            }
        }
        Offerings { previous: m, max_change }
    }

    /// Why the offering is refused, if it is.
    pub fn check(&self, c: &Candidate) -> Option<String> {
        let what = format!("{} in {}", c.instance_type, c.zone);
        let believable = |p: f64| p > 0.0 && p <= ABSURD_PRICE;
        if !believable(c.price) {
            return Some(format!("{what}: on-demand price ${} is not between $0 and ${ABSURD_PRICE}/h", c.price));
        }
        if let Some(sp) = c.spot_price.filter(|&p| !believable(p)) {
            return Some(format!("{what}: spot price ${sp} is not between $0 and ${ABSURD_PRICE}/h"));
        }
        let key = (
            c.instance_type.to_string(),
            c.accelerator.map(str::to_string),
            c.accelerator_count.to_bits(),
            c.region.to_string(),
            c.zone.to_string(),
        );
        let (old, old_spot) = self.previous.get(&key)?;
        let moved = |old: f64, new: f64| old > 0.0 && (new / old > self.max_change || old / new > self.max_change);
        if moved(*old, c.price) {
            return Some(format!(
                "{what}: on-demand price moved from ${old} to ${} (more than {}x since the previous snapshot)",
                c.price, self.max_change
            ));
        }
        if let (Some(old), Some(new)) = (old_spot, c.spot_price) {
            if moved(*old, new) {
                return Some(format!(
                    "{what}: spot price moved from ${old} to ${new} (more than {}x since the previous snapshot)",
                    self.max_change
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_and_zone_names() {
        assert!(region_zone("aws", "us-east-1", "us-east-1a").is_ok());
        assert!(region_zone("aws", "us-east-1", "use1-az2").is_ok());
        assert!(region_zone("aws", "us-gov-west-1", "us-gov-west-1b").is_ok());
        assert!(region_zone("aws", "us-east-1", "us-east-1-bos-1a").is_ok());
        assert!(region_zone("aws", "us-east-1", "us-west-2a").is_err());
        assert!(region_zone("aws", "moon-base", "moon-basea").unwrap_err().contains("unknown AWS region"));
        assert!(region_zone("aws", "moon-base-1", "moon-base-1a").is_err());
        assert!(region_zone("gcp", "us-central1", "us-central1-a").is_ok());
        assert!(region_zone("gcp", "europe-west10", "europe-west10-b").is_ok());
        assert!(region_zone("gcp", "us-central1", "us-east1-b").is_err());
        assert!(region_zone("gcp", "uscentral", "uscentral-a").is_err());
        assert!(region_zone("azure", "eastus", "eastus").is_ok());
        assert!(region_zone("azure", "East US", "East US").is_err());
    }

    #[test]
    fn prices_must_be_believable_and_not_jump() {
        let mut prev = crate::catalog::Catalog::new(Snapshot::default(), String::new());
        let mut o = skyform_provider::OfferingSpec::new("us-east-1", "us-east-1a", "m5.large", 2.0, 8.0, 0.1);
        o.spot_price = Some(0.03);
        prev.add_offerings("aws", &[o]);
        let chk = Offerings::new("aws", Some(&prev.snap), 10.0);
        let cand = |price: f64, spot: Option<f64>| Candidate {
            instance_type: "m5.large",
            accelerator: None,
            accelerator_count: 0.0,
            region: "us-east-1",
            zone: "us-east-1a",
            price,
            spot_price: spot,
            line: 2,
        };
        assert_eq!(chk.check(&cand(0.2, Some(0.05))), None);
        assert!(chk.check(&cand(0.0, None)).unwrap().contains("on-demand price $0 is not between"));
        assert!(chk.check(&cand(-1.0, None)).is_some());
        assert!(chk.check(&cand(5000.0, None)).is_some());
        assert!(chk.check(&cand(0.1, Some(0.0))).unwrap().contains("spot price"));
        assert!(chk.check(&cand(1.5, None)).unwrap().contains("moved from $0.1 to $1.5"));
        assert!(chk.check(&cand(0.1, Some(0.001))).unwrap().contains("spot price moved"));
    }
}
