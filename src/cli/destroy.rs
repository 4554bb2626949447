//! `skyform destroy`: release everything the state holds and forget the tasks — `apply`
//! with a destroy plan (same flags).

use super::apply::{run_as, ApplyArgs};
use super::Ctx;

pub fn run(ctx: &Ctx, a: ApplyArgs) -> anyhow::Result<i32> {
    run_as(ctx, a, true)
}
