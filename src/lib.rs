//! # skyform — an intercloud broker for batch jobs, driven like Terraform
//!
//! A tour of the pipeline (data flows one way; each stage is a function from one noun to
//! the next, and only the marked stages do I/O):
//!
//! ```text
//! *.sky.hcl ──config::load──▶ JobSpec                 (typed, validated, with source spans)   [reads files]
//! JobSpec × Catalog ──resolve──▶ ResolvedJob          (every feasible candidate per task)
//! ResolvedJob ──optimize──▶ Assignment                (exact: DP or ILP; ranked fallbacks)
//! Assignment × State ──plan::build──▶ Plan             (immutable; saved with -out)   [state read]
//! Plan ──apply(providers, state store, hooks)──▶ State  (committed after every change) [providers, state]
//! ```
//!
//! - [`config`]: HCL → [`config::JobSpec`]: variables, locals, modules, functions,
//!   diagnostics with file:line:col, `fmt`.
//! - [`catalog`]: instance offerings and prices of AWS, GCP, Azure (embedded snapshot built
//!   from SkyPilot-format CSVs) and the local cloud; egress prices and transfer times.
//! - [`tracker`]: observed spot prices, blocked locations, preemptions (sled).
//!   [`tracker::TrackerView`] is the pure snapshot the planner reads.
//! - [`resolve`]: JobSpec × Catalog × TrackerView → candidates per task.
//! - [`optimize`]: candidates → the optimal placement of every task.
//! - [`state`]: the job's state in sled behind [`state::StateStore`], JSON export, locks.
//! - [`plan`]: the diff of an assignment against the state, with costs; its views.
//! - [`apply`]: the engine that runs a plan through the providers, with failover, retries,
//!   preemption recovery, crash adoption and teardown.
//! - [`bench`]: the benchmarks behind `skyform bench`.
//! - [`cli`]: the command line and its views.
//!
//! Files skyform reads and writes: `*.sky.hcl` and `*.auto.skyvars` in the job directory;
//! `.skyform/tracker` and `.skyform/state` (sled; `.skyform/state.lock` while a writer
//! holds it); saved plans (`-out`, JSON); `$SKYFORM_HOME/catalog.bin` when a catalog was
//! imported.

pub mod apply;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod optimize;
pub mod plan;
pub mod resolve;
pub mod state;
pub mod tracker;
