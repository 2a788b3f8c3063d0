"""Property-based fuzzing of the format constructors and of sparsify_ configs: random
(often invalid) parts and arguments must give a clean ValueError/TypeError or a valid
object whose dense form is what the parts say; a failed sparsify_ leaves the model as
it was."""

import os

import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import sparsecore
from sparsecore import CSR, NM
from conftest import OUTCOMES

EXAMPLES = int(os.environ.get("SPARSECORE_FUZZ_EXAMPLES", "300")) // 2

INT_DTYPES = [torch.int16, torch.int32, torch.int64, torch.uint8, torch.float32]
VALUE_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int32]


def small_ints(draw, n, lo=-3, hi=12):
    return draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_random_csr_and_bsr_parts(data):
    rows, cols = data.draw(st.integers(0, 6)), data.draw(st.integers(0, 10))
    nnz = data.draw(st.integers(0, 12))
    row_ptr = torch.tensor(sorted(small_ints(data.draw, rows + 1, 0, nnz)) if data.draw(st.booleans())
                           else small_ints(data.draw, rows + 1, -2, nnz + 2), dtype=torch.int64)
    col = torch.tensor(small_ints(data.draw, nnz, -2, cols + 2)).to(data.draw(st.sampled_from(INT_DTYPES)))
    vals = torch.tensor([float(v) for v in small_ints(data.draw, nnz)]).to(data.draw(st.sampled_from(VALUE_DTYPES)))
    try:
        a = CSR(row_ptr, col, vals, (rows, cols))
    except (ValueError, TypeError):
        OUTCOMES["formats: clean error"] += 1
        return
    dense = torch.zeros(rows, cols, dtype=torch.float64)
    rp = row_ptr.tolist()
    for r in range(rows):
        for p in range(rp[r], rp[r + 1]):
            dense[r, int(col[p])] += float(vals[p])
    assert torch.equal(a.to_dense().double(), dense)
    x = torch.randn(3, cols)
    torch.testing.assert_close(sparsecore.sparse_linear(x, a).double(), x.double() @ dense.to(a.dtype).double().T,
                               rtol=1e-2, atol=1e-2)
    OUTCOMES["formats: valid and equal to the parts"] += 1


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_random_nm_parts(data):
    n, m = data.draw(st.integers(0, 5)), data.draw(st.sampled_from([2, 3, 4, 8]))
    rows, cols = data.draw(st.integers(0, 4)), data.draw(st.sampled_from([0, 4, 8, 12, 16]))
    per_row = cols // m * n if m and 0 < n < m and cols % m == 0 else data.draw(st.integers(0, 4))
    vals = torch.randn(rows, per_row).to(data.draw(st.sampled_from(VALUE_DTYPES[:3])))
    bitmap = torch.tensor(small_ints(data.draw, rows * 2, 0, 255), dtype=torch.uint8).reshape(rows, 2)
    if data.draw(st.booleans()) and rows and cols:
        bitmap = sparsecore.formats.nm.NM.from_dense(torch.ones(rows, cols) * (torch.arange(cols) % m < n), n, m
                                                     ).bitmap if 0 < n < m and cols % m == 0 and m in (2, 4, 8) \
            else bitmap
    try:
        a = NM(vals, bitmap, (rows, cols), n, m)
    except (ValueError, TypeError):
        OUTCOMES["formats: clean error"] += 1
        return
    assert a.to_dense().shape == (rows, cols)
    OUTCOMES["formats: valid and equal to the parts"] += 1


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_random_sparsify_configs(data):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kind = data.draw(st.sampled_from(["magnitude", "nm", "block"]))
    fmt = data.draw(st.sampled_from(["auto", "csr", "bsr", "nm", "coo"]))
    common = dict(format=fmt, tune_tokens=data.draw(st.integers(0, 3)), fallback_to_dense=data.draw(st.booleans()),
                  dtype=data.draw(st.sampled_from([None, torch.bfloat16, torch.float64])))
    if kind == "magnitude":
        cfg = sparsecore.MagnitudeConfig(sparsity=data.draw(st.sampled_from([-0.1, 0.0, 0.5, 0.99, 1.0])), **common)
    elif kind == "nm":
        cfg = sparsecore.NMConfig(n=data.draw(st.integers(0, 5)), m=data.draw(st.sampled_from([2, 3, 4, 8, 16])),
                                  **common)
    else:
        common["format"] = fmt if fmt != "auto" else "bsr"
        cfg = sparsecore.BlockConfig(sparsity=0.5, blocksize=(data.draw(st.sampled_from([1, 3, 4, 8])),
                                                              data.draw(st.sampled_from([2, 4, 5]))), **common)
    try:
        sparsecore.sparsify_(model, cfg)
    except (ValueError, TypeError):
        assert all(isinstance(model[i], nn.Linear) for i in (0, 2))
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        OUTCOMES["sparsify_: clean error, model unchanged"] += 1
        return
    y = model(torch.randn(2, 16))  # SparseLinear takes any input dtype; fallback layers keep theirs
    assert y.shape == (2, 12)
    OUTCOMES["sparsify_: converted"] += 1
