"""results.json assembled from its producers: each producer (the network's module, a callback, the run itself)
declares the metrics it reports and hands over its values; every key has exactly one producer. A key two
producers declare or report is an error that names both, never a later value silently replacing an earlier one."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TypeVar

from anneal.record.metrics import Metric

Value = TypeVar("Value")
RESERVED = ("format", "metrics", "headline")  # what results.json itself says about its values


class ProducedTwice(ValueError):
    """Two producers claim one key of results.json; the message names the key and both producers."""


def merged(parts: Iterable[tuple[str, Mapping[str, Value]]], what: str = "reported") -> dict[str, Value]:
    """One mapping from each producer's (name, mapping): a key in two producers' mappings, or one that
    results.json reserves, raises ProducedTwice."""
    found: dict[str, Value] = {}
    owner: dict[str, str] = {}
    for producer, values in parts:
        for key, value in values.items():
            if key in RESERVED:
                raise ProducedTwice(f"results.json: {producer} {what} {key!r}, a key results.json keeps for itself")
            if key in owner:
                raise ProducedTwice(f"results.json: {key!r} is {what} by both {owner[key]} and {producer}")
            found[key], owner[key] = value, producer
    return found


def declarations(parts: Iterable[tuple[str, Iterable[Metric]]]) -> list[Metric]:
    """Every producer's declarations, each marked with its producer; a key declared twice raises ProducedTwice."""
    tagged = (
        (producer, {m.key: dataclasses.replace(m, producer=m.producer or producer) for m in declared})
        for producer, declared in parts
    )
    return list(merged(tagged, "declared").values())
