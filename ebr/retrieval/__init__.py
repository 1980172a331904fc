"""Retrievers: every model ebr evaluates, behind one protocol (`ebr.retrieval.protocol.Retriever`).

A retriever is fitted on a split (`split.train`; hyperparameters chosen on the validation window
of `FitContext.tuning_window` when it tunes: under the refit protocol, `ebr.retrieval.refit`,
`split.train` is train+val and tuning runs on the unmerged cut) and then retrieves ranked corpus
pins for an evaluation task. The two-tower model (`two_tower`: trained with Lightning and
torchrec, served from its saved artifact through ebr.serving) and the classical baselines
(`popularity`, `puresvd`, `itemknn`, `ease`: exhaustive scoring) take the same path, so the same
evaluation code scores them all; so does `oracle`, a synthetic world's true score (the ceiling of any
retriever on that world).
"""
