"""``audioret serve INDEX``: one local page to search an index and listen to the results.

FastAPI + uvicorn. Routes: ``/`` the page, ``/static/<file>`` its assets (search/static, no CDN),
``/api/search?q=...&k=10`` the JSON of ``audioret search --json`` for one query, ``/audio/<clip>``
the audio file of clip number <clip>. Only files the index lists are served, looked up by clip
number (never by a path from the request); queries are capped in length and top-k. Binds to
127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import mimetypes
from dataclasses import asdict
from pathlib import Path
from typing import Any

from audioret.config import build_parser, config_from_namespace
from audioret.errors import InputError
from audioret.search.config import MAX_QUERY_CHARS, MAX_TOP_K, ServeConfig
from audioret.search.query import QueryError, Searcher, check_query

log = logging.getLogger(__name__)
PROG = "audioret serve"
STATIC = Path(__file__).resolve().parent / "static"
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
               ".oga": "audio/ogg", ".aiff": "audio/aiff", ".aif": "audio/aiff"}


def create_app(searcher: Searcher, *, max_top_k: int = MAX_TOP_K, max_query_chars: int = MAX_QUERY_CHARS):
    """The FastAPI app over an opened index (tests call it in-process)."""
    from audioret.search.deps import fastapi

    fa = fastapi()
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    app = fa.FastAPI(title="audioret search", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    files = {i: Path(r.path) for i, r in enumerate(searcher.rows) if r.path}  # the only files served

    @app.get("/")
    def page() -> Any:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        m = searcher.manifest
        return {"index": searcher.folder.name, "count": len(searcher), "kind": m["kind"],
                "checkpoint": Path(m["checkpoint"]["path"]).name, "max_top_k": max_top_k,
                "max_query_chars": max_query_chars}

    @app.get("/api/search")
    def api_search(q: str = "", k: int = 10) -> Any:
        try:
            text = check_query(q, max_query_chars)
            if not 1 <= k <= max_top_k:
                raise QueryError(f"k={k} is out of range: ask for 1 to {max_top_k} results")
            hits = searcher.search([text], k)[0]
        except QueryError as err:
            return JSONResponse({"detail": str(err)}, status_code=400)
        results = [{**asdict(h), "path": None, "file": Path(h.path).name if h.path else h.id,
                    "audio": f"/audio/{h.clip}" if h.clip in files else None} for h in hits]
        return {"index": searcher.folder.name, "count": len(searcher),
                "queries": [{"query": text, "results": results}]}

    @app.get("/audio/{clip}")
    def audio(clip: str) -> Any:
        if not (clip.isascii() and clip.isdigit()) or int(clip) not in files:  # '²'.isdigit() is True
            return JSONResponse({"detail": "no such clip in this index"}, status_code=404)
        path = files[int(clip)]
        if not path.is_file():
            log.warning("clip %s: its file %s no longer exists", clip, path)
            return JSONResponse({"detail": f"clip {clip}: its audio file {path.name} no longer exists "
                                 "(moved or deleted since the index was built)"}, status_code=404)
        media = AUDIO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "audio/wav"
        return FileResponse(path, media_type=media)

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse(argv: list[str] | None) -> ServeConfig:
    parser = build_parser(ServeConfig, PROG)  # INDEX: the positional field ServeConfig.index
    return config_from_namespace(ServeConfig, parser.parse_args(argv))


def open_app(cfg: ServeConfig):
    from audioret.search.deps import fastapi, uvicorn

    fastapi(), uvicorn()
    if cfg.index is None:
        raise InputError("audioret serve: give the index folder: audioret serve INDEX")
    if not 1 <= cfg.max_top_k <= 10_000 or cfg.max_query_chars < 1:
        raise InputError("audioret serve: --max-top-k must be 1..10000 and --max-query-chars >= 1")
    searcher = Searcher(cfg.index, checkpoint=cfg.checkpoint, beats_ckpt=cfg.beats_ckpt, text_model=cfg.text_model,
                        device=cfg.device, max_query_chars=cfg.max_query_chars)
    return create_app(searcher, max_top_k=cfg.max_top_k, max_query_chars=cfg.max_query_chars), searcher


def run(cfg: ServeConfig) -> None:
    from audioret.search.deps import uvicorn

    app, searcher = open_app(cfg)
    if not is_loopback(cfg.host):
        log.warning("binding to %s: anyone who can reach this machine can search the index and play its %d "
                    "files; use --host 127.0.0.1 to keep it local", cfg.host, len(searcher))
    print(f"audioret serve: {len(searcher)} clips from {cfg.index} on http://{cfg.host}:{cfg.port}/ "
          "(Ctrl-C stops)", flush=True)
    uvicorn().run(app, host=cfg.host, port=cfg.port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    from audioret.errors import report_user_error, user_error_types
    from audioret.logs import setup_logging

    setup_logging()
    cfg = parse(argv)
    try:
        run(cfg)
    except user_error_types() as err:
        return report_user_error(PROG, err)
    except OSError as err:  # the port is taken, or not allowed
        return report_user_error(PROG, OSError(f"cannot listen on {cfg.host}:{cfg.port} ({err.strerror or err}); "
                                               "pick another --port"))
    return 0
