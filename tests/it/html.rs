//! The HTML views in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) renders `show -format=html` and `status -format=html`; the tests read the
//! rendered DOM (`--dump-dom`) and decode a screenshot (`--screenshot`) to check it is
//! not blank.

use super::*;
use skyform::state::{PlacementRecord, Run, SledStore, StateStore, TaskState, TaskStatus};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Kills the browser if a test ends before it does.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `page` with `args` (stdout to a file), within 90 s.
fn chromium(page: &Path, args: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: these tests need Debian's chromium (apt-get install -y chromium; scripts/test.sh installs it)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let child = std::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::from(err.reopen().unwrap()))
        .spawn()
        .expect("chromium starts");
    let mut child = KillOnDrop(Some(child));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.0.as_mut().unwrap().try_wait().unwrap() {
            child.0 = None;
            assert!(status.success(), "chromium failed: {}", std::fs::read_to_string(err.path()).unwrap_or_default());
            break;
        }
        assert!(Instant::now() < deadline, "chromium did not finish within 90 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// The value of `name="..."` in an element's opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

/// The opening tags of elements with `class="CLASS"`, in document order.
fn elements<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let key = format!("class=\"{class}\"");
    dom.match_indices(&key)
        .filter_map(|(i, _)| {
            let start = dom[..i].rfind('<')?;
            let end = i + dom[i..].find('>')?;
            Some(&dom[start..=end])
        })
        .collect()
}

/// Decodes a PNG and returns (width, height, distinct colours, share of non-white pixels).
fn picture(path: &Path) -> (u32, u32, usize, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let data = &buf[..info.buffer_size()];
    let mut colours = std::collections::BTreeSet::new();
    let mut ink = 0usize;
    let pixels = data.len() / px;
    for p in data.chunks(px) {
        colours.insert(p[..px.min(3)].to_vec());
        if p[..px.min(3)].iter().any(|&c| c < 240) {
            ink += 1;
        }
    }
    (info.width, info.height, colours.len(), ink as f64 / pixels.max(1) as f64)
}

fn copy_job(src: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(root().join(src)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
    }
    d
}

#[test]
fn the_plan_page_renders_every_task_on_a_timeline_in_chromium() {
    let d = copy_job("testdata/jobs/compare/head");
    assert_eq!(skyform(d.path(), &["plan", "-out=p.plan"]).code, 0);
    let o = skyform(d.path(), &["show", "-format=html", "p.plan"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let html = &o.stdout;
    // Self-contained: nothing is fetched (the only URL is the SVG namespace).
    assert!(
        !html.contains("<script") && !html.contains("<link") && !html.contains(" src=") && !html.contains(" href=")
    );
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count(),
        "no URL but the SVG namespace"
    );
    let page = d.path().join("plan.html");
    std::fs::write(&page, html).unwrap();

    let dom = chromium(&page, &["--dump-dom".into()]);
    let bars = elements(&dom, "bar");
    let tasks: Vec<&str> = bars.iter().map(|b| attr(b, "data-task").unwrap()).collect();
    let mut sorted = tasks.clone();
    sorted.sort();
    assert_eq!(sorted, ["task.crunch", "task.fetch", "task.publish", "task.report"], "every task has a bar: {dom}");
    let starts: Vec<f64> = bars.iter().map(|b| attr(b, "data-start").unwrap().parse().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "bars ordered by start: {tasks:?} {starts:?}");
    assert_eq!(tasks[0], "task.fetch");
    for b in &bars {
        let (s, f): (f64, f64) =
            (attr(b, "data-start").unwrap().parse().unwrap(), attr(b, "data-finish").unwrap().parse().unwrap());
        assert!(f > s, "a bar has a length: {b}");
    }
    // The DAG: a node per task, the data edges with their egress cost.
    assert_eq!(elements(&dom, "node").len(), 4);
    let edges: Vec<(&str, &str)> = elements(&dom, "edge-group")
        .iter()
        .map(|e| (attr(e, "data-from").unwrap(), attr(e, "data-to").unwrap()))
        .collect();
    assert!(
        edges.contains(&("task.fetch", "task.crunch")) && edges.contains(&("task.crunch", "task.publish")),
        "{edges:?}"
    );
    assert!(dom.contains("raw: 5 GB, $"), "edge labels carry size and egress cost");
    for id in ["cost-by-cloud", "cost-by-region", "cost-by-task"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id}");
    }

    let shot = d.path().join("plan.png");
    chromium(&page, &[format!("--screenshot={}", shot.display()), "--window-size=1100,900".into()]);
    let (w, h, colours, ink) = picture(&shot);
    assert_eq!((w, h), (1100, 900));
    assert!(colours >= 8, "the screenshot is not blank: {colours} colours");
    assert!(ink > 0.01, "the screenshot has something drawn: {:.3} of the pixels", ink);
}

#[test]
fn the_status_page_colours_done_running_and_pending_tasks() {
    let d = copy_job("testdata/jobs/compare/head");
    assert_eq!(skyform(d.path(), &["plan", "-out=p.plan"]).code, 0);
    let plan = skyform::plan::Plan::decode(&std::fs::read_to_string(d.path().join("p.plan")).unwrap()).unwrap();
    let store = SledStore::new(d.path().join(".skyform/state"));
    let mut st = store.read().unwrap();
    let now = skyform::clock::now_secs();
    let runs = |status: TaskStatus, start: u64, end: Option<u64>| {
        vec![Run { attempt: 1, status, exit_code: None, log: None, start, end, cost: 0.01 }]
    };
    for c in &plan.changes {
        let (status, runs) = match c.address.as_str() {
            "task.fetch" => (TaskStatus::Succeeded, runs(TaskStatus::Succeeded, now - 3000, Some(now - 1200))),
            "task.crunch" => (TaskStatus::Running, runs(TaskStatus::Running, now - 1100, None)),
            _ => (TaskStatus::Pending, vec![]),
        };
        let placement: Option<PlacementRecord> = c.after.as_ref().map(|a| a.placement.clone());
        st.tasks.insert(c.address.clone(), TaskState { status, runs, placement, ..Default::default() });
    }
    store.commit(&st).unwrap();
    let o = skyform(d.path(), &["status", "-format=html", "-refresh=false"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let page = d.path().join("status.html");
    std::fs::write(&page, &o.stdout).unwrap();
    let dom = chromium(&page, &["--dump-dom".into()]);
    let bars = elements(&dom, "bar");
    let status: std::collections::BTreeMap<&str, &str> =
        bars.iter().map(|b| (attr(b, "data-task").unwrap(), attr(b, "data-status").unwrap())).collect();
    assert_eq!(status.len(), 4, "{dom}");
    assert_eq!(status["task.fetch"], "succeeded");
    assert_eq!(status["task.crunch"], "running");
    assert_eq!(status["task.publish"], "pending");
    let fill = |task: &str| {
        let i = dom.find(&format!("data-task=\"{task}\"")).unwrap();
        let rect = &dom[i..];
        let rect = &rect[rect.find("<rect").unwrap()..];
        attr(&rect[..rect.find('>').unwrap()], "fill").unwrap().to_string()
    };
    assert_eq!(fill("task.fetch"), "#2da44e", "done is green");
    assert_eq!(fill("task.crunch"), "#0969da", "running is blue");
    assert_eq!(fill("task.report"), "#afb8c1", "pending is grey");
    let order: Vec<&str> = bars.iter().map(|b| attr(b, "data-task").unwrap()).collect();
    assert_eq!(&order[..2], ["task.fetch", "task.crunch"], "ordered by start");
    let shot = d.path().join("status.png");
    chromium(&page, &[format!("--screenshot={}", shot.display()), "--window-size=1000,600".into()]);
    let (_, _, colours, ink) = picture(&shot);
    assert!(colours >= 4 && ink > 0.005, "not blank: {colours} colours, {ink:.4} ink");
}
