"""The coverage sweep: ``python -m converters sweep`` converts every model of a source
(torchvision's classifiers, or one small timm model per family) in every format, by this
tool (``--tf-converter auto``) and by onnx2tf alone, and tabulates where each path stands.

``worker``: the per-model process (one ``zoo.executors`` task per model; resumable through
the executor's done-store). ``select``: which models (``--max-params``, timm's families).
``table``: the ``coverage-<source>.{csv,md}`` tables from the records the tasks return.
"""
