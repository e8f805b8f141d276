"""Whether this machine convolves in bf16: the bf16 tests skip where it does not."""

import numpy as np
import pytest


def _bf16_convolutions_run() -> bool:
    """TensorFlow has no bf16 Conv2D kernel on CPUs without oneDNN's bf16 support."""
    import keras

    try:
        layer = keras.layers.Conv2D(1, 3, dtype="mixed_bfloat16")
        layer(np.zeros((1, 4, 4, 1), "float32"))
        return True
    except Exception:
        return False


needs_bf16 = pytest.mark.skipif(not _bf16_convolutions_run(), reason="this backend has no bf16 convolution here")
