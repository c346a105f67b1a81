"""Deployment: ONNX export (``export``, metadata in ``onnx_meta``), int8 (``quantize``,
``int8_finetune``), OpenVINO graph rewrites (``openvino_graph``), the backends behind one
``Predictor`` (``backends``), and the runner behind ``enet infer`` (``infer``, ``video``)."""
