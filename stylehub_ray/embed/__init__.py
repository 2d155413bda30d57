"""Item embeddings and pair mining: image and text encoders on Ray Data actor pools, FAISS
indexes over the vectors, and the positive / negative item pairs the contrastive models train on.

Torch model code (``image_model``, ``text_model``) and index / pair math (``index``,
``pair_math``) hold no Ray; the stage modules (``images``, ``text``, ``pairs``) hold the Ray Data
plumbing and the run-directory bookkeeping.
"""
