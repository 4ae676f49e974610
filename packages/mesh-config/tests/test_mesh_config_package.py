import importlib.metadata

import mesh_config


def test_version_matches_distribution_metadata():
    assert mesh_config.__version__ == importlib.metadata.version("mesh-config")
