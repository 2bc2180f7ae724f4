"""Who is calling: call metadata added to every call, never a request field.

The service trusts a plain `x-qis-user` header in its development mode; signed tokens in
`authorization` will replace it behind the same server interceptor. A client is given an
Identity, so moving to tokens changes the object passed in, not the calling code.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Metadata = tuple[tuple[str, str], ...]

USER_HEADER = "x-qis-user"
AUTHORIZATION_HEADER = "authorization"
USER_ENV = "QIS_USER"


class Identity(Protocol):
    """Anything that yields the metadata of one call. Asked again for every call, so a token
    that expires can be refreshed behind it."""

    def metadata(self) -> Metadata: ...


@dataclass(frozen=True, slots=True)
class User:
    """Development mode: the user's name in `x-qis-user`."""

    name: str

    def metadata(self) -> Metadata:
        return ((USER_HEADER, self.name),)

    @classmethod
    def from_env(cls) -> User:
        """QIS_USER, else the login name: what the `qis` command sends."""
        return cls(os.environ.get(USER_ENV) or getpass.getuser())


@dataclass(frozen=True, slots=True)
class BearerToken:
    """`authorization: Bearer <token>`; `token` is a string, or a function asked for the current
    token on every call (a refreshing credential)."""

    token: str | Callable[[], str]

    def metadata(self) -> Metadata:
        current = self.token() if callable(self.token) else self.token
        return ((AUTHORIZATION_HEADER, f"Bearer {current}"),)
