"""Tools from plain Python functions: typed signature + docstring → definition, validation, call.

```python
from koma.engine.tools import toolkit

@toolkit
class MathTools:
    def calculate(self, expression: str) -> float:
        \"\"\"Evaluate an arithmetic expression such as `2 * (3 + 4)`.\"\"\"
        ...

    def plot_graph(self, function: str, range: tuple[float, float]) -> str:
        \"\"\"Plot a function of x over a range.

        Args:
            function: the function of x, e.g. `x**2`
            range: the interval of x as [start, end]
        \"\"\"
        ...

result = await generate_text(model="gpt-oss:120b", prompt="Area under y=x² from 0 to 5?",
                             tools=MathTools())
```

The signature becomes a pydantic model (unknown arguments forbidden), whose JSON schema is the
tool's `parameters`; the docstring's first paragraph is its description and an `Args:` section
(or `:param x:` lines) describes each parameter. A model's arguments are validated against the
same model before the function runs, so a wrong type or a missing argument comes back to the
model as a readable error instead of a crash. Sync functions run in a worker thread, async ones
are awaited. A function may raise `ToolError` to refuse with a message for the model.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from koma.engine.tools.schema import arguments_model, drop_titles, parse_docstring

logger = logging.getLogger(__name__)

Policy = Literal["allow", "ask", "deny"]
# Runs on validated arguments before consent is asked; raises ToolError to refuse early.
Precheck = Callable[[dict[str, Any]], Any]
# Why a call is sensitive (always asked, named in the question), or None.
Sensitivity = Callable[[dict[str, Any]], str | None]

TOOL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_SPEC_ATTR = "__koma_tool__"
_KIT_ATTR = "__koma_toolkit__"
_Shape = tuple[str, type[BaseModel], tuple[str, ...]]


class ToolError(Exception):
    """A refusal or failure reported to the model as the tool's result, not as a crash."""


class ToolArgumentError(ToolError):
    """The model's arguments do not fit the tool's parameters."""


# A chat turn binds the workspace tools afresh; building a pydantic model and its JSON schema
# per tool is the slow part, so both are kept per function (and per model class).
_SHAPES: weakref.WeakKeyDictionary[Any, dict[tuple[bool, str], _Shape]] = (
    weakref.WeakKeyDictionary()
)
_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()


def _shape(fn: Callable[..., Any], name: str) -> _Shape:
    """Docstring summary, arguments model and positional names of `fn`, built once."""
    func = getattr(fn, "__func__", fn)
    key = (func is not fn, name)
    try:
        per_func = _SHAPES.setdefault(func, {})
    except TypeError:  # not weak-referenceable (a builtin, a partial): build every time
        per_func = {}
    shape = per_func.get(key)
    if shape is None:
        summary_text, arg_docs = parse_docstring(inspect.getdoc(fn) or "")
        model, positional = arguments_model(fn, name, arg_docs)
        shape = per_func[key] = (summary_text, model, positional)
    return shape


@dataclass(frozen=True)
class _Spec:
    name: str | None
    description: str | None
    policy: Policy
    summary: Callable[..., str] | None
    precheck: Callable[..., Any] | None = None
    sensitive: Callable[..., str | None] | None = None


