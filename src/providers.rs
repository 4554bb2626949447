//! # The provider registry
//!
//! The one place that names skyform's built-in providers and their cargo features. Every
//! part of skyform that needs a provider asks a [`Registry`]: `validate` checks `provider`
//! and `backend` blocks through it ([`Registry::check`]), the catalog gets the offerings of
//! clouds it does not hold ([`Registry::offerings`]), `tracker refresh` its markets,
//! `apply`/`status`/`logs`/`sweep` the providers ([`Registry::providers`]) and the state
//! layer the object store of a remote backend ([`Registry::backend`]).
//!
//! Each provider crate exports a [`Factory`]; [`Registry::builtin`] lists them. A provider
//! whose crate is not compiled in (a build without its feature) is still known by name, so
//! a job that mentions it validates and plans — only acting on it says which feature is
//! missing. Adding a cloud is: a crate with a factory, one line in `builtin`, catalog data.
//! Tests add a fake provider with [`Registry::with`].
//!
//! A provider that is not built in is an out-of-process plugin
//! ([`skyform_provider::plugin`]): [`Registry::with_plugins`] adds every
//! `skyform-provider-NAME` executable found in the job's `.skyform/plugins/`, then on `PATH`,
//! and a block's `plugin = "path"` names the executable for that provider (it overrides a
//! built-in one too). The plugin's stderr goes to `.skyform/plugin-NAME.log`.
//!
//! No I/O here beyond what a factory does when it builds a provider (credentials,
//! endpoints).

use crate::config::{Diagnostic, Diagnostics, JobSpec, Loaded};
use skyform_provider::factory::BackendStore;
use skyform_provider::plugin::{self, PluginFactory};
use skyform_provider::{BuildContext, Factory, OfferingSpec, Provider, ProviderError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The providers of one job, by cloud name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// The backend kind that keeps the state in `.skyform/` (no provider behind it).
pub const LOCAL_BACKEND: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("this build of skyform has no {name} provider; build it with the `{feature}` feature (cargo install --path . --features {feature})")]
    NotBuilt { name: String, feature: &'static str },
    #[error("there is no provider named \"{name}\" (known: {known}) and no plugin `skyform-provider-{name}` on the plugin path; {}", plugin::install_hint(name))]
    Unknown { name: String, known: String },
    // `error`, not `source`: the message says it once (a source would print it twice).
    #[error("provider \"{name}\": {error}")]
    Build { name: String, error: ProviderError },
    #[error("there is no state backend \"{kind}\" (known: {known})")]
    UnknownBackend { kind: String, known: String },
    #[error("backend \"{kind}\": {error}")]
    Backend { kind: String, error: ProviderError },
}

enum Entry {
    Built(Arc<dyn Factory>),
    /// Known by name, not compiled into this build: the feature that adds it and the
    /// backends it would serve.
    NotBuilt {
        feature: &'static str,
        backends: &'static [&'static str],
    },
}

/// An enabled provider of a job: its name, its block, and its factory or why there is none.
pub type EnabledFactory = (String, serde_json::Value, Result<Arc<dyn Factory>, RegistryError>);

/// Provider factories by name.
#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
    /// The providers found on the plugin path, by name.
    plugins: BTreeMap<String, Arc<PluginFactory>>,
    /// The job directory: relative `plugin` paths and the plugin logs are under it.
    job_dir: PathBuf,
    /// Plugins named by a block's `plugin` attribute, started once per path.
    named: Mutex<BTreeMap<(String, PathBuf), Arc<PluginFactory>>>,
}

/// How one provider of a job is served (`skyform init`, `skyform version`).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Compiled into this build.
    BuiltIn { version: String },
    /// Known, but its feature is off in this build.
    NotBuilt { feature: &'static str },
    /// A plugin executable and the version it announced (an error when it does not start
    /// or speak the protocol).
    Plugin { path: PathBuf, version: Result<String, String> },
    /// Neither built in nor found on the plugin path.
    Missing { hint: String },
}

