"""--layers patterns and `all`: what they match, in which order, a pattern that matches nothing, and how
--layer-units keys (paths or patterns) meet them; the same expansion in atlas plans and top-k selections."""

import pytest
import torch

from models.errors import UserInputError
from models.layers import expand_layers, select_layers, trace_layers
from tests.conftest import tiny_net


@pytest.fixture(scope="module")
def layers():
    return trace_layers(tiny_net().eval(), torch.zeros(1, 3, 16, 16))


def test_patterns_match_paths_across_dots_in_execution_order_once(layers):
    assert expand_layers(["features.*"], layers, "tinynet") == ["features.0", "features.1", "features.2",
                                                                "features.3"]
    assert expand_layers(["fc", "features.?", "features.0"], layers, "tinynet") == [
        "features.0", "features.1", "features.2", "features.3", "fc"]  # execution order, each once
    assert expand_layers(["*"], layers, "tinynet") == sorted(layers, key=lambda n: layers[n].order)


def test_all_is_every_conv_and_linear_layer(layers):
    assert expand_layers(["all"], layers, "tinynet") == ["features.0", "features.2", "fc"]


def test_a_pattern_that_matches_nothing_names_the_closest_paths(layers):
    with pytest.raises(UserInputError, match=r"pattern 'feature.9\*' matches no layer of 'tinynet'; closest "
                                             r"paths: .*features"):
        expand_layers(["feature.9*"], layers, "tinynet")
    with pytest.raises(UserInputError, match=r"unknown layer 'features.7'; run 'neuron-atlas layers.*closest"):
        expand_layers(["features.7"], layers, "tinynet")


def test_layer_units_keys_may_be_patterns_and_must_name_a_selected_layer(layers):
    sel = select_layers(["all"], "0:2", [("features.*", "1"), ("features.2", "3")], layers, "tinynet")
    assert sel == [("features.0", "1"), ("features.2", "3"), ("fc", "0:2")]  # the last matching key wins
    with pytest.raises(UserInputError, match="--layer-units names 'pool', which is not in --layers"):
        select_layers(["all"], "all", [("pool", "0")], layers, "tinynet")
    with pytest.raises(UserInputError, match="--layer-units names 'after.*'"):
        select_layers(["features.*"], "all", [("after.*", "0")], layers, "tinynet")


def test_atlas_and_topk_expand_patterns(tmp_path):
    from pipelines.spec import AtlasSpec, plan
    from pipelines.topk.topk_run import selection
    from models.loading import load_net
    from models.registry import resolve_model
    from tasks.actor import NetSpec
    from tasks.image_am import ImageAMConfig

    net = NetSpec("tinynet", weights="random")
    p = plan(AtlasSpec(net=net, config=ImageAMConfig(), layers=("all",), units="0:2",
                       layer_units=(("fc", "4"),), seeds=1, steps=2, out=str(tmp_path)))
    assert [(k.layer, k.unit) for k, _ in p.items] == [("features.0", 0), ("features.0", 1), ("features.2", 0),
                                                       ("features.2", 1), ("fc", 4)]
    target = load_net(resolve_model("tinynet"), "random")
    assert selection(("features.[02]",), "0:1", (), target, "tinynet") == [("features.0", [0]), ("features.2", [0])]
