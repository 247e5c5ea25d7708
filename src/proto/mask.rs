//! Masking.
