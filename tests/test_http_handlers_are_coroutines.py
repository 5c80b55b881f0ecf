"""Every route and dependency of every service is a coroutine: FastAPI runs a plain function
in its thread pool, a thread hand-off per request (about a tenth of booking's and intake's
CPU before issue 16 found it)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from carebridge_contracts.services import SERVICES


def _api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """The app's routes, into included routers (FastAPI 0.165 keeps those as one route each)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _runs_on_the_loop(call: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 (a class instance with async __call__)
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_route_or_dependency_runs_in_the_thread_pool(service: str) -> None:
    app: FastAPI = importlib.import_module(f"carebridge_{service}.app").build()
    routes = list(_api_routes(app.routes))
    assert any(route.path.startswith("/v1/") for route in routes)
    in_threads = sorted(
        {
            f"{route.path}: {getattr(call, '__qualname__', repr(call))}"
            for route in routes
            for call in (route.endpoint, *_calls(route.dependant))
            if not _runs_on_the_loop(call)
        }
    )
    assert in_threads == []
