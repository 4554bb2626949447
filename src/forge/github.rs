//! GitHub's issue-comment REST API (pull requests are issues there): list
//! `GET /repos/{repo}/issues/{n}/comments?per_page=100` (paginated by `Link`), create
//! `POST …/issues/{n}/comments`, update `PATCH /repos/{repo}/issues/comments/{id}`, delete
//! `DELETE /repos/{repo}/issues/comments/{id}`. Token as `Authorization: Bearer`.

use super::http::Http;
use super::{next_link, parse, Api, Comment, ForgeError, Target};
use serde::Deserialize;

pub struct GitHub;

#[derive(Deserialize)]
struct Item {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

fn headers(t: &Target) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {}", t.token)),
        ("accept", "application/vnd.github+json".into()),
        ("x-github-api-version", "2022-11-28".into()),
    ]
}

fn call(
    http: &Http,
    t: &Target,
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<super::http::Response, ForgeError> {
    let r = http.send(method, url, &headers(t), body)?;
    if !r.ok() {
        return Err(t.error(method, url, &r));
    }
    Ok(r)
}

impl Api for GitHub {
    fn list(&self, http: &Http, t: &Target) -> Result<Vec<Comment>, ForgeError> {
        let mut url = Some(format!("{}/repos/{}/issues/{}/comments?per_page=100", t.api, t.repo, t.number));
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(u) = url.take() {
            let r = call(http, t, "GET", &u, None)?;
            let items: Vec<Item> = parse(t, &u, &r.body)?;
            out.extend(items.into_iter().map(|i| Comment {
                id: i.id,
                body: i.body.unwrap_or_default(),
                url: i.html_url,
            }));
            pages += 1;
            if pages < 100 {
                url = next_link(r.header("link"));
            }
        }
        Ok(out)
    }

    fn create(&self, http: &Http, t: &Target, body: &str) -> Result<(u64, Option<String>), ForgeError> {
        let url = format!("{}/repos/{}/issues/{}/comments", t.api, t.repo, t.number);
        let r = call(http, t, "POST", &url, Some(&serde_json::json!({ "body": body })))?;
        let i: Item = parse(t, &url, &r.body)?;
        Ok((i.id, i.html_url))
    }

    fn update(&self, http: &Http, t: &Target, id: u64, body: &str) -> Result<Option<String>, ForgeError> {
        let url = format!("{}/repos/{}/issues/comments/{id}", t.api, t.repo);
        let r = call(http, t, "PATCH", &url, Some(&serde_json::json!({ "body": body })))?;
        let i: Item = parse(t, &url, &r.body)?;
        Ok(i.html_url)
    }

    fn delete(&self, http: &Http, t: &Target, id: u64) -> Result<(), ForgeError> {
        let url = format!("{}/repos/{}/issues/comments/{id}", t.api, t.repo);
        call(http, t, "DELETE", &url, None).map(|_| ())
    }
}
