"""A grid study's reports: ``results.json``, ``timing.json``, ``results.md`` and two PNGs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.studies import GridStudy
from experiments.studies._stats import aggregate_arm, mean_curve, paired_difference


def aggregate(study: GridStudy, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-arm aggregates and each arm's paired differences against its reference arm.

    Differences are ``arm - reference`` of the final metric, the best metric and every extra
    split, over the seeds both arms finished.
    """
    by_arm = {a.name: [r for r in runs if r["arm"] == a.name] for a in study.arms}
    arms: dict[str, Any] = {}
    for a in study.arms:
        if not by_arm[a.name]:
            continue
        agg = aggregate_arm(by_arm[a.name], study.targets)
        agg.update(changes=a.changes, reference=a.reference, overrides=dict(a.overrides))
        ref_runs = by_arm.get(a.reference or "", [])
        if a.reference is not None and ref_runs:
            def per_seed(rs: Sequence[Mapping[str, Any]], get: Any) -> dict[int, float]:
                return {r["seed"]: get(r) for r in rs if get(r) is not None}

            diff = {"final": paired_difference(per_seed(by_arm[a.name], lambda r: r["final"]),
                                               per_seed(ref_runs, lambda r: r["final"])),
                    "best": paired_difference(per_seed(by_arm[a.name], lambda r: r["best"]),
                                              per_seed(ref_runs, lambda r: r["best"]))}
            for s in study.extra_eval:
                diff[s] = paired_difference(
                    per_seed(by_arm[a.name], lambda r, s=s: r["extra"].get(s)),
                    per_seed(ref_runs, lambda r, s=s: r["extra"].get(s)))
            agg["vs_reference"] = diff
        arms[a.name] = agg
    return arms


