"""The only module that knows the Keras backend: gradients and compilation.

Everything else is written in ``keras.ops`` and runs unchanged on TensorFlow, JAX and
PyTorch. The backend is whatever Keras chose at import (``KERAS_BACKEND`` or
``~/.keras/keras.json``); nothing here sets it.
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache
from typing import Callable

import keras

from ..errors import GalleryError

BACKEND = keras.backend.backend()


def value_and_grad(fn: Callable) -> Callable:
    """Turn ``fn(x, *args) -> (scalar, aux)`` into ``g(x, *args) -> ((scalar, aux), dfn/dx)``.

    Only ``x`` is differentiated; model weights are constants.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def tf_grad(x, *args):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value, aux = fn(x, *args)
            return (value, aux), tape.gradient(value, x)

        return tf_grad
    if BACKEND == "jax":
        import jax

        return jax.value_and_grad(fn, has_aux=True)
    if BACKEND == "torch":
        import torch

        def torch_grad(x, *args):
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                value, aux = fn(x, *args)
                (grad,) = torch.autograd.grad(value, x)
            return (value.detach(), _detached(aux)), grad

        return torch_grad
    raise RuntimeError(f"unsupported Keras backend {BACKEND!r}; use tensorflow, jax or torch")


def guided_relu(x, max_value: float | None = None):
    """A rectifier whose backward pass is guided backpropagation (Springenberg et al.,
    "Striving for Simplicity: The All Convolutional Net", ICLR-W 2015).

    Forward: ``ReLU(x)``, or ``min(ReLU(x), max_value)`` (ReLU6 and other capped ReLUs).
    Backward: ``dx = dy · [0 < x < max_value] · [dy > 0]``: the ReLU's own gate on the
    input, and only the gradient that would raise the output passes. Written as a custom
    gradient of the backend (``tf.custom_gradient``, ``jax.custom_vjp``), so a traced or
    compiled function that calls it keeps the rule.
    """
    return _guided_rule(None if max_value is None else float(max_value))(x)


@lru_cache(maxsize=None)
def _guided_rule(cap: float | None) -> Callable:
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.custom_gradient
        def rule(x):
            def backward(dy):
                gate = x > 0 if cap is None else tf.logical_and(x > 0, x < cap)
                return dy * tf.cast(tf.logical_and(gate, dy > 0), dy.dtype)

            return (tf.nn.relu(x) if cap is None else tf.clip_by_value(x, 0.0, cap)), backward

        return rule
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        @jax.custom_vjp
        def rule(x):
            return jnp.maximum(x, 0) if cap is None else jnp.clip(x, 0, cap)

        def forward(x):
            return rule(x), x

        def backward(x, dy):
            gate = x > 0 if cap is None else (x > 0) & (x < cap)
            return (dy * (gate & (dy > 0)).astype(dy.dtype),)

        rule.defvjp(forward, backward)
        return rule
    raise GalleryError(f"guided backpropagation is written for the tensorflow and jax backends, not {BACKEND!r}; "
                       "build with --backend tensorflow or jax")


