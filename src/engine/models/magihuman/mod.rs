//! MagiHuman single-stream DiT (GAIR-NLP/daVinci-MagiHuman @ 209209b).
