//! `skyform comment github|gitlab` against a loopback fake of the REST endpoints it uses
//! (list comments with `Link` pagination, create, update, delete), written here with hyper:
//! the first run posts, the next one updates the same comment, and refusals (401, 404,
//! 422, rate limits) are clear errors.

use super::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::sync::{Arc, Mutex};

/// An error the fake answers to the next request of a method.
#[derive(Clone)]
struct Fail {
    method: &'static str,
    status: u16,
    body: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

#[derive(Default)]
struct Forge {
    /// (id, body, system note)
    comments: Vec<(u64, String, bool)>,
    next_id: u64,
    fail: Option<Fail>,
    /// "METHOD path" of every request.
    log: Vec<String>,
}

/// The fake: GitHub's routes under `/repos/o/r/…` (token `Bearer good`), GitLab's under
/// `/api/v4/projects/o%2Fr/merge_requests/7/notes` (`PRIVATE-TOKEN: good`); pull/merge
/// request 7 of o/r exists, nothing else. Two comments per page.
struct Fake {
    url: String,
    forge: Arc<Mutex<Forge>>,
    _rt: tokio::runtime::Runtime,
}

const PER_PAGE: usize = 2;

fn json(status: u16, v: serde_json::Value, headers: Vec<(String, String)>) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::builder().status(status).header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.body(Full::new(Bytes::from(if v.is_null() { String::new() } else { v.to_string() }))).unwrap()
}

fn handle(
    f: &Mutex<Forge>,
    base: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &hyper::HeaderMap,
    body: &str,
) -> hyper::Response<Full<Bytes>> {
    let mut f = f.lock().unwrap();
    f.log.push(format!("{method} {path}"));
    let github = path.starts_with("/repos/");
    let authorized = if github {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer good")
    } else {
        headers.get("private-token").and_then(|v| v.to_str().ok()) == Some("good")
    };
    if !authorized {
        let msg = if github { "Bad credentials" } else { "401 Unauthorized" };
        return json(401, serde_json::json!({ "message": msg }), vec![]);
    }
    if let Some(fail) = f.fail.clone().filter(|x| x.method == method) {
        f.fail = None;
        let headers = fail.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        return json(
            fail.status,
            serde_json::from_str(fail.body).unwrap_or(serde_json::Value::String(fail.body.into())),
            headers,
        );
    }
    let (list, item) = if github {
        ("/repos/o/r/issues/7/comments", "/repos/o/r/issues/comments/")
    } else {
        ("/api/v4/projects/o%2Fr/merge_requests/7/notes", "/api/v4/projects/o%2Fr/merge_requests/7/notes/")
    };
    let text = |b: &str| {
        serde_json::from_str::<serde_json::Value>(b).ok().and_then(|v| v["body"].as_str().map(str::to_string))
    };
    let view = |id: u64, b: &str, system: bool| {
        if github {
            serde_json::json!({"id": id, "body": b, "html_url": format!("https://github.example/o/r/pull/7#issuecomment-{id}")})
        } else {
            serde_json::json!({"id": id, "body": b, "system": system})
        }
    };
    if path == list && method == "GET" {
        let page: usize =
            query.split('&').find_map(|kv| kv.strip_prefix("page=")).and_then(|p| p.parse().ok()).unwrap_or(1);
        let items: Vec<serde_json::Value> =
            f.comments.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).map(|(id, b, s)| view(*id, b, *s)).collect();
        let mut h = vec![];
        if page * PER_PAGE < f.comments.len() {
            h.push(("link".to_string(), format!("<{base}{path}?per_page={PER_PAGE}&page={}>; rel=\"next\"", page + 1)));
        }
        return json(200, serde_json::Value::Array(items), h);
    }
    if path == list && method == "POST" {
        let Some(b) = text(body) else { return json(400, serde_json::json!({"message": "no body"}), vec![]) };
        f.next_id += 1;
        let id = f.next_id;
        f.comments.push((id, b.clone(), false));
        return json(201, view(id, &b, false), vec![]);
    }
    if let Some(id) = path.strip_prefix(item).and_then(|s| s.parse::<u64>().ok()) {
        let Some(pos) = f.comments.iter().position(|c| c.0 == id) else {
            return json(404, serde_json::json!({"message": "Not Found"}), vec![]);
        };
        match (method, github) {
            ("PATCH", true) | ("PUT", false) => {
                let Some(b) = text(body) else { return json(400, serde_json::json!({"message": "no body"}), vec![]) };
                f.comments[pos].1 = b.clone();
                return json(200, view(id, &b, false), vec![]);
            }
            ("DELETE", _) => {
                f.comments.remove(pos);
                return json(204, serde_json::Value::Null, vec![]);
            }
            _ => {}
        }
    }
    json(404, serde_json::json!({"message": "Not Found"}), vec![])
}

