"""``AttentionSpec``: the one place where an attention variant's meaning lives.

A spec is a frozen, hashable dataclass: which kernel (``astro`` | ``softmax`` | ``none``), the
feature map, the Ca²⁺ exponent alpha, the sigmoid of Eq. 11, the scaling parameter ``m_div``,
the astrocytic positional term (Eq. 12) and its initialisation, the kernel mode, chunk size,
eps and the number of random features. :data:`VARIANTS` are named presets of it (the variant
table of docs/model.md §5); :func:`attention_spec` turns a name or a spec plus keyword overrides
into a spec, checking every field once, before any parameter is drawn.

``m_div`` forms (one explicit form, resolved by :meth:`AttentionSpec.resolve_m_div`):

* ``"paper"``: the paper's scaling parameter, a model preset's factor of the width ``D``
  (500·D for IMDB/CIFAR-10, 100·D for WikiText-2). A bare layer with no preset behind it
  resolves it to ``m`` (the per-head width, the kernel's own default). The presets of the
  astro family use it.
* ``"m"``: the per-head width ``m`` (the state width: random features for ``kozachkov_rf``).
* ``"500D"``: a factor of the model width ``D``.
* a positive number (``64000`` or the string ``"64000"``): the divisor itself. ``linear`` and
  ``kozachkov_rf`` fix ``1``.

Passing ``m_div="paper"`` as an override keeps the variant's own rule (the preset's value).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from astroflax.kernels.astro.api import IMPLEMENTATIONS, MODES

KERNELS = ("astro", "softmax", "none")
FEATURE_MAPS = ("elu1", "random_features")
M_DIV_FORMS = ("'paper'", "'m'", "a positive number such as '64000'",
               "a factor of the width such as '500D'")
_FACTOR = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[·*]?\s*D\s*$")

#: Fields that only the astro kernel reads; overriding them on softmax / none is an error.
#: (``mode``, ``chunk_size``, ``implementation`` and ``eps`` are accepted everywhere and unused
#: there, since a model setting passes them to every variant alike.)
ASTRO_FIELDS = ("feature_map", "alpha", "sigmoid", "m_div", "positional", "pos_decay_init",
                "pos_init_std", "num_features")


def parse_m_div(value: Any) -> str | float:
    """The canonical form of an ``m_div`` value: ``"paper"``, ``"m"``, ``"<f>D"`` or a float.

    Raises:
      ValueError: any other value, listing the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"m_div: expected one of {', '.join(M_DIV_FORMS)}; got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip() in ("paper", "m"):
        return value.strip()
    elif isinstance(value, str) and _FACTOR.match(value):
        factor = float(_FACTOR.match(value).group(1))
        if factor > 0:
            return f"{factor:g}D"
        number = -1.0
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
    if not number > 0 or number == float("inf"):
        raise ValueError(f"m_div: expected one of {', '.join(M_DIV_FORMS)}; got {value!r}")
    return number


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
    """What one attention layer computes (hashable; equal specs build equal layers).

    Each field's one-line help is declared with it (``dataclasses.field(metadata={"help":
    ...})``): :func:`help_of` reads it, and the run config's ``--help`` lists it. A bad value
    raises ValueError naming the field first (``alpha: expected > 0 ...``).
    """

    kernel: str = dataclasses.field(default="astro", metadata={
        "help": "astro (paper Eq. 8-17) | softmax | none (a control with no attention)"})
    feature_map: str = dataclasses.field(default="elu1", metadata={
        "help": "elu1 (Eq. 4) | random_features (Kozachkov's Performer cells)"})
    alpha: float = dataclasses.field(default=0.25, metadata={
        "help": "Ca2+ exponent of Eq. 14 (> 0; astro family)"})
    sigmoid: bool = dataclasses.field(default=True, metadata={
        "help": "Eq. 11's sigmoid (False: the linear-attention read-out)"})
    m_div: str | float = dataclasses.field(default="paper", metadata={
        "help": "scaling parameter of Eq. 11: paper | m | a number | a factor like 500D"})
    positional: bool = dataclasses.field(default=True, metadata={
        "help": "the astrocytic positional term of Eq. 12"})
    pos_decay_init: float = dataclasses.field(default=0.1, metadata={
        "help": "initial decay s of P_ij = exp(-s|i-j|) (> 0)"})
    pos_init_std: float = dataclasses.field(default=1.0, metadata={
        "help": "std(A) of the positional weights at init"})
    mode: str = dataclasses.field(default="auto", metadata={
        "help": "astro kernel mode: auto | parallel | chunk | recurrent"})
    chunk_size: int = dataclasses.field(default=64, metadata={
        "help": "chunk length of the chunk mode"})
    implementation: str = dataclasses.field(default="xla", metadata={
        "help": "astro kernel: xla | pallas (fused GPU/TPU kernels; not on CPU)"})
    eps: float = dataclasses.field(default=1e-6, metadata={
        "help": "guard on the calcium response of Eq. 16 (>= 0)"})
    num_features: int | None = dataclasses.field(default=None, metadata={
        "help": "random features per head for random_features (None: the head width m)"})
    name: str = dataclasses.field(default="custom", metadata={
        "help": "the preset this spec came from (a label; it does not change the maths)"})

    def __post_init__(self) -> None:
        def bad(field: str, expected: str) -> ValueError:
            return ValueError(f"{field}: expected {expected}, got {getattr(self, field)!r}")

        if self.kernel not in KERNELS:
            raise bad("kernel", f"one of {KERNELS}")
        if self.feature_map not in FEATURE_MAPS:
            raise bad("feature_map", f"one of {FEATURE_MAPS}")
        if self.mode not in MODES:
            raise bad("mode", f"one of {MODES}")
        if self.implementation not in IMPLEMENTATIONS:
            raise bad("implementation", f"one of {IMPLEMENTATIONS}")
        if self.implementation == "pallas" and self.mode == "recurrent":
            raise bad("implementation", "'xla' with mode='recurrent' (the Pallas kernels "
                      "replace the parallel and chunk modes)")
        if not (isinstance(self.alpha, int | float) and self.alpha > 0):
            raise bad("alpha", "> 0 (the Ca²⁺ exponent)")
        if not (isinstance(self.pos_decay_init, int | float) and self.pos_decay_init > 0):
            raise bad("pos_decay_init", "a number > 0")
        if not (isinstance(self.eps, int | float) and self.eps >= 0):
            raise bad("eps", "a number >= 0")
        if not (isinstance(self.chunk_size, int) and self.chunk_size > 0):
            raise bad("chunk_size", "a positive int")
        if self.num_features is not None and not (
                isinstance(self.num_features, int) and self.num_features > 0):
            raise bad("num_features", "None or a positive int")
        # One canonical form, so that equal meanings hash equal ("64000" == 64000.0).
        object.__setattr__(self, "m_div", parse_m_div(self.m_div))
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "sigmoid", bool(self.sigmoid))
        object.__setattr__(self, "positional", bool(self.positional))

    @property
    def has_positional_term(self) -> bool:
        """Whether layers of this spec carry the astrocytic positional term (Eq. 12)."""
        return self.kernel == "astro" and self.positional

    def resolve_m_div(self, *, width: int, m: int) -> float:
        """The divisor of Eq. 11 for a layer of model width ``width`` (``D``) and state width ``m``.

        ``"paper"`` resolves to ``m`` here: a model preset replaces it by its factor of ``D``
        first (:meth:`with_paper_factor`).
        """
        if isinstance(self.m_div, float):
            return self.m_div
        if self.m_div in ("paper", "m"):
            return float(m)
        return float(self.m_div[:-1]) * width

    def with_paper_factor(self, factor: float | None) -> AttentionSpec:
        """This spec with ``m_div="paper"`` replaced by ``"<factor>D"`` (a model preset's rule)."""
        if self.m_div != "paper" or factor is None:
            return self
        return dataclasses.replace(self, m_div=f"{factor:g}D")


