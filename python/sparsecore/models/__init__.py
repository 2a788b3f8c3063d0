"""Real models and text for demos and quality measurements (offline, from PyPI wheels), and
the structure helpers pruning needs (blocks, protected layers)."""

from .blocks import find_blocks, protected_linears
from .perplexity import perplexity
from .real_data import load_smollm2, smollm2_gguf, wiki_articles, wiki_text

__all__ = ["find_blocks", "protected_linears", "perplexity", "load_smollm2", "smollm2_gguf", "wiki_articles",
           "wiki_text"]
