"""Semantic influence: processing pulling kNN predictions around (paper Sec. 4.1)."""
