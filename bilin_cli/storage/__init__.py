"""Reading and writing what users bring: checkpoint containers (safetensors,
torch pickles read with ``weights_only=True``, shards), layouts and maps that
name a model's tensors, SAE files, vocabularies and datasets, and the atomic
writes that publish outputs."""
