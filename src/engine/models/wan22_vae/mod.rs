//! Wan2.2 VAE (Wan-AI/Wan2.2-TI2V-5B): video encoder and decoder.
