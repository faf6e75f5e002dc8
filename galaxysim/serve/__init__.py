"""The browser explorer of ``galaxysim serve``: an ASGI app over a catalogue or index.

:func:`create_app` composes what the library and the CLI already do (the fitted
search of each method, the catalogue's identifiers, the queries matched to the
catalogue's survey) into pages and a JSON API; it computes nothing per request but
the query's distances.
"""

from galaxysim.serve._app import MAX_UPLOAD_BYTES, create_app

__all__ = ["MAX_UPLOAD_BYTES", "create_app"]
