"""A job's corpus step: the serving corpus built from the fitted events before serving time, the labels
remapped where the corpus says, and the pins' `image_signature` feature at the corpus's level
(docs/serving_corpus.md).

The step runs once per job, between the split and the evaluation task: for the fitted split at the
evaluated window's start and, under the refit protocol, for the tuning window at the validation
window's start, so that tuning baselines choose over the same policy's corpus.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ebr.data.schema import InteractionData, Split
from ebr.serving.corpus import CorpusPolicy, ServingCorpus, corpus_serving_time
from ebr.serving.signatures import feature_level, remap_split, with_signature_feature

log = logging.getLogger("ebr.serving")


@dataclass(frozen=True)
class ServedSplit:
    """A split as one corpus serves it.

    Args:
        corpus: the corpus built from the split's train window.
        split: the split with its labels on the corpus's representatives (itself when the corpus
            does not remap).
        engaged: the split as engaged, before any remapping (a remapped label names its
            representative, whose creation time is not the engaged pin's).
    """

    corpus: ServingCorpus
    split: Split
    engaged: Split


@dataclass(frozen=True)
class CorpusStep:
    """What the corpus step hands the rest of a job.

    Args:
        data: the data with the pins' `image_signature` feature at the corpus's level.
        fitted: the fitted split as the evaluated window's corpus serves it.
        tuning: the tuning window's split as its own corpus serves it (None: tuned on `fitted`).
    """

    data: InteractionData
    fitted: ServedSplit
    tuning: ServedSplit | None = None

    @property
    def split(self) -> Split:
        """The split fitted and scored (labels remapped when the corpus remaps)."""
        return self.fitted.split


def serve_split(policy: CorpusPolicy, data: InteractionData, split: Split, window: str) -> ServedSplit:
    """The corpus `policy` builds from `split.train` at `window`'s start, and the split it serves.

    Args:
        policy: the job's corpus policy (the `corpus` group).
        data: the data set (its pin table).
        split: the split whose train window scores the pins.
        window: "test" or "val": the window the corpus is served for.
    """
    served = policy.build(data.pins, split.train, corpus_serving_time(split, window))
    remapped = split if served.representative is None else remap_split(split, served.representative)
    return ServedSplit(served, remapped, split)


def corpus_step(
    policy: CorpusPolicy,
    data: InteractionData,
    split: Split,
    window: str,
    tuning: Split | None = None,
    trained: Mapping[str, Any] | None = None,
) -> CorpusStep:
    """Build the job's corpora and set the pins' signature feature.

    Args:
        policy: the job's corpus policy.
        data: the data set.
        split: the fitted split (train+val -> test under the refit protocol).
        window: `eval.window`: the corpus is built at its start.
        tuning: the tuning window's split (under the refit protocol), whose corpus is built at the
            start of its validation window; None: no separate tuning window.
        trained: the info of the saved model an evaluation-only job serves (None: the job fits).

    Raises:
        ValueError: naming `corpus.remap_image_signature`, when `trained` was trained with another
            `image_signature` feature than the corpus gives the pins.
    """
    fitted = serve_split(policy, data, split, window)
    tuned = None if tuning is None else serve_split(policy, data, tuning, "val")
    data = with_signature_feature(data, policy.remap_image_signature)
    check_signature_feature(trained, data)
    return CorpusStep(data, fitted, tuned)


def check_signature_feature(trained: Mapping[str, Any] | None, data: InteractionData) -> None:
    """Refuse serving a saved model with another `image_signature` feature than it was trained on.

    Args:
        trained: the saved model's info (None: nothing saved is served).
        data: the data with the job's signature feature.
    """
    if trained is None or "image_signature" not in trained:
        return
    level = feature_level(data.pins)
    if trained["image_signature"] != level:
        raise ValueError(
            f"corpus.remap_image_signature: the model was trained with the {trained['image_signature']}"
            f" image_signature feature, this job's corpus gives it the {level} one; set"
            " corpus.remap_image_signature as in the training run"
        )


def serving_warnings(corpus_size: int, k: int, n_interests: int, data_interests: int) -> dict[str, float]:
    """Warnings, logged and as metrics (`warnings/<name>` = 1), for a serving request that the job
    cannot honour as written; empty when there is none.

    - `warnings/corpus_smaller_than_k`: the served corpus holds fewer pins than the largest K, so
      every user gets fewer than K results and recall@K is bounded by the corpus, not the model.
    - `warnings/n_interests_capped`: `serving.n_interests` asks for more interests than the data has,
      so every user is served at most the data's interests.

    Args:
        corpus_size: pins in the served corpus.
        k: the largest retrieval depth (`max(eval.ks)`).
        n_interests: `serving.n_interests`.
        data_interests: the data's interest vocabulary (0: the data has none).
    """
    found: dict[str, float] = {}
    if corpus_size < k:
        log.warning(
            "the served corpus holds %d pins, fewer than the largest K=%d (eval.ks): recall@%d is bounded "
            "by the corpus (corpus.* settings)",
            corpus_size,
            k,
            k,
        )
        found["warnings/corpus_smaller_than_k"] = 1.0
    if 0 < data_interests < n_interests:
        log.warning(
            "serving.n_interests=%d is capped to the data's %d interests", n_interests, data_interests
        )
        found["warnings/n_interests_capped"] = 1.0
    return found
