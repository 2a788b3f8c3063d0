"""Eager CPU inference calls each op family's implementation without the dispatcher
(ops/_library.run_checked): the same results, the weight's checks remembered only for the
exact tensors that passed them, and everything that needs the dispatcher still going
through it."""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sparsecore
from sparsecore.nn import SparseLinear


def _layer(fmt: str, dtype=torch.float32) -> SparseLinear:
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    w = lin.weight.detach()
    mask = {"csr": torch.rand(48, 64) < 0.4,
            "bsr": torch.rand(3, 4).repeat_interleave(16, 0).repeat_interleave(16, 1) < 0.5,
            "nm": torch.zeros(48, 16, 4, dtype=torch.bool).index_fill_(2, torch.tensor([0, 2]), True).reshape(48, 64)}[fmt]
    return SparseLinear.from_linear(lin, mask & (w != 0), format=fmt, dtype=dtype), (w * mask).to(dtype), lin.bias.detach()


@pytest.mark.parametrize("fmt", ["csr", "bsr", "nm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_direct_path_matches_the_op_and_float64(fmt, dtype):
    layer, w, b = _layer(fmt, dtype)
    x = torch.randn(3, 5, 64).to(dtype)
    direct = layer(x)
    with torch.enable_grad():  # x needing no grad: still direct; through the op for comparison:
        via_op = getattr(torch.ops.sparsecore, f"{fmt}_mm")(*sparsecore.ops.linear._op_args(layer.weight)[1], x,
                                                            layer.bias, True)
    assert torch.equal(direct, via_op)
    ref = (x.double() @ w.double().T + b.double()).to(dtype)
    torch.testing.assert_close(direct, ref, rtol=1e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-2 if dtype == torch.bfloat16 else 1e-5)


def test_replaced_weight_tensor_is_checked_again():
    layer, _, _ = _layer("csr")
    x = torch.randn(1, 64)
    layer(x)  # the checks are remembered for these tensors
    w = layer.weight
    w.values = torch.zeros(3)  # a replaced array of the wrong size: caught, not read past its end
    with pytest.raises(ValueError, match="must hold 3 elements"):
        layer(x)


def test_copy_does_not_run_on_the_original_tensors():
    layer, _, _ = _layer("csr")
    x = torch.randn(2, 64)
    before = layer(x)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        layer.weight.values.mul_(2)  # the original is edited in place: it refuses to run ...
    with pytest.raises(ValueError, match="modified in place"):
        layer(x)
    assert torch.equal(twin(x), before)  # ... and the copy still computes with its own entries


def test_dispatch_modes_and_profiler_still_see_the_op():
    layer, _, _ = _layer("csr")
    x = torch.randn(2, 64)
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with Record():
        layer(x)
    assert any("sparsecore.csr_mm" in s for s in seen), seen
    with torch.profiler.profile() as prof:
        layer(x)
    assert any(e.name == "sparsecore::csr_mm" for e in prof.events())


def test_only_inference_calls_skip_the_dispatcher(monkeypatch):
    layer, _, _ = _layer("csr")
    calls = []
    real = sparsecore.ops.linear.run_checked
    monkeypatch.setattr(sparsecore.ops.linear, "run_checked", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(2, 64, requires_grad=True)
    with pytest.warns(UserWarning, match="autograd kernel was not registered"):  # the dispatcher's word
        layer(x).sum().backward()
    assert calls == []
    with torch.no_grad():
        layer(x)
    assert calls == [1]
