import keras
import numpy as np
import pytest

from gallery import conv_layers, feature_maps, GalleryError
from gallery.model.graph import follow_pointwise, has_classifier, locate, output_fn, output_shape, output_shapes
from gallery.model.table import layer_table

from ..conftest import tiny_backbone, tiny_classifier, tiny_transfer


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


def test_follow_pointwise_stops_where_another_layer_also_reads_the_output():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(conv)
    x = keras.layers.Add(name="add")([x, conv])  # the conv's output is the Add's second input too
    model = keras.Model(inputs, x)
    assert follow_pointwise(model, "conv") == "conv"


def test_has_classifier():
    assert has_classifier(tiny_classifier())
    assert not has_classifier(tiny_backbone())


@pytest.mark.parametrize("make,size", [(tiny_transfer, (8, 8)), (tiny_backbone, (12, 20))])
def test_output_shapes_at_a_size_are_those_a_forward_pass_gives(make, size):
    model = make()
    shapes = output_shapes(model, size)
    names = conv_layers(model)
    ran = output_fn(model, [locate(model, n) for n in names])(keras.ops.zeros((1, *size, 3)))
    assert {n: shapes[n] for n in names} == {n: tuple(r.shape[1:]) for n, r in zip(names, ran)}
    if model.inputs[0].shape[1] is None:  # the any-size backbone: its output at this size
        assert output_shape(model, size) == tuple(model(np.zeros((1, *size, 3), "float32")).shape[1:])
    assert all(None not in shape for shape in shapes.values())


def test_layer_table_folds_normalisation_and_activation_into_the_row_before():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("swish", name="act")(x)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.ReLU(name="relu")(x)
    rows = layer_table(keras.Model(inputs, x), (10, 10))
    by = {row["name"]: row for row in rows}
    assert [row["name"] for row in rows if not row["minor"]] == [rows[0]["name"], "conv", "pool"]
    assert by["conv"]["then"] == ["BatchNorm", "silu", "Dropout"] and by["pool"]["then"] == ["ReLU"]
    assert by["conv"]["shape"] == "8×8×4" and by["pool"]["shape"] == "4×4×4" and rows[0]["shape"] == "10×10×3"
    first = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization(name="bn0"),
                              keras.layers.Conv2D(2, 1, name="c")])
    assert [(r["name"], r["minor"]) for r in layer_table(first)] == [("bn0", False), ("c", False)]
