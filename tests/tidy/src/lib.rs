//! The repository's structural rules, checked as a test: `cargo test -p omg-tidy`.
//!
//! Each rule holds the shape `ARCHITECTURE.md` describes (its "Invariants" section). A rule
//! that the code does not meet yet lists its known exceptions; such a list may only shrink,
//! and an exception that no longer applies fails the test so that it is removed.

#[cfg(test)]
mod rules;
#[cfg(test)]
mod source;
