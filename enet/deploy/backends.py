"""The backends ``enet infer`` runs a model on, behind one interface: a ``Predictor`` takes
N x 3 x H x W float32 RGB in [0, 1] and returns N x C x H x W logits (C x H/8 x W/8 for an
encoder), or takes N x H x W x 3 uint8 RGB and returns N x H x W uint8 class ids
(``class_ids``: what inference needs, with the conversions inside the model where the backend
can put them), and knows its ``classes``, its ``fixed_size`` (None: any multiple of 8), its
``batch_size`` (None: any) and its ``name``.

- OpenVINO on an exported file: on x86 CPUs well ahead of ONNX Runtime (fused convolutions,
  reused buffers, int8 kernels for ``enet export --int8`` files), the more so after the
  rewrites of ``enet.deploy.openvino_graph`` that pay on the CPU it runs on.
- ONNX Runtime on an exported file (CPU or CUDA).
- PyTorch on an enet checkpoint (eager, or compiled with BatchNorm folded).

``load_predictor`` chooses among them as ``--backend auto`` does. docs/deployment.md says
when each applies; docs/benchmarks.md has their speeds.
"""

from __future__ import annotations

import ctypes
import importlib.util
import queue
import sys
import threading
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..checkpoint import bundled_models, load_checkpoint, resolve_checkpoint
from ..data.classes import ClassSet
from ..errors import UsageError
from ..runtime import images_to_input, resolve_device
from .onnx_meta import onnx_metadata
from .openvino_graph import rewrite_for_this_cpu

__all__ = [
    "BACKENDS",
    "IDS",
    "LOGITS",
    "OnnxPredictor",
    "OpenVinoPredictor",
    "Predictor",
    "TorchPredictor",
    "argmax_ids",
    "compile_for_inference",
    "has_openvino",
    "keep_freed_memory",
    "load_predictor",
    "openvino_computes_bf16",
]


class Predictor(Protocol):
    """What ``enet infer`` runs: logits or class ids for a batch of images."""

    classes: ClassSet
    fixed_size: tuple[int, int] | None  # (width, height) the file was exported for, or None
    batch_size: int | None  # the batch the file was exported for, or None: any
    parallel_requests: int  # how many threads may call class_ids at once
    name: str
    precision: str  # what the model computes in: fp32, bf16 or int8

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def class_ids(self, images: np.ndarray) -> np.ndarray: ...


def argmax_ids(logits: np.ndarray) -> np.ndarray:
    """N x C x H x W logits -> N x H x W uint8 class ids."""
    return logits.argmax(1).astype(np.uint8)


def _fixed_batch(dim: object) -> int | None:
    return dim if isinstance(dim, int) else None


