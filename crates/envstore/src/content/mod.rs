//! Content in and out: ingest, materialize, the layout of a materialization, export and import.
//! Uses store/ and cold/.

pub(crate) mod archive;
pub(crate) mod ingest;
pub(crate) mod layout;
pub(crate) mod materialize;
