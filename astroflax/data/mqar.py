"""Multi-query associative recall (MQAR), generated as Zoology generates it.

The task of Arora, Eyuboglu et al., "Zoology: Measuring and Improving Recall in Efficient
Language Models" (arXiv 2312.04927, Figure 2), following the generator of their code,
``HazyResearch/zoology``, ``zoology/data/multiquery_ar.py`` (``multiquery_ar`` with
``num_passes=1`` and ``random_non_queries=False``, as the Figure-2 configs set it).

An example of length ``L`` with ``K`` key–value pairs over a vocabulary of ``V`` tokens:

* keys are ``K`` distinct tokens of ``[1, V // 2)``, values ``K`` distinct tokens of
  ``[V // 2, V)``; key ``j`` is paired with value ``j``;
* the context is the first ``2K`` positions, ``k1 v1 k2 v2 … kK vK``;
* the rest, ``L - 2K`` positions, is ``S = (L - 2K) // 2`` slots of two positions. The ``K``
  keys are queried again: key ``j`` at the first position of slot ``g_j``, i.e. at position
  ``2K + 2·g_j``, where ``g_1, g_2, …, g_K`` are drawn from ``{0, …, S - 1}`` without
  replacement, one after another, each with probability ∝ ``a·i^(a-1)``, ``i = g + 1``
  (renormalised over the slots not yet drawn; ``a`` = ``power_a`` = 0.01 makes that
  ≈ ``1/i``: queries mostly come soon after the context);
* the label of a query is its key's value, **at the query key's own position** (next-token
  prediction: the model reading ``k_j`` must emit ``v_j``; the value itself is not written
  after the query). Zoology builds it with a one-position shift (labels one longer than the
  inputs, dropped at the front); the result is this. Every other target is
  :data:`~astroflax.data.base.IGNORE`, and every other input token is 0 (0 is neither a key
  nor a value).

For example (``V = 18``, ``L = 16``, ``K = 2``; keys 3, 5 and values 9, 12; slots 0 and 4)::

    inputs:   3    9    5   12    5    0    0    0    0    0    0    0    3    0    0    0
    targets: -100 -100 -100 -100  12 -100 -100 -100 -100 -100 -100 -100  9 -100 -100 -100

Zoology's checks are kept: ``L`` even, ``V > L``, ``4K ≤ L`` (the context plus ``K`` slots).
They imply enough keys and values for ``K`` distinct pairs (``V // 2 - 1 ≥ 2K - 1 ≥ K``).

Sampling (same distribution as Zoology, not the same arrays: Zoology uses numpy's global legacy
generator row by row). The sequential draws without replacement are the first ``K`` distinct
values of an i.i.d. stream from the same weights (each new value of such a stream is drawn
from the weights of the values not yet seen, renormalised: exactly the sequential rule, which
is also how numpy's ``choice(replace=False, p=...)`` draws). Streams are drawn for a whole
block of examples at once, so generation is vectorised. Examples come in chunks of
:data:`CHUNK` rows, chunk ``c`` of split ``s`` drawn from ``SeedSequence([seed, s, c])``:
the first ``n`` examples do not depend on how many are asked for, and the eval split does not
depend on the training split. Draws use only ``Generator.integers`` and ``Generator.random``
(exact on every platform) and integer operations, plus comparisons of those uniforms with the
one table of slot weights, computed once with Python's float power; so the same seed gives
the same arrays on every machine.

Splits are held as ``keys``, ``values`` and ``slots`` ``[N, K]`` and each example is built
when it is read, so a split takes ``O(N·K)`` memory, not ``O(N·L)``. Generating the paper's
largest split (100 000 examples, L = 512, K = 64) takes a few seconds, so nothing is cached.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import grain
import numpy as np

from astroflax.data.base import IGNORE, DataConfigError, Dataset, Example

#: Figure 2 of the paper: vocabulary, the ``(L, K)`` grid, examples per setting, ``power_a``.
PAPER_VOCAB = 8192
PAPER_GRID = ((64, 4), (128, 8), (256, 16), (512, 64))
PAPER_NUM_TRAIN = 100_000
PAPER_NUM_EVAL = 3_000
POWER_A = 0.01

#: Smaller settings for CPU runs of a small (2-layer) model: the same generator at V = 256,
#: L = 64 and K = 4, 8 or 16, with fewer examples. A 2-layer softmax ``AstroLM`` (features 64,
#: 1 head, learned positions; AdamW, lr 3e-3 cosine, weight decay 0.1, batch 64) reaches
#: ≥ 0.99 eval accuracy on them within 1 500 steps at K = 4 and 2 500 steps at K = 16.
CPU_VOCAB = 256
CPU_GRID = ((64, 4), (64, 8), (64, 16))
CPU_NUM_TRAIN = 20_000
CPU_NUM_EVAL = 1_000

#: Examples per independently seeded block (see the module docstring).
CHUNK = 4096
_SPLITS = {"train": 0, "eval": 1}


def check_setting(vocab_size: int, max_len: int, num_pairs: int, power_a: float) -> None:
    """Zoology's preconditions on a setting; each error names the ``data.`` field to change.

    Raises:
      DataConfigError: ``max_len`` odd or below 4; ``num_pairs`` below 1 or above
        ``max_len // 4``; ``vocab_size`` not above ``max_len``; ``power_a`` not positive.
    """
    if max_len < 4 or max_len % 2:
        raise DataConfigError(f"data.max_len: MQAR needs an even sequence length ≥ 4 (the "
                              f"query region is cut into slots of two positions), got {max_len}")
    if not 1 <= num_pairs <= max_len // 4:
        raise DataConfigError(
            f"data.num_pairs: expected 1..{max_len // 4} key–value pairs for max_len={max_len} "
            f"(the 2K-token context plus K query slots of two positions need 4K ≤ max_len), "
            f"got {num_pairs}; raise data.max_len or lower data.num_pairs")
    if vocab_size <= max_len:
        raise DataConfigError(
            f"data.vocab_size: Zoology's MQAR generator requires vocab_size > max_len "
            f"({max_len}), got {vocab_size}; the paper uses {PAPER_VOCAB}")
    if not (math.isfinite(power_a) and power_a > 0):
        raise DataConfigError(f"data.power_a: the query-slot law p(i) ∝ a·i^(a-1) needs a > 0 "
                              f"(the paper: {POWER_A}; 1 is uniform), got {power_a}")


def slot_weights(num_slots: int, power_a: float) -> np.ndarray:
    """``float64 [S]``: p(slot ``g``) ∝ ``i^(a-1)`` with ``i = g + 1``, normalised.

    Zoology's ``a·i^(a-1)``; the constant ``a`` cancels in the normalisation.
    """
    # Python floats (the C library's pow), not numpy's vectorised power, whose SIMD variants
    # can differ by an ulp between CPUs: this table is the one float input of the draws.
    w = np.array([float(i) ** (power_a - 1.0) for i in range(1, num_slots + 1)])
    return w / w.sum()


def first_distinct(draw: Callable[[tuple[int, int]], np.ndarray], n: int, k: int,
                   block: int) -> np.ndarray:
    """``int64 [n, k]``: per row, the first ``k`` distinct values of an i.i.d. stream.

    That is ``k`` draws without replacement, one after another, each from the stream's law
    restricted to the values not yet drawn (renormalised). Rows take ``block`` more draws
    until they have ``k`` distinct values (the law must give at least ``k`` values a positive
    probability).

    Args:
      draw: ``shape -> int [*shape]``, i.i.d. draws (one call per block, so the result is a
        deterministic function of the generator it uses).
      n: rows. k: distinct values per row. block: draws added per round.
    """
    out = np.empty((n, k), np.int64)
    rows = np.arange(n)
    stream = draw((n, block))
    while rows.size:
        # First occurrences: a stable sort keeps equal values in stream order.
        order = np.argsort(stream, axis=1, kind="stable")
        ordered = np.take_along_axis(stream, order, axis=1)
        lead = np.ones(ordered.shape, bool)
        lead[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        first = np.empty_like(lead)
        np.put_along_axis(first, order, lead, axis=1)
        done = first.sum(1) >= k
        keep = first[done] & (np.cumsum(first[done], axis=1) <= k)
        out[rows[done]] = stream[done][keep].reshape(-1, k)  # row-major: stream order per row
        rows, stream = rows[~done], stream[~done]
        if rows.size:
            stream = np.concatenate([stream, draw((rows.size, block))], axis=1)
    return out


@dataclasses.dataclass(frozen=True)
class MQARSplit:
    """A split as ``keys``, ``values``, ``slots`` ``int32 [N, K]``; examples built on reading.

    ``keys[n, j]`` is paired with ``values[n, j]`` and queried in slot ``slots[n, j]`` (at
    position ``2K + 2·slots[n, j]``) of sequences of ``max_len`` tokens.
    """

    keys: np.ndarray
    values: np.ndarray
    slots: np.ndarray
    max_len: int

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Example:
        """Example ``i``: ``{"inputs": int32 [L], "targets": int32 [L]}``."""
        s = slice(i, i + 1)
        inputs, targets = assemble(self.keys[s], self.values[s], self.slots[s], self.max_len)
        return {"inputs": inputs[0], "targets": targets[0]}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All examples at once: ``inputs``, ``targets`` ``int32 [N, L]``."""
        return assemble(self.keys, self.values, self.slots, self.max_len)


