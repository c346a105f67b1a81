"""Rewrites of OpenVINO models that let its CPU plugin run ENet fast, each where it pays on
the CPU at hand (``rewrite_for_this_cpu``); each computes exactly what the model does.

- Row bands: without AVX-512, OpenVINO runs a transposed convolution in int8 only while
  ``in_channels**2 * out_height * out_width <= 2**26`` (its ``canBeExecutedInInt8``); ENet's
  last layer is split into bands of output rows under that bound.
- Kernel choice: on AVX-512 CPUs, int8 convolutions are asked to run on the jit_avx512 kernels,
  which apply ENet's per-channel PReLU cheaply (OpenVINO's own choice applies it slowly).
- Image max-pool: an fp32 file pools the 3-channel image as 1-channel images, which OpenVINO
  reads without reordering the image into a 16-channel blocked layout.

The measurements behind each: docs/deployment.md (Backends).
"""

from __future__ import annotations

import math
import platform
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

#: The rewrites, by name (``OpenVinoPredictor(skip_rewrites=...)`` leaves some out).
ROW_BANDS, INT8_KERNELS, IMAGE_POOL = "row bands", "int8 kernels", "image pool"


def rewrite_for_this_cpu(model, int8: bool, core, skip: Collection[str] = ()):
    """``model`` (an ``openvino.Model``, changed in place or replaced) with the rewrites that
    pay for an int8 or an fp32 file on this CPU, less those in ``skip``."""
    if int8 and ROW_BANDS not in skip and (bound := int8_deconv_bound()):
        split_wide_transposed_convolutions(model, bound)
    if not int8 and IMAGE_POOL not in skip:
        pool_image_channels_apart(model)
    if int8 and INT8_KERNELS not in skip and (kernels := int8_convolution_kernels()):
        model = prefer_kernels(model, kernels, core)
    return model


#: OpenVINO's bound on ``in_channels**2 * out_height * out_width`` for int8 transposed
#: convolutions on CPUs without AVX-512.
INT8_DECONV_BOUND = 1 << 26


#: Whether this CPU is x86, whose OpenVINO kernels (SSE4.2, AVX-512) can be asked for by name.
X86 = platform.machine().lower() in ("x86_64", "amd64")


def _avx512() -> bool:
    return X86 and torch.backends.cpu.get_cpu_capability() == "AVX512"


def int8_deconv_bound() -> int | None:
    """The bound where this CPU has it (x86 without AVX-512), else None: elsewhere a split
    would only add the concat."""
    return INT8_DECONV_BOUND if X86 and not _avx512() else None


#: OpenVINO's CPU kernels for int8 convolutions on AVX-512 CPUs (see above).
INT8_CONVOLUTION_KERNELS = "cpu:jit_avx512"


def int8_convolution_kernels() -> str | None:
    """The kernels to ask for where this CPU has AVX-512, else None: AVX2 CPUs get jit
    kernels anyway."""
    return INT8_CONVOLUTION_KERNELS if _avx512() else None


