"""The CLI end to end on a tiny Llama (SmolLM2's tokenizer, random weights): prune -> directory ->
eval, plus the bad inputs that must fail cleanly and leave nothing half-written."""

import os

import pytest
import torch

from sparsecore.cli import main
from sparsecore.models import smollm2_gguf

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tiny"))
    directory, name = smollm2_gguf()
    tok = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(config).save_pretrained(d)
    tok.save_pretrained(d)
    return d


EVAL = ["--eval-tokens", "300", "--window", "128", "--prompt-tokens", "8", "--decode-tokens", "2"]


@pytest.mark.parametrize("method,pattern", [("sparsegpt", "2:4"), ("wanda", "unstructured"), ("magnitude", "4:8")])
def test_prune_then_eval(tiny_model_dir, tmp_path, method, pattern, capsys):
    out = os.path.join(tmp_path, "pruned")
    rc = main(["prune", "--model", tiny_model_dir, "--method", method, "--pattern", pattern, "--calib-seqs", "2",
               "--calib-len", "32", "--output", out])
    assert rc == 0
    assert {"config.json", "model.safetensors", "sparsecore.json", "tokenizer.json"} <= set(os.listdir(out))
    assert "mean sparsity 50.0%" in capsys.readouterr().out
    assert main(["eval", "--model", out, *EVAL]) == 0
    text = capsys.readouterr().out
    assert "perplexity" in text and "decode" in text and "layers run sparse" in text


def test_bad_input_leaves_nothing_behind(tiny_model_dir, tmp_path, capsys):
    out = os.path.join(tmp_path, "out")
    base = ["prune", "--model", tiny_model_dir, "--calib-seqs", "2", "--calib-len", "16", "--output", out]
    assert main([*base, "--pattern", "3:7"]) == 2
    assert "multiple of 7" in capsys.readouterr().err
    assert main([*base, "--sparsity", "1.5"]) == 2
    assert "sparsity must be in" in capsys.readouterr().err
    assert main([*base, "--calib-seqs", "0"]) == 2
    assert not os.path.exists(out)
    assert os.listdir(tmp_path) == []  # no temporary directory left either
    os.makedirs(out)
    open(os.path.join(out, "keep.txt"), "w").close()
    assert main([*base, "--method", "magnitude"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert os.listdir(out) == ["keep.txt"]
    assert main(["prune", "--model", os.path.join(tmp_path, "missing"), "--output", os.path.join(tmp_path, "o")]) == 2
    assert "not 'smollm2'" in capsys.readouterr().err


def test_corrupted_and_mismatched_files(tiny_model_dir, tmp_path, capsys):
    out = os.path.join(tmp_path, "pruned")
    assert main(["prune", "--model", tiny_model_dir, "--method", "magnitude", "--output", out]) == 0
    weights = os.path.join(out, "model.safetensors")
    data = open(weights, "rb").read()
    with open(weights, "wb") as fh:
        fh.write(data[: len(data) // 2])  # truncated
    assert main(["eval", "--model", out, *EVAL]) == 2
    assert "corrupted or truncated" in capsys.readouterr().err
    # A pruned file that does not fit the architecture in config.json.
    assert main(["prune", "--model", tiny_model_dir, "--method", "magnitude", "--output", out, "--overwrite"]) == 0
    import json
    cfg = json.load(open(os.path.join(out, "config.json")))
    cfg["intermediate_size"] = 96
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
    assert main(["eval", "--model", out, *EVAL]) == 2
    assert "in the file but" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["teal", "wina", "rsparse"])
def test_activate_pruned_model_then_eval(tiny_model_dir, tmp_path, method, capsys):
    pruned = os.path.join(tmp_path, "pruned")
    assert main(["prune", "--model", tiny_model_dir, "--method", "magnitude", "--output", pruned]) == 0
    out = os.path.join(tmp_path, "activated")
    assert main(["activate", "--model", pruned, "--method", method, "--sparsity", "0.4", "--calib-seqs", "2",
                 "--calib-len", "32", "--generations", "1", "--population", "4", "--output", out]) == 0
    assert "calibrated activation sparsity" in capsys.readouterr().out
    import json

    with open(os.path.join(out, "sparsecore.json")) as fh:
        recipe = json.load(fh)
    assert recipe["activation"]["method"] == method and recipe["pruning"]["method"] == "magnitude"
    assert main(["eval", "--model", out, *EVAL]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_activate_bad_input(tiny_model_dir, tmp_path, capsys):
    out = os.path.join(tmp_path, "out")
    base = ["activate", "--model", tiny_model_dir, "--output", out]
    assert main([*base, "--sparsity", "1.5"]) == 2
    assert "sparsity" in capsys.readouterr().err
    assert main([*base, "--population", "0"]) == 2
    assert main([*base, "--method", "rsparse", "--population", "2"]) == 2
    assert not os.path.exists(out)


def _subcommands(parser):
    import argparse
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices) if actions else []


def test_every_help_text_prints(capsys):
    """`--help` formats every help string with %-formatting: a bare '%' in one crashed it."""
    from sparsecore.bench.__main__ import main as bench_main
    from sparsecore.cli import build_parser
    for entry, names in ((main, _subcommands(build_parser())), (bench_main, ["spmm", "nm", "model-speed", "spin",
                                                                             "llmcompressor", "attention", "gpu"])):
        for argv in [["--help"]] + [[n, "--help"] for n in names]:
            with pytest.raises(SystemExit) as exc:
                entry(argv)
            assert exc.value.code == 0, argv
            assert "usage:" in capsys.readouterr().out
