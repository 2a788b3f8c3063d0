"""sparsecore: sparse kernels that make pruned and activation-sparse LLMs smaller and faster.

Formats: :class:`CSR`, :class:`BSR`. Ops: :func:`spmm`, :func:`sparse_linear` (also
registered as ``torch.ops.sparsecore.*``). Runtime: :func:`info`, :func:`set_cpu_isa`,
:func:`set_num_threads`.
"""

__version__ = "0.1.0"

from . import nn, pruning
from .formats import BSR, CSR
from .ops import sparse_linear, spmm
from .serialization import load_sparse, save_sparse
from .sparsify import (BlockConfig, MagnitudeConfig, NMConfig, SparseGPTConfig, SparsifyReport, WandaConfig,
                       select_kernels_, sparsify_)
from .runtime import (
    available_cpu_isas,
    cpu_isa,
    get_num_threads,
    info,
    set_cpu_isa,
    set_num_threads,
    use_cpu_isa,
)

__all__ = [
    "nn",
    "pruning",
    "CSR",
    "BSR",
    "spmm",
    "sparse_linear",
    "sparsify_",
    "select_kernels_",
    "WandaConfig",
    "SparseGPTConfig",
    "save_sparse",
    "load_sparse",
    "MagnitudeConfig",
    "NMConfig",
    "BlockConfig",
    "SparsifyReport",
    "info",
    "cpu_isa",
    "available_cpu_isas",
    "set_cpu_isa",
    "use_cpu_isa",
    "set_num_threads",
    "get_num_threads",
]
