"""Operators, their roles and their sessions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

# Every ops route needs `ops`; acting (approve, reject, stop, redrive) needs ops:act as well, in the
# functions (finfaas.platform.http.routes) as in the console.
from finfaas.platform.jwt_auth import OPS_ACT_SCOPE, OPS_SCOPE


class Role(Enum):
    """READER sees every page; ACTOR may also act on what it sees."""

    READER = "reader"
    ACTOR = "actor"


def role_of(scopes: Iterable[str]) -> Role | None:
    """The console role an operator's granted scopes carry; None without the ops scope."""
    granted = set(scopes)
    if OPS_SCOPE not in granted:
        return None
    return Role.ACTOR if OPS_ACT_SCOPE in granted else Role.READER


@dataclass(frozen=True)
class Session:
    """A signed-in operator: who, which role, the bearer token to call the suite with, and until when."""

    operator: str
    role: Role
    token: str
    csrf: str
    expires_at: int  # epoch seconds: the earlier of the console's limit and the token's own expiry
