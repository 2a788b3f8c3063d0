"""sparsecore: sparse kernels that make pruned and activation-sparse LLMs smaller and faster.

Formats: :class:`CSR`, :class:`BSR`, :class:`NM`. Ops: :func:`spmm`, :func:`sparse_linear`
(also registered as ``torch.ops.sparsecore.*``). Runtime: :func:`info`, :func:`set_cpu_isa`,
:func:`set_num_threads`.
"""

from ._version import __version__

import os as _os
import sys as _sys

# The kernels run on torch's OpenMP threads by default, so OpenMP's wait policy is left
# alone: passive waiting there would make every parallel region, ours and torch's, pay a
# futex wake-up (measured: one 1536x576 CSR layer at batch 1 took 125 us instead of 55).
# Only with SPARSECORE_THREAD_BACKEND=own (sparsecore's own pool beside torch's) do
# torch's spinning workers take the cores that pool needs; then PASSIVE is the default
# (7B-shaped fp32 decode at 50%: 1.40x -> 1.62x). OpenMP reads it when torch loads, so it
# only takes effect if torch is not imported yet; a value you set (or
# SPARSECORE_KEEP_OMP_POLICY=1) wins. (The check matches the C++ pool's own reading of the
# variable, thread_pool.cc default_own_only; _C is not loaded yet here.)
if ("torch" not in _sys.modules and _os.environ.get("SPARSECORE_THREAD_BACKEND") == "own"
        and not _os.environ.get("SPARSECORE_KEEP_OMP_POLICY")):
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import activation, attention, nn, pruning
from .formats import BSR, CSR, NM
from .ops import sparse_linear, spmm
from .serialization import load_sparse, save_sparse
from .nn import load_sparse_state_dict
from .models.interop import export_pretrained, load_pretrained, sparsify_pruned_
from .sparsify import (BlockConfig, MagnitudeConfig, NMConfig, SparseGPTConfig, SparsifyReport, WandaConfig,
                       sparsify_)
from .kernel_choice import select_kernels_
from .fusion import fuse_projections_, unfuse_projections_
from .activation import ActSparseLinear, RSparseConfig, TEALConfig, WINAConfig
from .attention import (BLASSTConfig, GrowingCache, QuestCache, QuestConfig, StaticAttentionConfig,
                        TopKAttentionConfig, flash_attention, sparsify_attention_)
from .runtime import (
    available_cpu_isas,
    cpu_isa,
    get_num_threads,
    get_spin_us,
    get_thread_backend,
    hold_threads_during_forward,
    info,
    set_cpu_isa,
    set_num_threads,
    set_spin_us,
    set_thread_backend,
    use_cpu_isa,
)

__all__ = [
    "nn",
    "activation",
    "attention",
    "flash_attention",
    "sparsify_attention_",
    "StaticAttentionConfig",
    "TopKAttentionConfig",
    "BLASSTConfig",
    "QuestConfig",
    "GrowingCache",
    "QuestCache",
    "ActSparseLinear",
    "TEALConfig",
    "WINAConfig",
    "RSparseConfig",
    "pruning",
    "NM",
    "CSR",
    "BSR",
    "spmm",
    "sparse_linear",
    "sparsify_",
    "select_kernels_",
    "fuse_projections_",
    "unfuse_projections_",
    "WandaConfig",
    "SparseGPTConfig",
    "save_sparse",
    "load_sparse",
    "load_sparse_state_dict",
    "load_pretrained",
    "export_pretrained",
    "sparsify_pruned_",
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
    "set_spin_us",
    "get_spin_us",
    "set_thread_backend",
    "get_thread_backend",
    "hold_threads_during_forward",
]
