//! One integration-test binary (keeps link time low); one module per area.

mod support;

mod cli;
mod conformance;
mod corpora;
mod robustness;
mod rules;
#[macro_use]
mod store_suite;
mod batching;
mod bolt;
mod embedded;
mod live;
mod server;
mod store_conformance;
mod typed;
