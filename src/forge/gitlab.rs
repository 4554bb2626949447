//! GitLab's merge-request notes REST API: list
//! `GET /projects/{id}/merge_requests/{iid}/notes?per_page=100&sort=asc&order_by=created_at`
//! (paginated by `Link`), create `POST …/notes`, update `PUT …/notes/{note}`, delete
//! `DELETE …/notes/{note}`; `{id}` is the project's path, URL-encoded. System notes
//! (GitLab's own activity lines) are skipped. Token as `PRIVATE-TOKEN`.

use super::http::Http;
use super::{next_link, parse, Api, Comment, ForgeError, Target};
use serde::Deserialize;

pub struct GitLab;

#[derive(Deserialize)]
struct Note {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    system: bool,
}

/// `group/sub/project` → `group%2Fsub%2Fproject` (a numeric project id stays as it is).
fn project(repo: &str) -> String {
    let mut s = String::new();
    for b in repo.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => s.push(b as char),
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

fn base(t: &Target) -> String {
    format!("{}/projects/{}/merge_requests/{}/notes", t.api, project(&t.repo), t.number)
}

fn call(
    http: &Http,
    t: &Target,
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<super::http::Response, ForgeError> {
    let r = http.send(method, url, &[("private-token", t.token.clone())], body)?;
    if !r.ok() {
        return Err(t.error(method, url, &r));
    }
    Ok(r)
}

impl Api for GitLab {
    fn list(&self, http: &Http, t: &Target) -> Result<Vec<Comment>, ForgeError> {
        let mut url = Some(format!("{}?per_page=100&sort=asc&order_by=created_at", base(t)));
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(u) = url.take() {
            let r = call(http, t, "GET", &u, None)?;
            let notes: Vec<Note> = parse(t, &u, &r.body)?;
            out.extend(notes.into_iter().filter(|n| !n.system).map(|n| Comment {
                id: n.id,
                body: n.body.unwrap_or_default(),
                url: None,
            }));
            pages += 1;
            if pages < 100 {
                url = next_link(r.header("link"));
            }
        }
        Ok(out)
    }

    fn create(&self, http: &Http, t: &Target, body: &str) -> Result<(u64, Option<String>), ForgeError> {
        let url = base(t);
        let r = call(http, t, "POST", &url, Some(&serde_json::json!({ "body": body })))?;
        let n: Note = parse(t, &url, &r.body)?;
        Ok((n.id, None))
    }

    fn update(&self, http: &Http, t: &Target, id: u64, body: &str) -> Result<Option<String>, ForgeError> {
        let url = format!("{}/{id}", base(t));
        call(http, t, "PUT", &url, Some(&serde_json::json!({ "body": body }))).map(|_| None)
    }

    fn delete(&self, http: &Http, t: &Target, id: u64) -> Result<(), ForgeError> {
        let url = format!("{}/{id}", base(t));
        call(http, t, "DELETE", &url, None).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn project_paths_are_encoded() {
        assert_eq!(super::project("group/sub/my.project"), "group%2Fsub%2Fmy.project");
        assert_eq!(super::project("42"), "42");
    }
}
