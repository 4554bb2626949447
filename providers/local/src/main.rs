//! `skyform-provider-local`: the local provider as an out-of-process plugin (the plugin
//! protocol's reference plugin, and what `skyform bench apply -plugin` measures).

fn main() {
    std::process::exit(skyform_provider::plugin::serve(&skyform_provider_local::LocalFactory));
}
