//! Provider plugins through the CLI: a job whose provider is a plugin (the Python plugin of
//! testdata/plugins, found in `.skyform/plugins/` or named by `plugin = "path"`) applies end
//! to end next to the built-in local provider; `init`, `validate` and `version -json` say
//! which plugins serve the job and how to install a missing one; a plugin that dies or
//! hangs during apply gives a clear error naming it and leaves nothing behind.

use super::*;

fn pylocal_script() -> PathBuf {
    root().join("testdata/plugins/skyform-provider-pylocal")
}

/// A DAG across the plugin and local: `gen` on pylocal, `sum` on local reads its output.
fn dag(pylocal_extra: &str) -> String {
    format!(
        r#"provider "local" {{
  zones = ["zone-a"]
}}

provider "pylocal" {{
  zones = ["zone-a", "zone-b"]
{pylocal_extra}}}

task "gen" {{
  resources {{
    cloud = "pylocal"
  }}
  outputs = {{ nums = {{ size_gb = 0.001 }} }}
  run     = "seq 1 10 > $SKYFORM_OUTPUT_NUMS/n.txt"
  estimate {{
    hours = 0.1
  }}
}}

task "sum" {{
  resources {{
    cloud = "local"
  }}
  inputs  = {{ nums = task.gen.outputs.nums }}
  outputs = {{ total = {{ size_gb = 0.001, uri = "out/total" }} }}
  run     = "awk '{{s+=$1}} END {{print s}}' $SKYFORM_INPUT_NUMS/n.txt > $SKYFORM_OUTPUT_TOTAL/total.txt"
  estimate {{
    hours = 0.1
  }}
}}
"#
    )
}

/// A job directory with the Python plugin installed in `.skyform/plugins/`.
fn installed(pylocal_extra: &str) -> tempfile::TempDir {
    let d = job(&[("main.sky.hcl", &dag(pylocal_extra))]);
    let plugins = d.path().join(".skyform/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(pylocal_script(), plugins.join("skyform-provider-pylocal")).unwrap();
    d
}

fn allocations(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join(".skyform/pylocal/alloc"))
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn a_dag_across_a_python_plugin_and_local_applies_end_to_end() {
    let d = installed("");
    let dir = d.path();
    let init = skyform(dir, &["init"]);
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
    let expected = format!(
        "- provider pylocal: plugin {} (v0.1.0)",
        dir.join(".skyform/plugins/skyform-provider-pylocal").display()
    );
    assert!(init.stderr.contains(&expected), "{}", init.stderr);
    assert!(init.stderr.contains("- provider local: built in"), "{}", init.stderr);

    let v = skyform(dir, &["version", "-json"]);
    let v: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(v["providers"]["pylocal"]["version"], "0.1.0", "{v}");
    assert_eq!(v["providers"]["pylocal"]["built"], false, "{v}");
    assert!(v["providers"]["pylocal"]["plugin"]
        .as_str()
        .unwrap()
        .ends_with(".skyform/plugins/skyform-provider-pylocal"));
    assert_eq!(v["providers"]["local"]["built"], true, "{v}");

    let plan = skyform(dir, &["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("placement     = \"pylocal/zone-a\""), "{}", plan.stdout);

    let a = skyform(dir, &["apply", "-auto-approve"]);
    assert_eq!(a.code, 0, "{}{}", a.stdout, a.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("out/total/total.txt")).unwrap().trim(), "55");
    assert!(format!("{}{}", a.stdout, a.stderr).contains("allocating py.small in pylocal/zone-a"), "{}", a.stderr);
    assert!(allocations(dir).is_empty(), "the plugin's allocation is released: {:?}", allocations(dir));

    let destroy = skyform(dir, &["destroy", "-auto-approve"]);
    assert_eq!(destroy.code, 0, "{}", destroy.stderr);
    assert_eq!(plugin_processes_for(dir), 0, "every plugin process has exited");
}

/// Plugin processes whose working directory is `dir` (skyform starts them there).
fn plugin_processes_for(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains("skyform-provider-pylocal")
            && std::fs::read_link(e.path().join("cwd")).ok().as_deref() == Some(dir.as_path())
        {
            n += 1;
        }
    }
    n
}