impl Registry {
    /// The providers of this build.
    pub fn builtin() -> Registry {
        let mut r = Registry::default();
        r.add(Arc::new(skyform_provider_local::LocalFactory));
        #[cfg(feature = "aws")]
        r.add(Arc::new(skyform_provider_aws::AwsFactory));
        #[cfg(not(feature = "aws"))]
        r.not_built("aws", "aws", &["s3"]);
        #[cfg(feature = "gcp")]
        r.add(Arc::new(skyform_provider_gcp::GcpFactory));
        #[cfg(not(feature = "gcp"))]
        r.not_built("gcp", "gcp", &["gcs"]);
        #[cfg(feature = "azure")]
        r.add(Arc::new(skyform_provider_azure::AzureFactory));
        #[cfg(not(feature = "azure"))]
        r.not_built("azure", "azure", &["azurerm"]);
        r
    }

    /// Adds the plugins found for a job in `job_dir`: every `skyform-provider-NAME` in its
    /// `.skyform/plugins/`, then on `PATH` (the first found wins). A built-in provider keeps
    /// its name; a plugin replaces a provider this build knows but did not compile in.
    pub fn with_plugins(mut self, job_dir: &Path) -> Registry {
        self.job_dir = std::path::absolute(job_dir).unwrap_or_else(|_| job_dir.to_path_buf());
        for (name, path) in plugin::discover(&plugin::search_dirs(&self.job_dir)) {
            if matches!(self.entries.get(&name), Some(Entry::Built(_))) {
                continue;
            }
            let f = Arc::new(self.plugin_factory(&name, path));
            self.entries.insert(name.clone(), Entry::Built(f.clone()));
            self.plugins.insert(name, f);
        }
        self
    }

    fn plugin_factory(&self, name: &str, path: PathBuf) -> PluginFactory {
        PluginFactory::new(name, path).with_log(self.job_dir.join(".skyform").join(format!("plugin-{name}.log")))
    }

    /// The factory serving a `provider "NAME"` block: the plugin its `plugin` attribute
    /// names, else the registry's provider of that name.
    pub fn resolve(&self, name: &str, body: &serde_json::Value) -> Result<Arc<dyn Factory>, RegistryError> {
        match self.plugin_of(name, body) {
            Some(p) => Ok(p),
            None => self.factory(name).cloned(),
        }
    }

    /// The plugin serving a block: the one its `plugin` attribute names, else the one found
    /// on the plugin path (`None`: the provider is not a plugin).
    fn plugin_of(&self, name: &str, body: &serde_json::Value) -> Option<Arc<PluginFactory>> {
        if let Some(p) = body.get("plugin").and_then(|p| p.as_str()) {
            let path = self.job_dir.join(p);
            let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
            let f = named
                .entry((name.to_string(), path.clone()))
                .or_insert_with(|| Arc::new(self.plugin_factory(name, path)))
                .clone();
            return Some(f);
        }
        self.plugins.get(name).cloned()
    }

    /// How each provider block of `spec` is served (the built-in `local` included).
    pub fn sources(&self, spec: &JobSpec) -> Vec<(String, Source)> {
        let empty = serde_json::json!({});
        Registry::enabled(spec, &empty)
            .into_iter()
            .map(|(name, body)| {
                let source = match (self.plugin_of(name, body), self.entries.get(name)) {
                    (Some(p), _) => Source::Plugin {
                        path: p.path().to_path_buf(),
                        version: p.handshake().map(|h| h.version).map_err(|e| e.to_string()),
                    },
                    (None, Some(Entry::Built(f))) => Source::BuiltIn { version: f.version() },
                    (None, Some(Entry::NotBuilt { feature, .. })) => Source::NotBuilt { feature },
                    (None, None) => Source::Missing { hint: plugin::install_hint(name) },
                };
                (name.to_string(), source)
            })
            .collect()
    }

    /// The executables of the providers found on the plugin path, by name.
    pub fn plugin_paths(&self) -> BTreeMap<String, PathBuf> {
        self.plugins.iter().map(|(n, f)| (n.clone(), f.path().to_path_buf())).collect()
    }

    /// No providers at all (tests build their own).
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Adds (or replaces) a provider.
    pub fn add(&mut self, f: Arc<dyn Factory>) -> &mut Registry {
        self.entries.insert(f.name().to_string(), Entry::Built(f));
        self
    }

