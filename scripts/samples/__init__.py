"""The recipes behind ``scripts/train_samples.py``, one module per sample.

  common       logging, paths, writing checkpoint folders, the recorded command, warmup_cosine
  data         data sources (MNIST, Fashion-MNIST, Shakespeare) and the ``data`` sample
  image        ``mnist``, ``fmnist``, ``mnist-bias``
  toy          ``toy``
  shakespeare  ``shakespeare`` (the transformer) and ``shakespeare-saes`` (its two SAEs)
  index        the index README ``sample_checkpoints/README.md``
"""