@lru_cache(maxsize=None)
def input_conv(depthwise: bool, padding: str, kernel_size: tuple[int, int]) -> Callable | None:
    """A stride-1 2-D convolution ``conv(x, kernel)`` (NHWC) whose gradient with respect to
    ``x`` runs as a forward convolution, or ``None`` where the backend's own is kept.

    The gradient of ``y = x ⋆ W`` (stride 1) with respect to ``x`` is the correlation of
    ``dy``, padded by ``k − 1 − p`` where the forward padded by ``p``, with ``W`` flipped in
    space and its in and out channels swapped (a depthwise kernel needs no swap; a 1×1
    kernel is then a matrix product with ``Wᵀ``). TensorFlow's CPU kernels for that
    gradient (Conv2DBackpropInput, DepthwiseConv2dNativeBackpropInput) took 1.1–4.9× the
    time of the forward convolution of the same shapes on a 2-core AMD EPYC, this rule
    1.0–1.4× (``bench/backward.py --kernels``), so the forward kernel computes it instead. The kernel's own
    gradient is TensorFlow's, and is pruned when only the image is differentiated.
    Elsewhere (JAX's XLA, torch) the backend's rule is kept.
    """
    if BACKEND != "tensorflow":
        return None
    import tensorflow as tf

    forward = padding.upper()
    before = [(k - 1) // 2 if padding == "same" else 0 for k in kernel_size]
    after = [k - 1 - b if padding == "same" else 0 for k, b in zip(kernel_size, before)]
    pads = [[0, 0], *([k - 1 - b, k - 1 - a] for k, b, a in zip(kernel_size, before, after)), [0, 0]]
    back = "SAME" if padding == "same" and all(k % 2 for k in kernel_size) else pads
    pointwise = tuple(kernel_size) == (1, 1)
    unit = [1, 1, 1, 1]

    def to_input(dy, kernel):
        if depthwise:
            return tf.nn.depthwise_conv2d(dy, tf.reverse(kernel, [0, 1]), unit, back)
        if pointwise:
            shape = tf.shape(dy)
            flat = tf.matmul(tf.reshape(dy, [-1, shape[3]]), kernel[0, 0], transpose_b=True)
            return tf.reshape(flat, tf.concat([shape[:3], [-1]], 0))
        return tf.nn.conv2d(dy, tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2]), 1, back)

    def to_kernel(x, dy, kernel):
        op = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter if depthwise else tf.raw_ops.Conv2DBackpropFilter
        return op(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=unit, padding=forward)

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.depthwise_conv2d(x, kernel, unit, forward) if depthwise else tf.nn.conv2d(x, kernel, 1, forward)
        return y, lambda dy: (to_input(dy, kernel), to_kernel(x, dy, kernel))

    return conv


def _detached(value):
    return value.detach() if hasattr(value, "detach") else value  # aux may be a plain number


class _NoRetracingWarning(logging.Filter):
    """TensorFlow warns when many distinct ``tf.function``s trace; a build makes one per
    layer, canvas and loop length on purpose, and traces each once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def compile(fn: Callable) -> Callable:
    """Compile a pure step function once per input signature."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        logger = tf.get_logger()
        if not any(isinstance(f, _NoRetracingWarning) for f in logger.filters):
            logger.addFilter(_NoRetracingWarning())
        return tf.function(fn)
    if BACKEND == "jax":
        return _AheadOfTime(fn)
    return fn


def compiles_ahead() -> bool:
    """Whether :func:`warm` compiles anything (JAX); elsewhere the first call compiles."""
    return BACKEND == "jax"


def warm(compiled: Callable, *shapes) -> None:
    """Compile ``compiled`` (from :func:`compile`) for arguments of these shapes, without running it.

    Each of ``shapes`` is ``None`` or an object with ``.shape`` and ``.dtype``. XLA
    compiles with the GIL released, so a thread can prepare the next layer's programs
    while the accelerator runs this one's. A no-op where :func:`compiles_ahead` is false.
    """
    if isinstance(compiled, _AheadOfTime):
        compiled.warm(*shapes)


class _AheadOfTime:
    """``jax.jit`` plus executables compiled ahead (``lower(...).compile()``) by shape."""

    def __init__(self, fn: Callable):
        import jax

        self._jit = jax.jit(fn)
        self._ready: dict = {}

    @staticmethod
    def _signature(args) -> tuple:
        import jax

        leaves, tree = jax.tree_util.tree_flatten(args)
        return tree, tuple((tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves)

    def warm(self, *shapes) -> None:
        import jax

        specs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), shapes,
                                       is_leaf=lambda a: hasattr(a, "shape") and hasattr(a, "dtype"))
        key = self._signature(specs)
        if key not in self._ready:
            self._ready[key] = self._jit.lower(*specs).compile()

    def __call__(self, *args):
        ready = self._ready.get(self._signature(args))
        return ready(*args) if ready is not None else self._jit(*args)