    /// Adds (or replaces) a provider; for chaining.
    pub fn with(mut self, f: Arc<dyn Factory>) -> Registry {
        self.add(f);
        self
    }

    /// Adds a provider known by name but not compiled into this build: jobs naming it
    /// validate and plan; acting on it (or on one of its `backends`) says which cargo
    /// `feature` adds it. ([`Registry::builtin`] uses it for the clouds whose features are
    /// off.)
    pub fn not_built(&mut self, name: &str, feature: &'static str, backends: &'static [&'static str]) {
        self.entries.insert(name.to_string(), Entry::NotBuilt { feature, backends });
    }

    /// Every provider name this build knows (compiled in or not), sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The factory of `name`.
    pub fn factory(&self, name: &str) -> Result<&Arc<dyn Factory>, RegistryError> {
        match self.entries.get(name) {
            Some(Entry::Built(f)) => Ok(f),
            Some(Entry::NotBuilt { feature, .. }) => Err(RegistryError::NotBuilt { name: name.into(), feature }),
            None => Err(RegistryError::Unknown { name: name.into(), known: self.names().join(", ") }),
        }
    }

    /// Name → version of each provider compiled in (`None`: known, not in this build).
    pub fn versions(&self) -> BTreeMap<String, Option<String>> {
        self.entries
            .iter()
            .map(|(k, e)| {
                (
                    k.clone(),
                    match e {
                        Entry::Built(f) => Some(f.version()),
                        Entry::NotBuilt { .. } => None,
                    },
                )
            })
            .collect()
    }

    /// Checks the job's `provider` blocks and its `backend` block (no I/O, no credentials).
    /// Each problem points at the attribute to blame, or at the block.
    pub fn check(&self, loaded: &Loaded) -> Diagnostics {
        let mut d = Diagnostics::default();
        let spec = &loaded.spec;
        for (name, body) in &spec.providers {
            let pos = loaded.positions.providers.get(name);
            let at = |attr: Option<&str>| pos.map(|p| (p.of(attr), String::new()));
            let explicit = body.get("plugin").is_some();
            match self.entries.get(name) {
                None if !explicit => {
                    let names = self.names();
                    let hint = crate::config::diag::did_you_mean(name, names.iter().map(String::as_str))
                        .map(|s| format!("did you mean \"{s}\"?"))
                        .unwrap_or_else(|| format!("to add it, {}", plugin::install_hint(name)));
                    d.push(
                        Diagnostic::error(
                            "Unknown provider",
                            format!(
                                "There is no provider named \"{name}\" and no plugin `{}{name}` in .skyform/plugins/ or on PATH. Known: {}.",
                                plugin::EXECUTABLE_PREFIX,
                                names.join(", ")
                            ),
                        )
                        .at(at(None))
                        .hint(Some(hint)),
                    );
                }
                // Not in this build: nothing to check its block with; planning works, acting
                // on it says which feature is missing.
                Some(Entry::NotBuilt { .. }) if !explicit => {}
                _ => {
                    let f = match self.resolve(name, body) {
                        Ok(f) => f,
                        Err(e) => {
                            d.push(Diagnostic::error("Invalid provider configuration", e.to_string()).at(at(None)));
                            continue;
                        }
                    };
                    if let Err(e) = f.check(body) {
                        d.push(
                            Diagnostic::error("Invalid provider configuration", e.message)
                                .at(at(e.attribute.as_deref())),
                        );
                    }
                }
            }
        }
        if let Some(be) = &spec.settings.backend {
            let pos = loaded.positions.backend.as_ref();
            let at = |attr: Option<&str>| pos.map(|p| (p.of(attr), String::new()));
            match self.backend_factory(&be.kind) {
                Ok(None) => {}
                Ok(Some(f)) => {
                    if let Err(e) = f.check_backend(&be.kind, &be.config) {
                        d.push(
                            Diagnostic::error("Invalid backend configuration", e.message)
                                .at(at(e.attribute.as_deref())),
                        );
                    }
                }
                Err(RegistryError::NotBuilt { .. }) => {}
                Err(e) => {
                    d.push(Diagnostic::error("Unsupported backend", format!("{e}.")).at(at(None)));
                }
            }
        }
        loaded.sources.fill_snippets(&mut d);
        d
    }

    /// The provider serving backend `kind` (`None` for the local backend).
    fn backend_factory(&self, kind: &str) -> Result<Option<&Arc<dyn Factory>>, RegistryError> {
        if kind == LOCAL_BACKEND {
            return Ok(None);
        }
        for (name, e) in &self.entries {
            match e {
                Entry::Built(f) if f.backends().contains(&kind) => return Ok(Some(f)),
                Entry::NotBuilt { feature, backends } if backends.contains(&kind) => {
                    return Err(RegistryError::NotBuilt { name: name.clone(), feature })
                }
                _ => {}
            }
        }
        let mut known = vec![LOCAL_BACKEND.to_string()];
        for e in self.entries.values() {
            match e {
                Entry::Built(f) => known.extend(f.backends().iter().map(|s| s.to_string())),
                Entry::NotBuilt { backends, .. } => known.extend(backends.iter().map(|s| s.to_string())),
            }
        }
        known.sort();
        Err(RegistryError::UnknownBackend { kind: kind.into(), known: known.join(", ") })
    }

    /// The object store of a remote state backend (`None` for the local backend).
    pub fn backend(&self, kind: &str, body: &serde_json::Value) -> Result<Option<BackendStore>, RegistryError> {
        let Some(f) = self.backend_factory(kind)? else { return Ok(None) };
        f.backend(kind, body).map(Some).map_err(|error| RegistryError::Backend { kind: kind.into(), error })
    }

    /// The body of each enabled provider: the job's blocks, plus `local` (always enabled;
    /// `{}` when the job has no block for it).
    fn enabled<'a>(spec: &'a JobSpec, empty: &'a serde_json::Value) -> Vec<(&'a str, &'a serde_json::Value)> {
        let mut v: Vec<(&str, &serde_json::Value)> = spec.providers.iter().map(|(k, b)| (k.as_str(), b)).collect();
        if !spec.providers.contains_key(skyform_provider_local::CLOUD) {
            v.push((skyform_provider_local::CLOUD, empty));
        }
        v
    }

