//! What every part of one apply shares ([`Shared`]): the state (committed after every
//! change), the providers and how they are called — on tokio's blocking pool, with the
//! per-call timeout, `Throttled`/`Transient` retried with backoff (a `Throttled` error
//! waits at least the `Retry-After` the cloud sent). A call that times out
//! may still finish in its thread; for `allocate` what it allocated is then released, so a
//! hanging region never leaves an allocation behind.

use super::events::{Event, Hooks};
use super::{ApplyError, Options};
use crate::catalog::egress::EgressModel;
use crate::clock::Clock;
use crate::config::{JobSpec, TaskAddr};
use crate::providers::Providers;
use crate::state::{SledStore, State};
use crate::tracker::Tracker;
use skyform_provider::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tries of one call: the first, then three retries of a transient or throttled error.
const TRIES: u32 = 4;

/// The longest wait a cloud's Retry-After gets before a retry (a larger one is taken as
/// this: an apply never sleeps for an hour on one call).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub(crate) struct Shared {
    pub state: tokio::sync::Mutex<State>,
    pub store: Arc<SledStore>,
    pub tracker: Option<Arc<Tracker>>,
    pub providers: Providers,
    pub hooks: Arc<dyn Hooks>,
    pub egress: EgressModel,
    pub opts: Options,
    pub spec: JobSpec,
    pub clock: Arc<dyn Clock>,
    pub cancel: Arc<AtomicBool>,
    pub hard_cancel: Arc<AtomicBool>,
    /// Calls that timed out and clean up when they finally return (awaited at the end).
    pub stragglers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The job as resolved for planning: what failover re-solves (None: it walks the
    /// ranked alternatives only).
    pub resolved: Option<Arc<crate::resolve::ResolvedJob>>,
    /// Where each task that runs in this apply is meant to go (the plan's placement, or a
    /// re-plan's).
    pub planned: std::sync::Mutex<BTreeMap<TaskAddr, crate::plan::Planned>>,
    /// Tasks of this apply that have not started (a re-plan may move them).
    pub unstarted: std::sync::Mutex<BTreeSet<TaskAddr>>,
    /// Scopes that failed in this apply (also without a tracker).
    pub blocks: std::sync::Mutex<Vec<(Scope, Location)>>,
    /// One re-plan at a time.
    pub replanning: tokio::sync::Mutex<()>,
    /// When this apply started (a re-plan's deadline is what is left of the job's).
    pub started: std::time::Instant,
}

impl Shared {
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    pub fn event(&self, e: Event) {
        self.hooks.event(&e);
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Changes the tasks `keys` (and the outputs when `outputs`) in place and commits just
    /// those, durably, before returning.
    pub async fn commit_keys(
        &self,
        keys: &[TaskAddr],
        outputs: bool,
        f: impl FnOnce(&mut State),
    ) -> Result<(), ApplyError> {
        {
            let mut st = self.state.lock().await;
            f(&mut st);
            let serial = tokio::task::block_in_place(|| self.store.write_changes(&st, keys, outputs))?;
            st.serial = serial;
        }
        // Durable before returning; concurrent commits share the flush.
        tokio::task::block_in_place(|| self.store.sync())?;
        Ok(())
    }

    /// Changes one task in place and commits it.
    pub async fn commit(&self, addr: &TaskAddr, f: impl FnOnce(&mut State)) -> Result<(), ApplyError> {
        self.commit_keys(std::slice::from_ref(addr), false, f).await
    }

    pub fn provider(&self, cloud: &str) -> Result<Arc<dyn Provider>, ProviderError> {
        self.providers.get(cloud).cloned().ok_or_else(|| {
            ProviderError::new(ErrorKind::Unsupported, None, format!("no provider for cloud `{cloud}` in this build"))
        })
    }

    /// A provider call with the timeout and retries.
    pub async fn call<T: Send + 'static>(
        &self,
        cloud: &str,
        f: impl Fn(&dyn Provider) -> Result<T, ProviderError> + Send + Sync + 'static,
    ) -> Result<T, ProviderError> {
        self.call_with(cloud, f, None::<fn(&dyn Provider, T)>).await
    }

    /// `allocate`, whose late success after a timeout is released.
    pub async fn allocate(&self, cloud: &str, req: AllocateRequest) -> Result<AllocateResponse, ProviderError> {
        let location = req.location.clone();
        let late = |p: &dyn Provider, a: AllocateResponse| {
            let _ = p.release(&ReleaseRequest::new(a.provider_id));
        };
        self.call_with(cloud, move |p| p.allocate(&req), Some(late)).await.map_err(|mut e| {
            if e.location.is_none() {
                e.location = Some(Box::new(location));
            }
            e
        })
    }

    /// The one call helper: runs `f` on the blocking pool with the per-call timeout and
    /// retries transient and throttled errors with backoff (`max(backoff, Retry-After)`
    /// for a throttled one). When a call times out and
    /// `late` is given, the call is awaited in the background and `late` gets its result.
    async fn call_with<T: Send + 'static, L>(
        &self,
        cloud: &str,
        f: impl Fn(&dyn Provider) -> Result<T, ProviderError> + Send + Sync + 'static,
        late: Option<L>,
    ) -> Result<T, ProviderError>
    where
        L: Fn(&dyn Provider, T) + Clone + Send + Sync + 'static,
    {
        let p = self.provider(cloud)?;
        let f = Arc::new(f);
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=TRIES {
            let (p2, f2) = (p.clone(), f.clone());
            let mut handle = tokio::task::spawn_blocking(move || f2(p2.as_ref()));
            let r = match tokio::time::timeout(self.opts.call_timeout, &mut handle).await {
                Ok(joined) => joined.unwrap_or_else(|e| {
                    Err(ProviderError::new(ErrorKind::Other, None, format!("the provider call panicked: {e}")))
                }),
                Err(_) => {
                    if let Some(late) = late.clone() {
                        let p3 = p.clone();
                        let cleanup = tokio::spawn(async move {
                            if let Ok(Ok(v)) = handle.await {
                                let _ = tokio::task::spawn_blocking(move || late(p3.as_ref(), v)).await;
                            }
                        });
                        self.stragglers.lock().expect("lock").push(cleanup);
                    }
                    Err(ProviderError::new(
                        ErrorKind::Transient,
                        None,
                        format!("the call timed out after {:?}", self.opts.call_timeout),
                    ))
                }
            };
            match r {
                Err(e) if matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) && attempt < TRIES => {
                    // A throttled call waits as long as the cloud asked (its Retry-After), if
                    // that is longer than the backoff.
                    let asked = match e.kind {
                        ErrorKind::Throttled => e.retry_after_secs.map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER)),
                        _ => None,
                    };
                    tokio::time::sleep(asked.map_or(delay, |a| a.max(delay))).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the last try returns")
    }

    /// Awaits the clean-ups of calls that timed out.
    pub async fn settle_stragglers(&self) {
        let late: Vec<tokio::task::JoinHandle<()>> = std::mem::take(&mut *self.stragglers.lock().expect("lock"));
        for h in late {
            let _ = h.await;
        }
    }
}
