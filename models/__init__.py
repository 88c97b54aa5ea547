"""Target nets, generator nets, layer/unit addressing and weight loading from any URI.

Import what you need from the submodules; the most used names are re-exported here.
"""

from .capture import capture
from .errors import UserInputError
from .generators import GeneratorEntry
from .layers import LayerInfo, format_layers, trace_layers
from .loading import RANDOM_WEIGHTS, LoadedNet, load_net
from .preprocess import Preprocessing
from .registry import NetEntry, model_slug, registry, resolve_model
from .units import Unit, parse_units, resolve_units

__all__ = ["capture", "UserInputError", "GeneratorEntry", "LayerInfo", "format_layers", "trace_layers",
           "RANDOM_WEIGHTS", "LoadedNet", "load_net", "Preprocessing", "NetEntry", "model_slug", "registry",
           "resolve_model", "Unit", "parse_units", "resolve_units"]