impl Fake {
    fn start() -> Fake {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let forge = Arc::new(Mutex::new(Forge { next_id: 100, ..Default::default() }));
        let (f, base) = (forge.clone(), url.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (f, base) = (f.clone(), base.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (f, base) = (f.clone(), base.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            let path = parts.uri.path().to_string();
                            let query = parts.uri.query().unwrap_or("").to_string();
                            Ok::<_, std::convert::Infallible>(handle(
                                &f,
                                &base,
                                parts.method.as_str(),
                                &path,
                                &query,
                                &parts.headers,
                                &body,
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake { url, forge, _rt: rt }
    }

    fn seed(&self, bodies: &[&str], system: bool) {
        let mut f = self.forge.lock().unwrap();
        for b in bodies {
            f.next_id += 1;
            let id = f.next_id;
            f.comments.push((id, b.to_string(), system));
        }
    }

    fn tagged(&self) -> Vec<(u64, String)> {
        let f = self.forge.lock().unwrap();
        f.comments.iter().filter(|c| c.1.starts_with("<!-- skyform-plan-comment")).map(|c| (c.0, c.1.clone())).collect()
    }

    fn fail(&self, fail: Fail) {
        self.forge.lock().unwrap().fail = Some(fail);
    }
}

/// A job with a saved plan `p.plan`, and the same plan's markdown in `p.md`.
fn planned_job() -> tempfile::TempDir {
    let d = job(&[(
        "main.sky.hcl",
        "task \"a\" {\n  run = \"true\"\n\n  estimate {\n    hours = 1\n  }\n}\n\ntask \"b\" {\n  depends_on = [task.a]\n  run        = \"true\"\n\n  estimate {\n    hours = 2\n  }\n}\n",
    )]);
    assert_eq!(skyform(d.path(), &["plan", "-out=p.plan"]).code, 0);
    let md = skyform(d.path(), &["show", "-format=markdown", "p.plan"]);
    std::fs::write(d.path().join("p.md"), md.stdout).unwrap();
    d
}

fn comment(d: &Path, forge: &str, fake: &Fake, token: &str, extra: &[&str]) -> Out {
    let var = if forge == "github" { "GITHUB_TOKEN" } else { "GITLAB_TOKEN" };
    let api = if forge == "github" { fake.url.clone() } else { format!("{}/api/v4", fake.url) };
    let mut args = vec!["comment", forge, "--repo", "o/r", "--pr", "7", "--api-url", api.as_str()];
    args.extend_from_slice(extra);
    skyform_env(d, &args, &[(var, token)])
}

fn post_then_update(forge: &str) {
    let fake = Fake::start();
    fake.seed(&["LGTM", "what does this cost?", "<!-- skyform-plan-comment job=another-job -->\nnot ours"], false);
    let d = planned_job();
    let first = comment(d.path(), forge, &fake, "good", &["p.md"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.starts_with("Posted the skyform comment on "), "{}", first.stdout);
    let ours = |f: &Fake| f.tagged().into_iter().filter(|c| !c.1.contains("another-job")).collect::<Vec<_>>();
    let created = ours(&fake);
    assert_eq!(created.len(), 1);
    assert!(created[0].1.contains("```mermaid\ngantt"), "the comment carries the schedule: {}", created[0].1);
    // More discussion, so that the comment is on a later page.
    fake.seed(&["ok", "merging tomorrow"], forge == "gitlab");
    // The second run (from the saved plan itself) updates the same comment.
    let second = comment(d.path(), forge, &fake, "good", &["p.plan"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(second.stdout.starts_with("Updated the skyform comment on "), "{}", second.stdout);
    assert!(second.stdout.contains(&format!("(id {})", created[0].0)), "{}", second.stdout);
    let after = ours(&fake);
    assert_eq!(after.len(), 1, "one skyform comment in the end");
    assert_eq!(after[0].0, created[0].0);
    let log = fake.forge.lock().unwrap().log.clone();
    // 3 comments on 2 pages, then 6 on 3 pages (the fake's page holds 2).
    assert_eq!(log.iter().filter(|l| l.starts_with("GET")).count(), 2 + 3, "the list was paginated: {log:?}");
    assert_eq!(fake.forge.lock().unwrap().comments.len(), 6, "nobody else's comment was touched");

    // -behavior new adds one; delete-and-new leaves exactly one new comment.
    assert_eq!(comment(d.path(), forge, &fake, "good", &["--behavior", "new", "p.plan"]).code, 0);
    assert_eq!(ours(&fake).len(), 2);
    let o = comment(d.path(), forge, &fake, "good", &["-behavior=delete-and-new", "p.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("Deleted 2 earlier skyform comment(s)."), "{}", o.stderr);
    let left = ours(&fake);
    assert_eq!(left.len(), 1);
    assert!(left[0].0 > created[0].0, "a new comment");
}

fn refusals(forge: &str, name: &str, var: &str) {
    let fake = Fake::start();
    let d = planned_job();
    let o = comment(d.path(), forge, &fake, "bad", &["p.plan"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains(&format!("Error: {name} refused the token (401 Unauthorized): set {var} to a valid token")),
        "{}",
        o.stderr
    );
    let o = comment(d.path(), forge, &fake, "", &["p.plan"]);
    assert!(o.stderr.contains(&format!("Error: no token: set {var}")), "{}", o.stderr);
    fake.fail(Fail {
        method: "POST",
        status: 422,
        body: r#"{"message": "Validation Failed", "errors": [{"message": "Body is too long (maximum is 65536 characters)"}]}"#,
        headers: vec![],
    });
    let o = comment(d.path(), forge, &fake, "good", &["p.plan"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains(&format!(
            "Error: {name} refused the comment (422 Unprocessable Entity) — {name} says: Validation Failed: Body is too long (maximum is 65536 characters)"
        )),
        "{}",
        o.stderr
    );
    fake.fail(Fail {
        method: "GET",
        status: 429,
        body: r#"{"message": "slow down"}"#,
        headers: vec![("retry-after", "42")],
    });
    let o = comment(d.path(), forge, &fake, "good", &["p.plan"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains(&format!("Error: {name} rate limit reached (429): retry after 42 s")), "{}", o.stderr);
    let api = if forge == "github" { fake.url.clone() } else { format!("{}/api/v4", fake.url) };
    let o = skyform_env(
        d.path(),
        &["comment", forge, "--repo", "o/missing", "--pr", "7", "--api-url", &api, "p.plan"],
        &[(var, "good")],
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("in o/missing (404 Not Found): check --repo and --pr"), "{}", o.stderr);
    assert!(fake.tagged().is_empty(), "nothing was posted");
}

#[test]
fn github_first_run_posts_and_the_next_updates_the_same_comment() {
    post_then_update("github");
}

#[test]
fn gitlab_first_run_posts_and_the_next_updates_the_same_note() {
    post_then_update("gitlab");
}

#[test]
fn github_refusals_are_clear_errors() {
    refusals("github", "GitHub", "GITHUB_TOKEN");
    // GitHub's primary rate limit: 403 with no requests left.
    let fake = Fake::start();
    let d = planned_job();
    fake.fail(Fail {
        method: "GET",
        status: 403,
        body: r#"{"message": "API rate limit exceeded"}"#,
        headers: vec![("x-ratelimit-remaining", "0"), ("retry-after", "60")],
    });
    let o = comment(d.path(), "github", &fake, "good", &["p.plan"]);
    assert!(o.stderr.contains("Error: GitHub rate limit reached (403): retry after 60 s"), "{}", o.stderr);
}

#[test]
fn gitlab_refusals_are_clear_errors() {
    refusals("gitlab", "GitLab", "GITLAB_TOKEN");
}
