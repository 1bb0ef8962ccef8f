"""The shipped model files (ONNX FP32, INT8 Q/DQ, OpenVINO INT8 IR) and their spec."""
