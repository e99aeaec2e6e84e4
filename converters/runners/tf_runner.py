"""TensorFlow SavedModel and Keras runners (NHWC inputs)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from converters.runners.base import BaseRunner, RunnerSpec


def configure_tf_threads(threads: int | None) -> None:
    """Fix TF's thread pools; only possible before TF runs its first op."""
    from converters.tf_compat import preload_triton

    preload_triton()
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised in this process
            pass


class SavedModelRunner(BaseRunner):
    def activate_impl(self) -> None:
        import tensorflow as tf

        configure_tf_threads(self.threads)
        self._loaded = tf.saved_model.load(self.spec.path)
        self._fn = self._loaded.signatures["serving_default"]
        self._input_keys = list(self._fn.structured_input_signature[1])
        self._output_keys = sorted(self._fn.structured_outputs)

    def deactivate_impl(self) -> None:
        self._loaded = self._fn = None

    def run_prepared(self, feed: dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        import tensorflow as tf

        args = {k: tf.constant(feed[n]) for k, n in zip(self._input_keys, self.spec.input_names)}
        out = self._fn(**args)
        return self.named([out[k].numpy() for k in self._output_keys])


class KerasRunner(BaseRunner):
    """A ``.keras`` model. ``graph=True`` (default) calls it through one traced
    ``tf.function`` with a dynamic batch, as ``model.predict`` and serving do;
    ``graph=False`` calls it eagerly, layer by layer from Python."""

    def __init__(self, spec: RunnerSpec, *, graph: bool = True) -> None:
        super().__init__(spec)
        self.graph = graph

    def activate_impl(self) -> None:
        import keras

        import converters.keras  # noqa: F401  registers the custom layers for loading

        configure_tf_threads(self.threads)
        self.model = keras.saving.load_model(self.spec.path, compile=False)
        self._call = self._traced(self.model) if self.graph else self._eager(self.model)

    @staticmethod
    def _eager(model):
        return lambda *inputs: model(inputs[0] if len(inputs) == 1 else list(inputs),
                                     training=False)

    @staticmethod
    def _traced(model):
        import tensorflow as tf

        # Batch dimension left open: one trace serves every batch size.
        signature = [tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in model.inputs]
        return tf.function(KerasRunner._eager(model), input_signature=signature)

    def deactivate_impl(self) -> None:
        self.model = self._call = None

    def run_prepared(self, feed: dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        out = self._call(*(feed[n] for n in self.spec.input_names))
        outs = out if isinstance(out, (list, tuple)) else [out]
        return self.named([np.asarray(o) for o in outs])
