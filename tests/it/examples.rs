//! `examples/ci/`: every workflow parses as YAML, and every `skyform` command it runs is a
//! real subcommand with real flags — parsed by skyform's own clap parser.

use super::*;
use clap::Parser;
use skyform::cli::{Cli, Command};

/// Every shell script in a CI file: the values of `run`, `script`, `before_script` and
/// `after_script` keys, wherever they are.
fn scripts(v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default();
                if matches!(key, "run" | "script" | "before_script" | "after_script") {
                    match v {
                        serde_yaml::Value::String(s) => out.push(s.clone()),
                        serde_yaml::Value::Sequence(items) => {
                            out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)))
                        }
                        _ => {}
                    }
                } else {
                    scripts(v, out);
                }
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| scripts(i, out)),
        _ => {}
    }
}

/// Replaces `${{ expr }}`, `${NAME}` and `$NAME` with `1` (a value every flag here accepts).
fn substitute(s: &str) -> String {
    let mut s = s.to_string();
    while let Some(i) = s.find("${{") {
        let j = i + s[i..].find("}}").expect("closed expression") + 2;
        s.replace_range(i..j, "1");
    }
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic() || *n == '_' || *n == '{' || *n == '?') {
            if chars.peek() == Some(&'{') {
                for n in chars.by_ref() {
                    if n == '}' {
                        break;
                    }
                }
            } else if chars.peek() == Some(&'?') {
                chars.next();
            } else {
                while chars.peek().is_some_and(|n| n.is_ascii_alphanumeric() || *n == '_') {
                    chars.next();
                }
            }
            out.push('1');
        } else {
            out.push(c);
        }
    }
    out
}

/// The simple commands of a shell script whose first word is `skyform`, as argv (quotes
/// removed; split at `;`, `|`, `&&`, `||` and newlines; redirections and their targets
/// dropped; leading `if`/`then`/`else`/`elif`/`do`/`!` skipped).
fn skyform_commands(script: &str) -> Vec<Vec<String>> {
    let script = substitute(&script.replace("\\\n", " "));
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut skip_next = false;
    let flush_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>, skip: &mut bool| {
        if *in_word {
            if *skip {
                *skip = false;
            } else {
                words.push(std::mem::take(word));
            }
            word.clear();
            *in_word = false;
        }
    };
    let end = |words: &mut Vec<String>, commands: &mut Vec<Vec<String>>| {
        let start = words
            .iter()
            .position(|w| !matches!(w.as_str(), "if" | "then" | "else" | "elif" | "do" | "!"))
            .unwrap_or(words.len());
        if words.get(start).map(String::as_str) == Some("skyform") {
            commands.push(words[start..].to_vec());
        }
        words.clear();
    };
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                    word.push(n);
                }
            }
            '"' => {
                in_word = true;
                while let Some(n) = chars.next() {
                    match n {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        n => word.push(n),
                    }
                }
            }
            '#' if !in_word => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                flush_word(&mut word, &mut in_word, &mut words, &mut skip_next);
                end(&mut words, &mut commands);
            }
            ' ' | '\t' => flush_word(&mut word, &mut in_word, &mut words, &mut skip_next),
            '\n' | ';' | '|' | '&' => {
                flush_word(&mut word, &mut in_word, &mut words, &mut skip_next);
                end(&mut words, &mut commands);
            }
            '>' | '<' => {
                // `2>` belongs to the redirection too.
                if word == "2" || word == "1" {
                    word.clear();
                    in_word = false;
                }
                flush_word(&mut word, &mut in_word, &mut words, &mut skip_next);
                while chars.peek().is_some_and(|n| *n == '>' || *n == '&') {
                    chars.next();
                }
                skip_next = true;
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush_word(&mut word, &mut in_word, &mut words, &mut skip_next);
    end(&mut words, &mut commands);
    commands
}

/// The parsed `skyform` commands of a CI file (each one must parse).
fn commands_of(rel: &str) -> (serde_yaml::Value, Vec<(String, Cli)>) {
    let text = std::fs::read_to_string(root().join(rel)).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut found = Vec::new();
    scripts(&doc, &mut found);
    let mut out = Vec::new();
    for s in &found {
        for argv in skyform_commands(s) {
            let line = argv.join(" ");
            let cli = Cli::try_parse_from(skyform::cli::normalize_args(argv))
                .unwrap_or_else(|e| panic!("{rel}: `{line}` is not a skyform command line:\n{e}"));
            out.push((line, cli));
        }
    }
    (doc, out)
}

