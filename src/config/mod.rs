//! The job language: HCL files → a typed, validated [`JobSpec`].
//!
//! - [`load`] reads every `*.sky.hcl` file of a directory (and its modules), evaluates it
//!   with `hcl::eval` and returns the [`JobSpec`] or every problem found ([`Diagnostics`]).
//! - [`fmt`] formats job files canonically, keeping comments.
//! - [`spec`] holds the typed model, [`diag`] the diagnostics, [`functions`] the function
//!   library, [`vars`] variable types and values.
//!
//! I/O: reading the job's files (and `file()`), nothing else.

pub mod diag;
pub mod fmt;
pub mod functions;
pub mod load;
pub mod spec;
pub mod vars;

pub use diag::{Diagnostic, Diagnostics, Pos};
pub use load::{load, LoadOptions, Loaded};
pub use spec::*;
pub use vars::VarArg;