def write_reports(study: GridStudy, runs: Sequence[Mapping[str, Any]], workdir: Path,
                  overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Writes every report of ``runs`` into ``workdir``; returns the ``results.json`` dict."""
    results = {
        "study": study.name, "question": study.question, "metric": study.metric,
        "seeds": list(study.seeds), "targets": list(study.targets),
        "extra_eval": list(study.extra_eval), "overrides": dict(overrides),
        "runs_finished": len(runs), "runs_total": len(study.arms) * len(study.seeds),
        "arms": aggregate(study, runs),
        "runs": [{k: v for k, v in r.items()} for r in runs],
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    timing = timings(runs, workdir)
    (workdir / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    (workdir / "results.md").write_text(markdown(results, timing))
    try:
        plot_curves(study, runs, workdir / "curves.png")
        plot_final(results, runs, workdir / "final.png")
    except ImportError:
        print("matplotlib is not installed: no plots written")
    return results


def timings(runs: Sequence[Mapping[str, Any]], workdir: Path) -> dict[str, Any]:
    """Wall time of each run (all its sessions) and per arm; kept out of ``results.json``."""
    per_run, per_arm = {}, {}
    for r in runs:
        s = json.loads((workdir / r["arm"] / f"seed_{r['seed']}" / "summary.json").read_text())
        per_run[f"{r['arm']}/seed_{r['seed']}"] = {
            "wall_time_s": s["wall_time_s"], "compile_time_s": s["compile_time_s"],
            "examples_per_sec": s["examples_per_sec"]}
        per_arm.setdefault(r["arm"], []).append(s["wall_time_s"])
    return {"runs": per_run,
            "arm_mean_wall_time_s": {a: sum(v) / len(v) for a, v in per_arm.items()},
            "total_wall_time_s": sum(v["wall_time_s"] for v in per_run.values())}


def _fmt(value: float | None, metric: str, diff: bool = False) -> str:
    if value is None:
        return "—"
    if metric == "eval_accuracy":
        return f"{100 * value:+.2f}" if diff else f"{100 * value:.2f}"
    return f"{value:+.2f}" if diff else f"{value:.2f}"


def _interval(t: Mapping[str, Any] | None, metric: str, diff: bool = False) -> str:
    """``mean [lo, hi]`` (t-interval), or the mean alone for one seed."""
    if not t or t["mean"] is None:
        return "—"
    if t["ci95"] is None:
        return _fmt(t["mean"], metric, diff) + " (n=1)"
    lo, hi = t["ci95"]
    return (f"{_fmt(t['mean'], metric, diff)} [{_fmt(lo, metric, diff)}, "
            f"{_fmt(hi, metric, diff)}]")


def _epochs(e: Mapping[str, Any]) -> str:
    t = e["epochs"]
    if t["mean"] is None:
        return f"never (0/{e['of']})"
    ci = (f" [{t['ci95'][0]:.1f}, {t['ci95'][1]:.1f}]" if t["ci95"] else "")
    return f"{t['mean']:.1f}{ci} ({e['reached']}/{e['of']})"


def markdown(results: Mapping[str, Any], timing: Mapping[str, Any]) -> str:
    """One row per arm: what it changes, final / best metric, Δ vs reference, speed, size."""
    metric = results["metric"]
    unit = " (%)" if metric == "eval_accuracy" else ""
    extra = results["extra_eval"]
    head = ["arm", "changes (vs reference)", f"final {metric}{unit}, 95 % CI",
            "bootstrap 95 %", f"Δ final vs reference{unit}",
            f"best {metric}{unit}"]
    head += [f"{s} {metric}" for s in extra] + [f"Δ {s} vs reference" for s in extra]
    head += [f"epochs to {float(t):.0%} (reached)" for t in results["targets"]]
    head += ["params", "wall s/run"]
    lines = [f"{results['runs_finished']}/{results['runs_total']} runs; seeds "
             f"{results['seeds']}; intervals are 95 % Student-t over seeds (differences "
             "paired by seed).", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    wall = timing["arm_mean_wall_time_s"]
    for name, a in results["arms"].items():
        boot = a["final"]["boot95"]
        vs = a.get("vs_reference", {})
        row = [name, (f"{a['changes']} (vs {a['reference']})" if a["reference"]
                      else "reference"),
               _interval(a["final"], metric),
               f"[{_fmt(boot[0], metric)}, {_fmt(boot[1], metric)}]" if boot else "—",
               _interval(vs.get("final"), metric, diff=True) if vs else "—",
               _interval(a["best"], metric)]
        row += [_interval(a["extra"].get(s), metric) for s in extra]
        row += [_interval(vs.get(s), metric, diff=True) if vs else "—" for s in extra]
        row += [_epochs(a["epochs_to_target"][f"{float(t):g}"]) for t in results["targets"]]
        row += [f"{a['num_params']:,}", f"{wall.get(name, float('nan')):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_curves(study: GridStudy, runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Eval metric against epoch per arm: mean over seeds with a 95 % t band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a.name for a in study.arms if any(r["arm"] == a.name for r in runs)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, color in zip(arms, _colors(len(arms)), strict=True):
        c = mean_curve([r for r in runs if r["arm"] == name])
        ax.plot(c["epoch"], c["mean"], color=color, lw=1.2, label=name)
        ax.fill_between(c["epoch"], c["lo"], c["hi"], color=color, alpha=0.2, lw=0)
    ax.set(xlabel="epoch", ylabel=study.metric, title=f"{study.name}: mean over seeds, 95 % CI")
    if study.metric == "eval_perplexity":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_final(results: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], path: Path
               ) -> None:
    """Final metric per arm: seeds as dots, mean with 95 % t whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["arms"])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    for i, name in enumerate(names):
        a = results["arms"][name]["final"]
        vals = [r["final"] for r in runs if r["arm"] == name]
        ax.plot(vals, [i] * len(vals), ".", color="0.6", ms=4)
        if a["ci95"]:
            ax.errorbar(a["mean"], i, xerr=[[a["mean"] - a["ci95"][0]], [a["ci95"][1] - a["mean"]]],
                        fmt="o", color="k", ms=4, capsize=3)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=f"final {results['metric']}", title=f"{results['study']}: final metric, "
           "mean and 95 % CI (dots: seeds)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
