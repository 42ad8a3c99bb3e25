"""Child-process entry point for python steps: ``python -m services.worker.pycall module:function``.

Reads the params (a JSON object) from stdin, calls the function with the ones its signature
accepts as keyword arguments (all of them if it takes ``**kwargs``), and writes one JSON object to the file named by ``BATON_RESULT``: either
``{"outputs": {...}}`` or ``{"error": "..."}``. Tracebacks go to stderr, which the worker
keeps as the attempt's output tail. Exit status: 0 on success, 1 on a reported error.
The protocol is private to ``services.worker.runtimes.python.PythonRuntime``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any


class _StepError(Exception):
    """A failure of the step, with the message to report."""


def _load(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _StepError(f"function must be 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        traceback.print_exc()
        raise _StepError(
            f"cannot import module {module_name!r}: {type(err).__name__}: {err}"
        ) from err
    function = getattr(module, attr, None)
    if function is None:
        raise _StepError(f"module {module_name!r} has no function {attr!r}")
    if not callable(function):
        raise _StepError(f"{spec} is not callable: {type(function).__name__}")
    return function  # type: ignore[no-any-return]


def _read_params() -> dict[str, Any]:
    try:
        params = json.loads(sys.stdin.read() or "{}")
    except ValueError as err:
        raise _StepError(f"params are not JSON: {err}") from err
    if not isinstance(params, dict):
        raise _StepError(f"params must be a JSON object, got {type(params).__name__}")
    return params


def _accepted(function: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    """The params the function can take. Workflow params reach every step, so a function
    that declares `(a, b)` must not fail on a workflow's other params; one that takes
    `**kwargs` gets them all. A missing required param still fails, naming it."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return params
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return params
    names = {
        name
        for name, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {k: v for k, v in params.items() if k in names}


def _call(function: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    try:
        value = function(**_accepted(function, params))
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except Exception as err:
        traceback.print_exc()
        raise _StepError(f"{type(err).__name__}: {err}") from err
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _StepError(
            f"function must return a dict (a JSON object) or None, got {type(value).__name__}"
        )
    return value


async def _await(value: Any) -> Any:
    return await value


def _encode_outputs(outputs: dict[str, Any]) -> str:
    try:
        return json.dumps({"outputs": outputs}, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise _StepError(f"return value is not a JSON object: {err}") from err


def main(argv: list[str]) -> int:
    result_path = os.environ.get("BATON_RESULT")
    if not result_path or len(argv) != 1:
        print("usage: BATON_RESULT=path python -m services.worker.pycall module:function")
        return 2
    try:
        params = _read_params()
        function = _load(argv[0])
        reply = _encode_outputs(_call(function, params))
        code = 0
    except _StepError as err:
        reply = json.dumps({"error": str(err)})
        code = 1
    with open(result_path, "w", encoding="utf-8") as f:
        f.write(reply)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