def assemble(keys: np.ndarray, values: np.ndarray, slots: np.ndarray,
             max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``inputs``, ``targets`` ``int32 [N, L]`` from ``keys``, ``values``, ``slots`` ``[N, K]``.

    The layout of the module docstring: context ``k1 v1 … kK vK``, key ``j`` again at
    ``2K + 2·slots[:, j]`` with target ``values[:, j]`` there; 0 and IGNORE elsewhere.
    """
    n, K = keys.shape
    inputs = np.zeros((n, max_len), np.int32)
    inputs[:, 0:2 * K:2] = keys
    inputs[:, 1:2 * K:2] = values
    where = 2 * K + 2 * slots.astype(np.int64)
    np.put_along_axis(inputs, where, keys.astype(np.int32), axis=1)
    targets = np.full((n, max_len), IGNORE, np.int32)
    np.put_along_axis(targets, where, values.astype(np.int32), axis=1)
    return inputs, targets


def _chunk(rng: np.random.Generator, n: int, vocab_size: int, max_len: int, num_pairs: int,
           weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``keys``, ``values``, ``slots`` ``int32 [n, K]`` of ``n`` examples from ``rng``."""
    half, K = vocab_size // 2, num_pairs
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    keys = first_distinct(lambda shape: rng.integers(1, half, size=shape), n, K, K + 8)
    values = first_distinct(lambda shape: rng.integers(half, vocab_size, size=shape), n, K,
                            K + 8)
    # Inverse CDF; u < 1 = cdf[-1], so the index is at most S - 1.
    slots = first_distinct(lambda shape: np.searchsorted(cdf, rng.random(shape), side="right"),
                           n, K, 2 * K)
    return keys.astype(np.int32), values.astype(np.int32), slots.astype(np.int32)


def generate(num_examples: int, *, vocab_size: int, max_len: int, num_pairs: int,
             power_a: float = POWER_A, seed: int = 0, split: str = "train") -> MQARSplit:
    """``num_examples`` MQAR examples of ``max_len`` tokens with ``num_pairs`` pairs.

    Args:
      num_examples: ``N``. vocab_size: ``V``. max_len: ``L``. num_pairs: ``K``.
      power_a: ``a`` of the query-slot law p(i) ∝ a·i^(a-1). seed: the data seed.
      split: ``"train"`` or ``"eval"`` (independent streams of the same seed).

    Returns:
      The split (``keys``, ``values``, ``slots`` ``int32 [N, K]``); the first ``n`` examples
      are the same for every ``num_examples ≥ n``.

    Raises:
      DataConfigError: a setting Zoology's generator refuses (:func:`check_setting`).
    """
    check_setting(vocab_size, max_len, num_pairs, power_a)
    weights = slot_weights((max_len - 2 * num_pairs) // 2, power_a)
    parts = []
    for c in range(-(-num_examples // CHUNK)):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [seed, _SPLITS[split], c])))
        parts.append(_chunk(rng, CHUNK, vocab_size, max_len, num_pairs, weights))
    if not parts:
        empty = np.zeros((0, num_pairs), np.int32)
        return MQARSplit(empty, empty, empty, max_len)
    keys, values, slots = (np.concatenate(a)[:num_examples] for a in zip(*parts, strict=True))
    return MQARSplit(keys, values, slots, max_len)


def _int_option(cfg: Mapping[str, Any], name: str, default: int | None, minimum: int) -> int:
    """``cfg[name]`` (or ``default``) as an int ≥ ``minimum``; DataConfigError otherwise."""
    v = cfg.get(name)
    if v is None:
        v = default
    if v is None:
        raise DataConfigError(f"data.{name}: required for mqar (the paper's (max_len, "
                              f"num_pairs) grid: {PAPER_GRID})")
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum:
        raise DataConfigError(f"data.{name}: expected an int ≥ {minimum}, got {v!r}")
    return int(v)


def load_mqar(cfg: Mapping[str, Any]) -> Dataset:
    """The ``mqar`` dataset: Zoology's multi-query associative recall, generated in memory.

    Args:
      cfg: ``max_len`` (``L``, required), ``num_pairs`` (``K``, required),
        ``vocab_size`` (``V``, default :data:`PAPER_VOCAB`), ``power_a`` (default
        :data:`POWER_A`), ``num_train`` / ``num_eval`` (examples generated, default
        :data:`PAPER_NUM_TRAIN` / :data:`PAPER_NUM_EVAL`; a smaller number gives a prefix of
        the larger split), ``seed`` (data seed, default 0).

    Returns:
      An ``astroflax.data.Dataset`` with task ``"recall"``: examples ``{"inputs": int32 [L],
      "targets": int32 [L]}``, ``K`` labelled positions each; ``model_overrides``
      ``{"vocab_size": V, "max_len": L}``; ``info`` with the setting and ``chance``, the
      accuracy of answering a uniformly chosen value of the context (``1/K``).

    Raises:
      DataConfigError: a bad option, before anything is generated.
    """
    max_len = _int_option(cfg, "max_len", None, 1)
    num_pairs = _int_option(cfg, "num_pairs", None, 1)
    vocab_size = _int_option(cfg, "vocab_size", PAPER_VOCAB, 1)
    num_train = _int_option(cfg, "num_train", PAPER_NUM_TRAIN, 1)
    num_eval = _int_option(cfg, "num_eval", PAPER_NUM_EVAL, 1)
    seed = _int_option(cfg, "seed", 0, 0)
    power_a = cfg.get("power_a")
    power_a = POWER_A if power_a is None else power_a
    if isinstance(power_a, bool) or not isinstance(power_a, int | float):
        raise DataConfigError(f"data.power_a: expected a positive number, got {power_a!r}")
    power_a = float(power_a)
    check_setting(vocab_size, max_len, num_pairs, power_a)
    setting = {"vocab_size": vocab_size, "max_len": max_len, "num_pairs": num_pairs,
               "power_a": power_a, "seed": seed}
    train = generate(num_train, split="train", **setting)
    evaluation = generate(num_eval, split="eval", **setting)
    return Dataset("mqar", "recall", grain.MapDataset.source(train),
                   grain.MapDataset.source(evaluation),
                   {"vocab_size": vocab_size, "max_len": max_len},
                   {**setting, "chance": 1.0 / num_pairs,
                    "generator": "zoology multiquery_ar (num_passes=1, random_non_queries=False)"})
