"""What a child process may inherit, and which secret values never reach the model.

The test command runs code from the repository, which the user did not necessarily write: it
gets the server's environment minus every variable whose name says it holds a credential
(`KOMA_API_KEY`, `*_TOKEN`, `*_SECRET`, `*_API_KEY`, `*PASSWORD*`, `*SESSION*`, `*_PAT`,
`*_PWD`, the cloud credential variables, the ssh agent socket, …) or whose value is a URL with
a password in it (`DATABASE_URL=postgres://app:pw@db/…`, an authenticated `HTTPS_PROXY` or
`PIP_INDEX_URL`), unless the user's own config names it in `tools.passEnv`. Such a URL is
dropped whole rather than stripped of its password: a half-working proxy or index URL would
fail later and less clearly than a missing one, and the user can pass it on by name.
The values of those variables (and any other known secret, such as the provider's API key)
are then cut out of every tool result before the model sees it: a test that prints its
environment, or a file that happens to hold the key, shows `[redacted: NAME]` instead. Keys the
process already knows from the settings (`koma.redaction`, e.g. an `apiKey` in the user's
config file) are cut too, so the two lists of secrets never disagree.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping

from koma.redaction import redact as redact_known_keys

# Matched case-insensitively against variable names.
CREDENTIAL_NAMES = (
    "KOMA_*",
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PASSPHRASE*",
    "*_PASS",
    "*_PWD",
    "*_PAT",
    "*SESSION*",
    "*API_KEY*",
    "*APIKEY*",
    "*ACCESS_KEY*",
    "*PRIVATE_KEY*",
    "*CREDENTIAL*",
    "*JWT*",
    "*WEBHOOK*",
    "*_KEY",
    "*_AUTH",
    "AWS_*",
    "AZURE_*",
    "ARM_CLIENT_*",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_KEYFILE*",
    "CLOUDSDK_*",
    "GCLOUD_*",
    "DIGITALOCEAN_*",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "NETRC",
    "DOCKER_AUTH_CONFIG",
)
# Names that match a pattern above but are the desktop's public bookkeeping, not credentials
# (dropping them would break tests that talk to the session bus; redacting `DESKTOP_SESSION=ubuntu`
# would cut an ordinary word out of every result).
NOT_CREDENTIALS = (
    "XDG_SESSION_*",
    "DESKTOP_SESSION",
    "GDMSESSION",
    "SESSION_MANAGER",
    "DBUS_SESSION_BUS_ADDRESS",
)
# Shorter values ("1", "true", a port) would redact ordinary words; no credential is that short.
MIN_SECRET_CHARS = 6


# `scheme://user:password@host` anywhere in a value (also in a list such as `NO_PROXY`-style
# values or `pip`'s space-separated extra index URLs); group 1 is the password.
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:([^\s/@]+)@")
# `Password=pw;` / `PWD=pw` in a .NET, ODBC or JDBC-style connection string; group 1 is it.
_CONNECTION_PASSWORD = re.compile(r"(?i)(?:^|[;\s&?])(?:password|pwd)\s*=\s*([^;\s]+)")


def url_passwords(value: str) -> list[str]:
    """The passwords written inside `value`: in URLs (`postgres://app:pw@db` gives `pw`) or as
    a connection string's `Password=` / `PWD=` part."""
    return _URL_PASSWORD.findall(value) + _CONNECTION_PASSWORD.findall(value)


def is_credential(name: str, value: str | None = None) -> bool:
    """Whether a variable holds a credential: its name says so, or its value is a URL with a
    password (`DATABASE_URL`, an authenticated proxy), whatever the variable is called."""
    upper = name.upper()
    if any(fnmatch.fnmatchcase(upper, pattern) for pattern in CREDENTIAL_NAMES):
        return not any(fnmatch.fnmatchcase(upper, pattern) for pattern in NOT_CREDENTIALS)
    return value is not None and bool(url_passwords(value))


def child_env(
    allowed: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a child process: `environ` without credentials, except those the
    user allowed by exact name (`tools.passEnv`)."""
    source = os.environ if environ is None else environ
    keep = set(allowed)
    return {k: v for k, v in source.items() if k in keep or not is_credential(k, v)}


class Redactor:
    """Replaces known secret values in text by `[redacted: NAME]`."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        pairs = {v: k for k, v in secrets.items() if v and len(v.strip()) >= MIN_SECRET_CHARS}
        # Longest first, so a key that contains another key is cut as a whole.
        self._pairs = sorted(pairs.items(), key=lambda item: -len(item[0]))

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, extra: Mapping[str, str | None] | None = None
    ) -> Redactor:
        """Secrets of the credential variables of `environ` (every one, passed on or not) plus
        `extra` (name -> value, e.g. the provider's API key). A password inside a URL is a
        secret of its own, so it is cut also where the rest of the URL is not (a driver's
        error message quoting only the password, a URL printed in another form)."""
        source = os.environ if environ is None else environ
        found = {k: v for k, v in source.items() if is_credential(k, v)}
        for name, value in source.items():
            for index, password in enumerate(url_passwords(value)):
                found[f"{name} password" + (f" {index + 1}" if index else "")] = password
        found.update({k: v for k, v in (extra or {}).items() if v})
        return cls(found)

    def __call__(self, text: str) -> str:
        for value, name in self._pairs:
            if value in text:
                text = text.replace(value, f"[redacted: {name}]")
        return redact_known_keys(text)
