"""The settings a simulator instance runs with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SimConfig:
    """What a BoxSim listens on, which credentials it accepts and which directory it serves.

    The directory is the seed file if one is given, otherwise the bundled default seed unless
    `generate_users` asks for generated users only; generated users are added after any seed.
    """

    host: str = "127.0.0.1"
    port: int = 0
    client_id: str = "boxsim-client-id"
    client_secret: str = "boxsim-client-secret"
    enterprise_id: str = "boxsim-enterprise"
    jwt_public_key_pem: str | None = None
    jwt_public_key_id: str | None = None
    developer_token: str | None = None
    token_ttl_seconds: int = 3600
    rate_limit_per_minute: int = 0
    seed_file: str | Path | None = None
    generate_users: int = 0
    generate_groups: int = 0
    # The user every issued token acts as (GET /users/me): the app's service account, as with Box's CCG/JWT.
    service_account_id: str = "9000000001"
    service_account_login: str = "AutomationUser_boxsim@boxdevedition.com"
