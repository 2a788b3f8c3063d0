"""Runs inside the llm-compressor venv (scripts/setup_llmcompressor.sh), not the project's:
prune one model with llm-compressor's ``oneshot`` on the token windows it is given and save
it. Imports only torch, transformers, datasets and llmcompressor (not sparsecore).

    python llmcompressor_worker.py MODEL_DIR CALIB.pt METHOD PATTERN OUT_DIR THREADS

Prints one JSON line: the seconds ``oneshot`` took and the process's peak RSS.
"""

import json
import sys
import time


def main(model_dir, calib_path, method, pattern, out_dir, threads):
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(int(threads))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    windows = torch.load(calib_path)
    data = Dataset.from_dict({"input_ids": windows.tolist(), "attention_mask": torch.ones_like(windows).tolist()})
    structure = "2:4" if pattern == "2:4" else "0:0"
    modifier = {"sparsegpt": SparseGPTModifier, "wanda": WandaPruningModifier}[method](
        sparsity=0.5, mask_structure=structure, targets=["Linear"], ignore=["lm_head"])
    t0 = time.perf_counter()
    oneshot(model=model, dataset=data, recipe=[modifier], num_calibration_samples=windows.shape[0],
            max_seq_length=windows.shape[1], shuffle_calibration_samples=False)
    seconds = time.perf_counter() - t0
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM). Not ru_maxrss: Linux carries the
    forking parent's RSS into it, so a child of a large process would report the parent's."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(*sys.argv[1:])
