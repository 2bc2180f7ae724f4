"""QIS_AUTHZ, QIS_ADMINS and QIS_SERVICE_PRINCIPALS: policies enforced by default where
identities are proven, open in development mode, and settings that make no sense refused at
start."""

from __future__ import annotations

from typing import Any

import pytest
from qis_runtime.auth import ConfigurationError
from qis_runtime.authorization import authorization
from qis_runtime.settings import CommonSettings


@pytest.mark.parametrize(
    ("auth", "authz", "enforced"),
    [
        ("dev", "", False),  # whoever a header says: policies would only look like protection
        ("jwt", "", True),
        ("mtls", "", True),
        ("jwt,mtls", "", True),
        ("dev", "policies", True),  # to try policies out on a laptop
        ("jwt", "open", False),
        ("jwt", " Policies ", True),
    ],
)
def test_the_mode_by_default_and_when_set(auth: str, authz: str, enforced: bool) -> None:
    assert authorization(CommonSettings(auth=auth, authz=authz)).enforced is enforced


def test_admins_bare_names_are_users() -> None:
    found = authorization(CommonSettings(auth="jwt", admins=" root, role:qis-admins ,,svc:ops"))
    assert found.admins == ("user:root", "role:qis-admins", "user:svc:ops")
    assert "QIS_ADMINS: user:root, role:qis-admins, user:svc:ops" in found.summary


def test_service_principals_are_read_as_admins_are() -> None:
    found = authorization(CommonSettings(auth="jwt", service_principals="qis-query, role:svc"))
    assert found.services == ("user:qis-query", "role:svc")
    assert found.admins == ()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"auth": "jwt", "authz": "closed"}, "QIS_AUTHZ='closed': open or policies"),
        ({"auth": "jwt", "admins": "*"}, "QIS_ADMINS: '*' would name every caller"),
        ({"auth": "jwt", "service_principals": "*"}, "QIS_SERVICE_PRINCIPALS: '*' would"),
        ({"auth": "jwt", "service_principals": "role:"}, "QIS_SERVICE_PRINCIPALS: 'role:'"),
        ({"auth": "jwt", "admins": "role:"}, "QIS_ADMINS: 'role:'"),
        ({"auth": "jwt", "admins": "a b"}, "no blanks"),
        ({"auth": ""}, "QIS_AUTH is not set"),
    ],
)
def test_settings_that_make_no_sense_stop_the_start(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says.replace("*", r"\*")):
        authorization(CommonSettings(**settings))
