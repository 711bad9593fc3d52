//! Noise schedulers.
