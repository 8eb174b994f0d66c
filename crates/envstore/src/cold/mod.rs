//! The cold tier: packs of content-defined chunks, packing, rehydrating, the sweep and the
//! check. Uses store/.

pub(crate) mod check;
pub(crate) mod pack;
pub(crate) mod packs;
pub(crate) mod rehydrate;
pub(crate) mod sweep;
