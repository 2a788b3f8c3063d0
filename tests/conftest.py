import collections
import os

import pytest
import torch

import sparsecore

ISAS = sparsecore.available_cpu_isas()


def pytest_report_header(config):
    return f"sparsecore CPU ISA paths under test: {ISAS}; info: {sparsecore.info()}"


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs a test once per ISA path this build and CPU can execute."""
    with sparsecore.use_cpu_isa(request.param):
        yield request.param


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def random_sparse(rows, cols, density, gen, integer=True):
    """Small integers / 8 (exact fp32 accumulation) or normal values, at the given density."""
    if integer:
        vals = torch.randint(-8, 9, (rows, cols), generator=gen).float() / 8
        vals[vals == 0] = 0.125
    else:
        vals = torch.randn(rows, cols, generator=gen)
    keep = torch.rand(rows, cols, generator=gen) < density
    return torch.where(keep, vals, torch.zeros(()))


def random_dense(shape, gen, integer=True):
    if integer:
        return torch.randint(-8, 9, shape, generator=gen).float() / 4
    return torch.randn(shape, generator=gen)


requires_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and sparsecore.info()["cuda_compiled"]), reason="needs a CUDA GPU and CUDA kernels"
)

REQUIRED_ISAS = [s for s in os.environ.get("SPARSECORE_REQUIRE_ISAS", "").split(",") if s]


# Outcome counts of the fuzz tests (test_fuzz_*.py), printed at the end of the session.
OUTCOMES = collections.Counter()


def pytest_terminal_summary(terminalreporter):
    if OUTCOMES:
        terminalreporter.write_sep("-", "fuzz outcomes")
        for key in sorted(OUTCOMES):
            terminalreporter.write_line(f"{key}: {OUTCOMES[key]}")