#[test]
fn a_block_can_name_its_plugin_executable() {
    let d = job(&[("main.sky.hcl", &dag(&format!("  plugin = {:?}\n", pylocal_script().display().to_string())))]);
    let a = skyform(d.path(), &["apply", "-auto-approve"]);
    assert_eq!(a.code, 0, "{}{}", a.stdout, a.stderr);
    assert_eq!(std::fs::read_to_string(d.path().join("out/total/total.txt")).unwrap().trim(), "55");
}

#[test]
fn init_and_validate_name_a_missing_plugin_and_how_to_install_it() {
    let d = job(&[("main.sky.hcl", &dag(""))]);
    let init = skyform(d.path(), &["init"]);
    assert_eq!(init.code, 1, "{}{}", init.stdout, init.stderr);
    assert!(
        init.stderr.contains("- provider pylocal: no plugin found; install the executable `skyform-provider-pylocal` into the job's .skyform/plugins/ or a directory on PATH"),
        "{}",
        init.stderr
    );
    assert!(init.stdout.contains("1 provider plugin(s) are missing or broken"), "{}", init.stdout);
    let v = skyform(d.path(), &["validate"]);
    assert_eq!(v.code, 1);
    assert!(
        v.stderr.contains("needs its plugin `skyform-provider-pylocal` in .skyform/plugins/ or on PATH"),
        "{}",
        v.stderr
    );
    // Installed, init is happy.
    std::fs::create_dir_all(d.path().join(".skyform/plugins")).unwrap();
    std::os::unix::fs::symlink(pylocal_script(), d.path().join(".skyform/plugins/skyform-provider-pylocal")).unwrap();
    let init = skyform(d.path(), &["init"]);
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
}

#[test]
fn a_plugin_of_another_protocol_version_is_reported_by_validate() {
    let future = root().join("testdata/plugins/broken/skyform-provider-future");
    let text = format!("provider \"future\" {{\n  plugin = {:?}\n}}\n", future.display().to_string());
    let d = job(&[("main.sky.hcl", &text)]);
    let v = skyform(d.path(), &["validate"]);
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(v.stderr.contains("plugin future"), "{}", v.stderr);
    assert!(v.stderr.contains("speaks protocol version 2; this skyform speaks 1"), "{}", v.stderr);
}

#[test]
fn a_plugin_that_dies_mid_apply_is_retried_and_nothing_is_lost() {
    let d = installed("  crash_after = \"allocate\"\n");
    let dir = d.path();
    let a = skyform(dir, &["apply", "-auto-approve"]);
    assert_eq!(a.code, 0, "{}{}", a.stdout, a.stderr);
    assert!(dir.join(".skyform/pylocal/crashed-allocate").exists(), "the plugin did die once");
    let log = std::fs::read_to_string(dir.join(".skyform/plugin-pylocal.log")).unwrap();
    assert!(log.contains("dying after `allocate`"), "the plugin's stderr is kept: {log}");
    assert_eq!(std::fs::read_to_string(dir.join("out/total/total.txt")).unwrap().trim(), "55");
    assert!(allocations(dir).is_empty(), "the allocation the dead plugin made was found and released");
    let s = skyform(dir, &["state", "list"]);
    assert_eq!(s.stdout.lines().collect::<Vec<_>>(), ["task.gen", "task.sum"]);
}

#[test]
fn a_plugin_that_hangs_fails_the_task_with_its_name_and_leaves_nothing_running() {
    let d = installed("  hang_on = \"allocate\"\n  plugin_timeout = 1\n");
    let dir = d.path();
    let t = std::time::Instant::now();
    let a = skyform(dir, &["apply", "-auto-approve"]);
    assert_eq!(a.code, 1, "{}{}", a.stdout, a.stderr);
    assert!(t.elapsed() < std::time::Duration::from_secs(60), "{:?}", t.elapsed());
    let all = format!("{}{}", a.stdout, a.stderr);
    assert!(
        all.contains("plugin pylocal (") && all.contains("did not answer `allocate` within 1 s; it was stopped"),
        "{all}"
    );
    assert!(!dir.join("out/total/total.txt").exists());
    assert_eq!(plugin_processes_for(dir), 0, "the hung plugins were stopped");
}
