//! `skyform version [-json]`: the version, the embedded catalog and the providers of this
//! build (a provider known by name but not compiled in has no version), plus the plugins
//! found for the job (`.skyform/plugins/`, then `PATH`) with their executables and the
//! versions they announce.

use super::Ctx;
use clap::Args;

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: VersionArgs) -> anyhow::Result<i32> {
    let v = env!("CARGO_PKG_VERSION");
    let providers = ctx.registry.versions();
    let plugins = ctx.registry.plugin_paths();
    if a.json {
        let p: serde_json::Map<String, serde_json::Value> = providers
            .iter()
            .map(|(k, v)| {
                let mut o = serde_json::json!({ "version": v, "built": v.is_some() });
                if let Some(path) = plugins.get(k) {
                    o["built"] = false.into();
                    o["plugin"] = path.display().to_string().into();
                }
                (k.clone(), o)
            })
            .collect();
        outln!(
            "{}",
            serde_json::json!({
                "skyform_version": v,
                "catalog": crate::catalog::Catalog::embedded_info(),
                "providers": p,
            })
        );
    } else {
        outln!("skyform v{v}");
        for (name, version) in &providers {
            match version {
                Some(pv) if plugins.contains_key(name) => {
                    outln!("+ provider {name} v{pv} (plugin {})", plugins[name].display())
                }
                Some(pv) => outln!("+ provider {name} v{pv}"),
                None => outln!("  provider {name} (not in this build)"),
            }
        }
    }
    Ok(0)
}