    /// Offerings that enabled providers make from their configuration (clouds the catalog
    /// does not hold, such as `local`), by cloud.
    pub fn offerings(&self, spec: &JobSpec) -> Result<Vec<(String, Vec<OfferingSpec>)>, RegistryError> {
        let empty = serde_json::json!({});
        let mut out = Vec::new();
        for (name, body) in Registry::enabled(spec, &empty) {
            let Ok(f) = self.resolve(name, body) else { continue };
            let offered = f.offerings(body).map_err(|e| RegistryError::Build {
                name: name.into(),
                error: ProviderError::new(skyform_provider::ErrorKind::Other, None, e.message),
            })?;
            if let Some(o) = offered {
                out.push((name.to_string(), o));
            }
        }
        Ok(out)
    }

    /// Egress prices that enabled provider blocks set for their clouds (the catalog keeps
    /// them; resolve prices data edges with them in place of the public table).
    pub fn egress(&self, spec: &JobSpec) -> Result<BTreeMap<String, skyform_provider::EgressPrices>, RegistryError> {
        let empty = serde_json::json!({});
        let mut out = BTreeMap::new();
        for (name, body) in Registry::enabled(spec, &empty) {
            let Ok(f) = self.factory(name) else { continue };
            let prices = f.egress(body).map_err(|e| RegistryError::Build {
                name: name.into(),
                error: ProviderError::new(skyform_provider::ErrorKind::Other, None, e.message),
            })?;
            if let Some(p) = prices {
                out.insert(name.to_string(), p);
            }
        }
        Ok(out)
    }

