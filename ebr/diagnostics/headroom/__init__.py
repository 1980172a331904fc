"""How much each world phenomenon leaves an ideal ranker to gain (`scripts/headroom.py`).

The ranker is `ebr.retrieval.oracle.truth_top_k`, the ideal retriever's ranking, over the world's
own truth or one with a part of its taste removed. `rankers` holds the world, its evaluation and
the truth variants, `conditional` per-interest retrieval, `corpus` the corpus policies, `study`
the rows, their measurement over world seeds and the printed tables.
"""
