import keras
import numpy as np
import pytest

from gallery import conv_layers, feature_maps, GalleryError
from gallery.model.graph import follow_pointwise, has_classifier, locate

from .conftest import tiny_backbone, tiny_classifier, tiny_transfer


def test_conv_layers_in_order_including_nested():
    assert conv_layers(tiny_classifier()) == ["conv1", "conv2"]
    assert conv_layers(tiny_backbone()) == ["c1", "dw", "sep"]
    assert conv_layers(tiny_transfer()) == ["inner/c1", "inner/dw", "inner/sep"]


def test_unknown_layer_names_what_exists():
    with pytest.raises(GalleryError, match=r"'nope' is not in model .*conv1, conv2"):
        locate(tiny_classifier(), "nope")


def test_feature_maps_of_a_nested_layer_match_the_backbone_alone():
    model = tiny_transfer()
    photo = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    inner = model.get_layer("inner")
    ours = feature_maps(model, photo, "inner/dw")
    direct = keras.Model(inner.inputs[0], inner.get_layer("dw").output)(photo[None].astype("float32") / 255)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(direct)[0], rtol=1e-5, atol=1e-5)
    assert ours.shape == (8, 8, 8)


def test_follow_pointwise_walks_norm_and_activation():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="top_conv")(inputs)
    x = keras.layers.BatchNormalization(name="top_bn")(x)
    x = keras.layers.Activation("relu", name="top_act")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    assert follow_pointwise(model, "top_conv") == "top_act"


def test_has_classifier():
    assert has_classifier(tiny_classifier())
    assert not has_classifier(tiny_backbone())