#[test]
fn the_shell_reader_finds_skyform_commands() {
    let s = "set +e\nskyform -chdir=\"$D\" plan -out=p > out.txt 2>&1\ncode=$?\nif [ \"$code\" -eq 2 ]; then skyform apply p; fi\ncargo install skyform\nskyform show \\\n  -json p | jq .";
    let got: Vec<String> = skyform_commands(s).iter().map(|c| c.join(" ")).collect();
    assert_eq!(got, ["skyform -chdir=1 plan -out=p", "skyform apply p", "skyform show -json p"]);
    assert!(Cli::try_parse_from(skyform::cli::normalize_args(["skyform", "plan", "-no-such-flag"].map(String::from)))
        .is_err());
}

#[test]
fn github_workflows_run_only_real_skyform_commands() {
    let (doc, cmds) = commands_of("examples/ci/github/skyform.yml");
    assert!(doc["on"]["pull_request"].is_null() && doc["on"]["push"]["branches"][0] == "main", "{doc:?}");
    let lines: Vec<&str> = cmds.iter().map(|c| c.0.as_str()).collect();
    assert!(cmds.len() >= 6, "{lines:#?}");
    assert!(
        cmds.iter().any(|(_, c)| matches!(&c.command, Command::Plan(p) if p.compare_to.is_some() && p.out.is_some())),
        "{lines:#?}"
    );
    assert!(cmds.iter().any(|(_, c)| matches!(&c.command, Command::Show(s) if s.json)), "{lines:#?}");
    assert!(
        cmds.iter().any(|(_, c)| matches!(&c.command, Command::Comment(a) if matches!(a.forge, skyform::cli::comment::ForgeArg::Github))),
        "{lines:#?}"
    );
    assert!(
        cmds.iter().any(|(_, c)| matches!(&c.command, Command::Apply(a) if a.auto_approve && !a.input)),
        "main applies unattended: {lines:#?}"
    );

    let (doc, cmds) = commands_of("examples/ci/github/reoptimize-nightly.yml");
    assert!(doc["on"]["schedule"][0]["cron"].is_string(), "{doc:?}");
    assert!(doc["jobs"]["reoptimize-nightly"].is_mapping());
    let lines: Vec<&str> = cmds.iter().map(|c| c.0.as_str()).collect();
    assert!(
        cmds.iter().any(|(_, c)| matches!(&c.command, Command::Plan(p) if p.detailed_exitcode && p.out.as_deref() == Some(Path::new("p")))),
        "{lines:#?}"
    );
    assert!(
        cmds.iter().any(|(_, c)| matches!(&c.command, Command::Apply(a) if a.file.as_deref() == Some(Path::new("p")))),
        "{lines:#?}"
    );
}

#[test]
fn gitlab_pipeline_runs_only_real_skyform_commands() {
    let (doc, cmds) = commands_of("examples/ci/gitlab/.gitlab-ci.yml");
    let lines: Vec<&str> = cmds.iter().map(|c| c.0.as_str()).collect();
    assert!(cmds.len() >= 8, "{lines:#?}");
    assert!(cmds.iter().any(|(_, c)| matches!(&c.command, Command::Plan(p) if p.compare_to.is_some())), "{lines:#?}");
    assert!(
        cmds.iter().any(|(_, c)| matches!(&c.command, Command::Comment(a) if matches!(a.forge, skyform::cli::comment::ForgeArg::Gitlab))),
        "{lines:#?}"
    );
    assert!(
        cmds.iter().any(|(_, c)| matches!(&c.command, Command::Apply(a) if a.auto_approve && !a.input)),
        "{lines:#?}"
    );
    let nightly = &doc["reoptimize-nightly"];
    assert_eq!(nightly["rules"][0]["if"], "$CI_PIPELINE_SOURCE == \"schedule\"");
    let mut s = Vec::new();
    scripts(nightly, &mut s);
    let nightly_cmds: Vec<String> = s.iter().flat_map(|x| skyform_commands(x)).map(|c| c.join(" ")).collect();
    assert!(
        nightly_cmds.iter().any(|c| c.contains(" plan ") && c.contains("-detailed-exitcode") && c.ends_with("-out=p")),
        "{nightly_cmds:?}"
    );
    assert!(nightly_cmds.iter().any(|c| c.contains(" apply ") && c.ends_with(" p")), "{nightly_cmds:?}");
}
