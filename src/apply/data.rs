//! Data movement: staging a task's inputs into its allocation, collecting its outputs into
//! the object store of its location ([`Provider::object_store`], e.g. S3 of its AWS
//! region; the engine's local store otherwise) and to a pinned `uri`, and resolving the
//! job's outputs to where the data is.
//!
//! A transfer goes to the provider that speaks both URI schemes, or in two hops through a
//! staging directory on this host (S3 → a local sandbox, a local sandbox → GCS). Every
//! input's egress is priced from where its data is to where the task runs.

use super::call::Shared;
use super::events::Event;
use crate::catalog::egress::Place;
use crate::config::{InputSource, Task, TaskAddr};
use crate::state::{DataObject, PlacementRecord};
use skyform_provider::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub(crate) fn loc(p: &PlacementRecord) -> Location {
    Location::new(p.cloud.as_str(), p.region.as_str(), p.zone.as_str())
}

/// Where outputs produced at `location` are kept: the provider's object store for that
/// location (e.g. `s3://BUCKET` of an AWS region), else the engine's local store.
fn store_prefix(provider: Option<&Arc<dyn Provider>>, location: &Location, lineage: &str) -> String {
    let short = &lineage[..lineage.len().min(8)];
    match provider.and_then(|p| p.object_store(location)) {
        Some(store) => format!("{}/skyform-{short}", store.trim_end_matches('/')),
        None => format!("local://skyform-{short}"),
    }
}

/// The scheme of a URI (`file` for a plain path).
fn scheme(u: &str) -> &str {
    u.split_once("://").map(|x| x.0).unwrap_or("file")
}

/// The URI of a plain path or URI, relative paths against the job directory.
pub(crate) fn resolve_uri(job_dir: &Path, u: &str) -> String {
    if u.contains("://") {
        u.to_string()
    } else {
        let p = job_dir.join(u);
        let abs = std::path::absolute(&p).unwrap_or(p);
        format!("file://{}", abs.display())
    }
}

impl Shared {
    /// Where `task`'s checkpoint named `path` is kept for a run at `cand`: under the
    /// object store of its location (so a run again there, after a preemption or a
    /// failure, restores it).
    pub async fn checkpoint_uri(&self, task: &crate::config::TaskAddr, path: &str, cand: &PlacementRecord) -> String {
        let lineage = self.state.lock().await.lineage.clone();
        let prefix = store_prefix(self.providers.get(&cand.cloud), &loc(cand), &lineage);
        format!("{prefix}/checkpoints/{task}/{path}")
    }

    /// Makes `task`'s checkpoint available to a run at `cand`: when the state says it was
    /// last synced to another store, it is copied to `cand`'s (the egress reported as a
    /// transfer). Returns the URI the run restores from and syncs to (None: the task has
    /// no checkpoint). The state is not changed: the caller records the new place once
    /// the run (or the migration step) is committed, so a kill before that finds the
    /// checkpoint where the state says it is.
    pub async fn move_checkpoint(&self, task: &Task, cand: &PlacementRecord) -> Result<Option<String>, ProviderError> {
        let Some(c) = &task.checkpoint else { return Ok(None) };
        let uri = self.checkpoint_uri(&task.address, &c.path, cand).await;
        let last = self.state.lock().await.tasks.get(&task.address).and_then(|t| t.checkpoint.clone());
        if let Some(last) = last.filter(|l| *l != uri) {
            let r = self.transfer(&cand.cloud, &last, &uri).await?;
            let gb = r.bytes as f64 / 1e9;
            let from = Place::of_uri(&last, None);
            let cost = self.egress.egress(&from, &Place::from(&loc(cand)), gb).0;
            self.event(Event::Transferred {
                task: task.address.clone(),
                what: format!("checkpoint {last} → {uri}"),
                bytes: r.bytes,
                cost,
            });
        }
        Ok(Some(uri))
    }

