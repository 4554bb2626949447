//! `skyform comment github|gitlab --repo OWNER/NAME --pr N [--behavior update|new|delete-and-new]
//! PLAN`: post the plan's markdown comment (`show -format=markdown`, hidden tag first) on a
//! pull/merge request, or update the one an earlier run posted ([`crate::forge`]). The
//! token comes from `GITHUB_TOKEN` / `GITLAB_TOKEN`; the API base URL from `--api-url`,
//! else `GITHUB_API_URL` / `CI_API_V4_URL` (set by GitHub Actions and GitLab CI, also on
//! GitHub Enterprise and self-hosted GitLab), else the public API.

use super::views::plan as render;
use super::Ctx;
use crate::forge::{self, Behavior, Kind, Target};
use crate::plan::Plan;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ForgeArg {
    Github,
    Gitlab,
}

#[derive(Debug, Args)]
pub struct CommentArgs {
    /// Where the pull request is: github or gitlab
    #[arg(value_enum)]
    pub forge: ForgeArg,
    /// The repository: OWNER/NAME (GitLab: the project's full path, groups included)
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: String,
    /// The pull request number (GitLab: the merge request's IID)
    #[arg(long, value_name = "N")]
    pub pr: u64,
    /// update: edit the earlier skyform comment (or post one); new: always post; delete-and-new:
    /// delete the earlier ones, then post
    #[arg(long, value_enum, default_value_t = Behavior::Update)]
    pub behavior: Behavior,
    /// The REST API base URL (default: $GITHUB_API_URL or https://api.github.com;
    /// $CI_API_V4_URL or https://gitlab.com/api/v4)
    #[arg(long = "api-url", value_name = "URL")]
    pub api_url: Option<String>,
    /// A saved plan (`skyform plan -out=FILE`, JSON; with -compare-to the comment shows the
    /// comparison) or a markdown comment written by `skyform show -format=markdown`
    #[arg(value_name = "PLAN_OR_MARKDOWN")]
    pub plan: PathBuf,
}

pub fn run(ctx: &Ctx, a: CommentArgs) -> anyhow::Result<i32> {
    let kind = match a.forge {
        ForgeArg::Github => Kind::GitHub,
        ForgeArg::Gitlab => Kind::GitLab,
    };
    let text =
        std::fs::read_to_string(ctx.dir.join(&a.plan)).map_err(|e| anyhow::anyhow!("{}: {e}", a.plan.display()))?;
    let body = if text.trim_start().starts_with('{') {
        render::markdown(&Plan::decode(&text).map_err(|e| anyhow::anyhow!("{}: {e}", a.plan.display()))?)
    } else if forge::tag_of(&text).is_some() {
        text
    } else {
        anyhow::bail!(
            "{}: neither a saved plan (skyform plan -out=FILE) nor a skyform markdown comment (skyform show -format=markdown FILE)",
            a.plan.display()
        );
    };
    let tag = forge::tag_of(&body).unwrap_or_default().to_string();
    if a.repo.split('/').filter(|s| !s.is_empty()).count() < 2 && a.repo.parse::<u64>().is_err() {
        anyhow::bail!("--repo={}: expected OWNER/NAME", a.repo);
    }
    let env_api = match kind {
        Kind::GitHub => "GITHUB_API_URL",
        Kind::GitLab => "CI_API_V4_URL",
    };
    let api = a
        .api_url
        .clone()
        .or_else(|| std::env::var(env_api).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| kind.default_api().to_string());
    let target = Target {
        kind,
        api: api.trim_end_matches('/').to_string(),
        repo: a.repo.clone(),
        number: a.pr,
        token: std::env::var(kind.token_var()).unwrap_or_default(),
    };
    match forge::post(&target, &body, &tag, a.behavior) {
        Ok(p) => {
            if p.deleted > 0 {
                errln!("Deleted {} earlier skyform comment(s).", p.deleted);
            }
            outln!(
                "{} the skyform comment on {} {} {} (id {}){}",
                if p.action == "updated" { "Updated" } else { "Posted" },
                kind.name(),
                kind.request(),
                format_args!("{}#{}", a.repo, a.pr),
                p.id,
                p.url.map(|u| format!(": {u}")).unwrap_or_default()
            );
            Ok(0)
        }
        Err(e) => {
            errln!("Error: {e}");
            Ok(1)
        }
    }
}
