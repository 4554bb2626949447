//! # skyform — an intercloud broker for batch jobs, driven like Terraform
//!
//! A tour of the pipeline (data flows one way; each stage is a function from one noun to
//! the next, and only the marked stages do I/O):
//!
//! ```text
//! *.sky.hcl ──config::load──▶ Loaded { JobSpec, … }        (typed, validated, spans)  [reads files]
//! Loaded × Registry ──providers::Registry::check──▶ Diagnostics   (provider/backend blocks)
//! JobSpec × Catalog ──resolve──▶ ResolvedJob               (every feasible candidate per task)
//! ResolvedJob ──optimize──▶ Assignment                     (exact: DP or ILP; ranked fallbacks)
//! State × Providers ──apply::refresh──▶ changed outside     (before plan; -refresh=false skips) [providers]
//! Assignment × State ──plan::build──▶ Plan                  (immutable; saved with -out)
//! Plan × Base ──plan::compare──▶ Comparison                 (what a pull request changes)
//! Plan ──apply(providers, state store, hooks)──▶ State      (committed after every change) [providers, state]
//! ```
//!
//! [`pipeline`] runs the planning stages as one function with typed errors; the command
//! line ([`cli`]) loads the job once per command, calls it, and renders the result.
//!
//! Where things live:
//! - [`config`]: HCL → [`config::JobSpec`]: variables, locals, modules, functions,
//!   diagnostics with file:line:col, `fmt`.
//! - [`providers`]: the provider registry — the one place that names built-in providers and
//!   cargo features; each provider crate (`providers/*`) exports a factory.
//! - [`catalog`]: instance offerings and prices of AWS, GCP, Azure (embedded snapshot built
//!   from SkyPilot-format CSVs) plus the offerings providers make of their configuration
//!   (`local`); egress prices and transfer times.
//! - [`tracker`]: observed spot prices, blocked locations, preemptions (sled).
//!   [`tracker::TrackerView`] is the pure snapshot the planner reads.
//! - [`resolve`]: JobSpec × Catalog × TrackerView → candidates per task.
//! - [`optimize`]: candidates → the optimal placement of every task.
//! - [`plan`]: the diff of an assignment against the state, with costs; a plan compared with
//!   a base plan (`plan -compare-to`).
//! - [`state`]: the job's state in sled behind [`state::StateStore`], JSON export, locks,
//!   remote backends over a provider's object store.
//! - [`apply`]: the engine that runs a plan through the providers, with failover, retries,
//!   preemption recovery, crash adoption and teardown; it reports [`apply::Event`]s.
//! - [`clock`]: injected time and date formatting; [`db`]: opening sled databases.
//! - [`bench`]: the benchmarks behind `skyform bench`.
//! - [`forge`]: pull-request comments on GitHub and GitLab (`skyform comment`) through their
//!   REST APIs [network].
//! - [`cli`]: the command line and its views — the only module that prints (the crate
//!   denies `print!`/`eprint!` elsewhere).
//!
//! Files skyform reads and writes: `*.sky.hcl` and `*.auto.skyvars` in the job directory;
//! `.skyform/tracker` and `.skyform/state` (sled; `.skyform/state.lock` while a writer
//! holds it, `*.snapshot.json` for readers while a writer runs); saved plans (`-out`,
//! JSON); `$SKYFORM_HOME/catalog.bin` when a catalog was imported.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod apply;
pub mod bench;
pub mod catalog;
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod forge;
pub mod optimize;
pub mod pipeline;
pub mod plan;
pub mod providers;
pub mod resolve;
pub mod state;
pub mod tracker;
