"""Processing probes: reading the processing back from embeddings (paper Sec. 3.1)."""
