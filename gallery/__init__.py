"""A static, cached, offline gallery of what a Keras CNN's filters have learned.

Notebook API (imports Keras on first use, so the CLI can choose the backend first)::

    from gallery import load_model, conv_layers, visualize_filters, feature_maps, grad_cam
"""

from importlib import import_module

__all__ = ["load_model", "conv_layers", "visualize_filters", "feature_maps", "grad_cam", "GalleryError"]

_HOMES = {
    "load_model": "model.loading",
    "conv_layers": "model.graph",
    "visualize_filters": "render.optimize",
    "feature_maps": "photos.activations",
    "grad_cam": "photos.explain",
    "GalleryError": "errors",
}


def __getattr__(name):
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'gallery' has no attribute {name!r}")
