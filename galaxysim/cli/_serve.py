"""``galaxysim serve``: the browser explorer of a catalogue or a search index.

The catalogue is loaded (``--catalog``, with ``search``'s data options) or the index
opened (``--index``), each ``--method`` fitted once, as ``search`` fits it (the deep
methods' catalogue embeddings computed once, or read from ``--model-dir``'s cache or
the index), and the query matcher fitted on the catalogue; then
:func:`galaxysim.serve.create_app` serves them with uvicorn at ``--host``/``--port``
(127.0.0.1:8000 by default) until Ctrl-C.
"""

import socket
import sys
import time

from galaxysim.cli._checks import UserError

__all__ = ["add_serve_parser", "cmd_serve"]


def add_serve_parser(sub):
    """The ``serve`` subcommand."""
    from galaxysim.cli._index import add_search_index_option
    from galaxysim.cli._main import _add_data_options, _add_model_options, _add_radec_tol
    from galaxysim.cli._query import add_match_options
    from galaxysim.pipeline import METHODS

    p = sub.add_parser(
        "serve",
        help="explore a catalogue in the browser: click a galaxy, see its neighbours",
        description="Serve an explorer of the catalogue (or of a search index) in the "
        "browser: a paged grid of its galaxies, each galaxy's neighbours by every method "
        "side by side, the Milky Way and uploaded images as queries, CSV downloads, and "
        "a JSON API (/api/search, docs at /docs). Every method is fitted once at start-up.",
    )
    _add_data_options(p)
    add_search_index_option(p)
    p.add_argument(
        "--method",
        default="mse,maxabs",
        help=f"comma list of {', '.join(METHODS)} (default: %(default)s; with --index, "
        "the index's methods)",
    )
    _add_radec_tol(p)
    add_match_options(p)
    _add_model_options(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this computer only; 0.0.0.0 "
        "serves anyone who can reach it)",
    )
    p.add_argument(
        "--port", type=int, default=8000, help="port (default: %(default)s; 0: any free one)"
    )
    p.add_argument(
        "--max-upload",
        type=float,
        default=16.0,
        metavar="MB",
        help="largest uploaded image, in megabytes (default: %(default)g)",
    )
    p.set_defaults(query=None, out=None, reframe=None, k=None, per_class=False, within=None)


def _listen(host, port):
    """A bound, listening socket (so a busy port is one clear error, and port 0 is
    known before the address is printed)."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be from 0 to 65535; got {port}.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: {exc.strerror}.") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is another server running "
            "there? Choose another --port."
        ) from None
    sock.listen(128)
    return sock


def build_explorer(args):
    """``(app, catalogue)``: the explorer's app of the command's catalogue or index."""
    from galaxysim.cli._main import _model_folder, _need_labels_for_cnn, fit_search, load_catalogue
    from galaxysim.cli._query import load_queries, query_imager
    from galaxysim.utils._optional import import_optional

    for name in ("fastapi", "uvicorn", "python_multipart"):  # before any long work
        import_optional(name, "galaxysim serve")
    from galaxysim.serve import create_app

    if args.max_upload <= 0 or args.max_upload != args.max_upload:
        raise UserError(f"--max-upload must be a positive number of MB; got {args.max_upload:g}.")
    if args.index:
        from galaxysim.cli._index import index_catalogue

        cat = index_catalogue(args)
    else:
        cat = load_catalogue(args)
        _need_labels_for_cnn(args.methods, cat, _model_folder(args))
    searchers = {}
    for n, method in enumerate(args.methods, 1):
        t0 = time.perf_counter()
        if args.index:
            searchers[method] = cat.searcher(method)
        else:
            searchers[method] = fit_search(method, args, cat.images, cat.target)
        if not args.quiet:
            print(
                f"serve: {method} ready ({n}/{len(args.methods)}, "
                f"{time.perf_counter() - t0:.1f} s)",
                file=sys.stderr,
            )
    query_imager(args, cat)  # fitted now, never per request

    def load_query(spec):
        return load_queries(args, cat, [spec], "query")[0]

    app = create_app(
        cat,
        searchers,
        load_query,
        radec_tol=args.radec_tol,
        max_upload_bytes=int(args.max_upload * 2**20),
    )
    return app, cat


def cmd_serve(args):
    import uvicorn

    sock = _listen(args.host, args.port)
    try:
        app, cat = build_explorer(args)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        args.stdout.print(f"galaxysim serve: {cat.description}")
        args.stdout.print(f"galaxysim serve: open http://{shown}:{port}/ (Ctrl-C stops)")
        args.stdout.flush()
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
