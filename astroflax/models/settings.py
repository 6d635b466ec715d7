"""The model settings a run config can set, derived from where they are declared.

A setting is declared once: an attention setting as a field of
:class:`astroflax.nn.AttentionSpec` (its help in the field's ``metadata``), a model setting as a
keyword argument of a zoo model's constructor (its help in the constructor's ``Args:``
docstring). :data:`SETTINGS` collects both, and from it come the run config's ``model``
section (``experiments/configs/common.py``), the ``--help`` field list of ``experiments.run``
and the checks: :func:`check_model` builds the model abstractly (no parameter is drawn), so every
check the spec and the constructors make runs before any data is read or anything compiled.

A config value means "keep the preset's": ``None``, or ``"paper"`` where the declaration's
default is ``"paper"`` (``m_div``, ``pos_embedding``: the paper's own rule for each variant).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any

from flax import nnx

from astroflax.models.lm import AstroLM
from astroflax.models.text import AstroPairClassifier, AstroTextClassifier
from astroflax.models.vit import AstroViT
from astroflax.nn.spec import AttentionSpec, help_of

#: The zoo's model classes, in the order their docstrings are read for a setting's help (a
#: later class may refer to an earlier one: ``as in AstroViT``).
MODEL_CLASSES: tuple[type[nnx.Module], ...] = (AstroViT, AstroTextClassifier, AstroLM,
                                                AstroPairClassifier)
#: Constructor arguments that are not settings: the spec object is set through ``attention``
#: (a variant name) and the spec's own fields; dtypes and RNGs are objects, not config values.
_NOT_SETTINGS = ("self", "rngs", "dtype", "param_dtype")
#: Spec fields that are not settings: ``attention`` chooses the kernel, ``name`` is a label.
_SPEC_ONLY = ("kernel", "name")
_SIMPLE = (bool, int, float, str)
_ENTRY = re.compile(r"^(\w+(?:, \w+)*): (.*)$")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One ``config.model`` field.

    Attributes:
      name: the field (a constructor keyword or an :class:`AttentionSpec` field).
      type: its value type (``bool``, ``int``, ``float`` or ``str``); ``None`` is allowed too.
      default: the config's value that keeps the preset's (``None`` or ``"paper"``).
      help: the one-line help from the declaration.
      source: ``"spec"``, ``"model"`` or ``"config"`` (``name``, the preset).
    """

    name: str
    type: type
    default: Any
    help: str
    source: str


def _simple_type(annotation: Any) -> type | None:
    """``int | None`` -> int, ``AttentionSpec | str`` -> str, ``Any`` -> None (not a setting)."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or (
        typing.get_origin(annotation) is typing.Union) else (annotation,)
    simple = [a for a in args if a in _SIMPLE]
    return str if str in simple else (simple[0] if len(simple) == 1 else None)


def _plain(text: str) -> str:
    """Docstring markup off: ``:class:`a.B``` -> ``a.B``, double backquotes -> none."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")


def _first_sentence(text: str) -> str:
    """Up to the first full stop followed by a space, outside brackets and backquotes."""
    depth, quoted = 0, False
    for i, ch in enumerate(text):
        quoted = not quoted if ch == "`" else quoted
        depth += (ch in "([") - (ch in ")]")
        if ch == "." and not quoted and depth == 0 and text[i + 1:i + 2] in (" ", ""):
            return text[:i]
    return text


def docstring_args(fn: Any) -> dict[str, str]:
    """The ``Args:`` entries of ``fn``'s docstring, first sentence each: ``{name: help}``.

    An entry naming several arguments (``features, num_layers: ...``) gives each the text; an
    entry that only refers elsewhere (``as in ...`` / ``see ...``) gives none.
    """
    lines = (inspect.getdoc(fn) or "").splitlines()
    if "Args:" not in [ln.strip() for ln in lines]:
        return {}
    start = [ln.strip() for ln in lines].index("Args:") + 1
    entries: list[tuple[list[str], list[str]]] = []
    indent = None
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break                                  # the next section (Returns:, Raises:)
        here = len(line) - len(line.lstrip())
        indent = here if indent is None and line.strip() else indent
        match = _ENTRY.match(line.strip())
        if here == indent and match:
            entries.append((match.group(1).split(", "), [match.group(2)]))
        elif entries and line.strip():
            entries[-1][1].append(line.strip())
    out: dict[str, str] = {}
    for names, text in entries:
        help_text = _plain(_first_sentence(" ".join(text)))
        if not re.match(r"^(as in|see) ", help_text):
            out.update({n: help_text for n in names})
    return out


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters ``cls(...)`` accepts, ``self`` and ``**kwargs`` left out.

    A constructor that passes ``**kwargs`` on to its base class accepts the base's parameters
    too (its own declaration wins): ``AstroPairClassifier`` takes every argument of
    ``AstroTextClassifier``.
    """
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        out.update({n: p for n, p in params.items() if n not in out and n != "self"
                    and p.kind is not inspect.Parameter.VAR_KEYWORD})
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    return out


def _model_settings() -> dict[str, Setting]:
    out: dict[str, Setting] = {}
    helps: dict[str, str] = {}
    for cls in reversed(MODEL_CLASSES):     # the first class's entry wins
        helps.update(docstring_args(cls.__init__))
    for cls in MODEL_CLASSES:
        hints: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if "__init__" in vars(klass) and klass is not object:
                hints.update(typing.get_type_hints(klass.__init__))
        for name, p in constructor_parameters(cls).items():
            kind = _simple_type(hints.get(name))
            if name in _NOT_SETTINGS or kind is None:
                continue
            if name in out:
                if out[name].type is not kind:
                    raise TypeError(f"{cls.__name__}({name}) is a {kind.__name__}, another "
                                    f"model's {name} a {out[name].type.__name__}")
                continue
            if name not in helps:
                raise TypeError(f"{cls.__name__}.__init__ declares {name!r}, and no model's "
                                "Args: entry says what it is (its help in the config)")
            default = "paper" if p.default == "paper" else None
            out[name] = Setting(name, kind, default, helps[name], "model")
    return out


def _spec_settings() -> dict[str, Setting]:
    hints = typing.get_type_hints(AttentionSpec)
    return {f.name: Setting(f.name, _simple_type(hints[f.name]),
                            "paper" if f.default == "paper" else None, help_of(f.name), "spec")
            for f in dataclasses.fields(AttentionSpec) if f.name not in _SPEC_ONLY}


#: Every ``config.model`` field, in declaration order: the preset, the model constructors'
#: keywords (``attention`` first among them), then the attention spec's fields.
SETTINGS: dict[str, Setting] = {
    "name": Setting("name", str, "tiny_cifar10",
                    "a preset of astroflax.models.list_models()", "config"),
    **_model_settings(), **_spec_settings()}
# A variant must be named: the spec's fields refine it, there is no "keep the preset's".
SETTINGS["attention"] = dataclasses.replace(SETTINGS["attention"], default="astro")


def keeps_preset(field: str, value: Any) -> bool:
    """Whether ``config.model.<field> = value`` keeps the preset's value (None / ``"paper"``)."""
    return value is None or (value == "paper" and field in SETTINGS
                             and SETTINGS[field].default == "paper")
