"""cluster.yaml validates against the cluster-config JSON schema that ships inside the ray package, and has
the shape the deployment needs: a CPU head that takes no tasks, spot GPU workers, install + S3 access, an image
whose NVIDIA driver runs torch's CUDA build, and a head where commands join the cluster by default."""

import json
import re
from pathlib import Path

import jsonschema
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(load(), schema)


def test_cluster_yaml_shape():
    cfg = load()
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert any("--num-cpus=0" in c for c in cfg["head_start_ray_commands"])
    gpu = [t for n, t in types.items() if n != cfg["head_node_type"]]
    assert len(gpu) == 1 and gpu[0]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert 0 <= gpu[0]["min_workers"] <= gpu[0]["max_workers"]
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    assert any("pip install" in c and "neuron-atlas" in c for c in cfg["setup_commands"])


def test_every_node_boots_an_image_whose_driver_fits_torchs_cuda_build():
    cfg = load()
    text = (ROOT / "cluster.yaml").read_text()
    for name, t in cfg["available_node_types"].items():
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}", t["node_config"].get("ImageId", "")), name
    # how to get the region's current id, and which driver it must have, are written next to it
    assert "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04)" in text and "describe-images" in text
    assert "580" in text and "CUDA 13.0" in text


def test_commands_on_the_head_join_the_cluster_and_the_header_starts_with_doctor():
    cfg = load()
    assert any("export RAY_ADDRESS=auto" in c and "~/.bashrc" in c for c in cfg["head_setup_commands"])
    header = [ln for ln in (ROOT / "cluster.yaml").read_text().splitlines() if ln.startswith("#")][:8]
    assert any("neuron-atlas doctor --address auto" in ln for ln in header), header
