//! The integration tests of the kernels crate, one module per topic, in one test binary: each
//! test binary links the whole dependency graph again, so one per crate keeps the build short.

mod backends;
mod head;
mod packing;
