"""Validate Istio config with mesh_config: every problem with its file, line, object and field.

Run it: ``uv run python examples/config_validate.py``.
"""

from mesh_config import load_text

CONFIG = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: reviews-strict
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: reviews
  mtls:
    mode: STRICT
  portLevelMtls:
    "9080":
      mode: PERMISSIVE
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: ratings-typo
spec:
  mtls:
    mode: STRCT
  portLevelMtls:
    "9080":
      mode: DISABLE
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
"""


def main() -> None:
    result = load_text(CONFIG, source="bookinfo.yaml", default_namespace="default")
    for resource in result.resources:
        print(f"accepted {resource.kind} {resource.namespace}/{resource.name}")
        ports = {port: tls.mode.value for port, tls in resource.spec.port_level_mtls.items()}
        print(f"  mtls {resource.spec.mtls.mode.value}, per port {ports}")
    for source, kind in result.skipped:
        print(f"skipped {kind} in {source} (not an Istio kind)")
    for diagnostic in result.diagnostics:
        print(diagnostic.format())
    print("valid" if result.ok else f"invalid: {len(result.errors)} errors")


if __name__ == "__main__":
    main()
