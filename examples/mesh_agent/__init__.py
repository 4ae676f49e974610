"""mesh_agent: the node agent of one workload, as Istio's ``pilot-agent`` beside its Envoy.

It gets the workload's certificate from the CA (with a bearer token first, then with the certificate itself
for renewals), serves it to Envoy over SDS on a Unix socket, writes Envoy's bootstrap, starts Envoy and keeps
it running, and answers ``/healthz/ready`` on its status port. Run it as ``mesh-agent`` (see
``mesh-agent --help``) or embed :class:`Agent` in a program or a test.
"""

from mesh_agent.agent import Agent
from mesh_agent.options import STATUS_PORT, AgentConfigError, AgentError, AgentOptions, parse_address
from mesh_agent.status import READY_PATH, Readiness, StatusServer, envoy_admin_ready
from mesh_agent.supervisor import EnvoySupervisor, SupervisorError, find_envoy

__all__ = [
    "READY_PATH",
    "STATUS_PORT",
    "Agent",
    "AgentConfigError",
    "AgentError",
    "AgentOptions",
    "EnvoySupervisor",
    "Readiness",
    "StatusServer",
    "SupervisorError",
    "envoy_admin_ready",
    "find_envoy",
    "parse_address",
]