    /// Copies the tree at `from` to `to`. A `sandbox://` URI belongs to `cloud`'s provider;
    /// other schemes to any provider that speaks them (its `capabilities.schemes`). When no
    /// one provider reaches both ends, the data goes through a staging directory on this
    /// host in two hops.
    pub async fn transfer(&self, cloud: &str, from: &str, to: &str) -> Result<TransferResponse, ProviderError> {
        let speaks = |c: &str, u: &str| -> bool {
            let s = scheme(u);
            if s == "sandbox" {
                return c == cloud;
            }
            self.providers.get(c).is_some_and(|p| p.info().capabilities.schemes.iter().any(|x| x == s))
        };
        let order: Vec<String> = std::iter::once(cloud.to_string())
            .chain(self.providers.keys().filter(|k| k.as_str() != cloud).cloned())
            .collect();
        let one = |f: String, t: String, c: String| async move {
            self.call(&c, move |p| p.transfer(&TransferRequest::new(f.clone(), t.clone()))).await
        };
        if let Some(c) = order.iter().find(|c| speaks(c, from) && speaks(c, to)) {
            return one(from.to_string(), to.to_string(), c.clone()).await;
        }
        let a = order.iter().find(|c| speaks(c, from) && speaks(c, "file://"));
        let b = order.iter().find(|c| speaks(c, "file://") && speaks(c, to));
        let (Some(a), Some(b)) = (a, b) else {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                None,
                format!("no provider of this job reaches both `{from}` and `{to}`"),
            ));
        };
        let dir = std::env::temp_dir().join(format!("skyform-staging-{}", uuid::Uuid::new_v4()));
        let stage = format!("file://{}", dir.display());
        let first = one(from.to_string(), stage.clone(), a.clone()).await;
        let second = match first {
            Ok(_) => one(stage, to.to_string(), b.clone()).await,
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&dir);
        second
    }

    /// Fills the allocation's input directories, reporting bytes and egress cost.
    pub async fn stage_inputs(
        &self,
        task: &Task,
        provider_id: &str,
        cand: &PlacementRecord,
    ) -> Result<(), ProviderError> {
        let here = Place::from(&loc(cand));
        for (name, src) in &task.inputs {
            let (from, place, gb) = match src {
                InputSource::Storage { uri, size_gb, region, .. } => {
                    (resolve_uri(&self.opts.job_dir, uri), Place::of_uri(uri, region.as_deref()), *size_gb)
                }
                InputSource::TaskOutput { task: up, output, size_gb } => {
                    let d = {
                        let st = self.state.lock().await;
                        st.tasks.get(up).and_then(|t| t.data.iter().find(|d| &d.name == output)).cloned()
                    };
                    let Some(d) = d else {
                        return Err(ProviderError::new(
                            ErrorKind::Other,
                            None,
                            format!("input {name}: {up} has no output {output} in the state"),
                        ));
                    };
                    let parts = d.location.split('/').collect::<Vec<_>>();
                    let p = Place {
                        cloud: parts.first().unwrap_or(&"local").to_string(),
                        region: parts.get(1).map(|s| s.to_string()),
                        zone: parts.get(2).map(|s| s.to_string()),
                    };
                    (d.uri, p, *size_gb)
                }
            };
            let to = format!("sandbox://{provider_id}/inputs/{name}");
            let r = self.transfer(&cand.cloud, &from, &to).await?;
            let cost = self.egress.egress(&place, &here, gb).0;
            self.event(Event::Transferred {
                task: task.address.clone(),
                what: format!("input {name} ← {from}"),
                bytes: r.bytes,
                cost,
            });
        }
        Ok(())
    }

    /// Copies a finished run's outputs into the object store of its location (and to a
    /// pinned `uri`); returns the data objects to record.
    pub async fn gather_outputs(
        &self,
        addr: &TaskAddr,
        provider_id: &str,
        placement: &PlacementRecord,
    ) -> Result<Vec<DataObject>, ProviderError> {
        let Some(task) = self.spec.tasks.get(addr) else { return Ok(vec![]) };
        let lineage = self.state.lock().await.lineage.clone();
        let mut objects = Vec::new();
        for (name, o) in &task.outputs {
            let from = format!("sandbox://{provider_id}/outputs/{name}");
            let store = store_prefix(self.providers.get(&placement.cloud), &loc(placement), &lineage);
            let to = format!("{store}/{}/{}", addr.as_str().replace('.', "/"), name);
            let r = self.transfer(&placement.cloud, &from, &to).await?;
            if let Some(pinned) = &o.uri {
                let dst = resolve_uri(&self.opts.job_dir, pinned);
                let r2 = self.transfer(&placement.cloud, &from, &dst).await?;
                self.event(Event::Transferred {
                    task: addr.clone(),
                    what: format!("output {name} → {pinned}"),
                    bytes: r2.bytes,
                    cost: 0.0,
                });
            }
            objects.push(DataObject {
                name: name.clone(),
                uri: to,
                size_gb: r.bytes as f64 / 1e9,
                checksum: r.checksum,
                location: format!("{}/{}/{}", placement.cloud, placement.region, placement.zone),
            });
        }
        Ok(objects)
    }

    /// Keeps a run's log when it is a file on this host (the local provider's sandbox, which
    /// its release deletes): copied to `log_dir/TASK/run-N.log`, 0600. Returns where.
    pub fn keep_log(&self, addr: &TaskAddr, run: u32, log: &str) -> Option<String> {
        let dir = self.opts.log_dir.as_ref()?;
        let src = std::path::Path::new(log);
        if log.contains("://") || !src.is_file() {
            return None;
        }
        let to_dir = dir.join(addr.as_str());
        std::fs::create_dir_all(&to_dir).ok()?;
        crate::db::restrict_dir(dir);
        crate::db::restrict_dir(&to_dir);
        let to = to_dir.join(format!("run-{run}.log"));
        crate::db::write_private(&to, &std::fs::read(src).ok()?).ok()?;
        Some(to.display().to_string())
    }

    /// Removes the kept logs of a destroyed task.
    pub fn forget_logs(&self, addr: &TaskAddr) {
        if let Some(dir) = &self.opts.log_dir {
            let _ = std::fs::remove_dir_all(dir.join(addr.as_str()));
        }
    }

    /// The root outputs, with task-output references resolved to where the data is. A
    /// sensitive output is recorded as such, without its value (`skyform output` reads it
    /// from the configuration).
    pub async fn resolve_outputs(&self) -> BTreeMap<String, serde_json::Value> {
        let st = self.state.lock().await;
        let secrets = self.spec.sensitive_values();
        self.spec
            .outputs
            .iter()
            .map(|(k, o)| {
                if o.sensitive {
                    return (k.clone(), serde_json::Value::String(crate::config::REDACTED.into()));
                }
                let mut v = o.value.clone();
                crate::config::redact_json(&mut v, &secrets);
                if let Some(r) = v.get("task_output").and_then(|x| x.as_str()).map(str::to_string) {
                    if let Some((task, name)) = r.split_once(".outputs.") {
                        if let Some(d) = st
                            .tasks
                            .get(&TaskAddr(task.to_string()))
                            .and_then(|t| t.data.iter().find(|d| d.name == name))
                        {
                            v["uri"] = serde_json::json!(d.uri);
                        }
                    }
                }
                (k.clone(), v)
            })
            .collect()
    }
}
