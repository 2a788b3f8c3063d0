"""Property-based fuzzing of the command line: every combination with a bad value must
end with exit status 2 and one line naming the problem (never a traceback), before any
model is loaded or anything is written."""

import os
from unittest import mock

from hypothesis import HealthCheck, given, settings, strategies as st

from sparsecore.cli import main
from conftest import OUTCOMES

EXAMPLES = int(os.environ.get("SPARSECORE_FUZZ_EXAMPLES", "300")) // 3

BAD = {
    "prune": [["--calib-seqs", "0"], ["--calib-len", "-3"], ["--pattern", "5:4"], ["--pattern", "150%"],
              ["--sparsity", "nan"], ["--method", "best"], ["--dtype", "fp8"], ["--allocation", "owl", "--pattern", "2:4"]],
    "activate": [["--sparsity", "1.5"], ["--population", "0"], ["--method", "relu"], ["--calib-seqs", "-1"]],
    "eval": [["--eval-tokens", "0"], ["--window", "-5"], ["--prompt-tokens", "0"], ["--decode-tokens", "-2"],
             ["--threads", "0"]],
    "demo": [["--patterns", ""], ["--methods", "nope"], ["--activation-sparsity", "1.0"], ["--llama7b-layers", "-1"],
             ["--calib-seqs", "0"]],
}
GOOD = {
    "prune": [["--method", "wanda"], ["--pattern", "2:4"], ["--sparsity", "0.6"], ["--calib-seqs", "4"]],
    "activate": [["--method", "wina"], ["--sparsity", "0.4"], ["--prefill", "dense"]],
    "eval": [["--window", "256"], ["--no-speed"], ["--dtype", "bf16"]],
    "demo": [["--quick"], ["--patterns", "50%"], ["--activation", "none"]],
}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_bad_command_lines_fail_cleanly(tmp_path_factory, capsys, data):
    cmd = data.draw(st.sampled_from(sorted(BAD)))
    bad = data.draw(st.sampled_from(BAD[cmd]))
    # Good options never repeat a flag of the bad one (argparse would keep the last value).
    good = [g for g in GOOD[cmd] if not set(g[::2]) & set(bad[::2])]
    parts = data.draw(st.lists(st.sampled_from(good), max_size=2)) + [bad] if good else [bad]
    parts = data.draw(st.permutations(parts))
    argv = [cmd] + [a for p in parts for a in p]
    out_dir = str(tmp_path_factory.mktemp("cli") / "out")
    if cmd in ("prune", "activate"):
        argv += ["--output", out_dir]
    if cmd == "demo":
        argv += ["--out-dir", out_dir]
    def reached(*args, **kwargs):
        raise AssertionError(f"{argv}: the bad value was not caught before the model load")

    try:
        with mock.patch("sparsecore.models.recipes.load_model", reached), \
                mock.patch("sparsecore.demo.run_demo", reached):
            code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, f"{argv}: exit {code}"
    assert "Traceback" not in err and "error" in err, f"{argv}: {err!r}"
    assert not os.path.exists(out_dir), f"{argv} wrote {out_dir}"
    OUTCOMES["cli: exit 2 with a one-line error"] += 1
