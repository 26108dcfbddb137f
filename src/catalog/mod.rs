//! The registry catalog: the compact file that lists up to a million registries, and the
//! journal of the changes made to it at runtime ([`file`]).

pub(crate) mod file;
mod journal;
