import collections
import os

import pytest
import torch

from models.errors import UserInputError
from models.loading import load_net
from models.weights import read_weights
from tests.conftest import TINY_ENTRY, tiny_net


def test_state_dict_round_trip_and_digest(tiny_weights):
    a = read_weights(tiny_weights)
    b = read_weights(f"file://{tiny_weights}")
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    net = load_net(TINY_ENTRY, tiny_weights)
    assert torch.equal(net.net.fc.weight, tiny_net().fc.weight)
    assert net.weights_sha256 == a.sha256


def test_wrapped_checkpoints_are_unwrapped(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": tiny_net().state_dict(), "epoch": 3}, path)
    assert "fc.weight" in read_weights(str(path)).state_dict


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_file_that_needs_code_to_unpickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(1), "x": Payload()}, path)
    with pytest.raises(UserInputError, match="refused: the file needs code to unpickle"):
        read_weights(str(path))


def test_a_pickled_module_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(tiny_net(), path)
    with pytest.raises(UserInputError, match="refused"):
        read_weights(str(path))


@pytest.mark.parametrize("content,match", [
    (None, "not found"), (b"not a checkpoint", "not a PyTorch checkpoint"),
])
def test_unreadable_weights(tmp_path, content, match):
    path = tmp_path / "w.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserInputError, match=match):
        read_weights(str(path))


def test_mismatched_weights_name_the_keys(tmp_path):
    sd = collections.OrderedDict(tiny_net().state_dict())
    sd.pop("fc.bias")
    sd["extra.weight"] = torch.zeros(2)
    sd["fc.weight"] = torch.zeros(7, 6)
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    with pytest.raises(UserInputError, match=r"missing fc.bias; unexpected extra.weight; wrong shape fc.weight"):
        load_net(TINY_ENTRY, str(path))


def test_models_without_embedded_weights_ask_for_them():
    with pytest.raises(UserInputError, match="pass --weights URI"):
        load_net(TINY_ENTRY)
