"""The schema of ``report.claims`` (an experiment's paper claims), checked key by key.

See `ebr.report.claims` for the schema and what a sweep measures for each claim.
"""

from __future__ import annotations

from typing import Any

from ebr.report.pooled import DIRECTIONS, Claim

CLAIM_KEYS = {"name", "arm", "baseline", "metric", "direction", "paper", "offline"}
# offline metrics (what a `partly` verdict may rest on) by default: report.metrics with these prefixes
OFFLINE_PREFIXES = ("recall@", "ndcg@")


class ClaimError(ValueError):
    """A malformed ``report.claims`` entry (the message names the key)."""


def _mapping(node: Any, where: str) -> dict[str, Any]:
    if not isinstance(node, dict) or not node or not all(isinstance(k, str) for k in node):
        raise ClaimError(
            f"{where} must map override key -> value (e.g. {{model/crossing: masknet}}), got {node!r}"
        )
    if any(isinstance(v, dict | list) for v in node.values()):
        raise ClaimError(f"{where} values must be scalars, got {node!r}")
    return dict(node)


def _text(node: dict[str, Any], key: str, where: str) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ClaimError(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value


def parse_claim(node: Any, where: str, baseline: dict[str, Any] | None, metrics: list[str]) -> Claim:
    """One ``report.claims`` entry.

    Args:
        node: the entry (a mapping).
        where: its key path for messages, e.g. ``report.claims[0]``.
        baseline: ``report.baseline``, the default of the claim's baseline.
        metrics: ``report.metrics``, whose recall/ndcg ones are the default offline metrics.

    Raises:
        ClaimError: a key missing, unknown or of the wrong type.
    """
    if not isinstance(node, dict):
        raise ClaimError(f"{where} must be a mapping with keys {sorted(CLAIM_KEYS)}, got {node!r}")
    unknown = sorted(set(node) - CLAIM_KEYS)
    if unknown:
        raise ClaimError(f"{where}: unknown key(s) {unknown} (allowed: {sorted(CLAIM_KEYS)})")
    arm = _mapping(node.get("arm"), f"{where}.arm")
    if node.get("baseline") is None and not baseline:
        raise ClaimError(f"{where}.baseline is missing and the experiment has no report.baseline")
    claim_baseline = _mapping(node.get("baseline") or baseline, f"{where}.baseline")
    direction = str(node.get("direction"))
    if direction not in DIRECTIONS:
        raise ClaimError(f"{where}.direction must be '+' or '-', got {node.get('direction')!r}")
    offline = node.get("offline")
    if offline is None:
        offline = [m for m in metrics if m.startswith(OFFLINE_PREFIXES)]
    if not isinstance(offline, list) or not all(isinstance(m, str) for m in offline):
        raise ClaimError(f"{where}.offline must be a list of metric names, got {offline!r}")
    metric = _text(node, "metric", where)
    name = node.get("name")
    if name is not None and not isinstance(name, str):
        raise ClaimError(f"{where}.name must be a string, got {name!r}")
    return Claim(
        arm=arm,
        baseline=claim_baseline,
        metric=metric,
        direction=direction,
        paper=_text(node, "paper", where),
        offline=tuple(m for m in offline if m != metric),
        name=name or ",".join(str(v) for v in arm.values()),
    )


def parse_claims(node: Any, baseline: dict[str, Any] | None, metrics: list[str]) -> tuple[Claim, ...]:
    """The ``report.claims`` list (None: no claims).

    Args:
        node: the list, or None.
        baseline: ``report.baseline``.
        metrics: ``report.metrics``.

    Raises:
        ClaimError: not a list, or a malformed entry (the message names ``report.claims[i].key``).
    """
    if node is None:
        return ()
    if not isinstance(node, list):
        raise ClaimError(f"report.claims must be a list of claims, got {node!r}")
    return tuple(parse_claim(item, f"report.claims[{i}]", baseline, metrics) for i, item in enumerate(node))
