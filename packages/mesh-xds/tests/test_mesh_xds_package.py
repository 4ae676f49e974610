import importlib.metadata

import mesh_xds


def test_version_matches_distribution_metadata():
    assert mesh_xds.__version__ == importlib.metadata.version("mesh-xds")
