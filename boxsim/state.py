"""Everything one running simulator holds, shared by the request-handling threads."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from boxsim.config import SimConfig
from boxsim.directory import Directory
from boxsim.events import EventLog
from boxsim.faults import FaultQueue
from boxsim.ratelimit import RateLimiter
from boxsim.requestlog import RequestLog
from boxsim.terminations import Terminations
from boxsim.tokens import TokenStore


@dataclass
class SimState:
    """The directory, tokens, limits, faults and records of one simulator instance."""

    config: SimConfig
    directory: Directory
    tokens: TokenStore
    limiter: RateLimiter
    jwt_public_key: PublicKeyTypes | None = None
    faults: FaultQueue = field(default_factory=FaultQueue)
    log: RequestLog = field(default_factory=RequestLog)
    terminations: Terminations = field(default_factory=Terminations)
    events: EventLog = field(default_factory=EventLog)
    origin: str = ""  # "http://host:port", set once the server is bound and its port is known

    @property
    def token_url(self) -> str:
        """The simulator's own token endpoint URL."""
        return f"{self.origin}/oauth2/token"

    @property
    def base_url(self) -> str:
        """The simulator's API base URL."""
        return f"{self.origin}/2.0"
