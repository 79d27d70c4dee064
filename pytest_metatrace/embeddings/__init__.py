"""Content-addressed embedding cache and batched extraction.

Imports torch: only loaded by fixtures, never at plugin load.
"""

from pytest_metatrace.embeddings.degenerate import DegenerateEmbeddings
from pytest_metatrace.embeddings.extract import ExtractionError, Extractor, ExtractStats
from pytest_metatrace.embeddings.interface import Store, open_store
from pytest_metatrace.embeddings.provider import Embeddings
from pytest_metatrace.embeddings.store import PIPELINE_VERSION, EmbeddingStore, View

__all__ = [
    "PIPELINE_VERSION",
    "DegenerateEmbeddings",
    "EmbeddingStore",
    "Embeddings",
    "ExtractStats",
    "ExtractionError",
    "Extractor",
    "Store",
    "View",
    "open_store",
]
