"""Studies: a base config, a grid of named arms × seeds, and what the comparison answers.

A study is a module ``experiments/studies/<name>.py`` with ``get_study(arg=None)`` (``arg`` is
``None`` or ``"smoke"``), returning a :class:`GridStudy` (arms × seeds, each trained through
``astroflax.train.train_and_evaluate``) or a :class:`ComputedStudy` (a measurement that is not a
training grid, e.g. the biology sweep). Its docstring gives the command, the measured runtime on
2 CPU cores and what it answers, as configs do. ``python -m experiments.study --study=NAME``
runs one (see ``experiments/study.py``).

Every arm names its reference arm and the one thing it changes with respect to it, so each row
of a results table is a single controlled comparison.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import ml_collections

STUDIES_DIR = Path(__file__).resolve().parent
ARGS = (None, "", "smoke")


class StudyError(ValueError):
    """A study that cannot run as asked (unknown name, bad override, ...); says what to do."""


@dataclasses.dataclass(frozen=True)
class Arm:
    """One setting of a study.

    Attributes:
      name: short identifier (a directory name: letters, digits, ``_``, ``-``, ``=``, ``.``).
      overrides: dotted config field -> value, applied on top of the study's base config.
      changes: the one thing this arm changes with respect to ``reference`` (for the table).
      reference: the arm it is compared with; None for a reference arm itself.
    """

    name: str
    overrides: Mapping[str, Any]
    changes: str = ""
    reference: str | None = None


def variant_arms(variants: Iterable[str]) -> list[Arm]:
    """The ``softmax`` reference arm and one arm per other variant, differing in attention only."""
    return [Arm("softmax", {"model.attention": "softmax"})] + [
        Arm(v, {"model.attention": v}, f"attention softmax -> {v}", "softmax")
        for v in variants if v != "softmax"]


def m_div_arm(variant: str, own_m_div: str, m: int) -> Arm:
    """``variant`` with ``m_div = m`` against ``variant`` with its own ``m_div`` (the reference).

    ``own_m_div``: how the table states the variant's own value, e.g. ``"500·D = 16000"``.
    """
    return Arm(f"{variant}-m_div=m", {"model.attention": variant, "model.m_div": "m"},
               f"m_div {own_m_div} -> m = {m}", variant)


@dataclasses.dataclass(frozen=True)
class GridStudy:
    """Arms × seeds of one training setup.

    Attributes:
      name: the study's name (its module's).
      question: what the study answers (one sentence, for the report).
      base: the base config (an ``experiments/configs`` config); never mutated.
      arms: the arms, in table order; reference arms first is clearest.
      seeds: the seeds every arm runs with (paired: the same seeds for every arm).
      metric: the per-run metric the tables compare (``eval_accuracy`` | ``eval_perplexity``).
      targets: accuracy thresholds for epochs-to-target columns (classification).
      extra_eval: extra splits scored with the final parameters, e.g. ``("test",)`` for a
        language model trained with ``data.eval_split="validation"``.
    """

    name: str
    question: str
    base: ml_collections.ConfigDict
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    metric: str
    targets: tuple[float, ...] = ()
    extra_eval: tuple[str, ...] = ()

    def __post_init__(self):
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise StudyError(f"study {self.name}: arm names repeat: {names}")
        for a in self.arms:
            if a.reference is not None and a.reference not in names:
                raise StudyError(f"study {self.name}: arm {a.name}'s reference {a.reference!r} "
                                 f"is not an arm of the study ({names})")
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise StudyError(f"study {self.name}: seeds must be distinct and non-empty, got "
                             f"{self.seeds}")

    def arm(self, name: str) -> Arm:
        """The arm called ``name``."""
        return {a.name: a for a in self.arms}[name]

    def config(self, arm: Arm, seed: int,
               overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
        """The locked run config of ``arm`` and ``seed``.

        ``overrides`` (from the command line) apply to the base first; the arm's own overrides
        win over them, since they are what the arm is about.

        Raises:
          StudyError: an override names a field the config does not have, or a value of the
            wrong type.
        """
        cfg = copy.deepcopy(self.base)
        cfg.lock()
        for source, items in (("--override", overrides or {}), (f"arm {arm.name}",
                                                                 arm.overrides)):
            for dotted, value in items.items():
                set_field(cfg, dotted, value, source=source)
        cfg.seed = int(seed)
        cfg.name = f"{self.name}/{arm.name}"
        return cfg


@dataclasses.dataclass(frozen=True)
class ComputedStudy:
    """A study that is a measurement rather than a training grid.

    Attributes:
      name: the study's name.
      question: what it answers.
      run: ``run(workdir) -> results`` writes ``results.json``, ``results.md`` and its plots
        into ``workdir`` and returns the results.
    """

    name: str
    question: str
    run: Callable[[Path], dict[str, Any]]


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal when it parses as one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def set_field(cfg: ml_collections.ConfigDict, dotted: str, value: Any, *, source: str) -> None:
    """Sets ``cfg.<dotted> = value`` on a locked config, or raises a StudyError naming both.

    A string field given a value that parsed as a number (``--override.model.m_div=64000``
    for a string field) keeps the string, so command-line values need no quoting.
    """
    *parents, leaf = dotted.split(".")
    node = cfg
    try:
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(leaf)
    except (KeyError, TypeError):
        raise StudyError(f"{source}: the config has no field {dotted!r} (a typo, or a field "
                         "that this version of astroflax does not have)") from None
    try:
        node[leaf] = value
    except TypeError:
        try:
            node[leaf] = str(value)
        except TypeError as e:
            raise StudyError(f"{source}: {dotted}={value!r}: {e}") from None


def list_studies() -> list[str]:
    """Names of the study modules in ``experiments/studies/``, sorted."""
    return sorted(p.stem for p in STUDIES_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_study(spec: str) -> GridStudy | ComputedStudy:
    """``"NAME[:smoke]"`` -> the study; StudyError listing the studies for an unknown name."""
    name, _, arg = spec.partition(":")
    if name not in list_studies():
        raise StudyError(f"--study={spec}: no study {name!r}; studies: {list_studies()}")
    if arg not in ARGS:
        raise StudyError(f"--study={spec}: argument {arg!r}; expected nothing or 'smoke'")
    module = importlib.import_module(f"experiments.studies.{name}")
    return module.get_study(arg or None)
