"""What a model file is: the contract every stage shares, and the files that carry it.

- ``spec``: :class:`ModelSpec`, what a model expects and produces (JSON on disk);
- ``onnx_meta``: the spec inside an ONNX file's metadata; ``engine_sidecar``: beside a TensorRT
  engine, with the TensorRT version and GPU it was built for (``gpu_info`` reads the GPU);
- ``openvino_ir``: the OpenVINO IR and its sidecar; ``qdq_unsigned``: the INT8 Q/DQ rewrite;
- ``artifacts``: SHA-256 identities and atomic writes for every artifact.

Depends on numpy only (and the standard library); everything else in ``stopsign.edge`` may use it.
"""
