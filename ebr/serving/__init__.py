"""Serving: the retrieval corpus and the faiss item index user embeddings are searched against."""
