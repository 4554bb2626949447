//! The plugin side of the protocol: [`serve`] turns a [`Factory`] into a plugin program.
//!
//! A Rust plugin's whole `main` is `skyform_provider::plugin::serve(&MyFactory)`. Requests
//! are answered concurrently (one thread each; `configure` and the factory verbs in order),
//! so a long `transfer` does not hold up `task_status`. A panic in a call is answered as an
//! `other` error instead of killing the plugin.

use super::*;
use crate::{ErrorKind, Factory, Market, Provider, ProviderError};
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

/// Serves `factory` on stdin/stdout until stdin closes; returns the process exit code
/// (0, or 1 when stdout broke). Logs go to stderr.
pub fn serve(factory: &dyn Factory) -> i32 {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match serve_on(factory, stdin.lock(), stdout) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{EXECUTABLE_PREFIX}{}: {e}", factory.name());
            1
        }
    }
}

struct Configured {
    provider: Arc<dyn Provider>,
}

fn other(msg: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Other, None, msg)
}

fn params<T: serde::de::DeserializeOwned>(verb: &str, v: serde_json::Value) -> Result<T, ProviderError> {
    serde_json::from_value(v).map_err(|e| other(format!("bad params for `{verb}`: {e}")))
}

fn to_value<T: Serialize>(r: Result<T, ProviderError>) -> Result<serde_json::Value, ProviderError> {
    r.and_then(|v| serde_json::to_value(v).map_err(|e| other(format!("cannot encode the result: {e}"))))
}

fn provider_call(c: &Configured, verb: &str, p: serde_json::Value) -> Result<serde_json::Value, ProviderError> {
    let prov = &c.provider;
    match verb {
        verb::INFO => to_value(Ok(prov.info())),
        verb::READ => to_value(prov.read(&params(verb, p)?)),
        verb::ALLOCATE => to_value(prov.allocate(&params(verb, p)?)),
        verb::RUN_TASK => to_value(prov.run_task(&params(verb, p)?)),
        verb::TASK_STATUS => to_value(prov.task_status(&params(verb, p)?)),
        verb::TRANSFER => to_value(prov.transfer(&params(verb, p)?)),
        verb::RELEASE => to_value(prov.release(&params(verb, p)?)),
        verb::OBJECT_STORE => {
            let ObjectStoreParams { location } = params(verb, p)?;
            to_value(Ok(ObjectStoreResult { uri: prov.object_store(&location) }))
        }
        other_verb => Err(ProviderError::new(ErrorKind::Unsupported, None, format!("unknown verb `{other_verb}`"))),
    }
}

fn write_line<W: Write>(out: &Mutex<W>, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
    w.write_all(line.as_bytes())?;
    w.flush()
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Serves `factory` on any reader/writer (tests use pipes). Ends when `input` closes.
pub fn serve_on<R: BufRead, W: Write + Send>(factory: &dyn Factory, input: R, output: W) -> std::io::Result<()> {
    let out = Mutex::new(output);
    let hello = Handshake {
        protocol: PROTOCOL_VERSION,
        plugin: factory.name().to_string(),
        version: factory.version(),
        verbs: verb::ALL.iter().map(|v| v.to_string()).collect(),
    };
    {
        let mut line = serde_json::to_string(&hello).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(line.as_bytes())?;
        w.flush()?;
    }
    // `SKYFORM_PLUGIN_TRACE=1`: every request on stderr (the plugin log).
    let trace = std::env::var_os("SKYFORM_PLUGIN_TRACE").is_some_and(|v| v == "1");
    let mut configured: Option<Arc<Configured>> = None;
    // Markets are not `Send`: spot prices are answered in order, on this thread.
    let mut market: Option<Box<dyn Market>> = None;
    std::thread::scope(|s| -> std::io::Result<()> {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let req: Request = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    // No id to answer: say it on stderr and go on.
                    eprintln!("{EXECUTABLE_PREFIX}{}: ignoring a line that is not a request ({e})", factory.name());
                    continue;
                }
            };
            let id = req.id;
            if trace {
                eprintln!("{EXECUTABLE_PREFIX}{}: {line}", factory.name());
            }
            let answer = |res: Result<serde_json::Value, ProviderError>| match res {
                Ok(v) => Response { id, result: Some(v), error: None },
                Err(e) => Response { id, result: None, error: Some(e) },
            };
            match req.verb.as_str() {
                verb::CHECK => {
                    let res = params::<ConfigParams>(verb::CHECK, req.params).map(|p| {
                        let problem = factory
                            .check(&p.config)
                            .err()
                            .map(|e| Problem { attribute: e.attribute, message: e.message });
                        serde_json::json!(CheckResult { problem })
                    });
                    write_line(&out, &answer(res))?;
                }
                verb::OFFERINGS => {
                    let res = params::<ConfigParams>(verb::OFFERINGS, req.params).and_then(|p| {
                        factory
                            .offerings(&p.config)
                            .map(|offerings| serde_json::json!(OfferingsResult { offerings }))
                            .map_err(|e| other(e.message))
                    });
                    write_line(&out, &answer(res))?;
                }
                verb::CONFIGURE => {
                    let res = params::<ConfigureParams>(verb::CONFIGURE, req.params).and_then(|p| {
                        let ctx = crate::BuildContext::new(p.job_dir);
                        let provider = factory.provider(&p.config, &ctx)?;
                        market = factory.market(&p.config, &ctx)?;
                        let info = provider.info();
                        configured = Some(Arc::new(Configured { provider }));
                        let has_market = market.is_some();
                        Ok(serde_json::json!({ "info": info, "market": has_market }))
                    });
                    write_line(&out, &answer(res))?;
                }
                verb::SPOT_PRICES if configured.is_some() => {
                    let res = match &market {
                        Some(m) => params(verb::SPOT_PRICES, req.params).and_then(|r| to_value(m.spot_prices(&r))),
                        None => Err(ProviderError::new(ErrorKind::Unsupported, None, "this provider has no market")),
                    };
                    write_line(&out, &answer(res))?;
                }
                v => {
                    let Some(c) = configured.clone() else {
                        let e = other(format!("`{v}` before `configure`"));
                        write_line(&out, &answer(Err(e)))?;
                        continue;
                    };
                    let out = &out;
                    s.spawn(move || {
                        let verb = req.verb;
                        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            provider_call(&c, &verb, req.params)
                        }))
                        .unwrap_or_else(|p| Err(other(format!("the plugin panicked in `{verb}`: {}", panic_text(p)))));
                        let r = match res {
                            Ok(v) => Response { id, result: Some(v), error: None },
                            Err(e) => Response { id, result: None, error: Some(e) },
                        };
                        // A broken stdout means skyform is gone: nothing left to tell.
                        let _ = write_line(out, &r);
                    });
                }
            }
        }
        Ok(())
    })
}
