//! The apply engine's events for a person or a program: one line per event on stderr, on a
//! terminal an indicatif progress area (one spinner line per running task under an overall
//! bar), or with `-json` one JSON object per event on stdout (`@level`, `@message`,
//! `@timestamp`, as Terraform's machine-readable UI).

use super::plan::usd;
use crate::apply::{Event, Hooks, Recovery};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Progress on a terminal: one spinner line per running task under an overall bar.
struct Bars {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    tasks: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

/// Renders events (implements the engine's [`Hooks`]).
pub struct ApplyView {
    json: bool,
    color: bool,
    bars: Option<Bars>,
}

impl ApplyView {
    /// `total`: tasks the overall bar counts; `tty`: draw bars (stderr is a terminal and
    /// not `-json`).
    pub fn new(json: bool, color: bool, tty: bool, total: u64) -> ApplyView {
        let bars = (tty && !json).then(|| {
            let multi = indicatif::MultiProgress::new();
            let overall = multi.add(indicatif::ProgressBar::new(total));
            overall.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks")
                    .expect("template"),
            );
            overall.enable_steady_tick(std::time::Duration::from_millis(120));
            Bars { multi, overall, tasks: Mutex::new(Default::default()) }
        });
        ApplyView { json, color, bars }
    }

    /// Clears the progress area.
    pub fn finish(&self) {
        if let Some(b) = &self.bars {
            b.overall.finish_and_clear();
        }
    }

    fn line(&self, s: String) {
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(s);
            }
            None => super::eprint_line(&s),
        }
    }

    /// Updates (or starts, or ends) the task's own line.
    fn task_line(&self, task: &str, msg: Option<String>) {
        let Some(b) = &self.bars else { return };
        let mut tasks = b.tasks.lock().expect("lock");
        match msg {
            Some(m) => {
                let bar = tasks.entry(task.to_string()).or_insert_with(|| {
                    let p = b.multi.insert_before(&b.overall, indicatif::ProgressBar::new_spinner());
                    p.set_style(indicatif::ProgressStyle::with_template("  {spinner} {msg}").expect("template"));
                    p.enable_steady_tick(std::time::Duration::from_millis(120));
                    p
                });
                bar.set_message(format!("{task}: {m}"));
            }
            None => {
                if let Some(p) = tasks.remove(task) {
                    p.finish_and_clear();
                }
            }
        }
    }
}

impl Hooks for ApplyView {
    fn event(&self, e: &Event) {
        if self.json {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("@level".into(), serde_json::json!(if e.is_warning() { "warn" } else { "info" }));
                m.insert("@message".into(), serde_json::json!(describe(e)));
                m.insert("@timestamp".into(), serde_json::json!(crate::clock::format_time(crate::clock::now_secs())));
            }
            super::print_line(&serde_json::to_string(&v).unwrap_or_default());
            return;
        }
        match e {
            Event::Allocating { task, location, instance_type, .. } => {
                self.task_line(task.as_str(), Some(format!("allocating {instance_type} in {location}")))
            }
            Event::Running { task, run, .. } => self.task_line(task.as_str(), Some(format!("running (run {run})"))),
            Event::Preempted { task, .. } => self.task_line(task.as_str(), Some("preempted, recovering".into())),
            Event::TaskDone { task, .. } => {
                self.task_line(task.as_str(), None);
                if let Some(b) = &self.bars {
                    b.overall.inc(1);
                }
            }
            Event::Destroyed { .. } => {
                if let Some(b) = &self.bars {
                    b.overall.inc(1);
                }
            }
            _ => {}
        }
        // On a terminal the task lines carry the routine events; the rest is printed above.
        if self.bars.is_some()
            && matches!(e, Event::Allocating { .. } | Event::Running { .. } | Event::Transferred { .. })
        {
            return;
        }
        let s = describe(e);
        let s = if self.color && e.is_warning() { format!("\x1b[33m{s}\x1b[0m") } else { s };
        self.line(s);
    }
}

/// One event as a sentence.
pub fn describe(e: &Event) -> String {
    match e {
        Event::Recovered { task, provider_id, action } => format!(
            "{task}: found {provider_id} from an interrupted apply; {}",
            match action {
                Recovery::Adopted => "its run had finished: adopted",
                Recovery::Resumed => "its run is still going: following it",
                Recovery::Released => "released",
            }
        ),
        Event::Allocating { task, attempt, location, instance_type, spot } => {
            format!(
                "{task}: allocating {instance_type}{} in {location} (attempt {attempt})...",
                if *spot { " (spot)" } else { "" }
            )
        }
        Event::AllocationFailed { task, location, kind, scope, message } => {
            format!("{task}: {kind} in {location} ({message}); {scope} blocked, trying the next placement")
        }
        Event::Running { task, run, log } => format!("{task}: running (run {run}, log {log})"),
        Event::RunFailed { task, run, exit_code, log, retrying } => format!(
            "{task}: run {run} failed (exit {}); {}; log: {log}",
            exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            if *retrying { "retrying" } else { "no retries left" }
        ),
        Event::Preempted { task, location, recovery } => {
            format!("{task}: preempted in {location}; recovering ({recovery})")
        }
        Event::Transferred { task, what, bytes, cost } => format!("{task}: {what}: {bytes} bytes, {}", usd(*cost)),
        Event::TaskDone { task, status, cost } => format!("{task}: {status} after {}", usd(*cost)),
        Event::Destroyed { task } => format!("{task}: destroyed"),
        Event::Interrupted { message } => message.clone(),
        Event::Replanned(r) => r.summary(),
        Event::Migrating { task, step, from, to } => format!("{task}: migrating {from} → {to}: {step}..."),
        Event::MigrationAbandoned { task, reason } => format!("{task}: migration not completed: {reason}"),
    }
}
