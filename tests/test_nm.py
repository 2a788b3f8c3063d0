"""N:M (2:4 first) format and kernels: construction from masks and scores, exact
compress/decompress, the op on every ISA path and dtype against a float64 reference,
opcheck and torch.compile, SparseLinear / sparsify_ / save-load integration, bad input,
and (on a GPU) the sparse-tensor-core path."""

import pytest
import torch

import sparsecore
from sparsecore import NM
from sparsecore.formats.nm import select_nm_mask
from sparsecore.nn import SparseLinear
from conftest import random_dense, random_sparse

PATTERNS = [(2, 4), (4, 8), (1, 4), (1, 2)]


def nm_weight(rows, cols, n, m, gen, integer=True):
    """A dense weight whose kept entries form an n:m pattern (some kept entries zero)."""
    w = torch.randint(-8, 9, (rows, cols), generator=gen).float() / 8 if integer else torch.randn(rows, cols, generator=gen)
    mask = select_nm_mask(torch.rand(rows, cols, generator=gen), n, m)
    return w * mask, mask


def reference(w, x, bias=None):
    y = x.double() @ w.double().T
    return y + bias.double() if bias is not None else y


def test_select_mask_is_nm_and_deterministic(gen):
    scores = torch.randint(0, 3, (7, 24), generator=gen).float()  # many ties
    for n, m in PATTERNS:
        mask = select_nm_mask(scores, n, m)
        assert (mask.reshape(7, -1, m).sum(-1) == n).all()
        assert torch.equal(mask, select_nm_mask(scores.clone(), n, m))
        # Every kept score is >= every dropped score of its group.
        g = scores.reshape(7, -1, m)
        km = mask.reshape(7, -1, m)
        kept_min = torch.where(km, g, torch.full_like(g, 1e9)).amin(-1)
        dropped_max = torch.where(~km, g, torch.full_like(g, -1e9)).amax(-1)
        assert (kept_min >= dropped_max).all()
    # Ties go to the lower column.
    assert select_nm_mask(torch.ones(1, 4), 2, 4).tolist() == [[True, True, False, False]]