_ASTRO = AttentionSpec()
#: docs/model.md §5, one preset per variant. ``kozachkov_rf`` fixes ``m_div = 1`` (astroflax's
#: choice; the paper leaves it open): with alpha = 1 and no sigmoid m_div only scales the output,
#: and Kozachkov's random-feature model approximates softmax attention unscaled.
VARIANTS: dict[str, AttentionSpec] = {
    "astro": dataclasses.replace(_ASTRO, name="astro"),
    "astro_no_pe": dataclasses.replace(_ASTRO, positional=False, name="astro_no_pe"),
    "astro_no_nonlin": dataclasses.replace(_ASTRO, alpha=1.0, sigmoid=False,
                                           name="astro_no_nonlin"),
    "kozachkov_iso": dataclasses.replace(_ASTRO, alpha=1.0, sigmoid=False, positional=False,
                                         name="kozachkov_iso"),
    "kozachkov_rf": dataclasses.replace(_ASTRO, feature_map="random_features", alpha=1.0,
                                        sigmoid=False, positional=False, m_div=1.0,
                                        name="kozachkov_rf"),
    "linear": dataclasses.replace(_ASTRO, alpha=1.0, sigmoid=False, positional=False,
                                  m_div=1.0, name="linear"),
    "softmax": AttentionSpec(kernel="softmax", positional=False, name="softmax"),
    "none": AttentionSpec(kernel="none", positional=False, name="none"),
}
ATTENTION_FIELDS = tuple(f.name for f in dataclasses.fields(AttentionSpec) if f.name != "name")


def attention_spec(attention: str | AttentionSpec = "astro", **overrides: Any) -> AttentionSpec:
    """A spec from a variant name (or a spec) with fields replaced by ``overrides``.

    ``None`` overrides are ignored, and so is ``m_div="paper"`` (the variant keeps its own
    rule). Overriding an astro-only field (:data:`ASTRO_FIELDS`) of a ``softmax`` or ``none``
    spec is an error.

    Raises:
      ValueError: an unknown variant or field, or a bad value, saying what is allowed.
    """
    if isinstance(attention, AttentionSpec):
        spec = attention
    elif attention in VARIANTS:
        spec = VARIANTS[attention]
    else:
        raise ValueError(f"attention: expected one of the variants or an AttentionSpec, got "
                         f"{attention!r}; allowed: {sorted(VARIANTS)}")
    given = {k: v for k, v in overrides.items()
             if v is not None and not (k == "m_div" and v == "paper")}
    unknown = sorted(set(given) - set(ATTENTION_FIELDS))
    if unknown:
        raise ValueError(f"{unknown} are not attention settings; allowed: "
                         f"{sorted(ATTENTION_FIELDS)}")
    if spec.kernel != "astro":
        astro_only = sorted(k for k in given if k in ASTRO_FIELDS)
        if astro_only:
            family = sorted(n for n, s in VARIANTS.items() if s.kernel == "astro")
            raise ValueError(f"{astro_only[0]}: expected unset for attention={spec.name!r} "
                             f"({astro_only} apply to the astro-family variants only: {family})")
    return dataclasses.replace(spec, **given) if given else spec



def help_of(field: str) -> str:
    """The one-line help declared with :class:`AttentionSpec`'s field ``field``."""
    return _FIELDS[field].metadata["help"]


_FIELDS = {f.name: f for f in dataclasses.fields(AttentionSpec)}
