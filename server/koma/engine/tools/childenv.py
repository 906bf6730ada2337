"""What a child process may inherit, and which secret values never reach the model.

The test command runs code from the repository, which the user did not necessarily write: it
gets the server's environment minus every variable whose name says it holds a credential
(`KOMA_API_KEY`, `*_TOKEN`, `*_SECRET`, `*_API_KEY`, `*PASSWORD*`, the cloud credential
variables, the ssh agent socket, …) unless the user's own config names it in `tools.passEnv`.
The values of those variables (and any other known secret, such as the provider's API key)
are then cut out of every tool result before the model sees it: a test that prints its
environment, or a file that happens to hold the key, shows `[redacted: NAME]` instead. Keys the
process already knows from the settings (`koma.redaction`, e.g. an `apiKey` in the user's
config file) are cut too, so the two lists of secrets never disagree.
"""

from __future__ import annotations

import fnmatch
import os
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
    "*API_KEY*",
    "*APIKEY*",
    "*ACCESS_KEY*",
    "*PRIVATE_KEY*",
    "*CREDENTIAL*",
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
# Shorter values ("1", "true", a port) would redact ordinary words; no credential is that short.
MIN_SECRET_CHARS = 6


def is_credential(name: str) -> bool:
    """Whether a variable's name says it holds a credential."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in CREDENTIAL_NAMES)


def child_env(
    allowed: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a child process: `environ` without credentials, except those the
    user allowed by exact name (`tools.passEnv`)."""
    source = os.environ if environ is None else environ
    keep = set(allowed)
    return {k: v for k, v in source.items() if k in keep or not is_credential(k)}


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
        `extra` (name -> value, e.g. the provider's API key)."""
        source = os.environ if environ is None else environ
        found = {k: v for k, v in source.items() if is_credential(k)}
        found.update({k: v for k, v in (extra or {}).items() if v})
        return cls(found)

    def __call__(self, text: str) -> str:
        for value, name in self._pairs:
            if value in text:
                text = text.replace(value, f"[redacted: {name}]")
        return redact_known_keys(text)
