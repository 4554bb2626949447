//! A tokio runtime of the provider's own, so the blocking [`skyform_provider::Provider`]
//! calls can drive the async googleapis clients from any thread (including the engine's
//! blocking pool, inside its async context).

use skyform_provider::{ErrorKind, ProviderError};
use std::future::Future;

/// Owns the runtime; dropping it shuts the runtime down in the background.
pub struct Blocking {
    rt: Option<tokio::runtime::Runtime>,
}

impl Blocking {
    /// A runtime with two worker threads named `name`.
    pub fn new(name: &str) -> Result<Blocking, ProviderError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| ProviderError::new(ErrorKind::Other, None, format!("{name}: runtime: {e}")))?;
        Ok(Blocking { rt: Some(rt) })
    }

    /// Runs a future on the runtime and waits for it.
    pub fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.as_ref().expect("runtime").spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the provider's runtime is alive")
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