@dataclass
class Tool:
    """One callable tool: its definition for the model and how to run it."""

    name: str
    description: str
    fn: Callable[..., Any]
    arguments_model: type[BaseModel]
    policy: Policy = "allow"
    summary: Callable[[dict[str, Any]], str] | None = None
    positional: tuple[str, ...] = field(default=())
    precheck: Precheck | None = None
    sensitive: Sensitivity | None = None

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        policy: Policy = "allow",
        summary: Callable[[dict[str, Any]], str] | None = None,
        precheck: Precheck | None = None,
        sensitive: Sensitivity | None = None,
    ) -> Tool:
        """Build a tool from a typed function (or bound method) and its docstring."""
        name = name or str(getattr(fn, "__name__", ""))
        if not TOOL_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a usable tool name (letters, digits, _ and -)")
        summary_text, model, positional = _shape(fn, name)
        text = str(description or summary_text or name)
        return cls(name, text, fn, model, policy, summary, positional, precheck, sensitive)

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments (titles dropped: they only cost tokens)."""
        schema = _SCHEMAS.get(self.arguments_model)
        if schema is None:
            schema = drop_titles(self.arguments_model.model_json_schema())
            schema.setdefault("properties", {})
            _SCHEMAS[self.arguments_model] = schema
        return copy.deepcopy(schema)

    def definition(self) -> dict[str, Any]:
        """The OpenAI function-tool shape both Ollama and OpenAI-compatible servers take."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments checked and converted; `ToolArgumentError` lists every problem."""
        try:
            checked = self.arguments_model.model_validate(dict(arguments))
        except ValidationError as err:
            raise ToolArgumentError(self.argument_errors(err)) from None
        return {key: getattr(checked, key) for key in type(checked).model_fields}

    def argument_errors(self, err: ValidationError) -> str:
        known = ", ".join(self.arguments_model.model_fields) or "none"
        lines = []
        for problem in err.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "arguments"
            if problem["type"] == "missing":
                what = "argument" if len(problem["loc"]) == 1 else "item"
                lines.append(f"{where}: required {what} missing")
            elif problem["type"] == "extra_forbidden":
                lines.append(f"{where}: unknown argument (the arguments are: {known})")
            else:
                lines.append(f"{where}: {problem['msg']} (got {_short(problem.get('input'))})")
        return f"invalid arguments for {self.name}: " + "; ".join(lines)

    async def check(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validated arguments, after the tool's own early refusals (before consent).

        A synchronous precheck runs in a worker thread: it may touch the disk (resolve a path,
        read the file an edit is planned on), which must never hold the event loop.
        """
        kwargs = self.validate(arguments)
        if self.precheck is not None:
            if inspect.iscoroutinefunction(self.precheck):
                await self.precheck(dict(kwargs))
            else:
                outcome = await asyncio.to_thread(self.precheck, dict(kwargs))
                if inspect.isawaitable(outcome):
                    await outcome
        return kwargs

    async def sensitivity(self, arguments: Mapping[str, Any]) -> str | None:
        """Why this call must be confirmed whatever the policy says, or None (in a thread)."""
        if self.sensitive is None:
            return None
        return await asyncio.to_thread(self.sensitive, dict(arguments))

    async def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Validate and call; sync functions run in a thread so the event loop stays free."""
        kwargs = self.validate(arguments)
        args = [kwargs.pop(p) for p in self.positional]
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*args, **kwargs)
        result = await asyncio.to_thread(self.fn, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def describe(self, arguments: Mapping[str, Any]) -> str:
        """One line for a confirmation prompt, at most `DESCRIBE_CHARS` long: the arguments are
        the model's text, and newlines or a flood of words would push what the user must read
        (the file, the "Sensitive" reason) out of a notification."""
        if self.summary is not None:
            try:
                return one_line(self.summary(dict(arguments)), DESCRIBE_CHARS)
            except Exception as exc:  # the tool's own code on the model's arguments: any bug
                logger.debug("summary of %s failed, showing the arguments: %s", self.name, exc)
        shown = json.dumps(dict(arguments), ensure_ascii=False)
        return one_line(f"{self.name} {_clip(shown, 200)}", DESCRIBE_CHARS)


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    policy: Policy = "allow",
    summary: Callable[..., str] | None = None,
    precheck: Callable[..., Any] | None = None,
    sensitive: Callable[..., str | None] | None = None,
) -> Any:
    """Mark a function or method as a tool, optionally renaming it or setting its policy.

    `summary(arguments)` words a confirmation ("run the tests: …"); `precheck(arguments)` may
    raise `ToolError` to refuse before the user is asked; `sensitive(arguments)` names why a
    call must be confirmed whatever the policy says (None when it need not). On methods all
    three get `self` first.
    """

    def mark(target: Callable[..., Any]) -> Callable[..., Any]:
        setattr(target, _SPEC_ATTR, _Spec(name, description, policy, summary, precheck, sensitive))
        return target

    return mark(fn) if fn is not None else mark


def toolkit(cls: type) -> type:
    """Class decorator: every public method of an instance becomes a tool (docs/tools.md)."""
    setattr(cls, _KIT_ATTR, True)
    return cls


