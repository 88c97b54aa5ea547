"""Caffe weights (.caffemodel) -> a PyTorch state dict, with protobuf alone (no Caffe install).

The message classes below are a subset of Caffe's `caffe.proto` built at import time, with the same field
numbers, so real .caffemodel files parse; every other field (layer parameters, learning rates, ...) is an
unknown field that the binary parser skips. Both layouts are read: the current `layer` field and the
legacy V1 `layers` field (whose `type` is an enum).

`to_state_dict` maps each parameterized module of a net to the Caffe layer of the same name (blob 0 ->
`.weight`, blob 1 -> `.bias`): InnerProduct <-> nn.Linear, Convolution <-> nn.Conv2d, Deconvolution <->
nn.ConvTranspose2d. Every mismatch (missing layer, wrong type, wrong shape) raises `UserInputError` naming
the layer, what the module needs and what the file holds. Caffe layers with no module are ignored (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError
from torch import nn

from .errors import StorageError, UserInputError
from .registry import resolve_model
from .storage_client import read_uri

__all__ = ["BlobShape", "BlobProto", "LayerParameter", "V1LayerParameter", "NetParameter", "CaffeLayers",
           "CaffeLayout", "caffe_layout", "read_caffemodel", "read_prototxt", "to_state_dict", "import_caffemodel"]

log = logging.getLogger(__name__)

# layer name -> (type string, float32 blobs in Caffe's layout)
CaffeLayers = dict[str, tuple[str, list[np.ndarray]]]

_F = descriptor_pb2.FieldDescriptorProto

# V1LayerParameter.LayerType, complete as in caffe.proto: a proto2 enum is closed, so a value missing here
# would parse as NONE; the full list keeps every legacy type readable (binary and text format alike).
_V1_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
    "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
    "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28,
    "IM2COL": 11, "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
    "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22,
    "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}
# the V1 enum names of the parameterized types, spelled as the current string types
_V1_TO_TYPE = {"CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "INNER_PRODUCT": "InnerProduct"}

# module class -> the Caffe type whose blobs it takes
_CAFFE_TYPE: dict[type, str] = {nn.Linear: "InnerProduct", nn.Conv2d: "Convolution",
                                nn.ConvTranspose2d: "Deconvolution"}


def _field(name: str, number: int, ftype: int, label: int = _F.LABEL_OPTIONAL, type_name: str = "",
           packed: bool = False) -> _F:
    f = _F(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if packed:
        f.options.packed = True
    return f


def _build_messages() -> dict[str, type]:
    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    file = descriptor_pb2.FileDescriptorProto(name="neuron_atlas_caffe_subset.proto", package="caffe",
                                              syntax="proto2")

    def message(name: str, *fields: _F) -> descriptor_pb2.DescriptorProto:
        m = file.message_type.add(name=name)
        m.field.extend(fields)
        return m

    message("BlobShape", _field("dim", 1, _F.TYPE_INT64, rep, packed=True))
    # num/channels/height/width are int32 in BVLC's caffe.proto; any varint width reads the same bytes
    message("BlobProto",
            _field("num", 1, _F.TYPE_INT32), _field("channels", 2, _F.TYPE_INT32),
            _field("height", 3, _F.TYPE_INT32), _field("width", 4, _F.TYPE_INT32),
            _field("data", 5, _F.TYPE_FLOAT, rep, packed=True),
            _field("shape", 7, _F.TYPE_MESSAGE, opt, ".caffe.BlobShape"),
            _field("double_data", 8, _F.TYPE_DOUBLE, rep, packed=True))
    # only `transpose` matters: with it, Caffe stores an InnerProduct weight as (in, out)
    message("InnerProductParameter", _field("transpose", 6, _F.TYPE_BOOL))
    message("LayerParameter",
            _field("name", 1, _F.TYPE_STRING), _field("type", 2, _F.TYPE_STRING),
            _field("bottom", 3, _F.TYPE_STRING, rep), _field("top", 4, _F.TYPE_STRING, rep),
            _field("blobs", 7, _F.TYPE_MESSAGE, rep, ".caffe.BlobProto"),
            _field("inner_product_param", 117, _F.TYPE_MESSAGE, opt, ".caffe.InnerProductParameter"))
    v1 = message("V1LayerParameter",
                 _field("bottom", 2, _F.TYPE_STRING, rep), _field("top", 3, _F.TYPE_STRING, rep),
                 _field("name", 4, _F.TYPE_STRING),
                 _field("type", 5, _F.TYPE_ENUM, opt, ".caffe.V1LayerParameter.LayerType"),
                 _field("blobs", 6, _F.TYPE_MESSAGE, rep, ".caffe.BlobProto"))
    enum = v1.enum_type.add(name="LayerType")
    for name, number in _V1_TYPES.items():
        enum.value.add(name=name, number=number)
    message("NetParameter",
            _field("name", 1, _F.TYPE_STRING),
            _field("layers", 2, _F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter"),
            _field("layer", 100, _F.TYPE_MESSAGE, rep, ".caffe.LayerParameter"))
    # a private pool: the names never clash with another caffe.proto loaded in the same process
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{m.name}"))
            for m in file.message_type}


_MESSAGES = _build_messages()
BlobShape = _MESSAGES["BlobShape"]
BlobProto = _MESSAGES["BlobProto"]
LayerParameter = _MESSAGES["LayerParameter"]
V1LayerParameter = _MESSAGES["V1LayerParameter"]
NetParameter = _MESSAGES["NetParameter"]


def _blob_array(blob, layer: str, index: int) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # legacy 4-D blob; unset dims default to 0 in caffe.proto, so an all-unset blob reads as empty
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.data if len(blob.data) else blob.double_data
    arr = np.asarray(values, dtype=np.float32)
    if arr.size != int(np.prod(shape)):
        raise UserInputError(f"caffemodel layer {layer!r} blob {index} holds {arr.size} values but its shape "
                             f"says {shape}; the file is damaged or not a .caffemodel, re-download it")
    return arr.reshape(shape)


def _v1_type(layer) -> str:
    name = V1LayerParameter.LayerType.Name(layer.type)
    return _V1_TO_TYPE.get(name, name)


def read_caffemodel(blob: bytes) -> CaffeLayers:
    """Parse .caffemodel bytes -> layer name -> (type, blobs as float32 arrays in Caffe's layout).

    Types are the current strings ("InnerProduct", "Convolution", "Deconvolution", ...); legacy V1 layers of
    those three types are spelled the same, other V1 layers keep their enum name ("RELU"). An InnerProduct
    stored transposed (`inner_product_param.transpose`) comes back as (out, in). Layers without blobs are
    listed too (with no arrays).
    """
    net = NetParameter()
    try:
        net.ParseFromString(blob)
    except DecodeError as e:
        raise UserInputError(f"not a .caffemodel (protobuf decode failed: {e}); pass the binary weights file, "
                             "not the .prototxt") from e
    found: list[tuple[str, str, list[np.ndarray]]] = []
    for layer in net.layers:
        found.append((layer.name, _v1_type(layer),
                      [_blob_array(b, layer.name, i) for i, b in enumerate(layer.blobs)]))
    for layer in net.layer:
        arrays = [_blob_array(b, layer.name, i) for i, b in enumerate(layer.blobs)]
        if layer.type == "InnerProduct" and layer.inner_product_param.transpose and arrays:
            arrays[0] = np.ascontiguousarray(arrays[0].reshape(arrays[0].shape[-2:]).T)
        found.append((layer.name, layer.type, arrays))
    if not found:
        raise UserInputError("the caffemodel holds no layers; pass the binary .caffemodel weights file")
    out: CaffeLayers = {}
    for name, kind, arrays in found:
        if name in out and out[name][1] and arrays:
            raise UserInputError(f"caffemodel has two layers named {name!r} with weights; "
                                 "cannot tell which to use, export the net with unique layer names")
        if name not in out or arrays:  # a blob-less duplicate (e.g. a TRAIN/TEST twin) never hides weights
            out[name] = (kind, arrays)
    return out


def read_prototxt(text: str) -> dict[str, str]:
    """Parse a .prototxt net definition -> layer name -> type (V1 types spelled as in `read_caffemodel`).

    Fields outside the subset (convolution_param, include, ...) are skipped.
    """
    net = NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as e:
        raise UserInputError(f"cannot parse the prototxt ({e}); pass the net's .prototxt text file") from e
    types: dict[str, str] = {}
    for name, kind in [(v.name, _v1_type(v)) for v in net.layers] + [(v.name, v.type) for v in net.layer]:
        if types.get(name, kind) != kind:
            raise UserInputError(f"prototxt has two layers named {name!r} with types {types[name]!r} and "
                                 f"{kind!r}; pass a deploy prototxt with unique layer names")
        types[name] = kind
    return types


def _strip_leading_ones(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    # legacy 4-D blobs pad InnerProduct weights to (1, 1, out, in) and biases to (1, 1, 1, n)
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    return shape


@dataclass(frozen=True)
class CaffeLayout:
    """What a caffemodel must hold for one parameterized module: its layer name, type and blob shapes.

    `params` names the module parameter each blob fills, in blob order ("weight", then "bias" if any).
    """

    name: str
    type: str
    params: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]


def caffe_layout(net: nn.Module) -> list[CaffeLayout]:
    """The Caffe layers (name, type, blob shapes in Caffe's layout) that `net`'s parameters map to.

    Works on a net built on the meta device, so checking a large architecture allocates nothing.
    """
    out = []
    for name, m in net.named_modules():
        if not any(True for _ in m.parameters(recurse=False)):
            continue
        if type(m) not in _CAFFE_TYPE:
            raise UserInputError(f"module {name!r} is a {type(m).__name__}, which has no Caffe mapping; "
                                 "only Linear, Conv2d and ConvTranspose2d modules can take Caffe weights")
        # Linear (out, in) = Caffe InnerProduct; Conv2d (out, in/g, kh, kw) = Caffe Convolution.
        # ConvTranspose2d (in, out/g, kh, kw) = Caffe Deconvolution as stored, with no transposition: Caffe's
        # BaseConvolutionLayer swaps conv_in/conv_out channels for deconvolution (reverse_dimensions), so its
        # weight is (input channels, num_output/g, kh, kw), and its forward pass is the convolution's
        # backward-data pass with that weight, which is exactly what conv_transpose2d computes.
        params = ("weight",) + (("bias",) if m.bias is not None else ())
        out.append(CaffeLayout(name, _CAFFE_TYPE[type(m)], params,
                               tuple(tuple(getattr(m, p).shape) for p in params)))
    return out


def to_state_dict(net: nn.Module, layers: CaffeLayers,
                  prototxt_types: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Caffe layers -> a state dict for `net` (loads with strict=True when `net` has no buffers).

    Each Linear/Conv2d/ConvTranspose2d module takes the Caffe layer of the same name; `prototxt_types`
    (from `read_prototxt`), when given, must agree on every such layer's type.
    """
    sd: dict[str, torch.Tensor] = {}
    layout = caffe_layout(net)
    for want in layout:
        name = want.name
        what = f"module {name!r} ({type(net.get_submodule(name)).__name__})"
        if prototxt_types is not None:
            if name not in prototxt_types:
                raise UserInputError(f"prototxt has no layer {name!r} for {what}; "
                                     "pass the prototxt that belongs to this caffemodel and generator")
            if prototxt_types[name] != want.type:
                raise UserInputError(f"prototxt layer {name!r} is {prototxt_types[name]!r} but {what} needs "
                                     f"{want.type!r}; pick the generator that matches the prototxt")
        if name not in layers:
            raise UserInputError(f"caffemodel has no layer {name!r} for {what}, weight {want.shapes[0]} "
                                 f"(it has {_few(sorted(layers))}); pick the generator that matches the caffemodel")
        kind, blobs = layers[name]
        if kind != want.type:
            raise UserInputError(f"caffemodel layer {name!r} is {kind!r} but {what} needs {want.type!r}; "
                                 "pick the generator that matches the caffemodel")
        if len(blobs) != len(want.params):
            raise UserInputError(f"caffemodel layer {name!r} has {len(blobs)} blobs but {what} needs "
                                 f"{len(want.params)} ({' and '.join(want.params)}); "
                                 "pick the generator that matches the caffemodel")
        for index, (param, shape) in enumerate(zip(want.params, want.shapes)):
            arr = blobs[index]
            if _strip_leading_ones(tuple(arr.shape), len(shape)) != shape:
                raise UserInputError(f"caffemodel layer {name!r} blob {index} ({param}) has shape "
                                     f"{tuple(arr.shape)} but {what} needs {shape}; "
                                     "pick the generator that matches the caffemodel")
            sd[f"{name}.{param}"] = torch.from_numpy(np.ascontiguousarray(arr.reshape(shape)))
    used = {w.name for w in layout}
    unused = sorted(n for n, (_, blobs) in layers.items() if blobs and n not in used)
    if unused:
        log.info("caffemodel layers with weights but no module, ignored: %s", ", ".join(unused))
    return sd


def _few(names: list[str], n: int = 8) -> str:
    if not names:
        return "none"
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _read_bytes(uri: str, what: str, storage_options: Mapping[str, Any] | None) -> bytes:
    try:
        return read_uri(uri, storage_options)
    except StorageError:
        raise
    except (FileNotFoundError, IsADirectoryError) as e:
        raise UserInputError(f"{what} {uri!r} not found; check the path or URI") from e
    except (OSError, ValueError, ImportError) as e:
        raise UserInputError(f"cannot read {what} {uri!r}: {e}; check the path or URI") from e


def import_caffemodel(caffemodel_uri: str, generator: str, prototxt_uri: str | None = None,
                      storage_options: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Read a .caffemodel (any fsspec URI) into a state dict for registry model `generator`.

    The result loads with `net.load_state_dict(sd, strict=True)` into `resolve_model(generator).build()`.
    With `prototxt_uri`, the prototxt's layer types are cross-checked too.
    """
    net = resolve_model(generator).build()
    types = None
    if prototxt_uri:
        raw = _read_bytes(prototxt_uri, "prototxt", storage_options)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserInputError(f"prototxt {prototxt_uri!r} is not text; pass the .prototxt, "
                                 "and the .caffemodel with --caffemodel") from e
        types = read_prototxt(text)
    layers = read_caffemodel(_read_bytes(caffemodel_uri, "caffemodel", storage_options))
    return to_state_dict(net, layers, types)
