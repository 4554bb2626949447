//! A small blocking HTTPS client for the forges' REST APIs and `catalog update`'s downloads:
//! hyper-util's client with rustls (native roots) on a current-thread tokio runtime, one call
//! at a time, each within [`TIMEOUT`] ([`Http::get_stream`]: each chunk of the body within
//! it, the body handed on as it arrives). Plain `http://` is allowed for a loopback fake or a
//! proxy.

use super::ForgeError;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::sync::Arc;
use std::time::Duration;

/// How long one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: status, headers (lower-case names) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The client.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    /// A client for `api` (its scheme decides whether the system's root certificates are
    /// needed).
    pub fn new(api: &str) -> Result<Http, ForgeError> {
        let transport = |detail: String| ForgeError::Transport { url: api.to_string(), detail };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if api.starts_with("https://") {
            builder
                .with_provider_and_native_roots(provider)
                .map_err(|e| transport(format!("no root certificates to check the server with: {e}")))?
        } else {
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| transport(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            builder.with_tls_config(tls)
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| transport(e.to_string()))?;
        Ok(Http { rt, client })
    }

    /// Sends one request with `headers` and an optional JSON body.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        json: Option<&serde_json::Value>,
    ) -> Result<Response, ForgeError> {
        let transport = |detail: String| ForgeError::Transport { url: url.to_string(), detail };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("user-agent", concat!("skyform/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let body = match json {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| transport(e.to_string()))?;
        self.rt.block_on(async {
            let call = async {
                let resp = self.client.request(req).await.map_err(|e| transport(format!("{e:#}")))?;
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                let bytes = resp.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
                Ok(Response { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() })
            };
            tokio::time::timeout(TIMEOUT, call)
                .await
                .map_err(|_| transport(format!("no answer within {} s", TIMEOUT.as_secs())))?
        })
    }
}

impl Http {
    /// GET `url` with `headers`; a 2xx body goes to `sink` chunk by chunk as it arrives (never
    /// held whole), after `on_head` has seen the status and headers. Another status's body
    /// (its first 4 KiB) is returned in the answer. Each chunk must arrive within [`TIMEOUT`];
    /// a body shorter than its `Content-Length` is a transport error.
    pub fn get_stream(
        &self,
        url: &str,
        headers: &[(&str, String)],
        on_head: &mut dyn FnMut(&Response),
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Response, ForgeError> {
        let transport = |detail: String| ForgeError::Transport { url: url.to_string(), detail };
        let mut req = hyper::Request::builder()
            .method("GET")
            .uri(url)
            .header("user-agent", concat!("skyform/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Full::new(Bytes::new())).map_err(|e| transport(e.to_string()))?;
        let late = || transport(format!("no answer within {} s", TIMEOUT.as_secs()));
        self.rt.block_on(async {
            let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| late())?
                .map_err(|e| transport(format!("{e:#}")))?;
            let mut head = Response {
                status: resp.status().as_u16(),
                headers: resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body: String::new(),
            };
            on_head(&head);
            let expected: Option<u64> = head.header("content-length").and_then(|v| v.trim().parse().ok());
            let mut body = resp.into_body();
            let mut got: u64 = 0;
            let mut excerpt = Vec::new();
            while let Some(frame) = tokio::time::timeout(TIMEOUT, body.frame()).await.map_err(|_| late())? {
                let frame = frame.map_err(|e| transport(format!("the body broke off after {got} bytes: {e}")))?;
                let Ok(data) = frame.into_data() else { continue };
                got += data.len() as u64;
                if head.ok() {
                    sink(&data).map_err(|e| transport(format!("writing the body: {e}")))?;
                } else if excerpt.len() < 4096 {
                    excerpt.extend_from_slice(&data[..data.len().min(4096 - excerpt.len())]);
                }
            }
            if let Some(n) = expected.filter(|&n| n != got) {
                return Err(transport(format!("the body broke off: {got} of {n} bytes")));
            }
            head.body = String::from_utf8_lossy(&excerpt).into_owned();
            Ok(head)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tls_client_builds_with_the_system_roots() {
        // The HTTPS path needs the machine's CA certificates and rustls' aws-lc provider.
        assert!(super::Http::new("https://api.github.com").is_ok());
        assert!(super::Http::new("http://127.0.0.1:9").is_ok());
    }

    #[test]
    fn a_closed_port_is_a_transport_error() {
        let h = super::Http::new("http://127.0.0.1:9").unwrap();
        let e = h.send("GET", "http://127.0.0.1:9/x", &[], None).unwrap_err();
        assert!(matches!(e, super::ForgeError::Transport { .. }), "{e:?}");
        assert!(e.to_string().starts_with("cannot reach http://127.0.0.1:9/x: "), "{e}");
    }
}
