"""``SparseLinear``: an ``nn.Linear`` whose weight is a sparsecore CSR, BSR or N:M matrix."""

from __future__ import annotations

import torch
from torch import nn

from ..formats import BSR, CSR, NM
from ..ops import sparse_linear

# weight_layout[0]: which format the parts describe.
_FORMAT_CODES = {CSR: 0, BSR: 1, NM: 2}
_PARTS = {CSR: ("row_ptr", "col_idx", "values"), BSR: ("row_ptr", "col_idx", "values"), NM: ("values", "bitmap")}


class SparseLinear(nn.Module):
    """``y = x @ W.T + b`` with a sparse ``W`` (CSR, BSR or N:M), for any batch shape and dtype.

    The format's tensors are buffers of the module (``weight_values``, ``weight_col_idx``,
    ``weight_row_ptr`` or ``weight_bitmap``, plus ``weight_layout``, a small int64 tensor
    naming the format and shape), so ``state_dict()`` holds the compressed weight and
    ``load_state_dict`` fills a model built with the same layout (the loaded parts are
    validated before the layer uses them). ``module.to(device)`` / ``.half()`` move and
    convert the weight like a dense one (indices keep their integer type; the plan is
    rebuilt), and ``copy.deepcopy`` / pickling give an independent, working layer.

    Examples
    --------
    >>> import torch, sparsecore
    >>> lin = torch.nn.Linear(8, 4)
    >>> mask = torch.rand(4, 8) > 0.5
    >>> sl = sparsecore.nn.SparseLinear.from_linear(lin, mask)
    >>> sl(torch.randn(2, 8)).shape
    torch.Size([2, 4])
    >>> sorted(k for k in sl.state_dict() if k.startswith("weight"))
    ['weight_col_idx', 'weight_layout', 'weight_row_ptr', 'weight_values']
    """

    def __init__(self, weight: CSR | BSR | NM, bias: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(weight, (CSR, BSR, NM)):
            raise TypeError(f"weight must be a sparsecore.CSR, BSR or NM, got {type(weight).__name__}")
        self.out_features, self.in_features = weight.shape
        if bias is not None:
            if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (self.out_features,):
                raise ValueError(f"bias must be a tensor of shape ({self.out_features},), got "
                                 f"{tuple(getattr(bias, 'shape', ()))}")
            bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.bias = bias
        # Set by select_kernels_ where measured faster: calls with at least this many token
        # rows write the weight densely and run the dense GEMM (prefill). None: never.
        self.dense_from_tokens: int | None = None
        self._adopt(weight)

    # ------------------------------------------------------------ the weight and its buffers
    def _adopt(self, weight) -> None:
        """Make ``weight`` the layer's weight and its tensors the layer's buffers."""
        self.__dict__["weight"] = weight
        n, m = (weight.n, weight.m) if isinstance(weight, NM) else (0, 0)
        rows, cols = weight.shape
        layout = torch.tensor([_FORMAT_CODES[type(weight)], rows, cols, n, m], dtype=torch.int64)
        for name in ("row_ptr", "col_idx", "values", "bitmap"):
            self._buffers.pop(f"weight_{name}", None)
        for name in _PARTS[type(weight)]:
            self.register_buffer(f"weight_{name}", getattr(weight, name))
        self.register_buffer("weight_layout", layout)

    def _rebuild(self, check: bool) -> None:
        """The weight again from the buffers (after .to(), load_state_dict, unpickling)."""
        code, rows, cols, n, m = (int(v) for v in self.weight_layout.tolist())
        kinds = {v: k for k, v in _FORMAT_CODES.items()}
        if code not in kinds or (rows, cols) != (self.out_features, self.in_features):
            raise ValueError(f"weight_layout {self.weight_layout.tolist()} does not describe this "
                             f"{self.out_features}x{self.in_features} SparseLinear")
        kind = kinds[code]
        parts = [self._buffers.get(f"weight_{name}") for name in _PARTS[kind]]
        if any(p is None for p in parts):
            raise ValueError(f"SparseLinear: missing weight parts for {kind.__name__}")
        if kind is NM:
            weight = NM(parts[0], parts[1], (rows, cols), n, m, check=check)
        elif kind is BSR:
            weight = BSR(*parts, (rows, cols), check=check)
        else:
            # Keep the GEMV plan the layer had on the CPU (None: chosen by density).
            prev = self.__dict__.get("weight")
            bitmap = bool(prev.bitmap.numel()) if isinstance(prev, CSR) and prev.device.type == "cpu" else None
            weight = CSR(*parts, (rows, cols), check=check, bitmap=bitmap)
        self._adopt(weight)

    def _apply(self, fn, recurse: bool = True):
        # fn is what Module.to / .cuda / .half apply to every tensor: it moves
        # integer tensors and converts only floating ones, which is what the
        # index and value arrays need. The plan is rebuilt for the new device.
        super()._apply(fn, recurse)
        self._rebuild(check=False)
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "weight_layout"
        if key in state_dict and not torch.equal(state_dict[key].to(self.weight_layout.device), self.weight_layout):
            error_msgs.append(f"{key}: the checkpoint's layout {state_dict[key].tolist()} differs from this layer's "
                              f"{self.weight_layout.tolist()} (format, rows, cols, n, m)")
            return
        before = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if len(error_msgs) == before:
            try:
                self._rebuild(check=True)  # loaded contents are untrusted: validate them
            except (ValueError, TypeError) as exc:
                error_msgs.append(f"{prefix}weight: {exc}")

    def __setstate__(self, state):
        super().__setstate__(state)
        self._rebuild(check=True)

    # ------------------------------------------------------------ construction and use
    @classmethod
    def from_linear(cls, linear: nn.Linear, mask: torch.Tensor | None = None, *, format: str = "csr",
                    blocksize: tuple[int, int] = (16, 16), nm: tuple[int, int] = (2, 4),
                    dtype: torch.dtype | None = None) -> "SparseLinear":
        """Keep ``linear.weight`` where ``mask`` is true (default: its nonzeros) in CSR, BSR or N:M form.

        For BSR, ``mask`` is an element mask that must be constant on every ``blocksize`` tile;
        for ``format="nm"`` it must keep at most ``nm[0]`` of every ``nm[1]`` input columns.
        ``linear`` itself is not changed.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        if mask is not None and tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match the weight {tuple(w.shape)}")
        if format == "csr":
            weight = CSR.from_dense(w, mask=mask, dtype=dtype)
        elif format == "bsr":
            bh, bw = blocksize
            block_mask = None
            if mask is not None:
                rows, cols = w.shape
                if rows % bh or cols % bw:
                    raise ValueError(f"weight shape {tuple(w.shape)} is not a multiple of the block {bh}x{bw}")
                tiles = mask.reshape(rows // bh, bh, cols // bw, bw)
                block_mask = tiles.any(dim=3).any(dim=1)
                if not torch.equal(tiles.all(dim=3).all(dim=1), block_mask):
                    raise ValueError(f"mask is not constant on {bh}x{bw} blocks")
            weight = BSR.from_dense(w, (bh, bw), block_mask=block_mask, dtype=dtype)
        elif format == "nm":
            weight = NM.from_dense(w, *nm, mask=mask, dtype=dtype)
        else:
            raise ValueError(f"format must be 'csr', 'bsr' or 'nm', got {format!r}")
        bias = linear.bias.detach() if linear.bias is not None else None
        return cls(weight, bias if bias is None or dtype is None else bias.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
        limit = self.__dict__.get("dense_from_tokens")  # absent in layers pickled before it existed
        if limit is not None and x.numel() >= limit * self.in_features and x.dtype in (torch.float32, torch.bfloat16,
                                                                                        torch.float16):
            return torch.nn.functional.linear(x, self.weight.to_dense().to(x.dtype), bias)
        return sparse_linear(x, self.weight, bias)

    @property
    def density(self) -> float:
        return self.weight.density

    def extra_repr(self) -> str:
        fmt = type(self.weight).__name__
        block = f", block={self.weight.blocksize}" if isinstance(self.weight, BSR) else ""
        if isinstance(self.weight, NM):
            block = f", pattern={self.weight.n}:{self.weight.m}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"format={fmt}{block}, density={self.density:.3f}, dtype={self.weight.dtype}")


def _from_state(state_dict: dict, prefix: str, bias: bool) -> SparseLinear:
    """The SparseLinear whose parts are under ``prefix`` in ``state_dict``, validated (the
    bias, if any, is loaded afterwards by ``load_state_dict``)."""
    def part(name):
        key = f"{prefix}weight_{name}"
        if key not in state_dict:
            raise ValueError(f"the state dict has {prefix}weight_layout but no {key}")
        # A copy: the state dict may hold a live model's buffers (``model.state_dict()``), and
        # load_state_dict's copy_ into an alias of them would mark that model's weight as
        # modified in place.
        return state_dict[key].detach().cpu().clone()

    layout = state_dict[f"{prefix}weight_layout"]
    if not isinstance(layout, torch.Tensor) or layout.dtype != torch.int64 or layout.numel() != 5:
        raise ValueError(f"{prefix}weight_layout must hold 5 int64 values")
    code, rows, cols, n, m = (int(v) for v in layout.tolist())
    try:
        if code == _FORMAT_CODES[NM]:
            weight = NM(part("values"), part("bitmap"), (rows, cols), n, m)
        elif code == _FORMAT_CODES[CSR]:
            weight = CSR(part("row_ptr"), part("col_idx"), part("values"), (rows, cols))
        elif code == _FORMAT_CODES[BSR]:
            weight = BSR(part("row_ptr"), part("col_idx"), part("values"), (rows, cols))
        else:
            raise ValueError(f"unknown format code {code}")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"sparse layer {prefix[:-1] or '(root)'}: {exc}") from exc
    return SparseLinear(weight, torch.zeros(rows, dtype=weight.dtype) if bias else None)


def load_sparse_state_dict(model: nn.Module, state_dict: dict, *, strict: bool = True) -> nn.Module:
    """Load a state dict of a sparsified model (``model.state_dict()``, ``torch.save`` of
    it, or the ``model.safetensors`` that HF ``save_pretrained`` writes) into ``model``,
    a freshly built model of the same architecture.

    Every ``nn.Linear`` whose name has ``weight_layout`` in the state dict becomes a
    :class:`SparseLinear` built (and validated) from its parts; then
    ``model.load_state_dict`` loads the rest. Keys, shapes and sparse contents are all
    checked before the model's tensors change; on any error the model is as it was.

    Examples
    --------
    >>> import torch, sparsecore
    >>> model = torch.nn.Sequential(torch.nn.Linear(16, 8))
    >>> _ = sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
    >>> fresh = sparsecore.load_sparse_state_dict(torch.nn.Sequential(torch.nn.Linear(16, 8)), model.state_dict())
    >>> type(fresh[0]).__name__, torch.equal(fresh[0].weight.to_dense(), model[0].weight.to_dense())
    ('SparseLinear', True)
    """
    prefixes = [k[: -len("weight_layout")] for k in state_dict if k.endswith("weight_layout")]
    replace = {}
    for prefix in prefixes:
        name = prefix[:-1] if prefix.endswith(".") else prefix
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"the state dict has a sparse layer {name!r} that the model does not have") from None
        if isinstance(module, SparseLinear):
            continue
        if not isinstance(module, nn.Linear):
            raise ValueError(f"the state dict's sparse layer {name!r} is a {type(module).__name__} in the model")
        skeleton = _from_state(state_dict, prefix, module.bias is not None)
        if (skeleton.out_features, skeleton.in_features) != (module.out_features, module.in_features):
            raise ValueError(f"sparse layer {name!r} is {skeleton.out_features}x{skeleton.in_features} in the "
                             f"state dict but {module.out_features}x{module.in_features} in the model")
        replace[name] = skeleton.to(device=module.weight.device)
    originals = {name: model.get_submodule(name) for name in replace}
    for name, new in replace.items():
        _set_child(model, name, new)
    try:
        # Keys and shapes first: load_state_dict copies tensor by tensor and only then
        # reports a mismatch, which would leave the model half loaded.
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        if strict and (missing or unexpected):
            raise ValueError(f"state dict does not match the model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        for key, value in expected.items():
            if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape):
                raise ValueError(f"{key} has shape {tuple(state_dict[key].shape)} in the state dict but "
                                 f"{tuple(value.shape)} in the model")
        model.load_state_dict(state_dict, strict=strict)
    except BaseException:
        for name, old in originals.items():  # leave the model as it was
            _set_child(model, name, old)
        raise
    return model


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
