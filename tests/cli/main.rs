//! Integration tests: they drive the real `envstore` binary on real trees.

mod archive;
mod bad_input;
mod cold;
mod common;
mod crash;
mod fleet;
mod gc;
mod hostile;
mod hostile_inputs;
mod identity;
mod inspect;
mod keys;
mod links;
mod materialize;
mod memory;
mod relocate;
mod remote;
mod roots;
mod surfaces;
mod trust;