    /// Builds the providers of every enabled cloud compiled into this build. A cloud known
    /// but not built is left out ([`Registry::factory`] says why when it is needed).
    pub fn providers(&self, spec: &JobSpec, ctx: &BuildContext) -> Result<Providers, RegistryError> {
        let empty = serde_json::json!({});
        let mut out = Providers::new();
        for (name, body) in Registry::enabled(spec, &empty) {
            match self.resolve(name, body) {
                Ok(f) => {
                    let p = f
                        .provider(body, ctx)
                        .map_err(|error| RegistryError::Build { name: name.to_string(), error })?;
                    out.insert(name.to_string(), p);
                }
                Err(RegistryError::NotBuilt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The VM sizes `cloud`'s provider lists from its API (for `catalog update`), set up
    /// by the job's `provider "CLOUD"` block when there is one (else an empty block, which
    /// reads credentials from the environment); None when it lists none.
    pub fn instance_shapes(
        &self,
        spec: Option<&JobSpec>,
        cloud: &str,
        ctx: &BuildContext,
    ) -> Result<Option<Vec<skyform_provider::InstanceShape>>, RegistryError> {
        let empty = serde_json::json!({});
        let body = spec.and_then(|s| s.providers.get(cloud)).unwrap_or(&empty);
        let Ok(f) = self.resolve(cloud, body) else { return Ok(None) };
        f.instance_shapes(body, ctx).map_err(|error| RegistryError::Build { name: cloud.into(), error })
    }

    /// Each enabled provider's name, block and factory (its market can then be built on
    /// any thread: factories are `Send + Sync`).
    pub fn enabled_factories(&self, spec: &JobSpec) -> Vec<EnabledFactory> {
        let empty = serde_json::json!({});
        Registry::enabled(spec, &empty)
            .into_iter()
            .map(|(name, body)| (name.to_string(), body.clone(), self.resolve(name, body)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_knows_every_cloud_and_local_is_always_built() {
        let r = Registry::builtin();
        for c in ["aws", "azure", "gcp", "local"] {
            assert!(r.names().contains(&c.to_string()), "{c}");
        }
        assert!(r.factory("local").is_ok());
        assert!(matches!(r.factory("nope"), Err(RegistryError::Unknown { .. })));
    }

    #[test]
    fn a_provider_not_built_names_its_feature() {
        let mut r = Registry::empty();
        r.not_built("cloudy", "cloudy", &["cloudy-state"]);
        assert_eq!(r.names(), ["cloudy"]);
        assert_eq!(r.versions()["cloudy"], None);
        for e in [r.factory("cloudy").err(), r.backend("cloudy-state", &serde_json::json!({})).err()] {
            let e = e.expect("an error");
            assert!(matches!(e, RegistryError::NotBuilt { feature: "cloudy", .. }), "{e}");
            assert!(e.to_string().contains("build it with the `cloudy` feature"), "{e}");
        }
    }

    #[test]
    fn plugins_on_the_plugin_path_join_the_registry_but_never_replace_a_built_in_provider() {
        let d = tempfile::tempdir().unwrap();
        let plugins = d.path().join(".skyform/plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in ["skyform-provider-ray", "skyform-provider-local", "skyform-provider-aws"] {
            let p = plugins.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let mut r = Registry::empty();
        r.add(Arc::new(skyform_provider_local::LocalFactory));
        r.not_built("aws", "aws", &["s3"]);
        let r = r.with_plugins(d.path());
        let paths = r.plugin_paths();
        assert_eq!(paths.keys().collect::<Vec<_>>(), ["aws", "ray"], "local stays built in; a plugin adds aws");
        assert!(paths["ray"].ends_with(".skyform/plugins/skyform-provider-ray"));
        assert!(r.names().contains(&"ray".to_string()));
        assert!(r.factory("aws").is_ok(), "the plugin serves the provider this build lacks");
        // A block's `plugin` wins, even over a built-in provider.
        let f = r.resolve("local", &serde_json::json!({"plugin": "bin/skyform-provider-local"})).unwrap();
        assert_eq!(f.name(), "local");
        assert!(r.factory("nope").err().expect("unknown").to_string().contains("no plugin `skyform-provider-nope`"));
    }

    #[test]
    fn backends_resolve_to_their_provider() {
        let r = Registry::builtin();
        assert!(r.backend("local", &serde_json::json!({})).unwrap().is_none());
        match r.backend("ftp", &serde_json::json!({})) {
            Err(RegistryError::UnknownBackend { known, .. }) => assert!(known.contains("s3"), "{known}"),
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("ftp is no backend"),
        }
    }
}
