//! `skyform-provider-ray`: the Ray provider as a skyform plugin.

fn main() {
    std::process::exit(skyform_provider::plugin::serve(&skyform_provider_ray::RayFactory));
}
