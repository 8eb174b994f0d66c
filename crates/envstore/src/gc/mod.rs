//! Housekeeping: the prune plan and its sweep, rm, roots. A policy on top of catalog/.

pub(crate) mod keep;
pub(crate) mod plan;
pub(crate) mod prune;
pub(crate) mod rm;
pub(crate) mod roots;
#[cfg(test)]
mod tests;
