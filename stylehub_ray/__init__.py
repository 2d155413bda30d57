"""StyleHub-Ray: a fashion recommender platform on Ray (ingest, features, embeddings, training, serving)."""

__version__ = "0.1.0"
