"""Executors of an inference plan (fastnst.infer.plan): fused float (bf16 / fp32), int8 with its
native elementwise passes, and the ONNX export."""
