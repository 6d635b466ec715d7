"""ListOps as the Long Range Arena generates it (Tay et al. 2021, §3.1 and App. A.1), offline.

**Task.** A nested list of operations on single digits; the label is its value (10 classes).
Operators: ``[MIN``, ``[MAX``, ``[MED`` (the median truncated to an int, ``int(np.median(args))``:
the mean of the two middle values rounded down for an even count) and ``[SM`` (sum mod 10).

**Generator** (LRA's ``lra_benchmarks/data/listops.py``, same semantics, seeded). A node at
depth ``d`` (the root is depth 1) is an operator with probability 0.25 when ``d < max_depth``
and a leaf otherwise; a leaf is a uniform digit, an operator takes a uniform number of
arguments in ``2 .. max_args`` (each a node at depth ``d + 1``) and a uniform operator. The
*length* of a tree is its leaves plus 2 per operator (the operator and its closing ``]``); a
tree is kept only when ``min_len < length < max_len``. Trees are drawn until the *set* of kept
trees holds ``train + val + test`` distinct trees, which are split in the order they were first
drawn (LRA splits Python's set order, which is unseeded; any order of i.i.d. draws gives the same
distribution). Randomness is numpy's PCG64 raw stream from ``seed`` (each draw is
``(raw >> 11) * 2**-53``, as numpy's own ``random()``), so a seed gives byte-identical files on
every machine and numpy version. A tree is abandoned as soon as its running length reaches
``max_len`` (it would be rejected anyway), which keeps generation to minutes.

**Files** (LRA's layout, so LRA's released ``listops-1000`` folder is read the same way):
``basic_train.tsv``, ``basic_val.tsv``, ``basic_test.tsv``, tab separated, header
``Source<TAB>Target``, written by Python's ``csv`` writer (CR LF line ends). A source is
LRA's serialisation: an operator node over ``a1 .. an`` is the left-nested chain of pairs
``( ( ... ( ( op a1 ) a2 ) ... an ) ] )``, so ``[MAX 2 9 ]`` is written
``( ( ( [MAX 2 ) 9 ) ] )``.

**Tokenisation** (the S4 convention, ``state-spaces/s4`` ``src/dataloaders/lra.py``, used by
most papers after 2021; LRA's original pipeline dropped every bracket, which makes the task
ill-posed): ``]`` becomes the token ``X``, ``(`` and ``)`` are removed, and the rest is split on
whitespace, so the token count equals the tree's length. The vocabulary is fixed (S4 builds
the same tokens from the training split and adds ``<unk>`` and ``<eos>``, which a fixed
vocabulary and a padding mask make unnecessary):

====  ======  =====================================
id    token   meaning
====  ======  =====================================
0     <pad>   padding (``mask`` False)
1-10  0-9     digit ``k`` has id ``k + 1``
11    [MIN    minimum
12    [MAX    maximum
13    [MED    median, truncated to int
14    [SM     sum mod 10
15    X       closing bracket ``]``
====  ======  =====================================

Examples: ``{"inputs": int32 [L], "mask": bool [L], "label": int32 []}`` padded to
``L = max_len``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import logging

from astroflax.data.base import DataConfigError, Dataset, Example, limit

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
#: Token of id ``i`` (see the module docstring).
VOCAB: tuple[str, ...] = ("<pad>", *(str(d) for d in range(10)), *OPERATORS, "X")
PAD_ID = 0
NUM_CLASSES = 10
#: Probability that a node above the depth cap is an operator (LRA's ``VALUE_P``).
OPERATOR_P = 0.25
SPLITS = ("train", "val", "test")
HEADER = ("Source", "Target")
#: Bumped whenever the generator's output for given parameters changes (cached files are
#: then refused instead of silently reused).
GENERATOR_VERSION = 1
DEFAULT_ROOT = "~/astroflax_data"
#: Most root draws generation may need before it refuses the parameters (about an hour).
MAX_EXPECTED_DRAWS = 10**8


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class ListOpsParams:
    """What a generated ListOps depends on (LRA's flags; lengths are exclusive bounds).

    Attributes:
      min_len, max_len: a tree is kept when ``min_len < length < max_len``.
      max_depth: depth cap (the root is depth 1; nodes at the cap are leaves).
      max_args: most arguments of an operator (at least 2).
      sizes: distinct trees in ``(train, val, test)``.
      seed: the PCG64 seed.

    Raises:
      ValueError: a bad value; the message starts with the field name.
    """

    min_len: int
    max_len: int
    max_depth: int = 10
    max_args: int = 10
    sizes: tuple[int, int, int] = (96_000, 2_000, 2_000)
    seed: int = 0

    def __post_init__(self) -> None:
        try:  # a config gives a list or tuple
            object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        except (TypeError, ValueError):
            raise ValueError(f"sizes: expected three positive counts (train, val, test), got "
                             f"{self.sizes!r}") from None
        _check(self.min_len >= 0, "min_len", f"expected >= 0, got {self.min_len}")
        _check(self.max_len > self.min_len + 1, "max_len",
               f"expected > min_len + 1 = {self.min_len + 1} (lengths are kept when "
               f"min_len < length < max_len), got max_len={self.max_len}")
        _check(self.max_depth >= 1, "max_depth", f"expected >= 1, got {self.max_depth}")
        _check(self.max_args >= 2, "max_args", f"expected >= 2, got {self.max_args}")
        _check(len(self.sizes) == 3 and all(n >= 1 for n in self.sizes), "sizes",
               f"expected three positive counts (train, val, test), got {self.sizes}")
        _check(self.seed >= 0, "seed", f"expected >= 0, got {self.seed}")

    @property
    def folder(self) -> str:
        """A folder name that differs whenever the generated files would."""
        return (f"listops-len{self.min_len}-{self.max_len}-depth{self.max_depth}"
                f"-args{self.max_args}-n{'-'.join(map(str, self.sizes))}-seed{self.seed}")

    def to_json(self) -> dict[str, Any]:
        """The parameters plus :data:`GENERATOR_VERSION` (written beside the files)."""
        return {**dataclasses.asdict(self), "sizes": list(self.sizes),
                "generator_version": GENERATOR_VERSION}


#: LRA's exact setting, and a CPU tier: lengths 51-255 (padded to 256), a smaller training
#: split, LRA's depth and fan-out. Both use seed 0. Majority class of the seeded data: lra
#: 17.3 % of test, 17.25 % of val (class 9); cpu 15.55 % of test (class 0), 15.0 % of val
#: (class 9). The cpu tier is short enough for a small softmax Transformer (2 layers, D = 64,
#: batch 32) to take about a thousand steps on 2 CPU cores in 20 minutes.
TIERS: dict[str, ListOpsParams] = {
    "lra": ListOpsParams(min_len=500, max_len=2000, sizes=(96_000, 2_000, 2_000)),
    "cpu": ListOpsParams(min_len=50, max_len=256, sizes=(20_000, 2_000, 2_000)),
}


# ------------------------------------------------------------------------------------------
# Generation


def _uniforms(seed: int, block: int = 1 << 16) -> Iterator[float]:
    """Floats in [0, 1) from PCG64's raw 64-bit stream (independent of numpy's samplers)."""
    bits = np.random.PCG64(seed)
    while True:
        yield from ((bits.random_raw(block) >> np.uint64(11)).astype(np.float64)
                    * 2.0**-53).tolist()


class _TooLongError(Exception):
    """A tree under construction reached ``max_len`` (it will be rejected)."""


def _evaluate(op: int, args: list[int]) -> int:
    """Value of ``OPERATORS[op]`` over digit ``args`` (MED as ``int(np.median(args))``)."""
    if op == 0:
        return min(args)
    if op == 1:
        return max(args)
    if op == 2:
        s = sorted(args)
        m = len(s) // 2
        # np.median of an even count is the mean of the middle pair; int() truncates it, and
        # digits are non-negative, so that is floor division.
        return s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2
    return sum(args) % 10


def _tree_sampler(p: ListOpsParams) -> Callable[[], tuple[str, int, int] | None]:
    """A function drawing one tree: ``(source, label, length)``, or None if rejected."""
    draw = _uniforms(p.seed).__next__
    span = p.max_args - 1

    def node(depth: int, out: list[str], length: list[int]) -> int:
        if depth < p.max_depth and draw() <= OPERATOR_P:  # r > VALUE_P is a leaf in LRA
            n = 2 + int(draw() * span)
            op = int(draw() * len(OPERATORS))
            length[0] += 2
            if length[0] >= p.max_len:
                raise _TooLongError
            # LRA's left-nested pairs: n + 1 opening parentheses, ")" after each argument,
            # then the closing "]" in a pair of its own.
            out.append("( " * (n + 1) + OPERATORS[op])
            args = []
            for _ in range(n):
                out.append(" ")
                args.append(node(depth + 1, out, length))
                out.append(" )")
            out.append(" ] )")
            return _evaluate(op, args)
        digit = int(draw() * 10)
        length[0] += 1
        if length[0] >= p.max_len:
            raise _TooLongError
        out.append(str(digit))
        return digit

    def sample() -> tuple[str, int, int] | None:
        out: list[str] = []
        length = [0]
        try:
            value = node(1, out, length)
        except _TooLongError:
            return None
        return ("".join(out), value, length[0]) if length[0] > p.min_len else None

    return sample


def length_distribution(p: ListOpsParams, *, count: bool) -> np.ndarray:
    """Distinct trees (``count=True``) or probability of a root draw, by length ``[max_len]``.

    Entry ``l`` is the number of distinct trees of length ``l`` the generator can produce
    (``count``), or the probability that one root draw has length ``l``. Counts are clipped
    at 1e100 (only comparisons with split sizes use them).
    """
    n = p.max_len
    leaf, op_w, arg_w = (10.0, 4.0, 1.0) if count else (
        1.0 - OPERATOR_P, OPERATOR_P, 1.0 / (p.max_args - 1))
    sub = np.zeros(n)
    sub[1] = 10.0 if count else 1.0  # a node at the depth cap is a leaf: one of 10 digits
    for _ in range(p.max_depth - 1):  # from the cap's parents up to the root
        node = np.zeros(n)
        node[1] = leaf
        power = sub
        for _k in range(2, p.max_args + 1):
            power = np.convolve(power, sub)[:n]  # lengths of k arguments
            if count:
                power = np.minimum(power, 1e100)
            node[2:] += op_w * arg_w * power[:n - 2]  # + operator and "]"
        sub = np.minimum(node, 1e100) if count else node
    return sub


def check_feasible(p: ListOpsParams) -> float:
    """The probability that one root draw is kept; ValueError when the sizes cannot be met.

    Raises:
      ValueError: fewer distinct trees exist in the length range than ``sum(sizes)``, or
        drawing them would take more than :data:`MAX_EXPECTED_DRAWS` root draws.
    """
    keep = slice(p.min_len + 1, p.max_len)
    total = sum(p.sizes)
    distinct = float(length_distribution(p, count=True)[keep].sum())
    _check(distinct >= total, "sizes",
           f"{total} distinct trees requested but only {distinct:.0f} exist with "
           f"{p.min_len} < length < {p.max_len}, depth <= {p.max_depth}, at most {p.max_args} "
           "arguments; lower the sizes or widen the length range")
    accept = float(length_distribution(p, count=False)[keep].sum())
    _check(accept > 0 and total / accept <= MAX_EXPECTED_DRAWS, "sizes",
           f"a root draw lands in {p.min_len} < length < {p.max_len} with probability "
           f"{accept:.3g}, so {total} trees would need about {total / max(accept, 1e-300):.3g} "
           f"draws (limit {MAX_EXPECTED_DRAWS:.0e}); widen the length range or raise max_depth")
    return accept


def generate_listops(p: ListOpsParams) -> dict[str, list[tuple[str, int]]]:
    """The splits ``{"train", "val", "test"}`` of ``(source, label)`` rows (LRA's serialisation).

    Progress (trees kept, elapsed time, ETA) is logged every ~10 s.

    Raises:
      ValueError: the sizes cannot be met (:func:`check_feasible`).
    """
    accept = check_feasible(p)
    total = sum(p.sizes)
    logging.info("ListOps: drawing %d distinct trees with %d < length < %d (about %.0f root "
                 "draws, %.2f%% kept)", total, p.min_len, p.max_len, total / accept,
                 100 * accept)
    sample = _tree_sampler(p)
    kept: dict[str, int] = {}  # insertion-ordered: the split follows the order of first draws
    start = last = time.monotonic()
    draws = 0
    # A generous ceiling: only a length range with barely enough distinct trees (duplicates
    # dominating) gets near it.
    max_draws = 50 * total / accept + 100_000
    while len(kept) < total:
        draws += 1
        if draws > max_draws:
            raise ValueError(f"sizes: {draws} draws gave only {len(kept)} distinct trees of "
                             f"{total}; lower the sizes or widen the length range")
        tree = sample()
        if tree is not None:
            kept.setdefault(tree[0], tree[1])
        now = time.monotonic()
        if now - last > 10:
            last = now
            done = len(kept) / total
            logging.info("ListOps: %d / %d trees (%.0f%%), %.0f s, ETA %.0f s", len(kept), total,
                         100 * done, now - start, (now - start) * (1 - done) / max(done, 1e-9))
    logging.info("ListOps: %d trees from %d draws in %.1f s", total, draws,
                 time.monotonic() - start)
    rows = list(kept.items())
    n_train, n_val, _ = p.sizes
    return {"train": rows[:n_train], "val": rows[n_train:n_train + n_val],
            "test": rows[n_train + n_val:]}


# ------------------------------------------------------------------------------------------
# Files


def split_path(data_dir: str | Path, split: str) -> Path:
    """``data_dir/basic_<split>.tsv`` (LRA's names; ``split`` in :data:`SPLITS`)."""
    return Path(data_dir) / f"basic_{split}.tsv"


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``."""
    # A name of this process's own ("x": never shared), created with open() so the file gets
    # the umask's permissions as any other output.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", newline="", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_tsv(path: str | Path, rows: Sequence[tuple[str, int]]) -> None:
    """LRA's TSV (header ``Source`` TAB ``Target``, Python ``csv`` dialect), written atomically."""
    def write(f: Any) -> None:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(HEADER)
        writer.writerows(rows)

    _atomic_write(Path(path), write)


def read_tsv(path: str | Path) -> list[tuple[str, int]]:
    """``(source, label)`` rows of an LRA ListOps TSV.

    Raises:
      ValueError: the header is not ``Source`` TAB ``Target`` or a label is not a digit 0-9.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None or tuple(header) != HEADER:
            raise ValueError(f"{path}: expected the header {HEADER}, got {header}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if len(row) != 2 or row[1].strip() not in {str(d) for d in range(10)}:
                raise ValueError(f"{path}:{line}: expected 'source<TAB>label 0-9', got {row}")
            rows.append((row[0], int(row[1])))
    return rows


def prepare_listops(p: ListOpsParams, data_dir: str | Path) -> Path:
    """``data_dir`` holding the three TSVs, generated (and recorded in ``listops.json``) if absent.

    Existing files are read as they are: a folder of LRA's released files (no
    ``listops.json``) is never touched. Several processes may race to generate the same
    folder: each file appears by an atomic rename, and every process writes the same bytes.

    Raises:
      DataConfigError: ``data.data_dir`` holds only some of the files, or files generated
        with other parameters.
      ValueError: the sizes cannot be met.
    """
    data_dir = Path(data_dir).expanduser()
    paths = [split_path(data_dir, s) for s in SPLITS]
    record = data_dir / "listops.json"
    present = [q.exists() for q in paths]
    if all(present):
        if record.exists():
            written = json.loads(record.read_text())
            if written != p.to_json():
                raise DataConfigError(
                    f"data.data_dir: {data_dir} holds ListOps generated with {written}, not "
                    f"{p.to_json()}; choose another data_dir (or None) or delete that folder")
        return data_dir
    if any(present):
        missing = [q.name for q, there in zip(paths, present, strict=True) if not there]
        raise DataConfigError(f"data.data_dir: {data_dir} lacks {missing}; restore them, or "
                              "delete the folder to generate ListOps there")
    data_dir.mkdir(parents=True, exist_ok=True)
    splits = generate_listops(p)
    for split, q in zip(SPLITS, paths, strict=True):
        write_tsv(q, splits[split])
    _atomic_write(record, lambda f: f.write(json.dumps(p.to_json(), indent=1) + "\n"))
    logging.info("ListOps: wrote %s", data_dir)
    return data_dir


# ------------------------------------------------------------------------------------------
# Tokenisation


_S4_RENAME = str.maketrans({"]": "X", "(": None, ")": None})


def tokenize(source: str) -> list[str]:
    """S4's tokens of a source: ``]`` -> ``X``, parentheses removed, whitespace split."""
    return source.translate(_S4_RENAME).split()


_IDS = {t: i for i, t in enumerate(VOCAB) if i != PAD_ID}


def encode(source: str) -> np.ndarray:
    """Token ids ``[n]`` uint8 of a source (ids of :data:`VOCAB`; ``n`` = its tokens).

    Raises:
      ValueError: a token outside :data:`VOCAB`.
    """
    tokens = tokenize(source)
    try:
        return np.fromiter(map(_IDS.__getitem__, tokens), np.uint8, len(tokens))
    except KeyError as e:
        raise ValueError(f"token {e.args[0]!r} is not in the ListOps vocabulary "
                         f"{list(_IDS)}") from None


# ------------------------------------------------------------------------------------------
# Loader


def params_from_config(cfg: Mapping[str, Any]) -> tuple[str, ListOpsParams]:
    """``(tier, params)`` from ``listops_tier`` and the ``listops_*`` overrides of ``cfg``.

    Raises:
      DataConfigError: an unknown tier or a bad override (the message names the option).
    """
    tier = cfg.get("listops_tier") or "lra"
    if tier not in TIERS:
        raise DataConfigError(f"data.listops_tier: expected one of {sorted(TIERS)}, got {tier!r}")
    overrides = {field: cfg[key] for field, key in (("min_len", "listops_min_len"),
                                                     ("max_len", "listops_max_len"),
                                                     ("sizes", "listops_sizes"))
                 if cfg.get(key) is not None}
    try:
        return tier, dataclasses.replace(TIERS[tier], **overrides)
    except (ValueError, TypeError) as e:
        raise DataConfigError(f"data.listops_{e}") from None


def load_listops(cfg: Mapping[str, Any]) -> Dataset:
    """ListOps (LRA's generator and file layout, S4's tokens), generated once and cached.

    Args:
      cfg: ``listops_tier`` (a key of :data:`TIERS`, default ``"lra"``), optional overrides
        ``listops_min_len`` / ``listops_max_len`` (exclusive length bounds) and
        ``listops_sizes`` (train, val, test); ``data_dir`` (default
        ``~/astroflax_data/<ListOpsParams.folder>``; a folder holding LRA's released
        ``basic_*.tsv`` is read as it is); ``max_len`` (padded length; None: the tier's
        ``max_len``); ``eval_split`` (``"validation"`` | ``"test"``, default test);
        ``num_train`` / ``num_eval`` (caps: the first examples).

    Returns:
      A ``"classification"`` :class:`Dataset` of ``{"inputs": int32 [L], "mask": bool [L],
      "label": int32 []}``, with ``model_overrides`` ``vocab_size`` 16, ``num_classes`` 10
      and ``max_len`` L.

    Raises:
      DataConfigError: a bad option, ``max_len`` shorter than a sequence in use, or a file
        in ``data_dir`` that is not LRA's ListOps TSV.
    """
    tier, params = params_from_config(cfg)
    eval_split = cfg.get("eval_split") or "test"
    if eval_split not in ("validation", "test"):
        raise DataConfigError(f"data.eval_split: expected 'validation' or 'test', got "
                              f"{eval_split!r}")
    data_dir = Path(cfg.get("data_dir") or Path(DEFAULT_ROOT) / params.folder).expanduser()
    try:
        data_dir = prepare_listops(params, data_dir)
    except DataConfigError:
        raise
    except ValueError as e:  # infeasible sizes: only a listops_* override can cause them
        raise DataConfigError(f"data.listops_{e}") from None
    length = int(cfg.get("max_len") or params.max_len)

    def examples(split: str, cap_field: str) -> list[tuple[np.ndarray, int]]:
        path = split_path(data_dir, split)
        try:
            rows = read_tsv(path)
            rows = rows[:limit(len(rows), cfg.get(cap_field))]
            encoded = [(encode(s), y) for s, y in rows]
        except ValueError as e:
            raise DataConfigError(f"data.data_dir: {path} is not LRA ListOps data: {e}") from None
        if not encoded:
            raise DataConfigError(f"data.{cap_field}: no {split} examples left in {path}")
        longest = max(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        if len(encoded[longest][0]) > length:
            raise DataConfigError(
                f"data.max_len: {path.name} row {longest + 1} has {len(encoded[longest][0])} "
                f"tokens, more than max_len={length}; raise max_len (None: the tier's "
                f"{params.max_len}) or lower listops_max_len")
        return encoded

    train = examples("train", "num_train")
    evals = examples("val" if eval_split == "validation" else "test", "num_eval")
    labels = np.array([y for _, y in evals])
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    lengths = [len(ids) for ids, _ in train + evals]
    logging.info("ListOps %s: %d train / %d %s examples, lengths %d-%d, padded to %d", tier,
                 len(train), len(evals), eval_split, min(lengths), max(lengths), length)

    def pad(row: tuple[np.ndarray, int]) -> Example:
        ids, label = row
        inputs = np.zeros((length,), np.int32)
        inputs[:len(ids)] = ids
        return {"inputs": inputs, "mask": np.arange(length) < len(ids),
                "label": np.int32(label)}

    info = {
        "eval_split": eval_split, "tier": tier, "data_dir": str(data_dir),
        "tokenizer": "S4 ListOps: ']' -> 'X', parentheses dropped, whitespace split; fixed "
                     "vocabulary <pad>=0, digits 0-9 = 1-10, [MIN [MAX [MED [SM = 11-14, X = 15",
        "majority_class": int(counts.argmax()),
        "majority_rate": float(counts.max() / len(evals)),
        "length_bounds": f"{params.min_len} < length < {params.max_len} (generation)",
        "lengths_seen": (min(lengths), max(lengths)),
    }
    return Dataset("listops", "classification", grain.MapDataset.source(train).map(pad),
                   grain.MapDataset.source(evals).map(pad),
                   {"vocab_size": len(VOCAB), "num_classes": NUM_CLASSES, "max_len": length},
                   info)
