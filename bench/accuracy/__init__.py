"""``python -m bench accuracy``: top-1/top-5 of every artifact on labelled photos, and its
agreement with PyTorch fp32 (see ``bench.accuracy.cli``)."""
