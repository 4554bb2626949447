//! Pull-request comments on GitHub and GitLab (`skyform comment`): post the plan's markdown
//! comment, or update the one an earlier run posted, found by its hidden tag.
//!
//! [`post`] takes a [`Target`] (which forge, its REST API base URL, the repository, the
//! pull/merge request and a token), the comment body and the tag, and a [`Behavior`]
//! (update the earlier comment, always post a new one, or delete the earlier ones and post
//! a new one). It lists the request's comments (following `Link: rel="next"` pages),
//! then creates, updates or deletes through the forge's REST API ([`github`], [`gitlab`])
//! over [`http`]. Errors are typed ([`ForgeError`]) and say what to do: a refused token
//! (401), no access (403), no such repository or request (404), a refused body (422), a
//! rate limit with when to retry. Does network I/O (HTTPS, or HTTP for a loopback fake).

pub mod github;
pub mod gitlab;
pub mod http;

use serde::Serialize;

/// Which forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    GitHub,
    GitLab,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::GitHub => "GitHub",
            Kind::GitLab => "GitLab",
        }
    }

    /// The environment variable the token comes from.
    pub fn token_var(self) -> &'static str {
        match self {
            Kind::GitHub => "GITHUB_TOKEN",
            Kind::GitLab => "GITLAB_TOKEN",
        }
    }

    /// The public API (GitHub Enterprise and self-hosted GitLab override it).
    pub fn default_api(self) -> &'static str {
        match self {
            Kind::GitHub => "https://api.github.com",
            Kind::GitLab => "https://gitlab.com/api/v4",
        }
    }

    /// What the forge calls the request: pull request or merge request.
    pub fn request(self) -> &'static str {
        match self {
            Kind::GitHub => "pull request",
            Kind::GitLab => "merge request",
        }
    }
}

/// Where the comment goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    /// REST API base URL without a trailing slash.
    pub api: String,
    /// `OWNER/NAME` (GitLab: the project's full path, groups included).
    pub repo: String,
    /// Pull request number (GitLab: the merge request's IID).
    pub number: u64,
    pub token: String,
}

/// What to do with an earlier comment carrying the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behavior {
    /// Update the newest earlier comment in place (post one when there is none).
    #[default]
    Update,
    /// Always post a new comment.
    New,
    /// Delete every earlier comment, then post a new one.
    DeleteAndNew,
}

/// One comment of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub url: Option<String>,
}

