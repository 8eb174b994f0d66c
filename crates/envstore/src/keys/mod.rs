//! Keyed environments: ensure, keys, explain, and the build records fast path. The top layer:
//! on a miss it falls through to remote/.

pub(crate) mod build;
pub(crate) mod ensure;
pub(crate) mod records;
#[cfg(test)]
mod tests;
pub(crate) mod venv;
