"""The kernel, training-step and generation benchmarks run end to end at toy sizes.

Timings are not asserted (they belong to the benchmarks, on a quiet machine); the tables'
structure and the ratios' consistency with the raw numbers are.
"""

import json

from benchmarks import generate, kernels, train_step


def test_train_step_quick_prints_every_variant_and_consistent_ratios(tmp_path, capsys):
    out = tmp_path / "train.json"
    train_step.main(["--quick", "--lengths", "64", "--variants", "astro,linear,softmax",
                     "--json", str(out)])
    text = capsys.readouterr().out
    assert "| T | batch | astro | linear | softmax | astro / softmax | astro / linear |" in text
    assert "uptime before:" in text
    row = json.loads(out.read_text())["rows"][0]
    assert row["T"] == 64 and row["batch"] == 512 // 64
    assert all(row[v] > 0 for v in ("astro", "linear", "softmax"))
    assert set(row["ratios"]) == {"astro / softmax", "astro / linear"}
    for name, ratio in row["ratios"].items():
        a, b = name.split(" / ")
        assert abs(ratio - row[a] / row[b]) <= 1e-9 * ratio


def test_generate_quick_reports_tokens_per_second_and_memory(tmp_path, capsys):
    out = tmp_path / "generate.json"
    generate.main(["--quick", "--contexts", "64", "--repeats", "1", "--json", str(out)])
    text = capsys.readouterr().out
    assert "astro / softmax tokens/s" in text
    row = json.loads(out.read_text())["rows"][0]
    for variant in ("astro", "softmax"):
        assert row[variant]["tokens_per_s"] > 0
        assert row[variant]["seconds_n2"] > 0


def test_kernels_smoke_causal_and_layer_sections(tmp_path, capsys):
    # The causal fwd+bwd and whole-layer sections only: the older sections compile a dozen
    # functions more.
    out = tmp_path / "kernels.json"
    kernels.main(["--smoke", "--sections", "causal,layer", "--json", str(out)])
    results = json.loads(out.read_text())
    assert "forward_vs_matmuls" not in results
    row = results["causal_fwd_bwd"][0]
    for C, ms in row["astro_ms"].items():
        assert abs(row["ratio"][C] - ms / row["linear_ms"]) < 1e-9 * row["ratio"][C]
    assert [r["layout"] for r in results["layer_forward"]] == ["BTHD", "BHTD"]
    for r in results["layer_forward"]:
        assert abs(r["ratio"] - r["astro_layer_ms"] / r["linear_layer_ms"]) < 1e-9 * r["ratio"]
    text = capsys.readouterr().out
    assert "floor estimate ms" in text and "| projection layout |" in text
