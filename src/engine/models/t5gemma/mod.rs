//! T5Gemma encoder (google/t5gemma-9b-9b-ul2, encoder only), as the MagiHuman pipeline uses it.
