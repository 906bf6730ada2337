"""Consent: per tool `allow | ask | deny`, and "Allow for this chat" remembered per chat.

`tools.policies` names a policy per tool; a tool the setting does not name keeps its own
default (reading tools allow, running and editing tools ask). `ask` goes through an injected
async `confirm(tool, message)` callback — the language server turns it into
`window/showMessageRequest` — so the engine never depends on an editor. No answer, an error
while asking, or a timeout all count as Deny: silence is never consent.

A *sensitive* call (an edit to Koma's config, `.vscode/`, CI configuration, a shell startup
file…; the tool names why) is always asked, whatever the policy or an earlier "Allow for this
chat" says, with the reason in the question; its yes covers that one call only. It goes through
`confirm_sensitive` when given (a client can then offer only Allow / Deny), else `confirm`.
`refuse(tool)` lets the caller block tools outright (e.g. a restricted workspace): a reason
there wins over every policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableSet
from typing import Any, Literal

from koma.engine.tools.toolkit import Policy, Tool

logger = logging.getLogger("koma.tools")

Decision = Literal["allow", "allow_chat", "deny"]
ConfirmFn = Callable[[str, str], Awaitable[Decision | None]]
# How long a confirmation may stay unanswered before it counts as Deny.
CONFIRM_TIMEOUT_SECONDS = 300.0


class PolicyGate:
    """Decides, per call, whether a tool may run; asks the user when the policy says so."""

    def __init__(
        self,
        policies: Mapping[str, Policy] | None = None,
        confirm: ConfirmFn | None = None,
        remembered: MutableSet[str] | None = None,
        timeout: float = CONFIRM_TIMEOUT_SECONDS,
        confirm_sensitive: ConfirmFn | None = None,
        refuse: Callable[[Tool], str | None] | None = None,
    ) -> None:
        self.policies = dict(policies or {})
        self.confirm = confirm
        self.confirm_sensitive = confirm_sensitive or confirm
        self.refuse = refuse
        # Tools the user allowed "for this chat"; the caller keeps one set per chat.
        self.remembered: MutableSet[str] = remembered if remembered is not None else set()
        self.timeout = timeout

    def policy(self, tool: Tool) -> Policy:
        return self.policies.get(tool.name, tool.policy)

    def offered(self, tool: Tool) -> bool:
        """Denied tools are not even offered to the model."""
        return self.policy(tool) != "deny"

    async def check(
        self, tool: Tool, arguments: Mapping[str, Any], sensitive: str | None = None
    ) -> str | None:
        """None when the call may run, else the refusal to report to the model.

        `sensitive` is why this call must be confirmed whatever the policy says (or None).
        """
        blocked = self.refuse(tool) if self.refuse is not None else None
        if blocked:
            return blocked
        policy = self.policy(tool)
        if policy == "deny":
            return (
                f"{tool.name} is disabled by the user's settings (tools.policies.{tool.name} = "
                "deny); do not call it again"
            )
        if sensitive:
            return await self._ask_sensitive(tool, arguments, sensitive)
        if policy == "allow" or tool.name in self.remembered:
            return None
        if self.confirm is None:
            return (
                f"{tool.name} needs the user's confirmation, but this client cannot ask; "
                f"the user can set tools.policies.{tool.name} = allow"
            )
        decision, failed = await self._ask(
            self.confirm, tool, f"Koma wants to {tool.describe(arguments)}"
        )
        if failed:
            return failed
        if decision == "allow_chat":
            self.remembered.add(tool.name)
            return None
        if decision == "allow":
            return None
        return f"the user denied {tool.name}; it was not run. Do not retry it in this turn"

    async def _ask_sensitive(
        self, tool: Tool, arguments: Mapping[str, Any], why: str
    ) -> str | None:
        """Always asked, never remembered: one explicit Allow for this one call."""
        if self.confirm_sensitive is None:
            return (
                f"{tool.name} was not run: it is sensitive ({why}) and needs the user's explicit "
                "confirmation, which this client cannot give"
            )
        # The reason first: the rest is the model's words, and a notification shows the start.
        message = f"Sensitive: this is {why}. Koma wants to {tool.describe(arguments)}"
        decision, failed = await self._ask(self.confirm_sensitive, tool, message)
        if failed:
            return failed
        if decision in ("allow", "allow_chat"):
            return None
        return (
            f"the user denied {tool.name} (sensitive: {why}); it was not run. Do not retry it "
            "in this turn"
        )

    async def _ask(
        self, confirm: ConfirmFn, tool: Tool, message: str
    ) -> tuple[str | None, str | None]:
        """Ask the user within the timeout: (their decision, None), or (None, why not asked)."""
        try:
            return await asyncio.wait_for(confirm(tool.name, message), self.timeout), None
        except TimeoutError:
            return None, f"the user did not answer the request to run {tool.name}; it was not run"
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any editor failure refuses the call: never run unasked
            logger.warning("asking for confirmation failed: %s", err)
            return None, (
                f"the editor could not ask the user about {tool.name} ({err}); it was not run"
            )
