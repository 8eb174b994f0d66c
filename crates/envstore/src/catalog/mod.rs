//! Naming and reading: pins, listing, show, stats, diff, resolving what a user typed.
//! Read-only reports but for pins. Uses store/, cold/, content/.

pub(crate) mod diff;
pub(crate) mod list;
pub(crate) mod pins;
pub(crate) mod resolve;
