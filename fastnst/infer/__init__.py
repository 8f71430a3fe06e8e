"""Stylizing images with a trained network: the loaded model and its tiling (stylizer), the one
inference plan every backend executes (plan), and the backends (fused float, int8, ONNX)."""
