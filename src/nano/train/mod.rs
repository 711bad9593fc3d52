//! The Nano training recipe.
