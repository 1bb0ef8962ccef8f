"""stopsign.export: checkpoint -> ONNX (``onnx_export``, ``fp16``, ``efficient_nms``) -> TensorRT engine
(``engine_plan``, ``tensorrt_build``); CLI ``edge-export`` (``cli``). Nothing is imported here, so
importing a submodule never pulls in torch or TensorRT unless it needs them."""
