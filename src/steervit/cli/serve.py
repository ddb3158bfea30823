"""`steervit serve`: start the local web app (docs/serve.md)."""
from __future__ import annotations

import argparse

from .options import add_model_options, model_from_args, positive_int


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text}")
    return value


def register(commands) -> None:
    p = commands.add_parser("serve", help="a local web page: heatmaps and gallery search for your image and prompts")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; the app has no login)")
    p.add_argument("--port", type=_port, default=7860, help="port (default: 7860)")
    p.add_argument("--max-batch", type=positive_int, default=1, metavar="N",
                   help="run up to N concurrent steer/search requests as one model batch (default: 1, off; "
                        "see docs/serve.md)")
    add_model_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError as err:
        raise OSError(f"steervit serve needs FastAPI and uvicorn ({err}); "
                      "install them with: pip install fastapi uvicorn python-multipart") from err
    from ..serve.batching import BatchSettings

    model = model_from_args(args)
    app = create_app(model, batching=BatchSettings(max_batch=args.max_batch) if args.max_batch > 1 else None)
    print(f"steervit: serving {args.model} on http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