def prefer_kernels(model, kernels: str, core):
    """``model`` (an ``openvino.Model``) with its convolutions and transposed convolutions
    asking OpenVINO's CPU plugin for ``kernels`` first, read back by ``core``. The request is
    the runtime attribute ``primitives_priority``, which the plugin reads only from an IR file
    (the Python API stores runtime info as strings, which it ignores): hence the round trip."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(model, xml, compress_to_fp16=False)
        tree = ET.parse(xml)
        weights = ov.Tensor(np.fromfile(xml.with_suffix(".bin"), np.uint8))
    for layer in tree.getroot().iter("layer"):
        if layer.get("type") in ("Convolution", "ConvolutionBackpropData"):
            info = layer.find("rt_info")
            if info is None:
                info = ET.SubElement(layer, "rt_info")
            attribute = {"name": "primitives_priority", "version": "0", "value": kernels}
            ET.SubElement(info, "attribute", attribute)
    return core.read_model(ET.tostring(tree.getroot(), encoding="unicode"), weights)


def split_wide_transposed_convolutions(model, bound: int = INT8_DECONV_BOUND) -> int:
    """Replace each 2-D transposed convolution of ``model`` (an ``openvino.Model``) whose
    ``in_channels**2 * out_height * out_width`` exceeds ``bound`` by the same layer over bands
    of output rows, concatenated. Returns how many were replaced. Layers with dynamic shapes,
    dilation, groups, automatic padding or an output-shape input are left alone."""
    import openvino.opset13 as ops

    def const(value: int):
        return ops.constant(np.array([value], np.int64))

    replaced = 0
    for layer in model.get_ordered_ops():
        if layer.get_type_name() != "ConvolutionBackpropData" or layer.get_input_size() != 2:
            continue
        attrs = layer.get_attributes()
        shapes = [layer.get_input_partial_shape(i) for i in (0, 1)]
        shapes.append(layer.get_output_partial_shape(0))
        if attrs["auto_pad"] != "explicit" or attrs["dilations"] != [1, 1]:
            continue
        if not all(s.is_static and len(s) == 4 for s in shapes):
            continue
        (_, in_channels, in_h, _), (_, _, kernel, _), (_, _, out_h, out_w) = (
            s.to_shape() for s in shapes
        )
        stride, pad_begin = attrs["strides"][0], attrs["pads_begin"][0]
        rows = bound // (in_channels * in_channels * out_w)
        if rows >= out_h or rows == 0 or kernel < stride:
            continue
        bands = math.ceil(out_h / rows)
        data, weights = layer.input_value(0), layer.input_value(1)
        parts = []
        for band in range(bands):
            top, bottom = band * out_h // bands, (band + 1) * out_h // bands
            # input rows i reach output row o when stride*i <= o + pad_begin < stride*i + kernel
            first = max(0, -((kernel - 1 - top - pad_begin) // stride))
            last = min(in_h - 1, (bottom - 1 + pad_begin) // stride)
            # rows the band computes beyond [top, bottom): cropped by its pads, or (past the
            # input's end, where the layer's output padding lies) added as output padding
            before = top + pad_begin - stride * first
            after = stride * last + kernel - (bottom + pad_begin)
            rows_in = ops.slice(data, const(first), const(last + 1), const(1), const(2))
            parts.append(
                ops.convolution_backprop_data(
                    rows_in,
                    weights,
                    attrs["strides"],
                    pads_begin=[before, attrs["pads_begin"][1]],
                    pads_end=[max(after, 0), attrs["pads_end"][1]],
                    dilations=attrs["dilations"],
                    output_padding=[max(-after, 0), attrs["output_padding"][1]],
                )
            )
        joined = ops.concat(parts, 2)
        joined.set_friendly_name(layer.get_friendly_name())
        layer.output(0).replace(joined.output(0))
        replaced += 1
    return replaced


def pool_image_channels_apart(model) -> int:
    """Replace each max-pool of ``model`` (an ``openvino.Model``) that reads one of its inputs
    (the image) by the same pool over the image's channels as a batch of 1-channel images,
    reshaped back. Returns how many were replaced."""
    import openvino.opset13 as ops

    def dims(node, first: int, last: int):
        return ops.gather(ops.shape_of(node), ops.constant(np.arange(first, last)), 0)

    replaced = 0
    for layer in model.get_ordered_ops():
        if layer.get_type_name() != "MaxPool":
            continue
        image = layer.input_value(0)
        if image.get_node().get_type_name() != "Parameter" or len(image.get_partial_shape()) != 4:
            continue
        if layer.get_output_size() > 1 and layer.output(1).get_target_inputs():
            continue  # its indices are used
        batch = ops.concat([ops.constant(np.array([-1, 1])), dims(image, 2, 4)], 0)
        attrs = layer.get_attributes()
        pooled = ops.max_pool(
            ops.reshape(image, batch, special_zero=False),
            attrs["strides"],
            attrs["dilations"],
            attrs["pads_begin"],
            attrs["pads_end"],
            attrs["kernel"],
            attrs["rounding_type"],
            attrs["auto_pad"],
        ).output(0)
        back = ops.concat([dims(image, 0, 2), dims(pooled, 2, 4)], 0)
        layer.output(0).replace(ops.reshape(pooled, back, special_zero=False).output(0))
        replaced += 1
    return replaced