/// What [`post`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Posted {
    /// `created` or `updated`.
    pub action: &'static str,
    pub id: u64,
    pub url: Option<String>,
    /// Earlier comments deleted (`delete-and-new`).
    pub deleted: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForgeError {
    #[error("{forge} refused the token (401 Unauthorized): set {var} to a valid token{detail}")]
    Unauthorized { forge: &'static str, var: &'static str, detail: String },
    #[error("{forge} denied access (403 Forbidden): the token may read but not comment on {repo}; give it permission to write {request} comments{detail}")]
    Forbidden { forge: &'static str, repo: String, request: &'static str, detail: String },
    #[error("{forge} found no {request} {number} in {repo} (404 Not Found): check --repo and --pr, and that the token can see the repository{detail}")]
    NotFound { forge: &'static str, repo: String, request: &'static str, number: u64, detail: String },
    #[error("{forge} refused the comment (422 Unprocessable Entity){detail}")]
    Unprocessable { forge: &'static str, detail: String },
    #[error("{forge} rate limit reached ({status}): {when}")]
    RateLimited { forge: &'static str, status: u16, when: String, retry_after: Option<u64> },
    #[error("{forge} answered {status} to {method} {url}{detail}")]
    Status { forge: &'static str, status: u16, method: String, url: String, detail: String },
    #[error("cannot reach {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("{forge} sent an answer skyform cannot read ({url}): {detail}")]
    BadResponse { forge: &'static str, url: String, detail: String },
    #[error("{0}")]
    Usage(String),
}

impl Target {
    /// Turns an error status into the error that says what to do.
    pub(crate) fn error(&self, method: &str, url: &str, r: &http::Response) -> ForgeError {
        let forge = self.kind.name();
        let message = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| {
                let m = v.get("message").or_else(|| v.get("error")).cloned()?;
                let mut s = match m {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                if let Some(errs) = v.get("errors").and_then(|e| e.as_array()).filter(|e| !e.is_empty()) {
                    let list: Vec<String> = errs
                        .iter()
                        .map(|e| {
                            e.get("message")
                                .and_then(|m| m.as_str())
                                .map(str::to_string)
                                .unwrap_or_else(|| e.to_string())
                        })
                        .collect();
                    s = format!("{s}: {}", list.join("; "));
                }
                Some(s)
            })
            .or_else(|| Some(r.body.trim().chars().take(200).collect::<String>()).filter(|s| !s.is_empty()));
        let detail = message.map(|m| format!(" — {forge} says: {m}")).unwrap_or_default();
        let header = |k: &str| r.header(k).and_then(|v| v.trim().parse::<u64>().ok());
        let limited = r.status == 429
            || (r.status == 403
                && (r.header("x-ratelimit-remaining").map(str::trim) == Some("0")
                    || r.header("retry-after").is_some()));
        if limited {
            let retry_after = header("retry-after").or_else(|| {
                let reset = header("x-ratelimit-reset").or_else(|| header("ratelimit-reset"))?;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
                Some(reset.saturating_sub(now))
            });
            let when = match retry_after {
                Some(s) => format!("retry after {s} s"),
                None => "retry later".to_string(),
            };
            return ForgeError::RateLimited { forge, status: r.status, when, retry_after };
        }
        match r.status {
            401 => ForgeError::Unauthorized { forge, var: self.kind.token_var(), detail },
            403 => ForgeError::Forbidden { forge, repo: self.repo.clone(), request: self.kind.request(), detail },
            404 => ForgeError::NotFound {
                forge,
                repo: self.repo.clone(),
                request: self.kind.request(),
                number: self.number,
                detail,
            },
            422 => ForgeError::Unprocessable { forge, detail },
            s => ForgeError::Status { forge, status: s, method: method.to_string(), url: url.to_string(), detail },
        }
    }
}

/// The first line of a body when it is a skyform comment tag (`<!-- skyform-... -->`).
pub fn tag_of(body: &str) -> Option<&str> {
    let first = body.lines().next()?.trim();
    (first.starts_with("<!-- skyform-") && first.ends_with("-->")).then_some(first)
}

/// Posts `body` on the target's request, or updates/replaces earlier comments whose first
/// line is `tag`, per `behavior`.
pub fn post(target: &Target, body: &str, tag: &str, behavior: Behavior) -> Result<Posted, ForgeError> {
    if target.token.is_empty() {
        return Err(ForgeError::Usage(format!(
            "no token: set {} (a token that may comment on {})",
            target.kind.token_var(),
            target.repo
        )));
    }
    let client = http::Http::new(&target.api)?;
    let api: &dyn Api = match target.kind {
        Kind::GitHub => &github::GitHub,
        Kind::GitLab => &gitlab::GitLab,
    };
    let earlier: Vec<Comment> = if behavior == Behavior::New {
        vec![]
    } else {
        api.list(&client, target)?.into_iter().filter(|c| tag_of(&c.body) == Some(tag)).collect()
    };
    match (behavior, earlier.last()) {
        (Behavior::Update, Some(c)) => {
            let url = api.update(&client, target, c.id, body)?;
            Ok(Posted { action: "updated", id: c.id, url: url.or_else(|| c.url.clone()), deleted: 0 })
        }
        _ => {
            let mut deleted = 0;
            if behavior == Behavior::DeleteAndNew {
                for c in &earlier {
                    api.delete(&client, target, c.id)?;
                    deleted += 1;
                }
            }
            let (id, url) = api.create(&client, target, body)?;
            Ok(Posted { action: "created", id, url, deleted })
        }
    }
}

/// The REST calls a forge needs.
pub(crate) trait Api {
    /// Every comment of the request, oldest first.
    fn list(&self, http: &http::Http, t: &Target) -> Result<Vec<Comment>, ForgeError>;
    fn create(&self, http: &http::Http, t: &Target, body: &str) -> Result<(u64, Option<String>), ForgeError>;
    fn update(&self, http: &http::Http, t: &Target, id: u64, body: &str) -> Result<Option<String>, ForgeError>;
    fn delete(&self, http: &http::Http, t: &Target, id: u64) -> Result<(), ForgeError>;
}

/// Follows `Link: <URL>; rel="next"` (both forges paginate with it).
pub(crate) fn next_link(link: Option<&str>) -> Option<String> {
    link?.split(',').find_map(|part| {
        let mut bits = part.split(';');
        let url = bits.next()?.trim();
        let is_next = bits.any(|b| {
            let b = b.trim().replace(' ', "");
            b == "rel=\"next\"" || b == "rel=next"
        });
        (is_next && url.starts_with('<') && url.ends_with('>')).then(|| url[1..url.len() - 1].to_string())
    })
}

/// Reads a JSON answer.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(t: &Target, url: &str, body: &str) -> Result<T, ForgeError> {
    serde_json::from_str(body).map_err(|e| ForgeError::BadResponse {
        forge: t.kind.name(),
        url: url.to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let h = r#"<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last""#;
        assert_eq!(next_link(Some(h)).as_deref(), Some("https://api.github.com/x?page=2"));
        assert_eq!(next_link(Some(r#"<https://x/1>; rel="prev""#)), None);
        assert_eq!(next_link(None), None);
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of("<!-- skyform-plan-comment job=a -->\n### x"), Some("<!-- skyform-plan-comment job=a -->"));
        assert_eq!(tag_of("### x"), None);
    }

    #[test]
    fn statuses_become_errors_that_say_what_to_do() {
        let t = Target { kind: Kind::GitHub, api: "http://x".into(), repo: "o/r".into(), number: 7, token: "t".into() };
        let r = |status: u16, headers: &[(&str, &str)], body: &str| http::Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.into(),
        };
        let e = t.error(
            "POST",
            "u",
            &r(422, &[], r#"{"message":"Validation Failed","errors":[{"message":"body is too long"}]}"#),
        );
        assert_eq!(
            e.to_string(),
            "GitHub refused the comment (422 Unprocessable Entity) — GitHub says: Validation Failed: body is too long"
        );
        let e = t.error("GET", "u", &r(403, &[("x-ratelimit-remaining", "0"), ("retry-after", "30")], ""));
        assert!(matches!(e, ForgeError::RateLimited { retry_after: Some(30), .. }), "{e:?}");
        assert!(e.to_string().ends_with("retry after 30 s"), "{e}");
        assert!(t.error("GET", "u", &r(401, &[], "")).to_string().contains("set GITHUB_TOKEN"));
        assert!(t.error("GET", "u", &r(404, &[], "")).to_string().contains("no pull request 7 in o/r"));
    }
}
