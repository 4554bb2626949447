//! A loopback proxy in front of moto that answers chosen EC2 calls with AWS error XML.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::{Arc, Mutex};

/// One injected fault: the EC2 `action` (e.g. `RunInstances`) in `zone` (any zone when
/// `None`), for requests that tag what they create with `tag` (any request when `None`),
/// answers `code` with `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub action: String,
    pub zone: Option<String>,
    pub code: String,
    pub status: u16,
    /// A (key, value) the request's `TagSpecification`s must carry.
    pub tag: Option<(String, String)>,
}

impl Fault {
    /// `RunInstances` in `zone` fails with `code` and AWS's status for it.
    pub fn run_instances(zone: &str, code: &str) -> Fault {
        let status = match code {
            "InsufficientInstanceCapacity" => 500,
            "RequestLimitExceeded" => 503,
            _ => 400,
        };
        Fault { action: "RunInstances".into(), zone: Some(zone.into()), code: code.into(), status, tag: None }
    }

    /// Only for requests whose tags include `key = value`: `tagged("skyform:task",
    /// "task.b")` fails task.b's launches in the zone while its neighbours' go through.
    pub fn tagged(mut self, key: &str, value: &str) -> Fault {
        self.tag = Some((key.into(), value.into()));
        self
    }

    fn hits(&self, action: &str, zone: &Option<String>, tags: &[(String, String)]) -> bool {
        self.action == action
            && (self.zone.is_none() || self.zone == *zone)
            && self.tag.as_ref().is_none_or(|t| tags.contains(t))
    }
}

/// What the proxy saw: (action, zone) of every EC2 call, in order.
pub type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// The proxy. It stops when dropped.
pub struct FaultProxy {
    pub endpoint: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    seen: Seen,
    _rt: tokio::runtime::Runtime,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (moto).
    pub fn start(upstream: &str) -> FaultProxy {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let seen: Seen = Arc::default();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (f2, s2) = (faults.clone(), seen.clone());
        rt.spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (client, upstream, faults, seen) = (client.clone(), upstream.clone(), f2.clone(), s2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (client, upstream, faults, seen) =
                            (client.clone(), upstream.clone(), faults.clone(), seen.clone());
                        async move { handle(req, &client, &upstream, &faults, &seen).await }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        FaultProxy { endpoint: format!("http://127.0.0.1:{port}"), faults, seen, _rt: rt }
    }

    /// Adds a fault.
    pub fn inject(&self, f: Fault) {
        self.faults.lock().expect("lock").push(f);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.faults.lock().expect("lock").clear();
    }

    /// (action, zone) of the EC2 calls seen so far.
    pub fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().expect("lock").clone()
    }
}

/// A form field of an EC2 query body.
fn field(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The (key, value) tags of an EC2 query body's `TagSpecification.N.Tag.M.Key`/`.Value`.
fn tags(form: &[(String, String)]) -> Vec<(String, String)> {
    form.iter()
        .filter_map(|(k, key)| {
            let at = k.strip_prefix("TagSpecification.")?.strip_suffix(".Key")?;
            Some((key.clone(), field(form, &format!("TagSpecification.{at}.Value")).unwrap_or_default()))
        })
        .collect()
}

async fn handle(
    req: Request<Incoming>,
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: &str,
    faults: &Mutex<Vec<Fault>>,
    seen: &Seen,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some(action) = field(&form, "Action") {
        let zone = field(&form, "Placement.AvailabilityZone");
        seen.lock().expect("lock").push((action.clone(), zone.clone()));
        let tags = tags(&form);
        let hit = faults.lock().expect("lock").iter().find(|f| f.hits(&action, &zone, &tags)).cloned();
        if let Some(f) = hit {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>injected by the test proxy in {}</Message></Error></Errors><RequestID>skyform-fault</RequestID></Response>",
                f.code,
                zone.as_deref().unwrap_or("any zone")
            );
            let r = Response::builder()
                .status(f.status)
                .header("content-type", "text/xml;charset=UTF-8")
                .body(Full::new(Bytes::from(xml)))
                .expect("response");
            return Ok(r);
        }
    }
    let uri = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut fwd = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        if k != hyper::header::HOST {
            fwd = fwd.header(k, v);
        }
    }
    let fwd = fwd.body(Full::new(body)).expect("request");
    match client.request(fwd).await {
        Ok(resp) => {
            let (p, b) = resp.into_parts();
            let b = b.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut r = Response::builder().status(p.status);
            for (k, v) in &p.headers {
                if k != hyper::header::TRANSFER_ENCODING {
                    r = r.header(k, v);
                }
            }
            Ok(r.body(Full::new(b)).expect("response"))
        }
        Err(e) => Ok(Response::builder().status(502).body(Full::new(Bytes::from(e.to_string()))).expect("response")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(body.as_bytes()).into_owned().collect()
    }

    #[test]
    fn a_tagged_fault_hits_only_the_launches_that_carry_its_tag() {
        // As the SDK encodes RunInstances: the tag key's `:` percent-encoded.
        let launch = |task: &str| {
            form(&format!(
                "Action=RunInstances&Placement.AvailabilityZone=us-east-1a&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=skyform%3Atask&TagSpecification.1.Tag.1.Value={task}&TagSpecification.1.Tag.2.Key=Name&TagSpecification.1.Tag.2.Value=skyform%20{task}"
            ))
        };
        let b = launch("task.b");
        assert_eq!(field(&b, "Placement.AvailabilityZone").as_deref(), Some("us-east-1a"));
        assert_eq!(
            tags(&b),
            [("skyform:task".to_string(), "task.b".to_string()), ("Name".to_string(), "skyform task.b".to_string())]
        );
        let f = Fault::run_instances("us-east-1a", "InsufficientInstanceCapacity").tagged("skyform:task", "task.b");
        let zone = Some("us-east-1a".to_string());
        assert!(f.hits("RunInstances", &zone, &tags(&b)));
        assert!(!f.hits("RunInstances", &zone, &tags(&launch("task.a"))));
        assert!(!f.hits("RunInstances", &Some("us-east-1b".into()), &tags(&b)));
        let any = Fault::run_instances("us-east-1a", "InsufficientInstanceCapacity");
        assert!(any.hits("RunInstances", &zone, &tags(&launch("task.a"))));
    }
}
