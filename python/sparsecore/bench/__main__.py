"""python -m sparsecore.bench spmm [--quick] [--json PATH] [--skip-peer P] [--shape OUTxIN] [--n N] [--sparsity S]
python -m sparsecore.bench nm [--quick] [--json PATH]
python -m sparsecore.bench activation [--quick] [--no-decode] [--json PATH]
python -m sparsecore.bench activation-quality [--targets 0.3,0.4,0.5,0.6] [--json PATH]
python -m sparsecore.bench wanda-torchao [--calib-seqs N] [--calib-len L] [--eval-tokens T] [--json PATH]
python -m sparsecore.bench attention [--quick] [--no-flex] [--no-prefill] [--json PATH]
python -m sparsecore.bench attention-quality [--quick] [--lengths 2048,4096,8192] [--json PATH]
python -m sparsecore.bench gpu [--quick] [--no-profile] [--json PATH]
python -m sparsecore.bench llmcompressor [--venv DIR] [--methods sparsegpt,wanda] [--patterns 50%,2:4] [--json PATH]
python -m sparsecore.bench model-speed [--quick] [--no-llama] [--compile] [--json PATH]
python -m sparsecore.bench spin [--spins 0,200,2000,20000,held] [--rounds R] [--json PATH]"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparsecore.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("spmm", help="CSR/BSR SpMM vs dense torch, numpy, torch.sparse and scipy")
    p.add_argument("--quick", action="store_true", help="one shape, N in {1, 64}, sparsity in {50%%, 90%%}")
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--skip-peer", action="append", choices=["torch_sparse", "scipy"])
    p.add_argument("--shape", action="append", metavar="OUTxIN", help="restrict to these weight shapes, e.g. 4096x4096")
    p.add_argument("--n", action="append", type=int, help="restrict to these N (tokens)")
    p.add_argument("--sparsity", action="append", type=float, help="restrict to these sparsities (0..1)")
    p.set_defaults(module="spmm")
    q = sub.add_parser("nm", help="2:4 vs dense torch, numpy and CSR at 50%% (Llama-7B shapes)")
    q.add_argument("--quick", action="store_true", help="one shape, N in {1, 64}")
    q.add_argument("--json", help="also write the results as JSON here")
    q.set_defaults(module="nm")
    a = sub.add_parser("activation", help="activation-sparse kernels vs dense torch, numpy and torch gather; "
                                          "composition with weight sparsity; 7B-shaped decode")
    a.add_argument("--quick", action="store_true", help="one shape, N = 1, short decode")
    a.add_argument("--no-decode", action="store_true", help="skip the Llama-7B-shaped decode table")
    a.add_argument("--json", help="also write the results as JSON here")
    a.set_defaults(module="activation")
    aq = sub.add_parser("activation-quality", help="SmolLM2 perplexity: dense vs TEAL vs WINA vs R-Sparse")
    aq.add_argument("--targets", default="0.3,0.4,0.5,0.6", help="model-wide sparsities, comma-separated")
    aq.add_argument("--eval-tokens", type=int, default=8192)
    aq.add_argument("--calib-seqs", type=int, default=16)
    aq.add_argument("--calib-len", type=int, default=512)
    aq.add_argument("--generations", type=int, default=4, help="R-Sparse search generations")
    aq.add_argument("--population", type=int, default=8, help="R-Sparse search population")
    aq.add_argument("--json", help="also write the results as JSON here")
    aq.set_defaults(module="activation_quality")
    w = sub.add_parser("wanda-torchao", help="our Wanda vs torchao's WandaSparsifier on SmolLM2 (needs torchao)")
    w.add_argument("--calib-seqs", type=int, default=32)
    w.add_argument("--calib-len", type=int, default=512)
    w.add_argument("--eval-tokens", type=int, default=8192)
    w.add_argument("--json", help="also write the results as JSON here")
    w.set_defaults(module="wanda_torchao")
    at = sub.add_parser("attention", help="sparse flash attention vs SDPA, FlexAttention and naive torch: prefill "
                                          "masks, dynamic top-k, BLASST, decode and Quest")
    at.add_argument("--quick", action="store_true", help="L in {1k, 4k}, fp32, decode at 4k/16k batch 1")
    at.add_argument("--no-flex", action="store_true", help="skip FlexAttention (compiles per shape)")
    at.add_argument("--no-prefill", action="store_true", help="only the decode table")
    at.add_argument("--json", help="also write the results as JSON here")
    at.set_defaults(module="attention")
    aq2 = sub.add_parser("attention-quality", help="SmolLM2 long-context perplexity and passkey retrieval: dense vs "
                                                   "each attention method; end-to-end prefill/decode speed")
    aq2.add_argument("--quick", action="store_true", help="2k and 4k, fewer methods and prompts")
    aq2.add_argument("--lengths", help="comma-separated perplexity lengths (default 2048,4096,8192)")
    aq2.add_argument("--no-speed", action="store_true", help="skip the end-to-end speed table")
    aq2.add_argument("--json", help="also write the results as JSON here")
    aq2.set_defaults(module="attention_quality")
    g = sub.add_parser("gpu", help="CUDA kernels (CSR, 2:4, activation-sparse) vs cuBLAS: queued and lone-call "
                                   "times, GB/s, per-kernel GPU time")
    g.add_argument("--quick", action="store_true", help="one shape, fewer N")
    g.add_argument("--no-profile", action="store_true", help="skip the per-kernel torch.profiler table")
    g.add_argument("--json", help="also write the results as JSON here")
    g.set_defaults(module="gpu")
    lc = sub.add_parser("llmcompressor", help="our SparseGPT/Wanda vs llm-compressor's oneshot on SmolLM2 (needs "
                                              "the venv of scripts/setup_llmcompressor.sh)")
    lc.add_argument("--venv", default="build/llmcompressor-venv", help="the llm-compressor venv")
    lc.add_argument("--methods", default="sparsegpt,wanda")
    lc.add_argument("--patterns", default="50%,2:4")
    lc.add_argument("--calib-seqs", type=int, default=32)
    lc.add_argument("--calib-len", type=int, default=512)
    lc.add_argument("--eval-tokens", type=int, default=8192)
    lc.add_argument("--decode-tokens", type=int, default=32)
    lc.add_argument("--json", help="also write the results as JSON here")
    lc.set_defaults(module="llmcompressor_peer")
    ms = sub.add_parser("model-speed", help="whole-model decode/prefill, dense vs sparse (SparseGPT 50%%, 2:4, "
                                             "+TEAL) on SmolLM2 fp32/bf16 at batch 1/4/16 and Llama-7B-shaped "
                                             "layers, against the byte floor and the targets")
    ms.add_argument("--quick", action="store_true", help="32 decode steps, batch 1 and 4 (fp32), 2 rounds")
    ms.add_argument("--no-llama", action="store_true", help="skip the Llama-7B-shaped table")
    ms.add_argument("--compile", action="store_true",
                    help="SmolLM2 decode steps through torch.compile over a StaticCache, for every model alike")
    ms.add_argument("--json", help="also write the results as JSON here")
    ms.set_defaults(module="model_speed")
    sp = sub.add_parser("spin", help="SmolLM2 decode, dense vs 50%% sparse: torch's OpenMP threads vs our own pool "
                                       "at several spin lengths")
    sp.add_argument("--spins", help="comma-separated 'openmp', microseconds of own-pool spin, or 'held' "
                                    "(default openmp,0,200,2000,20000,held)")
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--json", help="also write the results as JSON here")
    sp.set_defaults(module="spin")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import importlib

    return importlib.import_module(f"sparsecore.bench.{args.module}").main(args)


if __name__ == "__main__":
    sys.exit(main())
