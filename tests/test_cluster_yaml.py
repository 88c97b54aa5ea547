"""cluster.yaml validates against the cluster-config JSON schema that ships inside the ray package, and has
the shape the deployment needs: a CPU head that takes no tasks, spot GPU workers, install + S3 access."""

import json
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
