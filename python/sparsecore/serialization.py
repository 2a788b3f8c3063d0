"""Compressed save / load of sparsified models with safetensors (no pickle).

On disk a CSR weight at density >= 1/16 is a bitmap of stored columns (1 bit per weight)
plus the packed values; sparser CSR weights keep uint16/int32 column indices; BSR keeps
its block indices. A 50 %-sparse bf16 layer therefore takes 1.125 bytes per weight
instead of 2. Every tensor is stored with a CRC-32 of its name, dtype, shape and bytes,
and the sparsecore metadata with one of its own: a file with a flipped bit anywhere in
its data or its metadata refuses to load. Loading also rebuilds every sparse weight
through the validating constructors, and every problem raises ``ValueError`` naming the
file, with the model untouched. Writes go to a temporary file that is flushed and renamed
into place (see :mod:`sparsecore._files`): a failed save leaves no partial file, and an
existing file is replaced only if sparsecore wrote it (or ``overwrite=True``).

Examples
--------
>>> import torch, sparsecore, tempfile, os
>>> model = torch.nn.Sequential(torch.nn.Linear(32, 32))
>>> _ = sparsecore.sparsify_(model, sparsecore.MagnitudeConfig(sparsity=0.5, fallback_to_dense=False))
>>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
>>> sparsecore.save_sparse(model, path)
>>> fresh = torch.nn.Sequential(torch.nn.Linear(32, 32))
>>> _ = sparsecore.load_sparse(fresh, path)
>>> type(fresh[0]).__name__
'SparseLinear'
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zlib

import numpy as np
import torch
from torch import nn

from ._bits import pack_bits, unpack_bits
from .activation import ActSparseLinear, PrefillPolicy
from .formats import BSR, CSR, NM
from .nn import SparseLinear

FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1 files (no checksums) load with a warning
_META_KEY = "sparsecore"
_META_CRC_KEY = "sparsecore_crc32"
# The SparseLinear buffers (nn/sparse_linear.py): stored in compressed form instead.
_SPARSE_BUFFERS = ("weight_row_ptr", "weight_col_idx", "weight_values", "weight_bitmap", "weight_layout")


def tensor_checksum(name: str, t: torch.Tensor) -> str:
    """CRC-32 (hex) of a tensor's name, dtype, shape and bytes."""
    crc = zlib.crc32(f"{name}|{str(t.dtype)}|{list(t.shape)}".encode())
    if t.numel():
        crc = zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc & 0xFFFFFFFF:08x}"


def _is_sparse_buffer(key: str, sparse_layers: set[str]) -> bool:
    prefix, _, leaf = key.rpartition(".")
    return leaf in _SPARSE_BUFFERS and prefix in sparse_layers
# Below this density column indices (2 bytes per nonzero) beat the bitmap (1 bit per weight).
_BITMAP_MIN_DENSITY = 1 / 16


def _csr_tensors(name: str, w: CSR) -> tuple[dict, dict]:
    rows, cols = w.shape
    if w.density >= _BITMAP_MIN_DENSITY:
        mask = _csr_mask(w)
        bits = pack_bits(torch.from_numpy(mask))
        return ({f"{name}.bitmap": bits, f"{name}.values": w.values},
                {"format": "csr", "encoding": "bitmap", "shape": [rows, cols]})
    return ({f"{name}.row_ptr": w.row_ptr, f"{name}.col_idx": w.col_idx, f"{name}.values": w.values},
            {"format": "csr", "encoding": "indices", "shape": [rows, cols]})


def _csr_mask(w: CSR) -> np.ndarray:
    """Boolean (rows, cols) array of stored positions (explicit zeros included)."""
    from ._dtypes import indices_to_int64

    rows, cols = w.shape
    mask = np.zeros((rows, cols), dtype=bool)
    row_of = torch.repeat_interleave(torch.arange(rows), w.row_ptr.cpu().diff()).numpy()
    mask[row_of, indices_to_int64(w.col_idx.cpu()).numpy()] = True
    return mask


