"""Passing experiment-level settings to component factories that declare them."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping


def accepted(factory: Callable[..., Any], offered: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``offered`` keyword arguments that ``factory`` declares.

    Experiment-wide settings such as ``clips.size`` or ``dataset.view`` are offered to every component;
    a component that has no such parameter simply does not take it.
    """
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(offered)
    return {key: value for key, value in offered.items() if key in parameters}


def check_parameters(factory: Callable[..., Any], params: Mapping[str, Any], where: str) -> None:
    """Raise a ConfigError naming ``where`` when ``factory`` cannot take ``params``."""
    from .errors import ConfigError

    try:
        inspect.signature(factory).bind(**params)
    except TypeError as error:
        known = [name for name in inspect.signature(factory).parameters if name != "self"]
        raise ConfigError(f"{where}: {error}. Accepted parameters: {', '.join(known)}.") from None
