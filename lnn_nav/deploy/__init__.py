"""Deployment: a checkpoint exported to ONNX and TorchScript, and its output gain set."""
