//! `skyform output [NAME] [-json]`: the job's outputs — applied values (with task outputs
//! resolved to where the data is) over the configuration's; sensitive ones hidden in text.

use super::{views, Ctx, StateArgs, VarArgs};
use crate::state::StateStore;
use clap::Args;

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One output
    pub name: Option<String>,
    /// As JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(ctx: &Ctx, args: OutputArgs) -> anyhow::Result<i32> {
    let Some(loaded) = ctx.job_or_report() else { return Ok(1) };
    let state = ctx.open_state(&args.state, None)?.store.read()?;
    // Applied outputs win; otherwise the configuration's values (references shown as such).
    let mut values: std::collections::BTreeMap<String, (serde_json::Value, bool)> =
        loaded.spec.outputs.iter().map(|(k, o)| (k.clone(), (o.value.clone(), o.sensitive))).collect();
    for (k, v) in &state.outputs {
        // A sensitive output is not kept in the state: its value is the configuration's.
        let sensitive = values.get(k).is_some_and(|x| x.1);
        if !sensitive {
            values.insert(k.clone(), (v.clone(), sensitive));
        }
    }
    if let Some(name) = &args.name {
        let Some((v, _)) = values.get(name) else {
            let hint = crate::config::diag::did_you_mean(name, values.keys().map(String::as_str))
                .map(|h| format!(" Did you mean \"{h}\"?"))
                .unwrap_or_default();
            errln!("Error: the job has no output named \"{name}\".{hint}");
            return Ok(1);
        };
        outln!(
            "{}",
            if args.json {
                serde_json::to_string(v)?
            } else {
                v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
            }
        );
        return Ok(0);
    }
    if args.json {
        let m: serde_json::Map<String, serde_json::Value> =
            values.iter().map(|(k, (v, s))| (k.clone(), serde_json::json!({"value": v, "sensitive": s}))).collect();
        views::print_json(&serde_json::Value::Object(m));
    } else {
        if values.is_empty() {
            errln!("The job has no outputs.");
        }
        for (k, (v, s)) in &values {
            outln!("{k} = {}", if *s { "(sensitive value)".to_string() } else { v.to_string() });
        }
    }
    Ok(0)
}
