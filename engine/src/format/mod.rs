//! The on-bucket format above the crypto layer (`docs/FORMAT.md`, "On-bucket layout"):
//! where each object lives ([`layout`]), the user metadata every object carries
//! ([`metadata`]), and the byte layouts of the sealed records in it ([`records`]).
//!
//! Everything here is format v1 and outlives the code: changing a spelling or a byte
//! breaks every existing repository. The test vectors in `crypto/tests/vectors/` and the
//! reference decoder in `docs/reference/` pin it.

pub(crate) mod layout;
pub(crate) mod metadata;
pub(crate) mod records;

#[cfg(test)]
mod vectors;
