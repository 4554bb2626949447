//! A loopback proxy that forwards every request to fake-gcs-server with `Host` set to the
//! proxy's own `host:port` (bodies are streamed both ways).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves `listener`, forwarding to `127.0.0.1:upstream` with `Host: host`.
pub(super) async fn serve(listener: tokio::net::TcpListener, upstream: u16, host: String) {
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (client, host) = (client.clone(), host.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (client, host) = (client.clone(), host.clone());
                async move { Ok::<_, std::convert::Infallible>(forward(req, &client, upstream, &host).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn forward(
    req: Request<Incoming>,
    client: &Client<HttpConnector, Incoming>,
    upstream: u16,
    host: &str,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    parts.uri = match format!("http://127.0.0.1:{upstream}{pq}").parse() {
        Ok(u) => u,
        Err(e) => return text(400, format!("bad uri: {e}")),
    };
    parts.headers.insert(hyper::header::HOST, host.parse().expect("host header"));
    match client.request(Request::from_parts(parts, body)).await {
        Ok(r) => r.map(|b| b.boxed()),
        Err(e) => text(502, format!("fake-gcs-server: {e}")),
    }
}

fn text(status: u16, msg: String) -> Response<Body> {
    let body = Full::new(Bytes::from(msg)).map_err(|never| match never {}).boxed();
    Response::builder().status(status).body(body).expect("response")
}
