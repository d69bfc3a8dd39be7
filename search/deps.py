"""The search extra's libraries, imported lazily: the core install stays without them."""

from __future__ import annotations

from types import ModuleType

from audioret.errors import UserError

INSTALL_HINT = "pip install 'audioret[search]'"


class MissingExtra(UserError):
    """faiss / fastapi / uvicorn are not installed (one line with the install command)."""


def _need(module: str, package: str, what: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(f"{what} needs {package}, which is not installed here ({err}); "
                           f"install the search extra: {INSTALL_HINT}") from err


def faiss(what: str = "audioret index/search") -> ModuleType:
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
    return _need("faiss", "faiss-cpu", what)


def fastapi(what: str = "audioret serve") -> ModuleType:
    return _need("fastapi", "fastapi", what)


def uvicorn(what: str = "audioret serve") -> ModuleType:
    return _need("uvicorn", "uvicorn", what)


def available() -> str | None:
    """None when the whole search extra imports, else the one-line reason (with the hint)."""
    try:
        faiss(), fastapi(), uvicorn()
    except MissingExtra as err:
        return str(err)
    return None
