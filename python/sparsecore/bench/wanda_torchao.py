"""Our Wanda vs torchao's ``WandaSparsifier`` on SmolLM2, same calibration data, same held-out text.

torchao's sparsifier observes every layer's input norms in one pass over the dense model and
compares scores across the whole layer; ours propagates calibration activations through the
already-pruned blocks and compares within each output row (or N:M group), as the paper does.
Needs ``pip install --no-deps torchao==0.18.0`` (not part of sparsecore's dependencies).
"""

from __future__ import annotations

import copy
import json

import torch
from torch import nn


def _torchao_wanda(model, calibration, semi_structured: int | None) -> None:
    from torchao.sparsity import WandaSparsifier

    sparsifier = WandaSparsifier(sparsity_level=0.5, semi_structured_block_size=semi_structured)
    config = [{"tensor_fqn": f"{name}.weight"} for name, mod in model.named_modules()
              if isinstance(mod, nn.Linear) and name.startswith("model.layers.")]
    sparsifier.prepare(model, config)
    with torch.no_grad():
        for batch in calibration:
            model(**batch)
    sparsifier.step()
    sparsifier.squash_mask()


def main(args) -> int:
    import sparsecore
    from ..models import load_smollm2, perplexity
    from ..models.recipes import calibration_batches, token_stream

    dense, tok = load_smollm2()
    calibration = calibration_batches(tok, args.calib_seqs, args.calib_len)
    eval_ids = token_stream(tok, "eval", args.eval_tokens)
    rows = []
    for label, pattern, semi in (("50% unstructured", "unstructured", None), ("2:4", "2:4", 4)):
        ours = copy.deepcopy(dense)
        sparsecore.sparsify_(ours, sparsecore.WandaConfig(sparsity=0.5, pattern=pattern, calibration=calibration,
                                                          fallback_to_dense=False, progress=False))
        theirs = copy.deepcopy(dense)
        _torchao_wanda(theirs, calibration, semi)
        zeros = [float((m.weight == 0).float().mean()) for n, m in theirs.named_modules()
                 if isinstance(m, nn.Linear) and n.startswith("model.layers.")]
        p_ours = perplexity(ours, eval_ids, max_tokens=args.eval_tokens)
        p_theirs = perplexity(theirs, eval_ids, max_tokens=args.eval_tokens)
        rows.append({"pattern": label, "sparsecore": p_ours, "torchao": p_theirs,
                     "torchao_sparsity": sum(zeros) / len(zeros)})
    print(f"Wanda on SmolLM2-135M: {args.calib_seqs} x {args.calib_len} calibration tokens, "
          f"{eval_ids.numel()} held-out tokens")
    print(f"{'pattern':<18} {'sparsecore ppl':>15} {'torchao ppl':>12} {'ours/theirs':>12}")
    for r in rows:
        print(f"{r['pattern']:<18} {r['sparsecore']:>15.2f} {r['torchao']:>12.2f} {r['sparsecore'] / r['torchao']:>12.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0
