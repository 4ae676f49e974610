import importlib.metadata

import mesh_ca


def test_version_matches_distribution_metadata():
    assert mesh_ca.__version__ == importlib.metadata.version("mesh-ca")
