"""Format conversion (PyTorch -> ONNX -> TensorFlow/TFLite/Keras), runners and parity."""
