"""``python -m service [--host H] [--port P] [--data-dir D]``: the same as ``sanad serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rag.settings import Settings
from service.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description="Run the Sanad HTTP service.")
    parser.add_argument("--host", default=None, help="default: SANAD_SERVICE__HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: SANAD_SERVICE__PORT or 8000")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: SANAD_DATA_DIR or ./data")
    args = parser.parse_args(argv)
    settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
    serve(settings, args.host or settings.service.host, args.port if args.port is not None else settings.service.port)


if __name__ == "__main__":
    main()
