//! Weight loading: safetensors (single, sharded, zstd-compressed) and PyTorch pickles.
