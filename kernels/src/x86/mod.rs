//! The x86-64 paths, chosen at run time by [`crate::Isa`].

pub(crate) mod avx2;
pub(crate) mod avx512;
