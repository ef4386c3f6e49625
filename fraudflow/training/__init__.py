"""Model training (the `train` extra): split, fit, thresholds, evaluation and ONNX export."""
