//! The AWS spot market: `DescribeSpotPriceHistory` per region (the newest price per zone
//! and instance type) for `skyform tracker refresh`, each observed at the request's `now`.

use crate::errors::from_sdk;
use crate::AwsProvider;
use aws_sdk_ec2::types as ec2t;
use skyform_provider::{Location, Market, ProviderError, SpotPrice, SpotPricesRequest, SpotPricesResponse};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The market side of an [`AwsProvider`] (shares its clients).
pub struct AwsMarket {
    provider: Arc<AwsProvider>,
}

impl AwsMarket {
    pub fn new(provider: Arc<AwsProvider>) -> AwsMarket {
        AwsMarket { provider }
    }
}

impl Market for AwsMarket {
    fn cloud(&self) -> &str {
        crate::CLOUD
    }

    fn spot_prices(&self, req: &SpotPricesRequest) -> Result<SpotPricesResponse, ProviderError> {
        let regions: Vec<String> = if req.regions.is_empty() {
            let c = &self.provider.config().regions;
            if c.is_empty() {
                vec!["us-east-1".into()]
            } else {
                c.clone()
            }
        } else {
            req.regions.clone()
        };
        let mut prices = Vec::new();
        for region in regions {
            let ec2 = self.provider.clients(&region).ec2;
            let types = req.instance_types.clone();
            let now = req.now;
            let rows = self.provider.block(async move {
                let mut rows = Vec::new();
                let mut next: Option<String> = None;
                // The API takes at most a few hundred types per call; chunk.
                let chunks: Vec<Vec<String>> =
                    if types.is_empty() { vec![vec![]] } else { types.chunks(100).map(|c| c.to_vec()).collect() };
                for chunk in chunks {
                    loop {
                        let mut q = ec2
                            .describe_spot_price_history()
                            .product_descriptions("Linux/UNIX")
                            .start_time(aws_sdk_ec2::primitives::DateTime::from_secs(now as i64))
                            .set_next_token(next.take());
                        for t in &chunk {
                            q = q.instance_types(ec2t::InstanceType::from(t.as_str()));
                        }
                        let page = q.send().await.map_err(|e| from_sdk("DescribeSpotPriceHistory", None, e))?;
                        for p in page.spot_price_history() {
                            rows.push((
                                p.availability_zone().unwrap_or_default().to_string(),
                                p.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                                p.spot_price().and_then(|s| s.parse::<f64>().ok()),
                                p.timestamp().map(|t| t.secs().max(0) as u64).unwrap_or(now),
                            ));
                        }
                        match page.next_token() {
                            Some(t) if !t.is_empty() => next = Some(t.to_string()),
                            _ => break,
                        }
                    }
                }
                Ok::<_, ProviderError>(rows)
            })?;
            // The newest row per (zone, type).
            let mut newest: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
            for (zone, itype, price, at) in rows {
                let Some(price) = price else { continue };
                if zone.is_empty() || itype.is_empty() {
                    continue;
                }
                let e = newest.entry((zone, itype)).or_insert((at, price));
                if at > e.0 {
                    *e = (at, price);
                }
            }
            // Observed at `now`: the newest row is the price in effect then (its own
            // timestamp is when AWS last changed it, which may be days earlier).
            for ((zone, itype), (_, price)) in newest {
                prices.push(SpotPrice {
                    location: Location::new(crate::CLOUD, region.as_str(), zone),
                    instance_type: itype,
                    price,
                    at: req.now,
                });
            }
        }
        Ok(SpotPricesResponse { prices })
    }
}
