import pytest

from models.errors import UserInputError
from models.layers import LayerInfo
from models.units import Unit, parse_units, resolve_units

CONV = LayerInfo("c", "Conv2d", (8, 7, 5), 0)
FC = LayerInfo("fc", "Linear", (10,), 1)


def units(spec, info=CONV):
    return resolve_units(parse_units(spec), info, "m")


def test_spec_forms():
    assert [u.channel for u in units("all")] == list(range(8))
    assert [u.channel for u in units("2:5")] == [2, 3, 4]
    assert [u.channel for u in units("3, 1,7")] == [3, 1, 7]
    assert units("3,3") == [Unit("c", 3, 3, 2)]


def test_conv_units_default_to_the_centre_and_pin_positions():
    assert units("1") == [Unit("c", 1, 3, 2)]
    assert units("1@6,4,2") == [Unit("c", 1, 6, 4), Unit("c", 2, 3, 2)]
    assert units("5", FC) == [Unit("fc", 5, None, None)]


@pytest.mark.parametrize("spec,match", [
    ("8", "unit 8 out of range .* 8 units"), ("0:9", "unit 8 out of range"), ("1@7,0", "position @7,0"),
    ("1@0,5", "position @0,5"), ("x", "malformed --units"), ("1;2", "malformed"), ("", "empty --units"),
    ("4:2", "empty unit range"), ("1@2", "malformed"),
])
def test_bad_specs_name_the_bad_value(spec, match):
    with pytest.raises(UserInputError, match=match):
        units(spec)


def test_fc_units_have_no_position():
    with pytest.raises(UserInputError, match="no spatial positions"):
        units("1@0,0", FC)