@pytest.mark.parametrize("n,m", PATTERNS)
def test_roundtrip_exact(n, m, gen):
    w, mask = nm_weight(9, 40, n, m, gen)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        a = NM.from_dense(w, n, m, mask=mask, dtype=dtype)
        assert torch.equal(a.to_dense().float(), w)
        assert a.values.shape == (9, 40 // m * n)
        assert (a.stored_mask().reshape(9, -1, m).sum(-1) == n).all()
        assert torch.equal(a.stored_mask() | ~mask, torch.ones_like(mask))  # every kept entry stored
    b = NM.from_dense(w, n, m)  # nonzeros only: already n:m
    assert torch.equal(b.to_dense(), w)
    s = NM.from_dense(torch.randn(5, 16, generator=gen), n, m, scores="magnitude")
    assert (s.stored_mask().reshape(5, -1, m).sum(-1) == n).all()


def test_bytes_per_weight(gen):
    w, mask = nm_weight(64, 256, 2, 4, gen)
    assert NM.from_dense(w, mask=mask, dtype=torch.bfloat16).bytes_per_weight == pytest.approx(1.125)
    assert NM.from_dense(w, mask=mask).bytes_per_weight == pytest.approx(2.125)


SHAPES = [(1, 4), (7, 12), (33, 36), (17, 100), (130, 264), (5, 1104)]


@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("n_tok", [1, 3, 8, 9, 64, 77])
def test_linear_exact_every_isa(rows, cols, n_tok, isa, gen):
    """Small integers: fp32 accumulation is exact, so every output must equal float64."""
    w, mask = nm_weight(rows, cols, 2, 4, gen)
    x = random_dense((n_tok, cols), gen)
    bias = random_dense((rows,), gen)
    for vdtype in (torch.float32, torch.bfloat16, torch.float16):
        a = NM.from_dense(w, mask=mask, dtype=vdtype)
        for xdtype in (torch.float32, torch.bfloat16):
            xx = x.to(xdtype)
            got = sparsecore.sparse_linear(xx, a, bias)
            want = reference(w, xx.float(), bias).to(xdtype)
            assert got.dtype == xdtype
            assert torch.equal(got, want), (vdtype, xdtype)


@pytest.mark.parametrize("n,m", PATTERNS)
def test_other_patterns_and_spmm(n, m, isa, gen):
    w, mask = nm_weight(21, 48, n, m, gen)
    a = NM.from_dense(w, n, m, mask=mask)
    for k in (1, 5, 40):
        b = random_dense((48, k), gen)
        assert torch.equal(sparsecore.spmm(a, b), (w.double() @ b.double()).float())
    # Strided (non-contiguous) operands, 3-D input.
    x = random_dense((2, 3, 96), gen)[..., ::2]
    assert torch.equal(sparsecore.sparse_linear(x, a), reference(w, x.reshape(-1, 48)).float().reshape(2, 3, 21))


def test_random_values_close(gen):
    w, mask = nm_weight(256, 512, 2, 4, gen, integer=False)
    x = torch.randn(17, 512, generator=gen)
    a = NM.from_dense(w, mask=mask)
    torch.testing.assert_close(sparsecore.sparse_linear(x, a), reference(w, x).float(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_opcheck(linear, with_bias, gen):
    w, mask = nm_weight(12, 24, 2, 4, gen)
    a = NM.from_dense(w, mask=mask)
    args = (a.values, a.bitmap, a.mma_meta, a.n, a.m, 24)
    dense = random_dense((5, 24), gen) if linear else random_dense((24, 5), gen)
    bias = random_dense((12,), gen) if with_bias else None
    torch.library.opcheck(torch.ops.sparsecore.nm_mm, (*args, dense, bias, linear))
    out = torch.empty((5, 12) if linear else (12, 5))
    torch.library.opcheck(torch.ops.sparsecore.nm_mm_out, (*args, dense, bias, linear, out))


def test_torch_compile(gen):
    w, mask = nm_weight(16, 32, 2, 4, gen)
    a = NM.from_dense(w, mask=mask)
    bias = random_dense((16,), gen)

    def block(x):
        return torch.relu(sparsecore.sparse_linear(x, a, bias)) * 2

    x = random_dense((3, 32), gen)
    torch.testing.assert_close(torch.compile(block, fullgraph=True)(x), block(x))


def test_sparse_linear_sparsify_and_save_load(gen, tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 32))
    ref = torch.nn.Sequential(*[torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 32)])
    ref.load_state_dict(model.state_dict())
    report = sparsecore.sparsify_(model, sparsecore.NMConfig(fallback_to_dense=False, format="nm"))
    assert [r.format for r in report.layers] == ["nm", "nm"]
    for lin, dense in ((model[0], ref[0]), (model[2], ref[2])):
        assert isinstance(lin, SparseLinear) and isinstance(lin.weight, NM)
        assert (lin.weight.stored_mask().reshape(lin.out_features, -1, 4).sum(-1) == 2).all()
        # The kept weights are the 2 largest of each 4 (magnitude).
        expected = dense.weight.detach() * select_nm_mask(dense.weight.detach().abs(), 2, 4)
        assert torch.equal(lin.weight.to_dense(), expected)
    x = torch.randn(4, 64, generator=gen)
    y = model(x)
    path = str(tmp_path / "m.safetensors")
    sparsecore.save_sparse(model, path)
    fresh = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 32))
    sparsecore.load_sparse(fresh, path)
    assert isinstance(fresh[0].weight, NM) and torch.equal(fresh(x), y)
    model16 = model.to(torch.bfloat16)
    assert model16[0].weight.dtype == torch.bfloat16
    torch.testing.assert_close(model16(x.bfloat16()).float(), y, rtol=0.05, atol=0.05)


def test_calibrated_24_runs_as_nm(gen):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(config).eval()
    calib = [{"input_ids": torch.randint(0, 96, (1, 16), generator=gen), "use_cache": False} for _ in range(2)]
    # format="nm" asks for the N:M kernels; "auto" would keep whichever of N:M and CSR the
    # clock prefers, which depends on the machine.
    report = sparsecore.sparsify_(model, sparsecore.WandaConfig(pattern="2:4", calibration=calib, format="nm",
                                                                fallback_to_dense=False, progress=False))
    assert {r.format for r in report.layers} == {"nm"}
    out = model.generate(torch.randint(0, 96, (1, 5), generator=gen), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 8)


