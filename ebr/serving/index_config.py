"""How the item index is built: a faiss `index_factory` string, its parameters, and corpus sizing.

One build path serves every index kind: `faiss.index_factory(d, factory, metric)`, then the
build-time parameters (attributes of the built index, e.g. HNSW's efConstruction), training on the
corpus when the index needs it, adding the vectors, and the search parameters through faiss's own
`ParameterSpace` (efSearch, nprobe, ...).

Corpus sizing (`size_to_corpus`, on by default): corpora range from a few hundred pins (the tiny
world's training-window corpus, ~700) to millions, and faiss's k-means wants at least
MIN_POINTS_PER_CENTROID = 39 training points per centroid (it warns below that, and fails with
fewer points than centroids). The numbers in the factory string are therefore maxima, rewritten
for a corpus of n vectors of dimension d before the index is built:

- `IVF<nlist>` (also `IVF<nlist>_<quantizer>`): nlist' = min(nlist, max(1, n // 39)), so every
  inverted list's centroid has >= 39 training points (1,024 lists from n = 39,936 on);
- `PQ<m>` / `PQ<m>x<nbits>` (nbits 8 when omitted; an `np` suffix is kept): m' = the largest
  divisor of d not above m, since product quantisation splits the d dimensions into m' equal
  parts (d = 64: m' = 16 for m = 16; d = 65, with the popularity prior's extra coordinate: 13);
  nbits' = min(nbits, max(1, floor(log2(n / 39)))), so each sub-quantizer's 2^nbits' centroids
  get >= 39 points (8 bits from n = 9,984 on; n = 700: 4 bits; n = 300: 2 bits).

Other components (`Flat`, `HNSW32`, `SQ8`, ...) are left as written; the divisor rule uses d, so a
dimension-changing pre-transform (`PCA32,...`) needs a PQ m that divides its output, or
`size_to_corpus: false`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

METRICS = {"inner_product": faiss.METRIC_INNER_PRODUCT}
# transforms of the vectors before indexing (ebr.serving.index_mips): "mips_l2" turns inner-product
# search over vectors of unequal norms into L2 search, exact in ranking
TRANSFORMS = ("none", "mips_l2")
MIN_POINTS_PER_CENTROID = 39
FAST_SCAN_NBITS = 4
DEFAULT_PQ_NBITS = 8
# factory strings are checked at this dimension, which has many divisors (1-6, 8, 10, 12, 15, 16, ...)
_PROBE_DIM = 960
# a corpus large enough that sizing leaves the factory's numbers as written when checking them
_PROBE_CORPUS = 1 << 40
_IVF = re.compile(r"IVF(\d+)(_.*)?")
_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?(np|fs)?")
_FAISS_LOCATION = re.compile(r"^Error in .*? at \S+:\d+: ")
# factory components whose number must be >= 1 (faiss accepts "HNSW0" and "IVF0" and fails later)
_COUNTED = re.compile(r"(HNSW|IVF|NSG)(\d+)")
# parameters that must be >= 1 wherever they appear (search_params, or build_params leaves)
POSITIVE_PARAMETERS = ("nprobe", "efSearch", "efConstruction", "k_factor", "k_factor_rf", "max_codes")

Parameters = Mapping[str, Any]


@dataclass(frozen=True)
class IndexConfig:
    """How the item index is built and searched.

    Args:
        factory: a `faiss.index_factory` string: "Flat" (exact), "HNSW32,Flat", "IVF1024,PQ16", ...
            With `size_to_corpus`, its IVF and PQ numbers are maxima (see the module docstring).
        metric: "inner_product", the only metric: the towers' embeddings are L2-normalised, so it
            is cosine similarity, and scores are ranked highest first.
        build_params: attributes set on the built index before training and adding, as nested
            mappings following faiss's attribute paths, e.g. {"hnsw": {"efConstruction": 200}}
            or {"cp": {"niter": 20}} (IVF k-means iterations).
        search_params: faiss `ParameterSpace` parameters set after building and after loading,
            e.g. {"efSearch": 128} or {"nprobe": 16}.
        size_to_corpus: rewrite the factory's IVF list count and PQ sizes for the corpus.
        exact_filter_max: an allow-list search over at most this many items is exact (a flat
            search over the allowed items' vectors); larger allowed sets get a sub-index built with
            this config over their items (see ebr.serving.index).
        transform: "none", or "mips_l2": index the items as [x, sqrt(R^2 - |x|^2)] (R the largest
            norm) under L2 and search with [q, 0], which ranks exactly as the inner product does
            (ebr.serving.index_mips); for vectors of unequal norms (score terms' columns), on which
            graph and IVF indexes built for inner product lose recall. Scores stay inner products.
    """

    factory: str = "Flat"
    metric: str = "inner_product"
    build_params: Parameters = field(default_factory=dict)
    search_params: Parameters = field(default_factory=dict)
    size_to_corpus: bool = True
    exact_filter_max: int = 50_000
    transform: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.factory, str) or not self.factory.strip():
            raise ValueError(
                f"index.factory must be a non-empty faiss index_factory string, got {self.factory!r}"
            )
        if self.metric not in METRICS:
            raise ValueError(f"index.metric must be one of {sorted(METRICS)}, got {self.metric!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"index.transform must be one of {list(TRANSFORMS)}, got {self.transform!r}")
        object.__setattr__(self, "build_params", _plain_parameters(self.build_params, "index.build_params"))
        object.__setattr__(self, "search_params", _search_parameters(self.search_params))
        if not isinstance(self.size_to_corpus, bool):
            raise ValueError(f"index.size_to_corpus must be true or false, got {self.size_to_corpus!r}")
        _check_counts(self)
        limit = self.exact_filter_max
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"index.exact_filter_max must be an integer >= 0, got {limit!r}")
        # build an empty index once: it checks the factory string and every parameter name now,
        # not after the corpus has been embedded
        probe = new_index(self, _PROBE_CORPUS, _PROBE_DIM)
        set_search_params(probe, self)
        object.__setattr__(self, "_exact", isinstance(probe, faiss.IndexFlat))

    @property
    def is_exact(self) -> bool:
        """Whether search is exact (a flat index): its ANN recall is 1 without measuring it."""
        return bool(self.__dict__["_exact"])

    def sized_factory(self, n: int, dim: int) -> str:
        """The factory string used for a corpus of n vectors of dimension dim.

        Args:
            n: corpus size.
            dim: vector dimension.
        """
        return size_factory(self.factory, n, dim) if self.size_to_corpus else self.factory


def size_factory(factory: str, n: int, dim: int) -> str:
    """The factory string with IVF and PQ sizes fitted to n training vectors of dimension dim.

    Args:
        factory: a faiss index_factory string; its IVF nlist and PQ m, nbits are maxima.
        n: number of training (corpus) vectors, >= 1.
        dim: vector dimension, >= 1.
    """
    max_centroids = max(1, n // MIN_POINTS_PER_CENTROID)
    parts = []
    for part in factory.split(","):
        ivf, pq = _IVF.fullmatch(part), _PQ.fullmatch(part)
        if ivf is not None:
            part = f"IVF{min(int(ivf[1]), max_centroids)}{ivf[2] or ''}"
        elif pq is not None:
            m = max(divisor for divisor in range(1, min(int(pq[1]), dim) + 1) if dim % divisor == 0)
            nbits = min(int(pq[2] or DEFAULT_PQ_NBITS), max(1, int(math.log2(max_centroids))))
            if pq[3] == "fs":
                nbits = FAST_SCAN_NBITS  # fast-scan's SIMD tables exist for 4-bit codes only
            bits = "" if pq[2] is None and nbits == DEFAULT_PQ_NBITS else f"x{nbits}"
            part = f"PQ{m}{bits}{pq[3] or ''}"
        parts.append(part)
    return ",".join(parts)


def new_index(config: IndexConfig, n: int, dim: int, metric: int | None = None) -> faiss.Index:
    """An empty faiss index for n vectors of dimension dim, with the build parameters set.

    Args:
        config: the index config.
        n: corpus size (sizes the factory string).
        dim: vector dimension.
        metric: the faiss metric (None: the config's).
    """
    factory = config.sized_factory(n, dim)
    try:
        index = faiss.index_factory(dim, factory, METRICS[config.metric] if metric is None else metric)
    except RuntimeError as error:
        shown = repr(factory) if factory == config.factory else f"{config.factory!r} (sized: {factory!r})"
        raise ValueError(f"index.factory {shown}: faiss cannot build it: {_faiss_message(error)}") from error
    for path, value in _leaves(config.build_params):
        _set_attribute(index, path, value)
    return index


def build_index(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    """The index over `vectors` (float32, C-contiguous): built, trained if needed, filled, tuned.

    Args:
        vectors: (n, d) float32 vectors; row i gets faiss id i.
        config: the index config.
    """
    if config.transform == "mips_l2":
        # imported here: index_mips builds its inner index through fill_index below
        from ebr.serving.index_mips import build_mips_index

        return build_mips_index(vectors, config)
    index = new_index(config, *vectors.shape)
    fill_index(index, vectors, config)
    set_search_params(index, config)
    return index


def fill_index(index: faiss.Index, vectors: np.ndarray, config: IndexConfig) -> None:
    """Train `index` on `vectors` when it needs training, then add them.

    Args:
        index: an empty index from new_index.
        vectors: (n, d) float32 vectors.
        config: the index config (named in errors).
    """
    n, dim = vectors.shape
    if not index.is_trained:
        try:
            index.train(vectors)
        except RuntimeError as error:
            raise ValueError(
                f"index.factory {config.sized_factory(n, dim)!r}: training on {n} vectors of dimension {dim}"
                f" failed: {_faiss_message(error)}"
            ) from error
    index.add(vectors)


def set_search_params(index: faiss.Index, config: IndexConfig) -> None:
    """Applies `config.search_params` through faiss's ParameterSpace (after building or loading).

    Args:
        index: a faiss index built from `config`.
        config: the index config.
    """
    space = faiss.ParameterSpace()
    for name, value in config.search_params.items():
        try:
            space.set_index_parameter(index, name, float(value))
        except RuntimeError as error:
            raise ValueError(
                f"index.search_params.{name}: not a search parameter of index.factory {config.factory!r}"
                f" ({_faiss_message(error)})"
            ) from error


def _set_attribute(index: faiss.Index, path: str, value: Any) -> None:
    target: Any = index
    *parents, last = path.split(".")
    where = f"index.build_params.{path}"
    for name in parents:
        if not hasattr(target, name):
            raise ValueError(f"{where}: {type(target).__name__} has no attribute {name!r}")
        target = getattr(target, name)
        if isinstance(target, faiss.Index):
            # sub-indexes (e.g. an IVF quantizer) come back as the base class
            target = faiss.downcast_index(target)
    if not hasattr(target, last):
        raise ValueError(f"{where}: {type(target).__name__} has no attribute {last!r}")
    try:
        setattr(target, last, value)
    except (TypeError, AttributeError) as error:
        raise ValueError(f"{where}: cannot set {value!r}: {error}") from error


def _plain_parameters(params: Any, where: str) -> dict[str, Any]:
    """A plain nested dict of str -> number/bool (or nested dict), checked; config containers copied."""
    if not isinstance(params, Mapping):
        raise ValueError(f"{where} must be a mapping, got {params!r}")
    plain: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{where}: keys must be attribute names, got {key!r}")
        if isinstance(value, Mapping):
            plain[key] = _plain_parameters(value, f"{where}.{key}")
        elif isinstance(value, bool | int | float) and np.isfinite(value):
            plain[key] = value
        else:
            raise ValueError(f"{where}.{key} must be a finite number, a boolean or a mapping, got {value!r}")
    return plain


def _search_parameters(params: Any) -> dict[str, Any]:
    plain = _plain_parameters(params, "index.search_params")
    for key, value in plain.items():
        if isinstance(value, Mapping | bool):
            raise ValueError(
                f"index.search_params.{key} must be a number (a ParameterSpace value), got {value!r}"
            )
    return plain


def _leaves(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every leaf of a nested mapping, in order."""
    leaves = []
    for key, value in params.items():
        path = f"{prefix}{key}"
        leaves += _leaves(value, f"{path}.") if isinstance(value, Mapping) else [(path, value)]
    return leaves


def _check_counts(config: IndexConfig) -> None:
    """HNSW M, IVF nlist and the count parameters (nprobe, efSearch, ...) must be >= 1."""
    for part in config.factory.split(","):
        found = _COUNTED.match(part.strip())
        if found is not None and int(found[2]) < 1:
            what = {"HNSW": "HNSW M (graph degree)", "IVF": "IVF nlist (inverted lists)", "NSG": "NSG R"}
            raise ValueError(f"index.factory {config.factory!r}: {what[found[1]]} must be >= 1, got {part!r}")
    named = [(f"index.search_params.{key}", key, value) for key, value in config.search_params.items()]
    named += [
        (f"index.build_params.{path}", path.rsplit(".", 1)[-1], value)
        for path, value in _leaves(config.build_params)
    ]
    for where, name, value in named:
        if name in POSITIVE_PARAMETERS and not (isinstance(value, int | float) and value >= 1):
            raise ValueError(f"{where}={value!r}: must be >= 1")


def _faiss_message(error: Exception) -> str:
    """faiss's own error text without its C++ source location."""
    return _FAISS_LOCATION.sub("", str(error).strip())
