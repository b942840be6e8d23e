"""`--config_overrides "k=v,k2=v2"`: typed parsing, checked against a config class (used by the scripts and ports)."""

import dataclasses
import difflib
import json
from collections.abc import Mapping

from .models.configuration_livt import LiVTConfig


def config_keys(config_class) -> set[str]:
    """Names a config class accepts as overrides: its dataclass fields plus `num_labels`."""
    return {f.name for f in dataclasses.fields(config_class)} | {"num_labels"}


def _split_top_level(text: str) -> list[str]:
    """Split `k=v,k=[1,2]` on commas outside brackets."""
    items, depth, current = [], 0, []
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"cannot parse config override value {text!r}: {error}") from error
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def check_override_keys(overrides: Mapping, config_class):
    valid = config_keys(config_class)
    unknown = sorted(set(overrides) - valid)
    if unknown:
        guesses = {key: difflib.get_close_matches(key, valid, n=1) for key in unknown}
        hints = "".join(f" Did you mean {g[0]!r} for {k!r}?" for k, g in guesses.items() if g)
        own = sorted(vars(config_class).get("__annotations__", {}))
        raise ValueError(
            f"unknown config key(s) {unknown} for {config_class.__name__}.{hints} Its own fields: {own}."
        )


def parse_config_overrides(text: str | None, config_class=LiVTConfig) -> dict:
    """Parse `"k=v,k2=v2"` into a dict: ints, floats, `true`/`false`, `none`/`null` and JSON lists (`k=[1,2]`) are
    typed, anything else stays a string. Keys that `config_class` does not define raise `ValueError` naming them."""
    if not text or not text.strip():
        return {}
    overrides = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"config override {item!r} is not of the form key=value.")
        overrides[key.strip()] = _parse_value(value.strip())
    check_override_keys(overrides, config_class)
    return overrides
