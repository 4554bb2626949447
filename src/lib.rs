//! # skyform — an intercloud broker for batch jobs, driven like Terraform
//!
//! The pipeline (data flows one way; each stage is a function from one noun to the next):
//!
//! ```text
//! *.sky.hcl ──config::load──▶ JobSpec                  (typed, validated, with source spans)
//! JobSpec × Catalog ──resolve──▶ ResolvedJob           (every feasible candidate per task)
//! ResolvedJob × Market ──optimize──▶ Assignment        (ILP; chosen + ranked fallbacks + report)
//! ```
//!
//! - [`config`]: HCL → [`config::JobSpec`] (variables, locals, modules, functions,
//!   diagnostics, `fmt`).
pub mod config;
