"""Analyses on embeddings: linear probes, kNN, retrieval, neighbour agreement, statistics."""
