//! `plan -compare-to`: what a pull request changes in a job against its base branch, in the
//! plan's text grammar, in `show -json` and in the markdown comment.

use super::*;

fn copy_job(src: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(root().join(src)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
    }
    d
}

/// The base branch's `show -json` and `plan -json`, and the head job's directory.
fn base_and_head() -> (tempfile::TempDir, tempfile::TempDir, PathBuf, PathBuf) {
    let base = copy_job("testdata/jobs/compare/base");
    let o = skyform(base.path(), &["plan", "-input=false", "-lock=false", "-out=base.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let shown = skyform(base.path(), &["show", "-json", "base.plan"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let show_json = base.path().join("base.json");
    std::fs::write(&show_json, &shown.stdout).unwrap();
    let events = skyform(base.path(), &["plan", "-json"]);
    assert_eq!(events.code, 0, "{}", events.stderr);
    let events_json = base.path().join("base-events.json");
    std::fs::write(&events_json, &events.stdout).unwrap();
    (base, copy_job("testdata/jobs/compare/head"), show_json, events_json)
}

#[test]
fn a_pull_request_shows_per_task_and_total_deltas_against_its_base() {
    let (_base, head, show_json, events_json) = base_and_head();
    let flag = format!("-compare-to={}", show_json.display());
    let o = skyform(head.path(), &["plan", "-input=false", "-lock=false", &flag, "-out=pr.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let text = o.stdout.replace(&show_json.display().to_string(), "BASE.json");
    insta::assert_snapshot!("compare-text", text);
    assert!(o.stdout.contains("# task.publish is added by this change"), "{}", o.stdout);
    assert!(o.stdout.contains("# task.crunch moves to another placement"), "{}", o.stdout);
    assert!(o.stdout.contains("# task.cleanup is removed by this change"), "{}", o.stdout);
    assert!(o.stdout.contains("Compared with the base: 1 to add, 1 to change, 1 to remove. Cost: $"), "{}", o.stdout);
    assert!(o.stdout.contains("Against the current state: Plan: 4 to add, 0 to change, 0 to destroy."), "{}", o.stdout);

    // The same comparison from the base's `plan -json` lines.
    let flag2 = format!("-compare-to={}", events_json.display());
    let o2 = skyform(head.path(), &["plan", "-input=false", &flag2]);
    assert_eq!(o2.code, 0, "{}", o2.stderr);
    let without_out = &o.stdout[..o.stdout.find("\nSaved the plan to:").unwrap()];
    assert_eq!(o2.stdout, without_out, "show -json and plan -json bases give the same comparison");

    // JSON: per task and totals, money as decimal strings that add up.
    let j = skyform(head.path(), &["show", "-json", "pr.plan"]);
    assert_eq!(j.code, 0, "{}", j.stderr);
    let doc: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let cmp = &doc["comparison"];
    insta::assert_json_snapshot!("compare-json", cmp);
    let by = |addr: &str| cmp["changes"].as_array().unwrap().iter().find(|c| c["address"] == addr).unwrap().clone();
    assert_eq!(by("task.publish")["change"], "added");
    assert_eq!(by("task.cleanup")["change"], "removed");
    assert!(by("task.cleanup")["after"].is_null());
    let crunch = by("task.crunch");
    assert_eq!((crunch["change"].as_str(), crunch["reason"].as_str()), (Some("changed"), Some("placement_moves")));
    assert_eq!(crunch["after"]["spot"], true);
    assert_eq!(crunch["after"]["accelerator"], "LocalGPU:4");
    assert_eq!(crunch["before"]["spot"], false);
    assert_eq!(by("task.fetch")["change"], "unchanged");
    let dec = |v: &serde_json::Value| v.as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap();
    let sum: rust_decimal::Decimal = cmp["changes"].as_array().unwrap().iter().map(|c| dec(&c["cost"]["delta"])).sum();
    assert_eq!(sum, dec(&cmp["cost"]["delta"]), "per-task deltas add up to the total");
    assert_eq!(dec(&cmp["cost"]["after"]) - dec(&cmp["cost"]["before"]), dec(&cmp["cost"]["delta"]));
    assert_eq!(cmp["summary"], serde_json::json!({"add": 1, "change": 1, "remove": 1}));

    // Markdown: the pull-request comment.
    let md = skyform(head.path(), &["show", "-format=markdown", "pr.plan"]);
    assert_eq!(md.code, 0, "{}", md.stderr);
    insta::assert_snapshot!("compare-markdown", md.stdout);
    assert!(md.stdout.starts_with("<!-- skyform-plan-comment job=nightly-report -->\n"), "{}", md.stdout);
    assert!(md.stdout.contains("| `task.crunch` | moved |"), "{}", md.stdout);
    assert!(md.stdout.contains("```mermaid\ngantt\n"), "{}", md.stdout);
    assert!(md.stdout.contains("#### Cost by cloud"), "{}", md.stdout);

    // plan -json carries the comparison as events before the summary.
    let ev = skyform(head.path(), &["plan", "-json", &flag]);
    let lines: Vec<serde_json::Value> = ev.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().filter(|l| l["type"] == "compared_change").count(), 3, "{}", ev.stdout);
    assert_eq!(lines[lines.len() - 2]["type"], "compare_summary");
    assert_eq!(lines.last().unwrap()["type"], "change_summary");
}

#[test]
fn the_same_job_compared_with_itself_changes_nothing_and_a_bad_base_is_an_error() {
    let (base, _head, show_json, _) = base_and_head();
    let flag = format!("-compare-to={}", show_json.display());
    let o = skyform(base.path(), &["plan", &flag]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("this change leaves every task where it was"), "{}", o.stdout);
    assert!(o.stdout.contains("No changes compared with the base. Cost: $"), "{}", o.stdout);
    std::fs::write(base.path().join("junk.json"), "{\"hello\": 1}").unwrap();
    let o = skyform(base.path(), &["plan", "-compare-to=junk.json"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains(
            "-compare-to=junk.json: the base is neither `skyform show -json` output nor `skyform plan -json` lines"
        ),
        "{}",
        o.stderr
    );
}
