from pathlib import Path

from models.layers import format_layers
from models.loading import load_net
from tests.conftest import TINY_ENTRY

GOLDEN = Path(__file__).parent / "golden" / "tinynet_layers.txt"


def test_layer_listing_matches_golden_file():
    text = format_layers(load_net(TINY_ENTRY, "random").layers) + "\n"
    if not GOLDEN.exists():  # first run writes it; review and commit
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_listing_records_execution_order_and_shapes():
    layers = load_net(TINY_ENTRY, "random").layers
    assert list(layers) == ["features.0", "features.1", "features.2", "features.3", "features", "after", "pool",
                            "fc"]
    assert layers["features.2"].shape == (6, 8, 8) and layers["features.2"].spatial == (8, 8)
    assert layers["fc"].units == 5 and layers["fc"].spatial is None