def _act_tensors(name: str, module: ActSparseLinear) -> tuple[dict, dict]:
    """An activation-sparse layer: its dense weight plus the recipe (threshold, scale, low rank)."""
    parts = {f"{name}.weight": module.weight}
    if module.scale is not None:
        parts[f"{name}.act_scale"] = module.scale
    if module.rank:
        down, up = module.lowrank_factors()
        parts[f"{name}.lowrank_down"] = down
        parts[f"{name}.lowrank_up"] = up
    info = {"format": "act", "shape": [module.out_features, module.in_features], "method": module.method,
            "threshold": module.threshold, "target_sparsity": module.target_sparsity, "rank": module.rank,
            "scale": module.scale is not None, "weight_sparse": module.weight_sparse,
            "prefill": {"mode": module.prefill.mode, "dense_fraction": module.prefill.dense_fraction}}
    return parts, info


def _is_sparsecore_file(path: str) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return _META_KEY in (f.metadata() or {})
    except Exception:
        return False


def save_sparse(model: nn.Module, path: str, *, overwrite: bool = False) -> None:
    """Write ``model``'s state with every :class:`SparseLinear` weight in compressed form
    and every :class:`ActSparseLinear` with its activation-sparsity recipe.

    An existing file at ``path`` is replaced only if it is a file sparsecore wrote, or with
    ``overwrite=True``; anything else raises ``ValueError`` before any work. Projections
    fused by :func:`sparsecore.fuse_projections_` are stored as the layers they replace."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory")
    if os.path.exists(path) and not overwrite and not _is_sparsecore_file(path):
        raise ValueError(f"{path}: exists and is not a sparsecore file; pass overwrite=True to replace it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise FileNotFoundError(f"{path}: the directory does not exist")
    from .fusion import unfused

    with unfused(model):  # fused projections are stored as the layers they replace
        _save_sparse(model, path)


def _save_sparse(model: nn.Module, path: str) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    for name, module in model.named_modules():
        if isinstance(module, ActSparseLinear):
            parts, info = _act_tensors(name, module)
            tensors.update(parts)
            layers[name] = info
            continue
        if not isinstance(module, SparseLinear):
            continue
        w = module.weight
        key = f"{name}.weight"
        if isinstance(w, CSR):
            parts, info = _csr_tensors(key, w)
        elif isinstance(w, NM):
            # The kernel layout is already the compact one: values + 1 bit per weight.
            parts = {f"{key}.bitmap": w.bitmap, f"{key}.values": w.values}
            info = {"format": "nm", "encoding": "bitmap", "shape": list(w.shape), "n": w.n, "m": w.m}
        else:
            parts = {f"{key}.row_ptr": w.row_ptr, f"{key}.col_idx": w.col_idx, f"{key}.values": w.values}
            info = {"format": "bsr", "encoding": "indices", "shape": list(w.shape)}
        tensors.update(parts)
        layers[name] = info
    # Tied weights (an LM's input embedding and lm_head) are one tensor under two names:
    # stored once, the other name recorded as an alias.
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    sparse_names = set(layers)
    for key, value in model.state_dict().items():
        if _is_sparse_buffer(key, sparse_names):
            continue
        if key in tensors:
            raise ValueError(f"state key {key!r} collides with a sparse weight part")
        ident = (value.device, value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
        if value.numel() and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        tensors[key] = value
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    checksums = {k: tensor_checksum(k, v) for k, v in tensors.items()}
    info = json.dumps({"version": FORMAT_VERSION, "layers": layers, "aliases": aliases, "checksums": checksums})
    metadata = {_META_KEY: info, _META_CRC_KEY: f"{zlib.crc32(info.encode()) & 0xFFFFFFFF:08x}"}
    from ._files import write_file_atomically

    write_file_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _read(path: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors reports corruption with its own exception types
        raise ValueError(f"{path}: not a readable safetensors file (corrupted or truncated?): {exc}") from exc
    if _META_KEY not in meta:
        raise ValueError(f"{path}: no sparsecore metadata; was it written by sparsecore.save_sparse?")
    try:
        info = json.loads(meta[_META_KEY])
        if not isinstance(info, dict):
            raise TypeError("the metadata is not a mapping")
        version = info.get("version")
        layers = info["layers"]
        aliases = info.get("aliases", {})
        if not isinstance(layers, dict) or not all(isinstance(v, dict) for v in layers.values()):
            raise TypeError("layers must be a mapping of layer name to a mapping")
        if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in aliases.items()):
            raise TypeError("aliases must be a mapping of names")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed sparsecore metadata: {exc}") from exc
    if version not in _READABLE_VERSIONS:
        raise ValueError(f"{path}: sparsecore file version {version!r} is not supported "
                         f"(this build reads versions {', '.join(map(str, _READABLE_VERSIONS))})")
    _verify_checksums(path, meta, info, tensors)
    for alias, target in aliases.items():
        if target not in tensors or alias in tensors:
            raise ValueError(f"{path}: malformed sparsecore metadata: alias {alias!r} -> {target!r}")
        tensors[alias] = tensors[target]
    return tensors, layers


def _verify_checksums(path: str, meta: dict, info: dict, tensors: dict) -> None:
    """Every tensor and the metadata must match the CRC-32 written with them (version 2+)."""
    if info.get("version") == 1:
        warnings.warn(f"{path}: a version 1 sparsecore file has no checksums; its integrity cannot be checked "
                      f"(save it again to add them)", stacklevel=4)
        return
    raw = meta[_META_KEY]
    if meta.get(_META_CRC_KEY) != f"{zlib.crc32(raw.encode()) & 0xFFFFFFFF:08x}":
        raise ValueError(f"{path}: the sparsecore metadata does not match its checksum (the file is corrupted)")
    sums = info.get("checksums")
    if not isinstance(sums, dict) or set(sums) != set(tensors):
        raise ValueError(f"{path}: the checksum list does not match the tensors in the file (corrupted?)")
    for key, t in tensors.items():
        if tensor_checksum(key, t) != sums[key]:
            raise ValueError(f"{path}: tensor {key!r} does not match its checksum (the file is corrupted)")


def _take(tensors: dict, key: str, path: str) -> torch.Tensor:
    try:
        return tensors.pop(key)
    except KeyError:
        raise ValueError(f"{path}: missing tensor {key!r}") from None


def _build_act(name: str, info: dict, tensors: dict, path: str, rows: int, cols: int) -> dict:
    """The checked arguments of an :class:`ActSparseLinear` (built once everything is validated)."""
    weight = _take(tensors, f"{name}.weight", path)
    if tuple(weight.shape) != (rows, cols):
        raise ValueError(f"{path}: {name}.weight has shape {tuple(weight.shape)}, expected {(rows, cols)}")
    try:
        threshold = float(info["threshold"])
        target = info.get("target_sparsity")
        target = None if target is None else float(target)
        rank = int(info["rank"])
        prefill = PrefillPolicy(str(info["prefill"]["mode"]), float(info["prefill"]["dense_fraction"]))
        method = str(info["method"])
        has_scale = bool(info["scale"])
        weight_sparse = bool(info.get("weight_sparse", False))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed activation-sparsity metadata for {name}: {exc}") from exc
    if math.isnan(threshold):
        raise ValueError(f"{path}: {name} has a NaN threshold")
    scale = _take(tensors, f"{name}.act_scale", path) if has_scale else None
    if scale is not None and (tuple(scale.shape) != (cols,) or not torch.isfinite(scale).all() or (scale < 0).any()):
        raise ValueError(f"{path}: {name}.act_scale must hold {cols} finite non-negative values")
    lowrank = None
    if rank:
        down = _take(tensors, f"{name}.lowrank_down", path)
        up = _take(tensors, f"{name}.lowrank_up", path)
        if tuple(down.shape) != (rank, cols) or tuple(up.shape) != (rows, rank):
            raise ValueError(f"{path}: {name} low-rank factors have shapes {tuple(down.shape)} and {tuple(up.shape)}, "
                             f"expected {(rank, cols)} and {(rows, rank)}")
        lowrank = (down, up)
    if not torch.isfinite(weight).all():
        raise ValueError(f"{path}: {name}.weight contains NaN or Inf")
    return {"weight": weight, "threshold": threshold, "scale": scale, "lowrank": lowrank, "prefill": prefill,
            "method": method, "target_sparsity": target, "weight_sparse": weight_sparse}


def _build_weight(name: str, info: dict, tensors: dict, path: str):
    key = f"{name}.weight"
    rows, cols = (int(v) for v in info["shape"])
    if info["format"] == "act":
        return _build_act(name, info, tensors, path, rows, cols)
    if info["format"] == "csr" and info["encoding"] == "bitmap":
        bits = _take(tensors, f"{key}.bitmap", path)
        values = _take(tensors, f"{key}.values", path)
        if bits.dtype != torch.uint8 or tuple(bits.shape) != (rows, (cols + 7) // 8):
            raise ValueError(f"{path}: {key}.bitmap has shape {tuple(bits.shape)}, expected {(rows, (cols + 7) // 8)}")
        mask_t = unpack_bits(bits, cols)
        mask = mask_t.numpy()
        counts = mask_t.sum(dim=1, dtype=torch.int64)
        if int(counts.sum()) != values.numel():
            raise ValueError(f"{path}: {key} has {values.numel()} values but its bitmap marks {int(counts.sum())}")
        row_ptr = torch.zeros(rows + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=row_ptr[1:])
        cols_idx = torch.from_numpy(np.nonzero(mask)[1].astype(np.int32))
        col_idx = cols_idx.to(torch.int16) if cols <= 65536 else cols_idx
        return CSR(row_ptr, col_idx, values, (rows, cols))
    if info["format"] == "nm":
        bits = _take(tensors, f"{key}.bitmap", path)
        values = _take(tensors, f"{key}.values", path)
        try:
            n, m = int(info["n"]), int(info["m"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed N:M metadata for {name}: {exc}") from exc
        try:
            return NM(values, bits, (rows, cols), n, m)  # validated: shapes, exactly n per group, finite
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {key}: {exc}") from exc
    parts = [_take(tensors, f"{key}.{p}", path) for p in ("row_ptr", "col_idx", "values")]
    if info["format"] == "csr":
        return CSR(*parts, (rows, cols))
    if info["format"] == "bsr":
        return BSR(*parts, (rows, cols))
    raise ValueError(f"{path}: unknown sparse format {info['format']!r} for {name}")


def _check_dense_state(model: nn.Module, tensors: dict, sparse_layers: set[str], path: str) -> None:
    """The file's dense tensors must be exactly the model's remaining state, shape for shape,
    so that ``load_state_dict`` cannot fail after layers were already replaced."""
    expected = {k: v for k, v in model.state_dict().items()
                if not (k.rpartition(".")[0] in sparse_layers and (k.endswith(".weight") or _is_sparse_buffer(k, sparse_layers)))}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in expected.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(tensors[key].shape)} in the file but "
                             f"{tuple(value.shape)} in the model")


def load_sparse(model: nn.Module, path: str) -> nn.Module:
    """Load a :func:`save_sparse` file into ``model`` (same architecture, dense or sparse), in place.

    Layers stored sparse become :class:`SparseLinear` (validated); all other tensors load
    through ``load_state_dict(strict=True)``. Returns ``model``.
    """
    tensors, layers = _read(path)
    built = {}
    for name, info in layers.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{path}: the model has no layer {name!r}") from None
        if not isinstance(module, (nn.Linear, SparseLinear, ActSparseLinear)):
            raise ValueError(f"{path}: layer {name!r} is a {type(module).__name__}, not a linear layer")
        shape = (module.out_features, module.in_features)
        try:
            file_shape = tuple(int(v) for v in info["shape"])
            if file_shape != shape:
                raise ValueError(f"layer {name!r} is {file_shape} in the file but {shape} in the model")
            built[name] = _build_weight(name, info, tensors, path)
        except ValueError as exc:
            raise ValueError(exc if str(exc).startswith(path) else f"{path}: {exc}") from exc
        except (KeyError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
            # A malformed entry: a missing field, a wrong type, a tensor of the wrong kind.
            raise ValueError(f"{path}: malformed entry for layer {name!r}: {type(exc).__name__}: {exc}") from exc
    _check_dense_state(model, tensors, set(built), path)
    # Everything is validated; only now change the model.
    for name, weight in built.items():
        module = model.get_submodule(name)
        has_bias = module.bias is not None
        parent, _, child = name.rpartition(".")
        if isinstance(weight, dict):  # activation sparsity: the bias comes with load_state_dict below
            args = dict(weight)
            w = args.pop("weight")
            bias = torch.zeros(w.shape[0], dtype=w.dtype) if has_bias else None
            new = ActSparseLinear(w, bias, args.pop("threshold"), **args)
        else:
            bias = torch.zeros(weight.shape[0], dtype=weight.dtype) if has_bias else None
            new = SparseLinear(weight, bias)
        setattr(model.get_submodule(parent) if parent else model, child, new)
    # The sparse layers' own parts are in place already; everything else was checked
    # key for key and shape for shape above, so this cannot fail half way.
    result = model.load_state_dict(tensors, strict=False)
    leftover = [k for k in result.missing_keys if not _is_sparse_buffer(k, set(built))]
    if leftover or result.unexpected_keys:
        raise ValueError(f"{path}: state mismatch after loading: missing {leftover[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return model
