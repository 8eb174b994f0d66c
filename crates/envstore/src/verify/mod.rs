//! Verify and repair: the pass over objects and trees, materializations, the cold tier, the
//! report and the repair. A policy on top of catalog/.

pub(crate) mod cold;
pub(crate) mod env;
pub(crate) mod found;
pub(crate) mod pass;
pub(crate) mod repair;
pub(crate) mod report;
#[cfg(test)]
mod tests;
