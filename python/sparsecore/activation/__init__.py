"""Activation sparsity for decode: TEAL, WINA and R-Sparse, on the activation-sparse kernels.

A linear layer whose input has many near-zero channels only needs the weight columns of
the others. :func:`sparsecore.sparsify_` with :class:`TEALConfig`, :class:`WINAConfig` or
:class:`RSparseConfig` calibrates thresholds on real text and replaces the model's linears
by :class:`ActSparseLinear`, whose kernel thresholds and skips in one pass.
"""

from .apply import ActivationCalibration, ActivationReport, activation_targets, install, restore, sparsify_activations_
from .configs import ACTIVATION_CONFIGS, RSparseConfig, TEALConfig, WINAConfig
from .histogram import ScoreHistogram
from .kernel import (act_sparse_linear, pack_weight, pack_weight_sparse, reference_act_linear, unpack_weight,
                     unpack_weight_sparse)
from .linear import ActSparseLinear, PrefillPolicy
from .rsparse import layer_budget

__all__ = ["ActSparseLinear", "PrefillPolicy", "TEALConfig", "WINAConfig", "RSparseConfig", "ACTIVATION_CONFIGS",
           "ActivationCalibration", "ActivationReport", "activation_targets", "install", "restore",
           "sparsify_activations_", "ScoreHistogram", "act_sparse_linear", "pack_weight", "unpack_weight",
           "reference_act_linear", "layer_budget", "pack_weight_sparse", "unpack_weight_sparse"]