class OnnxPredictor:
    """ONNX Runtime on an exported file; classes and input size from its metadata."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        import onnxruntime as ort

        meta = onnx_metadata(path)
        if "enet.classes" not in meta:
            raise UsageError(f"{path}: no enet metadata; export it with enet export")
        providers = ["CPUExecutionProvider"]
        on_gpu = resolve_device(device).type == "cuda"
        if on_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:160]
            raise UsageError(f"{path}: ONNX Runtime cannot load it ({reason})") from None
        self.classes = ClassSet.from_dict(meta["enet.classes"])
        shape = self.session.get_inputs()[0].shape
        fixed = all(isinstance(d, int) for d in shape[2:])
        self.fixed_size = (shape[3], shape[2]) if fixed else None
        self.batch_size = _fixed_batch(shape[0])
        self.parallel_requests = 1
        self.name = f"onnxruntime ({self.session.get_providers()[0]})"
        self.precision = "fp32" if meta.get("enet.precision", "fp32") == "fp32" else "int8"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": x})[0]

    def class_ids(self, images: np.ndarray) -> np.ndarray:
        return argmax_ids(self(images_to_input(images)))


#: the heads an OpenVINO graph is compiled with (``OpenVinoPredictor._compile``)
LOGITS, IDS = "logits", "class ids"


class OpenVinoPredictor:
    """OpenVINO on an exported file: on x86 CPUs it runs ENet well ahead of ONNX Runtime
    (fused convolutions, reused buffers, int8 kernels for ``enet export --int8`` files), the
    more so after the rewrites of ``openvino_graph`` that pay on the CPU it runs on.

    A ``--dynamic`` file runs each input shape on the dynamic graph the first time it comes,
    and on a graph compiled for that shape alone from the second time on (a video's frames, a
    folder of one camera's images), which runs faster after a compile of a second or two
    (docs/benchmarks.md, Dynamic shapes)."""

    #: how many input shapes seen once it remembers (to compile a graph if they come again)
    SHAPES_REMEMBERED = 64

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        shapes_kept: int = 4,
        skip_rewrites: Collection[str] = (),
        bf16: bool = False,
        head: str = LOGITS,
        parallel: bool = False,
    ) -> None:
        """``shapes_kept``: how many fixed-shape graphs of a dynamic file to keep (0: always
        the dynamic graph). ``skip_rewrites``: rewrites of the graph (``openvino_graph``:
        each applies where it makes ENet faster on this CPU) to leave out. ``bf16``: compute
        an fp32 file in bf16, on CPUs that do so natively (AMX, AVX512_BF16). ``head``: the
        graph compiled now, LOGITS (``__call__``) or IDS (``class_ids``); the other is
        compiled when first used. ``parallel``: a file of fixed shape is compiled for
        throughput, and ``class_ids`` serves ``parallel_requests`` callers at once (threads),
        each on OpenVINO's streams of a share of the cores, not on all of them: on 2 cores, 2
        requests of 1 thread each left the model's threads undisturbed by decoding and
        writing (bench/infer_throughput.py)."""
        import openvino as ov

        meta = onnx_metadata(path)
        if "enet.classes" not in meta:
            raise UsageError(f"{path}: no enet metadata; export it with enet export")
        if not _openvino_runs(meta):
            raise UsageError(
                f"{path}: an int8 file of the first scheme, which OpenVINO cannot run; "
                "re-export it with enet export --int8 or use --backend onnx"
            )
        self.core = ov.Core()
        self.int8 = meta.get("enet.precision") != "fp32"
        if bf16 and self.int8:
            raise UsageError(f"{path}: --bf16 computes fp32 files in bf16; this one is int8")
        if bf16 and not openvino_computes_bf16(self.core):
            raise UsageError("--bf16: this CPU does not compute bf16 natively (AMX, AVX512_BF16)")
        precision = "bf16" if bf16 else "f32"
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.skip_rewrites = skip_rewrites
        self.shapes_kept = shapes_kept
        self.pool: queue.SimpleQueue | None = None  # the IDS requests of a parallel file
        self.alone = None  # ... and its request on every core, for an image with no company
        self.running = 0  # calls of class_ids in progress on a parallel file
        self.running_lock = threading.Lock()
        self.parallel_requests = 1
        try:
            self.model = self.core.read_model(str(path))
            self.static = self.model.input(0).get_partial_shape().is_static
            if parallel and self.static:
                self.config["PERFORMANCE_HINT"] = "THROUGHPUT"
            self.requests = {head: self._compile(self.model.clone(), head)}
            if parallel and self.static:
                self._make_pool()
        except Exception as exc:
            raise UsageError(f"{path}: OpenVINO cannot compile it ({exc})") from None
        self.classes = ClassSet.from_dict(meta["enet.classes"])
        shape = self.model.input(0).get_partial_shape()
        fixed = shape[2].is_static and shape[3].is_static
        self.fixed_size = (shape[3].get_length(), shape[2].get_length()) if fixed else None
        self.batch_size = shape[0].get_length() if shape[0].is_static else None
        self.output_stride = 8 if meta.get("enet.encoder_only") else 1
        #: a dynamic file's graphs compiled for one input shape, and the shapes seen once;
        #: keyed by (head, N x 3 x H x W shape)
        self.shape_requests: OrderedDict[tuple, object] = OrderedDict()
        self.shapes_seen: OrderedDict[tuple, None] = OrderedDict()
        self.logits: np.ndarray | None = None
        self.binding: tuple | None = None  # the request writing into self.logits, and where
        self.tensor = ov.Tensor  # wraps our logits array for a request
        self.name = "openvino (CPU, bf16)" if bf16 else "openvino (CPU)"
        self.precision = "int8" if self.int8 else ("bf16" if bf16 else "fp32")

    def _make_pool(self) -> None:
        compiled = self._request_for(IDS, ()).get_compiled_model()
        self.parallel_requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self.pool = queue.SimpleQueue()
        for _ in range(self.parallel_requests):
            self.pool.put(compiled.create_infer_request())
        latency = {**self.config, "PERFORMANCE_HINT": "LATENCY"}
        self.alone = self._compile(self.model.clone(), IDS, config=latency)

    def _compile(self, model, head: str, *, config: dict | None = None):
        """An infer request for ``model``, which it changes: ``head`` LOGITS takes N x 3 x H x
        W float32 and gives logits; IDS takes N x H x W x 3 uint8 and gives uint8 class ids,
        the conversions and the argmax run inside the graph on OpenVINO's threads (in NumPy
        they took ~13 ms of one core per 1024x512 frame, in the graph ~4 ms of two)."""
        import openvino as ov

        model = rewrite_for_this_cpu(model, self.int8, self.core, self.skip_rewrites)
        config = config or self.config
        if head == IDS:
            return self._compile_ids(model, config)
        # logits as OpenVINO computes them, channels last: its reorder back to N x C x H x W
        # took 7-8 of ~100 ms at 1024x512 (__call__ returns an N x C x H x W view)
        post = ov.preprocess.PrePostProcessor(model)
        post.output().model().set_layout(ov.Layout("NCHW"))
        post.output().tensor().set_layout(ov.Layout("NHWC"))
        return self.core.compile_model(post.build(), "CPU", config).create_infer_request()

    def _compile_ids(self, model, config: dict):
        import openvino as ov
        import openvino.opset13 as ops

        logits = model.get_results()[0].input_value(0)
        one = ops.constant(np.int64(1))
        top = ops.topk(logits, one, axis=1, mode="max", sort="none", index_element_type="i32")
        ids = ops.convert(ops.squeeze(top.output(1), one), "u8")
        model = ov.Model([ops.result(ids)], model.get_parameters(), "enet_class_ids")
        pre = ov.preprocess.PrePostProcessor(model)
        pre.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        pre.input().model().set_layout(ov.Layout("NCHW"))
        pre.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
        return self.core.compile_model(pre.build(), "CPU", config).create_infer_request()

    def _request_for(self, head: str, shape: tuple[int, ...]):
        """The request to run ``shape`` (N x 3 x H x W) on: the file's own graph, or for a
        dynamic file one compiled for that shape once it has come twice."""
        if head not in self.requests:
            self.requests[head] = self._compile(self.model.clone(), head)
        base = self.requests[head]
        if self.static or not self.shapes_kept:
            return base
        key = (head, shape)
        if key in self.shape_requests:
            self.shape_requests.move_to_end(key)
            return self.shape_requests[key]
        if key not in self.shapes_seen:
            self.shapes_seen[key] = None
            if len(self.shapes_seen) > self.SHAPES_REMEMBERED:
                self.shapes_seen.popitem(last=False)
            return base
        model = self.model.clone()
        model.reshape({0: list(shape)})
        self.shape_requests[key] = request = self._compile(model, head)
        if len(self.shape_requests) > self.shapes_kept:
            self.shape_requests.popitem(last=False)
        return request

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """OpenVINO writes the logits straight into an array of ours (copying them out of its
        own buffer took 6-9 of ~80 ms at 1024x512). The array is reused while nothing else
        refers to it, else a new one is made, so returned logits stay valid. (A request keeps
        a pointer to it, not a reference: the predictor holds it.)"""
        request = self._request_for(LOGITS, x.shape)
        n, _, h, w = x.shape
        s = self.output_stride
        shape = (n, h // s, w // s, self.classes.num_classes)
        # 2 = self.logits + getrefcount's argument: no caller holds it or a view of it
        if self.logits is None or self.logits.shape != shape or sys.getrefcount(self.logits) > 2:
            self.logits = np.empty(shape, np.float32)
        binding = (request, self.logits.ctypes.data, shape)  # not the array: its refcount
        old = self.binding
        if old is None or old[0] is not request or old[1:] != binding[1:]:
            request.set_output_tensor(0, self.tensor(self.logits, shared_memory=True))
            self.binding = binding
        request.infer({0: x})
        return np.moveaxis(self.logits, -1, 1)

    def class_ids(self, images: np.ndarray) -> np.ndarray:
        if self.pool is not None:
            return self._parallel_class_ids(images)
        n, h, w, c = images.shape
        request = self._request_for(IDS, (n, c, h, w))
        request.infer({0: images})
        return request.get_output_tensor(0).data.copy()

    def _parallel_class_ids(self, images: np.ndarray) -> np.ndarray:
        """On a parallel file, an image that runs while no other does gets every core (the
        latency of one client, a live camera's frame rate); with company, one of the parallel
        requests, each on a share of the cores (the most images per second)."""
        with self.running_lock:
            alone = self.running == 0
            self.running += 1
        request = self.alone if alone else self.pool.get()
        try:
            request.infer({0: images})
            return request.get_output_tensor(0).data.copy()
        finally:
            if not alone:
                self.pool.put(request)
            with self.running_lock:
                self.running -= 1


def has_openvino() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_computes_bf16(core) -> bool:
    """Whether OpenVINO's CPU plugin (``core``: an ``openvino.Core``) computes bf16 natively
    on this CPU (AMX, AVX512_BF16), where ``--bf16`` pays."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


#: ``enet.precision`` of the first int8 exports, which quantised PRelu slopes: OpenVINO
#: crashes (segfaults) compiling them.
_FIRST_INT8_SCHEME = "int8 QDQ, per-channel weights"


def _openvino_runs(meta: dict) -> bool:
    return meta.get("enet.precision") != _FIRST_INT8_SCHEME


def compile_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with freezing: weights become constants and BatchNorm folds into the
    convolutions. PyTorch's fastest fp32 path on a CPU (bench/latency.py), after a
    compilation of a minute or more per input size: worth it for folders and videos, not one
    image. On a CPU the graph's wrapper is C++ too (5-8% faster at 1024x512 on 2 cores:
    ENet's ~100 kernels each cost a Python call otherwise)."""
    options = {"freezing": True}
    if next(model.parameters()).device.type == "cpu":
        options["cpp_wrapper"] = True
    return torch.compile(model.eval(), options=options)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Keep large freed blocks in the process (glibc, where present). By default glibc hands
    each one back to the OS, so every eager 512x1024 call page-faults its activations in
    anew: ~20,000 page faults a call, gone with this (tests/test_infer.py). ONNX Runtime,
    OpenVINO and compiled graphs reuse their own buffers and do not need it."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's ceiling: smaller blocks come from the heap
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # and stay there when freed


class TorchPredictor:
    """PyTorch on an enet checkpoint (inference mode, channels_last; compiled on request)."""

    def __init__(self, path: Path, device: str = "auto", compile: bool = False) -> None:
        self.device = resolve_device(device)
        model = load_checkpoint(path, self.device).to(memory_format=torch.channels_last)
        if model.encoder_only:
            raise UsageError(f"{path}: an encoder checkpoint predicts at 1/8; use a full ENet")
        self.classes = model.classes
        self.model = compile_for_inference(model) if compile else model
        if self.device.type == "cpu":
            keep_freed_memory()
        self.fixed_size = None
        self.batch_size = None
        self.parallel_requests = 1
        self.name = f"pytorch{' compiled' if compile else ''} ({self.device.type})"
        self.precision = "fp32"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(t).float().cpu().numpy()

    def class_ids(self, images: np.ndarray) -> np.ndarray:
        if not images.flags.writeable:  # a decoded image's array: torch wants to own one
            images = images.copy()
        t = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            logits = self.model(t.contiguous(memory_format=torch.channels_last))
            return logits.argmax(1).to(torch.uint8).cpu().numpy()


#: what ``load_predictor`` (and ``--backend``) takes
BACKENDS = ("auto", "onnx", "openvino", "torch")


def load_predictor(
    model: str | Path,
    *,
    backend: str = "auto",
    device: str = "auto",
    compile: bool = False,
    bf16: bool = False,
    class_ids: bool = False,
    parallel: bool = False,
) -> Predictor:
    """``model``: an ``.onnx`` file, an enet checkpoint or a bundled model's name (camvid).
    ``backend``: auto, onnx (ONNX Runtime), openvino or torch. auto takes the fastest that
    fits: OpenVINO for an ONNX file (fp32 or int8) on the CPU when installed, ONNX Runtime
    for other ONNX files (CUDA, the first int8 exports), PyTorch for checkpoints. ``compile``:
    PyTorch only, see ``compile_for_inference``; ``bf16``: OpenVINO only. ``class_ids``: the
    caller will ask for class ids, not logits (OpenVINO compiles that graph first);
    ``parallel``: from several threads at once (OpenVINO, fixed-size files)."""
    if backend not in BACKENDS:
        raise UsageError(f"backend {backend!r}: unknown (choose from {', '.join(BACKENDS)})")
    path = resolve_checkpoint(model)
    if not path.is_file():
        known = ", ".join(bundled_models())
        raise UsageError(f"{path}: no such model file (bundled models: {known})")
    is_onnx = path.suffix == ".onnx"
    if compile and is_onnx:
        raise UsageError(f"{path}: --compile is for checkpoints (the PyTorch backend)")
    if backend == "auto":
        backend = "torch"
        if is_onnx:
            runs = _openvino_runs(onnx_metadata(path))
            cpu = resolve_device(device).type == "cpu"
            backend = "openvino" if runs and cpu and has_openvino() else "onnx"
    if backend in ("onnx", "openvino") and not is_onnx:
        raise UsageError(f"{path}: --backend {backend} needs an .onnx file (enet export makes one)")
    if backend == "torch" and is_onnx:
        raise UsageError(f"{path}: --backend torch needs an enet checkpoint, not ONNX")
    if bf16 and backend != "openvino":
        raise UsageError(f"{path}: --bf16 runs fp32 ONNX files on OpenVINO, on a CPU")
    if backend == "openvino":
        if not has_openvino():
            raise UsageError("--backend openvino needs OpenVINO: pip install 'enet[openvino]'")
        head = IDS if class_ids else LOGITS
        return OpenVinoPredictor(path, bf16=bf16, head=head, parallel=parallel)
    if backend == "onnx":
        return OnnxPredictor(path, device)
    return TorchPredictor(path, device, compile)
