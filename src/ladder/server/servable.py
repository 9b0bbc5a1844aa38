"""What ``ladder serve`` can hand to uvicorn: an ASGI app, as uvicorn tells them apart, or a
factory of one. Said before the server starts, in one line, rather than as a lifespan
traceback."""

from __future__ import annotations

import functools
import inspect
import reprlib
from typing import Any

_AWAITED = "an ASGI app is awaited as app(scope, receive, send)"


def not_asgi(app: Any) -> str | None:
    """What keeps a callable ``app`` from being an ASGI app, as uvicorn tells them apart
    (None: it can be one). uvicorn first calls it with no arguments, and serves what that
    returns if it does not raise (an app factory: not known here without calling it too);
    then it takes a function that is async, or an object whose ``__call__`` is, for ASGI 3,
    and anything else for ASGI 2, calling it with the scope alone. So ``json:loads`` reached
    uvicorn and failed at startup with a lifespan traceback."""
    if _takes(app, 0):
        return None  # (a factory, maybe)
    if inspect.isclass(app):  # ASGI 2 (made with the scope), or instances that are awaited
        awaited = hasattr(app, "__await__")
        made = "(scope, receive, send)" if awaited else "(scope) alone"
        return None if _takes(app, 3 if awaited else 1) else f"a class that is not made with {made}"
    function = inspect.isfunction(app)
    call = app if function else getattr(app, "__call__", None)  # noqa: B004 - as uvicorn reads it
    if function or inspect.isbuiltin(app):
        what, whose = "a function that is not async", "an async function that does not take"
    elif inspect.ismethod(app) or isinstance(app, functools.partial):  # (uvicorn reads their __call__)
        kind = "bound method" if inspect.ismethod(app) else "partial"
        if _is_async(app):
            return f"a {kind} of an async function, which uvicorn calls with the scope alone (ASGI 2)"
        return f"a {kind} of a function that is not async ({_AWAITED})"
    else:
        what = f"an object ({type(app).__name__}) whose __call__ is not async"
        whose = f"an object ({type(app).__name__}) whose async __call__ does not take"
    if not _is_async(call):
        return f"{what} ({_AWAITED})"
    return None if _takes(call, 3) else f"{whose} (scope, receive, send)"


def checked_factory(factory: Any, spec: str) -> Any:
    """``factory`` if it is not one (a function taking no arguments, which uvicorn calls and
    serves what it returns); else a factory that checks what it returns as :func:`not_asgi`
    checks an app, and stops the server in one line if it is none (a factory returning 42
    passed, and failed in uvicorn's lifespan with a traceback)."""
    if not (inspect.isfunction(factory) or inspect.ismethod(factory)) or not _takes(factory, 0):
        return factory
    if _is_async(factory):
        return factory  # (uvicorn would serve its coroutine: not_asgi's words cover it)

    def make() -> Any:
        app = factory()
        wrong = not_asgi(app) if callable(app) else reprlib.repr(app)
        if wrong is not None:
            raise SystemExit(
                f"ladder serve: {spec}() returned {wrong}, not an ASGI app or a Ladder hub: "
                "return the app (or the hub) it makes"
            )
        return app

    return make


def _is_async(call: Any) -> bool:
    """A coroutine function, or one marked as one (asgiref's ``markcoroutinefunction``)."""
    return inspect.iscoroutinefunction(call) or getattr(call, "_is_coroutine", None) is not None


def _takes(call: Any, count: int) -> bool:
    """Whether ``call`` can be called with ``count`` positional arguments (True when its
    signature cannot be read: uvicorn will say)."""
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def hub_mounts(app: Any, hub: Any, prefix: str = "") -> list[str]:
    """The paths at which ``app`` mounts ``hub``, as far as its routes tell (Starlette's and
    FastAPI's ``Mount``, nested ones too); empty when it has none to read (Django, a plain
    ASGI callable) or wraps the hub in something else."""
    found: list[str] = []
    for route in getattr(app, "routes", None) or ():
        path, mounted = getattr(route, "path", None), getattr(route, "app", None)
        if not isinstance(path, str) or mounted is None or mounted is app:
            continue
        if mounted is hub:
            found.append(prefix + path.rstrip("/"))
        elif getattr(mounted, "routes", None):
            found.extend(hub_mounts(mounted, hub, prefix + path.rstrip("/")))
    return found
