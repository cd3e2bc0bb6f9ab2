"""The simulated token endpoint: Client Credentials and JWT grants for the enterprise."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from boxsim.http_types import Reply, SimRequest
from boxsim.jwt_assertion import AssertionPolicy, AssertionRejected, verify_assertion
from boxsim.state import SimState
from boxsim.tokens import token_id

CCG_GRANT = "client_credentials"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ISSUED_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class OAuthError(Exception):
    """Raised to answer the token request with an OAuth 2.0 error body."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def reply(self) -> Reply:
        """Render as Box's token endpoint would."""
        return Reply(self.status, {"error": self.error, "error_description": self.description})


def handle_token_request(state: SimState, request: SimRequest) -> Reply:
    """Answer POST /oauth2/token: issue a token for valid enterprise credentials, else an OAuth error."""
    try:
        form = _read_form(request)
        _check_client(state, form)
        grant_type = form.get("grant_type")
        if grant_type == CCG_GRANT:
            _check_ccg_subject(state, form)
        elif grant_type == JWT_GRANT:
            _check_jwt(state, request, form)
        else:
            raise OAuthError("invalid_request", "Invalid grant_type parameter or parameter missing")
    except OAuthError as exc:
        return exc.reply()
    return _issue(state)


def _read_form(request: SimRequest) -> dict[str, str]:
    """Decode the form-encoded body (first value of each field)."""
    if request.content_type() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Invalid grant_type parameter or parameter missing")
    fields = parse_qs(request.raw_body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _same(given: str | None, expected: str) -> bool:
    """Compare a presented credential in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _check_client(state: SimState, form: dict[str, str]) -> None:
    """Refuse an unknown client id or a wrong client secret."""
    config = state.config
    if not (_same(form.get("client_id"), config.client_id) and _same(form.get("client_secret"), config.client_secret)):
        raise OAuthError("invalid_client", "The client credentials are invalid")


def _check_ccg_subject(state: SimState, form: dict[str, str]) -> None:
    """Refuse a Client Credentials grant that does not name this enterprise."""
    if form.get("box_subject_type") != "enterprise" or form.get("box_subject_id") != state.config.enterprise_id:
        raise OAuthError("invalid_grant", "Grant credentials are invalid")


def _check_jwt(state: SimState, request: SimRequest, form: dict[str, str]) -> None:
    """Refuse a JWT grant whose assertion fails Box's checks."""
    if state.jwt_public_key is None:
        raise OAuthError("invalid_grant", "JWT grant is not enabled: this simulator has no public key configured")
    assertion = form.get("assertion")
    if not assertion:
        raise OAuthError("invalid_request", "The 'assertion' parameter is missing")
    policy = AssertionPolicy(
        public_key=state.jwt_public_key,
        key_id=state.config.jwt_public_key_id,
        client_id=state.config.client_id,
        enterprise_id=state.config.enterprise_id,
        audiences=_audiences(state, request),
    )
    try:
        verify_assertion(assertion, policy)
    except AssertionRejected as exc:
        raise OAuthError("invalid_grant", str(exc)) from None


def _audiences(state: SimState, request: SimRequest) -> set[str]:
    """Return the token URLs an assertion may name: the one the client used, and the sim's own."""
    audiences = {state.token_url}
    host = request.header("host")
    if host:
        audiences.add(f"http://{host}/oauth2/token")
    return audiences


def _issue(state: SimState) -> Reply:
    """Issue a new access token and answer as Box does."""
    token = state.tokens.issue()
    body = {
        "access_token": token,
        "expires_in": state.tokens.ttl_seconds,
        "token_type": "bearer",
        "restricted_to": [],
        "issued_token_type": ISSUED_TOKEN_TYPE,
    }
    return Reply(200, body, log_token_id=token_id(token))
