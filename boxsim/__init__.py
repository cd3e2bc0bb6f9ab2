"""boxsim: a local HTTP simulator of the parts of the Box API that boxcut uses (SIMULATED, not Box)."""

from boxsim.config import SimConfig
from boxsim.directory import Directory, Group, User, generate
from boxsim.faults import FaultRule
from boxsim.sim import BoxSim
from boxsim.validation import validate_request_body, validate_response_body

__all__ = [
    "BoxSim",
    "Directory",
    "FaultRule",
    "Group",
    "SimConfig",
    "User",
    "generate",
    "validate_request_body",
    "validate_response_body",
]