class Toolkit:
    """An ordered set of tools by name."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.add(item)

    def add(self, item: Tool | Callable[..., Any]) -> Tool:
        if not isinstance(item, Tool):
            spec = getattr(item, _SPEC_ATTR, None) or _Spec(None, None, "allow", None)
            item = Tool.from_function(
                item,
                name=spec.name,
                description=spec.description,
                policy=spec.policy,
                summary=spec.summary,
                precheck=spec.precheck,
                sensitive=spec.sensitive,
            )
        if item.name in self._tools:
            raise ValueError(f"two tools are named {item.name!r}")
        self._tools[item.name] = item
        return item

    @classmethod
    def from_object(cls, obj: object) -> Toolkit:
        """Methods of an object: all public ones for a `@toolkit` class, else `@tool` ones."""
        marked_class = bool(getattr(type(obj), _KIT_ATTR, False))
        kit = cls()
        # Definition order (base classes first): the model sees the tools as they were written.
        order = dict.fromkeys(a for klass in reversed(type(obj).__mro__) for a in vars(klass))
        for attr in order:
            if attr.startswith("_"):
                continue
            raw = inspect.getattr_static(obj, attr)
            if isinstance(raw, staticmethod | classmethod):
                raw = raw.__func__
            if not callable(raw) or isinstance(raw, type):
                continue
            if marked_class or hasattr(raw, _SPEC_ATTR):
                kit.add(_bound_with_spec(getattr(obj, attr), raw))
        return kit

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition() for t in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def as_toolkit(value: object) -> Toolkit:
    """A Toolkit from what a caller passes as `tools=`: a Toolkit, an instance (or class) of a
    `@toolkit` class or of any class with `@tool` methods, one function, or a list of them."""
    if isinstance(value, Toolkit):
        return value
    if isinstance(value, type):
        return Toolkit.from_object(value())
    if isinstance(value, Tool) or inspect.isfunction(value) or inspect.ismethod(value):
        return Toolkit([value])
    if getattr(type(value), _KIT_ATTR, False):
        return Toolkit.from_object(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        kit = Toolkit()
        for item in value:
            if isinstance(item, Tool) or callable(item):
                kit.add(item)
            else:
                raise TypeError(f"tools= holds {item!r}, which is not a function")
        return kit
    kit = Toolkit.from_object(value)
    if not len(kit):
        raise TypeError(f"tools={value!r} holds no tool (mark methods with @tool)")
    return kit


def is_tool_definitions(value: object) -> bool:
    """True for a list of raw JSON tool definitions (dicts), the pre-toolkit form of `tools=`."""
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def format_result(value: Any, max_chars: int) -> str:
    """A tool's return value as text for the model, capped at `max_chars`."""
    if value is None:
        text = "done"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, BaseModel):
        text = value.model_dump_json()
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… (cut: the result had {len(text)} characters)"
    return text


def _bound_with_spec(bound: Callable[..., Any], raw: Callable[..., Any]) -> Any:
    spec = getattr(raw, _SPEC_ATTR, None)
    if spec is None:
        return bound
    owner = getattr(bound, "__self__", None)

    def with_self(hook: Callable[..., Any] | None) -> Any:
        if hook is None or owner is None:
            return hook
        return lambda arguments: hook(owner, arguments)

    return Tool.from_function(
        bound,
        name=spec.name,
        description=spec.description,
        policy=spec.policy,
        summary=with_self(spec.summary),
        precheck=with_self(spec.precheck),
        sensitive=with_self(spec.sensitive),
    )


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return _clip(text, 80)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# The longest confirmation line a tool call describes itself with.
DESCRIBE_CHARS = 300
# Line breaks (also U+2028/2029, U+0085), tabs and other control characters, and the format
# characters that reorder or hide text (bidi overrides, zero-width joiners).
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+")


def one_line(text: str, limit: int) -> str:
    """`text` (untrusted, e.g. the model's) as one line of at most `limit` characters: control
    and layout characters become one space, runs of spaces one space, and the rest is cut."""
    flat = " ".join(_NOT_ONE_LINE.sub(" ", text).split())
    return _clip(flat, limit)
