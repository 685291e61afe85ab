//! Wiring for the regionstore binaries: configuration loading and start-up. Everything a
//! binary does is implemented in a component crate; this crate only composes them.

pub mod config;
