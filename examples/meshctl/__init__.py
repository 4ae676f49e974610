"""meshctl: the command line of the mesh control plane (like istioctl)."""
