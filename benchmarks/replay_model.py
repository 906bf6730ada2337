"""The simulated model and the speed profiles of the typing replay (`typing_replay.py`).

`PredictingSimulator` is the loopback simulator with replies computed from the prompt: it finds
the cursor in the file being typed and answers with the file's real continuation (or, some of
the time, a plausible wrong one), at the speed of the profile. Chat requests get the
hole-filler answer format, with reasoning first when the profile's model thinks. FIM answers
honour the request's stop sequences, as real servers do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from koma.engine.completion.prompt import HOLE
from koma_sim import Reply, Simulator
from koma_sim.script import gpt_oss_120b, qwen_coder
from traces.typing_trace import Trace

ACCURACY = 0.55  # how often the simulated model predicts the real continuation
THINKING = (
    "The user is in the middle of a method of TextWrapper. The code before the hole sets up "
    "the state; continue the current line consistently with the surrounding code."
)


@dataclass(frozen=True)
class Profile:
    name: str
    completion_model: str
    ttft_ms: float
    token_delay_ms: float
    thinking: bool
    description: str


PROFILES = {
    "gpt-oss-laptop": Profile(
        "gpt-oss-laptop",
        "gpt-oss:120b",
        600.0,
        40.0,
        True,
        "gpt-oss-120b on a laptop: hole-filler chat at low effort, TTFT 600 ms, 25 tok/s, "
        "~35 reasoning tokens before the answer",
    ),
    "fast": Profile(
        "fast",
        "qwen2.5-coder:1.5b",
        80.0,
        8.0,
        False,
        "small FIM model (insert capability) on a GPU: TTFT 80 ms, 125 tok/s",
    ),
}


class PredictingSimulator(Simulator):
    """The simulator, with replies computed from the prompt: the file's real continuation."""

    def __init__(self, trace: Trace, profile: Profile, speed: float, seed: int) -> None:
        super().__init__(
            models=[gpt_oss_120b(), qwen_coder()],
            ttft_ms=profile.ttft_ms / speed,
            token_delay_ms=profile.token_delay_ms / speed,
        )
        self.full = trace.header + trace.target
        self.start_at = len(trace.header)
        self.profile = profile
        self.seed = seed

    def pick_reply(self, endpoint: str, model: str | None, text: str) -> Reply:
        if endpoint not in ("generate", "chat"):
            return super().pick_reply(endpoint, model, text)
        before = text.split(HOLE)[-2] if endpoint == "chat" and HOLE in text else text
        probe = before[-160:]
        found = self.full.find(probe, max(0, self.start_at - len(probe)))
        rng = random.Random(f"{self.seed}:{found}:{len(before)}")
        pos = found + len(probe) if found >= 0 else -1
        if pos >= 0 and rng.random() < ACCURACY:
            guess = continuation(self.full, pos)
        else:
            other = rng.randrange(self.start_at, len(self.full) - 1)
            guess = continuation(self.full, other) or "pass"
        if endpoint == "chat":
            thinking = THINKING if self.profile.thinking else ""
            return Reply(content=f"<COMPLETION>{guess}</COMPLETION>", thinking=thinking)
        return Reply(content=_apply_stop(guess, self._stop_sequences(text)))

    def _stop_sequences(self, prompt: str) -> list[str]:
        """The `options.stop` of the request being answered (the simulator does not apply it).

        A real server ends the answer where a stop sequence would start, without it; doing
        the same here keeps the connection reusable, as it is against Ollama or llama.cpp.
        """
        for record in reversed(self.requests):
            body = record.body
            if record.endpoint == "generate" and isinstance(body, dict):
                if body.get("prompt") == prompt:
                    stop = (body.get("options") or {}).get("stop") or []
                    return [x for x in stop if isinstance(x, str) and x]
        return []


def _apply_stop(text: str, stops: list[str]) -> str:
    cuts = [text.find(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text


def continuation(full: str, pos: int) -> str:
    """What a good model would write at `pos`: the rest of the line, or the next lines."""
    end = full.find("\n", pos)
    end = len(full) if end < 0 else end
    if full[pos:end].strip():
        # FIM models run on past the line; post-processing must cut them.
        more = full.find("\n", end + 1)
        return full[pos : more if more > 0 else len(full)]
    stop = pos
    for _ in range(3):
        nxt = full.find("\n", stop + 1)
        if nxt < 0:
            break
        stop = nxt
    return full[pos:stop]
