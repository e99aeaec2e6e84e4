"""Per-layer numerical parity across PyTorch, ONNX Runtime, TF/Keras and TFLite."""