def test_bad_input(gen):
    w, mask = nm_weight(4, 16, 2, 4, gen)
    with pytest.raises(ValueError, match="not an 2:4 pattern: row"):
        NM.from_dense(torch.ones(4, 16))
    bad = mask.clone()
    bad[1, 4:8] = True
    with pytest.raises(ValueError, match=r"row 1, columns 4\.\.7 keep 4"):
        NM.from_dense(w, mask=bad)
    with pytest.raises(ValueError, match="not a multiple of m = 4"):
        NM.from_dense(torch.zeros(4, 18))
    with pytest.raises(ValueError, match="pattern 3:3"):
        NM.from_dense(w, 3, 3)
    with pytest.raises(ValueError, match="pattern 1:16"):
        NM.from_dense(w, 1, 16)
    with pytest.raises(ValueError, match="NaN or Inf"):
        NM.from_dense(torch.where(mask, torch.full_like(w, float("nan")), w), mask=mask)
    with pytest.raises(TypeError, match="int64"):
        NM.from_dense(w.long())
    with pytest.raises(ValueError, match="either mask or scores"):
        NM.from_dense(w, mask=mask, scores="magnitude")
    a = NM.from_dense(w, mask=mask)
    # Corrupted parts: wrong bitmap (3 of 4 in a group), wrong shapes.
    bits = a.bitmap.clone()
    bits[0, 0] = 0x07
    with pytest.raises(ValueError, match="expected exactly 2"):
        NM(a.values, bits, a.shape)
    with pytest.raises(ValueError, match="values must have shape"):
        NM(a.values[:, :-1], a.bitmap, a.shape)
    with pytest.raises(ValueError, match="in_features 16"):
        sparsecore.sparse_linear(torch.randn(2, 12), a)
    with pytest.raises(TypeError, match="not supported"):
        sparsecore.sparse_linear(torch.randn(2, 16).double(), a)
    a.values.mul_(2)  # in-place edit after validation
    with pytest.raises(ValueError, match="modified in place"):
        sparsecore.sparse_linear(torch.randn(2, 16), a)


cuda = pytest.mark.skipif(not (torch.cuda.is_available() and sparsecore.info()["cuda_compiled"]),
                          reason="needs a CUDA GPU and a CUDA build")


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n_tok", [1, 7, 17, 64, 130])
@pytest.mark.parametrize("rows,cols", [(80, 160), (80, 192), (144, 320)])  # k % 64 == 0: tiled kernel above 16 tokens
def test_cuda_tensor_cores_exact(dtype, n_tok, rows, cols, gen):
    w, mask = nm_weight(rows, cols, 2, 4, gen)
    a = NM.from_dense(w, mask=mask, dtype=dtype).to("cuda")
    assert a.tensor_cores
    x = random_dense((n_tok, cols), gen).to(dtype)
    bias = random_dense((rows,), gen).to(dtype)
    got = sparsecore.sparse_linear(x.cuda(), a, bias.cuda()).cpu()
    assert torch.equal(got, reference(w, x.float(), bias.float()).to(dtype))


@cuda
def test_cuda_fallback_and_opcheck(gen):
    w, mask = nm_weight(24, 40, 2, 4, gen)  # 24 rows, 40 cols: off the 16 x 32 tiles
    a = NM.from_dense(w, mask=mask).to("cuda")
    assert not a.tensor_cores
    assert not NM.from_dense(nm_weight(32, 64, 2, 4, gen)[0], dtype=torch.bfloat16).to("cuda").tensor_cores  # tiny
    x = random_dense((3, 40), gen)
    assert torch.equal(sparsecore.sparse_linear(x.cuda(), a).cpu(), reference(w, x).float())
    w2, m2 = nm_weight(64, 64, 2, 4, gen)
    b = NM.from_dense(w2, mask=m2, dtype=torch.bfloat16).to("cuda")
    assert b.tensor_cores
    args = (b.values, b.bitmap, b.mma_meta, 2, 4, 64)
    torch.library.opcheck(torch.ops.sparsecore.nm_mm, (*args, random_dense((5, 64), gen).bfloat16().cuda(), None, True))


def test_dense_fallback_contract_on_cpu(gen):
    """The CUDA dense fallback's math (fp32 accumulation, NaN rule, bias, both forms) checked
    where it can run here: on CPU tensors against float64."""
    from sparsecore.ops.nm import dense_fallback

    w = random_sparse(9, 33, 0.5, gen)
    x = random_dense((2, 5, 33), gen).to(torch.bfloat16)
    x[1, 2, 4] = float("inf")
    bias = random_dense((9,), gen)
    y = dense_fallback(x, w, bias, True)
    want = (x.double() @ w.double().T + bias.double()).to(torch.bfloat16)
    assert y.dtype == torch.bfloat16 and torch.isnan(y[1, 2]).all()
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[1, 2] = False
    assert torch.equal(y[keep], want[keep])
    b = random_dense((33, 4), gen)
    b[0, 3] = float("nan")
    y = dense_fallback(b, w, None, False)
    assert torch.isnan(y[:, 3]).all() and torch.equal(y[:, :3], (w.double() @ b[:, :3].double()).float())
