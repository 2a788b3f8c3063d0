"""Real models and text for demos and quality measurements (offline, from PyPI wheels)."""

from .perplexity import perplexity
from .real_data import load_smollm2, smollm2_gguf, wiki_articles, wiki_text

__all__ = ["perplexity", "load_smollm2", "smollm2_gguf", "wiki_articles", "wiki_text"]
