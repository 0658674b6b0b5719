"""One instance of a service on listening sockets it inherits, for `unbind up --instances N`:
`python -m tools.serve --fd SHARED --fd PROBE [--log-level LEVEL] services.<name>.main:create_app`.

The instances of a service share the supervisor's socket on the service's port, and the kernel hands
each connection to whichever instance accepts it first; each also serves a socket of its own, where
the supervisor asks this very instance whether it is ready. uvicorn's `--fd` cannot serve here: it
reads the descriptor as a Unix socket, and takes one."""

from __future__ import annotations

import argparse
import socket

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.serve")
    parser.add_argument(
        "--fd", type=int, action="append", required=True, help="an inherited listening socket (repeatable)"
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("factory", help="the app factory, module:function")
    args = parser.parse_args()
    config = uvicorn.Config(
        args.factory,
        factory=True,
        log_level=args.log_level,
        # As `unbind up` runs a single instance: open dashboard streams do not hold a stop.
        timeout_graceful_shutdown=3,
    )
    # The family and type are read from each descriptor itself.
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd) for fd in args.fd])


if __name__ == "__main__":
    main()