def no_grad(fn: Callable) -> Callable:
    """Run inference without recording a graph (only torch records one by default)."""
    if BACKEND == "torch":
        import torch

        def wrapped(*args, **kwargs):
            with torch.no_grad():
                return fn(*args, **kwargs)

        return wrapped
    return fn


def accelerator() -> str | None:
    """The GPU (or TPU) Keras computes on, by platform name, or ``None`` on CPU."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else None
    if BACKEND == "jax":
        import jax

        return None if jax.default_backend() == "cpu" else jax.default_backend()
    if BACKEND == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else None
    return None


CPUINFO = "/proc/cpuinfo"


@lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """Whether the CPU multiplies bf16 matrices in hardware (Intel AMX) under a backend that
    uses it: TensorFlow's oneDNN kernels do, so a bf16 loop runs several times faster there
    (``bench/quality.py``: 4-7x per step on VGG16-HED at 128 px). XLA's CPU convolutions
    do not (a 3x3, 128-channel conv at 64 px ran 1.4x slower in bf16 under JAX on the same
    CPU), and without AMX bf16 is emulated and slower than float32: False."""
    # oneDNN kept below AMX (ONEDNN_MAX_CPU_ISA=AVX2, as the suite's byte-for-byte rerun
    # does) has no bf16 convolution to run: float32, as on a CPU without it.
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return BACKEND == "tensorflow" and has_amx(CPUINFO) and ("AMX" in isa or isa in ("ALL", "DEFAULT"))


def has_amx(cpuinfo: str) -> bool:
    """Whether a Linux ``/proc/cpuinfo`` lists AMX's tiles and its bf16 products."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:  # not Linux: no way to tell, so assume not
        return False
    return "amx_bf16" in flags and "amx_tile" in flags


# TensorFlow enters a graph name scope per layer while it traces; names outside this
# pattern raise mid-build (tensorflow/python/framework/ops.py, _VALID_OP_NAME_REGEX).
_TF_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*")


def check_names(names) -> None:
    """Refuse, before any work, layer names the backend cannot trace (TensorFlow only)."""
    if BACKEND != "tensorflow":
        return
    bad = [name for name in names if not _TF_NAME.fullmatch(name)]
    if bad:
        raise GalleryError(
            f"layer {bad[0]!r}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''} has a name TensorFlow cannot "
            "trace (it allows letters, digits and _.-> only, not first _ or -); rename the layer, or build with "
            "--backend jax")


def limit_threads(threads: int) -> None:
    """Compute on at most ``threads`` CPU threads; call before the backend runs anything.

    A worker given a slice of a machine's CPUs keeps to it, so workers side by side do not
    fight over cores; and every process that computes a figure (a local build, a Ray
    worker, the driver that scores old tiles) calls this with the same count, so they sum
    in the same order. JAX reads ``XLA_FLAGS`` when it starts its CPU client, at its first
    computation: its CPU runtime knows one thread or all of the machine's (Eigen's pool),
    so more than one thread means all.
    """
    if BACKEND == "jax":
        kept = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
                if not flag.startswith("--xla_cpu_multi_thread_eigen")]
        os.environ["XLA_FLAGS"] = " ".join([*kept, f"--xla_cpu_multi_thread_eigen={str(threads > 1).lower()}"])
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError:  # the runtime already started: it keeps the threads it has
            pass
    elif BACKEND == "torch":
        import torch

        torch.set_num_threads(threads)


def memory_bytes() -> int | None:
    """Memory the computation can use: the accelerator's, else the host's available RAM."""
    try:
        if accelerator() is not None:
            if BACKEND == "jax":
                import jax

                return int(jax.devices()[0].memory_stats()["bytes_limit"])
            if BACKEND == "torch":
                import torch

                return int(torch.cuda.get_device_properties(0).total_memory)
            return None  # TensorFlow does not say how much a GPU holds
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, KeyError, ValueError, RuntimeError):
        return None
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the backend saying a batch did not fit in device memory."""
    text = f"{type(exc).__name__}: {exc}"
    return any(mark in text for mark in ("ResourceExhausted", "RESOURCE_EXHAUSTED", "OutOfMemoryError",
                                         "out of memory"))
