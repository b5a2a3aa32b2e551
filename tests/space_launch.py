"""Shared by the Space tests: import ``space/app.py`` (not a package) and launch it on 127.0.0.1 in-process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
from pathlib import Path

APP_PATH = Path(__file__).resolve().parents[1] / "space" / "app.py"


def load_space_app():
    """Import space/app.py as a module (once per process)."""
    name = "resadapt_space_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launched_space(env: dict[str, str], examples_dir: Path):
    """Launch the app with ``env`` set (restored afterwards); yields ``(app module, demo, url)``, closes the app."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    demo = None
    try:
        app = load_space_app()
        config = app.AppConfig.from_env()
        demo = app.build_demo(config, examples_dir=examples_dir)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **app.launch_kwargs(demo, config))
        yield app, demo, f"http://127.0.0.1:{port}/"
    finally:
        if demo is not None:
            demo.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
