"""JSON Schema tool definitions (the OpenAI function-calling ``tools`` format), generated from
the functions' signatures and docstrings, so they are never written twice."""

from __future__ import annotations

import inspect
import re
import types
import typing

_SIMPLE = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},  # an optional parameter: `str | None`
}


def json_type(tp) -> dict:
    """JSON Schema for a parameter annotation (str, int, float, bool, list[...], unions)."""
    if tp in _SIMPLE:
        return dict(_SIMPLE[tp])
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_type(a) for a in typing.get_args(tp)]}
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": json_type(item)}
    raise TypeError(f"no JSON Schema for annotation {tp!r}")


def _doc(fn) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google-style docstring."""
    doc = inspect.getdoc(fn) or ""
    summary = doc.split("\n\n")[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    block = re.search(r"Args:\n(.*?)(?:\n\S|\Z)", doc, re.S)
    if block:
        name = None
        for line in block.group(1).splitlines():
            m = re.match(r"\s{4}(\w+):\s*(.*)", line)
            if m:
                name = m.group(1)
                params[name] = m.group(2).strip()
            elif name and line.strip():
                params[name] += " " + line.strip()
    return summary, params


def tool_spec(fn, name: str | None = None) -> dict:
    """One ``{"type": "function", "function": {name, description, parameters}}`` entry;
    ``name`` is the function's registered name (default: its ``__name__``)."""
    hints = typing.get_type_hints(fn)
    summary, described = _doc(fn)
    props, required = {}, []
    for arg, p in inspect.signature(fn).parameters.items():
        schema = json_type(hints[arg])
        if arg in described:
            schema["description"] = described[arg]
        if p.default is inspect.Parameter.empty:
            required.append(arg)
        else:
            schema["default"] = p.default
        props[arg] = schema
    return {
        "type": "function",
        "function": {
            "name": name or fn.__name__,
            "description": summary,
            "parameters": {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            },
        },
    }
