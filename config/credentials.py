"""Named credentials: the intake tokens, HMAC keys and operator tokens, each a secret with an optional name.

A list setting holds entries separated by commas or newlines (a `_FILE` may hold one a line). An entry
`name:secret` gives its secret a name, which the job records and the audit show (`splunk:soc-splunk`,
`operator:alice`) instead of its position (`token#2`). Names are not secret; the secrets stay `Secret`s.

An entry is named only when the text before its first `:` is a name (NAME_PATTERN) and some text follows it;
anything else is an unnamed secret, whole. So an unnamed secret that holds a `:` keeps working unless what comes
before its first `:` looks like a name: give such a secret a name of its own (`legacy:abc:def` is the secret
`abc:def` named `legacy`), since only the first `:` separates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from config.secret import Secret

# Short enough for a log line, free of `,` and `:` (the separators) and of `#` (so never mistaken for `token#2`).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class DuplicateName(ValueError):
    """Two entries of one list share a name, so the audit could not tell them apart."""


@dataclass(frozen=True)
class Credential:
    """One secret of a list setting and the name it was given, if any."""

    secret: Secret
    name: str | None = None

    def label(self, kind: str, position: int) -> str:
        """How the audit names a caller who used it: its name, else its kind and 1-based position (`token#2`)."""
        return self.name or f"{kind}#{position}"


def parse_credentials(joined: str) -> tuple[Credential, ...]:
    """The credentials of a list separated by commas or newlines; raises DuplicateName when two share a name."""
    credentials = tuple(_credential(entry.strip()) for entry in re.split(r"[,\n]", joined) if entry.strip())
    names = [c.name for c in credentials if c.name is not None]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DuplicateName(f"the name {repeated[0]!r} is given to more than one entry; each name must be unique")
    return credentials


def _credential(entry: str) -> Credential:
    name, colon, rest = entry.partition(":")
    if colon and rest.strip() and NAME_PATTERN.fullmatch(name.strip()):
        return Credential(Secret(rest.strip()), name.strip())
    return Credential(Secret(entry))
