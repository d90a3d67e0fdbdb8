"""OQMD structures near the convex hull, through OQMD's OPTIMADE API.

One query, ``filter=_oqmd_stability<=<max_hull_distance_ev>`` (``_oqmd_stability``
is OQMD's distance to the convex hull in eV/atom, clipped at 0 for stable phases),
is paged through by following ``links.next`` until it is null or
``max_structures`` structures are kept. Each entry becomes a pymatgen Structure
(``lattice_vectors`` + ``cartesian_site_positions`` + ``species_at_sites``) and
one CIF and manifest row, with id ``oqmd-<data[].id>`` and the page URL as
provenance.

Species: ``species_at_sites`` names are looked up in ``species``; OQMD may send
``species`` empty, and a name missing from it is read as an element symbol.
A species with several elements, or with ``"vacancy"``, becomes a disordered site
whose occupancies are the concentrations (a vacancy lowers the total), so that
the labels stage decides about it. Only entries that cannot be built at all
(unknown symbols such as ``X``, attached atoms, missing or inconsistent
geometry) are skipped, with a warning naming the id.

Requests: timeouts, connection errors, HTTP 5xx and 429, and bodies that are
truncated (shorter than ``Content-Length``), not JSON, or lack a ``data`` list
are retried up to ``max_retries`` times, sleeping ``backoff_s * 2**attempt``
(or the server's ``Retry-After``, whichever is longer). Any other 4xx fails at
once. Either way the :class:`SourceError` names the URL and the cause.

Resume: with a ``cache_dir``, each completed page is written atomically to
``cache_dir/pages/page-NNNNN.json`` as ``{"url": ..., "body": ...}``. A rerun
reads the saved pages instead of fetching them and continues from the last one's
``links.next``. Pages saved for a different query (first URL differs) are
discarded. Without a ``cache_dir`` nothing is saved. The progress bar counts
pages; its total comes from ``meta.data_returned`` (entries matching the query). Pages are fetched one after
another (each URL comes from the previous page), so ``threads`` is unused.

Options (``sources.oqmd`` in config):

- ``endpoint``: the OPTIMADE structures endpoint
  (``https://oqmd.org/optimade/v1/structures``);
- ``max_hull_distance_ev``: keep entries with ``_oqmd_stability`` at most this,
  in eV/atom (0.1);
- ``page_size``: entries per page, sent as ``page_limit`` (100);
- ``max_structures``: stop once this many structures are kept (``null``: all);
- ``timeout_s``: connect and read timeout of one request, in seconds (60);
- ``max_retries``: retries of one page after its first attempt (5);
- ``backoff_s``: sleep before the first retry, doubled on each further one (2);
- ``extra_filter``: an OPTIMADE filter ANDed with the stability filter, e.g.
  ``nelements<=3`` (``null``: none).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urljoin

import requests
from pymatgen.core import Element, Lattice, Structure
from tqdm import tqdm

from xrdbench.atomic import write_bytes_atomic
from xrdbench.errors import ConfigError, SourceError
from xrdbench.sources.manifest import row_from_structure

SOURCE = "oqmd"
DEFAULTS = {
    "endpoint": "https://oqmd.org/optimade/v1/structures",
    "max_hull_distance_ev": 0.1,
    "page_size": 100,
    "max_structures": None,
    "timeout_s": 60.0,
    "max_retries": 5,
    "backoff_s": 2.0,
    "extra_filter": None,
}
RESPONSE_FIELDS = ("lattice_vectors", "cartesian_site_positions", "species_at_sites", "species",
                   "chemical_formula_reduced", "nsites", "_oqmd_stability", "_oqmd_entry_id")
PAGE_GLOB = "page-*.json"

log = logging.getLogger(__name__)
sleep = time.sleep  # tests may replace it


class _Retryable(Exception):
    """A failure worth another attempt; the message is the cause."""


def resolve_options(options: dict) -> dict:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"sources.oqmd: unknown options {unknown}; expected some of {sorted(DEFAULTS)}")
    resolved = {**DEFAULTS, **{key: value for key, value in options.items() if value is not None}}
    if int(resolved["page_size"]) < 1:
        raise ConfigError(f"sources.oqmd.page_size: must be at least 1, got {resolved['page_size']}")
    if int(resolved["max_retries"]) < 0:
        raise ConfigError(f"sources.oqmd.max_retries: must be at least 0, got {resolved['max_retries']}")
    return resolved


def first_url(opts: dict) -> str:
    """The URL of the first page: the stability filter, page size and response fields."""
    query = f"_oqmd_stability<={float(opts['max_hull_distance_ev'])!r}"
    if opts["extra_filter"]:
        query += f" AND ({opts['extra_filter']})"
    params = {"filter": query, "page_limit": int(opts["page_size"]), "response_fields": ",".join(RESPONSE_FIELDS)}
    return f"{opts['endpoint']}?{urlencode(params)}"


def next_url(page: dict, url: str) -> str | None:
    """``links.next`` as an absolute URL: a string or a link object ``{"href": ...}``, or None."""
    link = (page.get("links") or {}).get("next")
    if isinstance(link, dict):
        link = link.get("href")
    return urljoin(url, link) if link else None


def _follow(page: dict, url: str) -> str | None:
    """The next page's URL; an empty page ends the query whatever its links say."""
    return next_url(page, url) if page["data"] else None


def get_page(session: requests.Session, url: str, opts: dict) -> dict:
    """GET one page, retrying transient failures with exponential backoff."""
    attempts = int(opts["max_retries"]) + 1
    for attempt in range(attempts):
        try:
            return _get_once(session, url, float(opts["timeout_s"]))
        except (_Retryable, requests.Timeout, requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as error:
            cause, wait = str(error) or type(error).__name__, getattr(error, "retry_after", 0.0)
            if attempt + 1 < attempts:
                log.info("OQMD %s: %s; retrying (%d/%d)", url, cause, attempt + 1, attempts - 1)
                sleep(max(float(opts["backoff_s"]) * 2 ** attempt, wait))
    raise SourceError(f"OQMD: giving up on {url} after {attempts} attempts: {cause}")


def _get_once(session: requests.Session, url: str, timeout_s: float) -> dict:
    response = session.get(url, timeout=timeout_s)
    status = response.status_code
    if status == 429 or status >= 500:
        error = _Retryable(f"HTTP {status} {response.reason}")
        retry_after = response.headers.get("Retry-After", "")
        error.retry_after = float(retry_after) if retry_after.isdigit() else 0.0
        raise error
    if status >= 400:
        raise SourceError(f"OQMD: {url} answered HTTP {status} {response.reason}: {response.text[:300]}")
    body = response.content
    expected = response.headers.get("Content-Length", "")
    if expected.isdigit() and response.headers.get("Content-Encoding", "identity") == "identity" \
            and len(body) < int(expected):
        raise _Retryable(f"truncated body: {len(body)} of {expected} bytes")
    try:
        page = json.loads(body)
    except ValueError as error:
        raise _Retryable(f"invalid JSON body: {error}") from None
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise _Retryable("not an OPTIMADE page: no 'data' list")
    return page


def iter_pages(opts: dict, cache_dir: Path | None) -> Iterator[tuple[str, dict]]:
    """(URL, page) for every page of the query: saved pages first, then fetched ones, each saved."""
    url, index = first_url(opts), 0
    pages_dir = cache_dir / "pages" if cache_dir else None
    if pages_dir:
        for url, page in _saved_pages(pages_dir, url):
            yield url, page
            index += 1
            url = _follow(page, url)
            if url is None:
                return
    with requests.Session() as session:
        session.headers["User-Agent"] = "xrdbench (OQMD OPTIMADE client)"
        while url:
            page = get_page(session, url, opts)
            if pages_dir:
                payload = json.dumps({"url": url, "body": page}).encode()
                write_bytes_atomic(pages_dir / f"page-{index:05d}.json", payload)
            yield url, page
            index += 1
            url = _follow(page, url)


def _saved_pages(pages_dir: Path, url: str) -> list[tuple[str, dict]]:
    """The saved pages of this query, in order, up to the first gap; stale ones are removed."""
    files = sorted(pages_dir.glob(PAGE_GLOB))
    pages = []
    for index, path in enumerate(files):
        try:
            if path.name != f"page-{index:05d}.json":
                break
            saved = json.loads(path.read_bytes())
            pages.append((saved["url"], saved["body"]))
        except (ValueError, KeyError):  # unreadable: fetch it, and what follows, again
            break
    if pages and pages[0][0] != url:
        log.warning("OQMD: saved pages in %s are for another query (%s); fetching afresh", pages_dir, pages[0][0])
        pages = []
    for path in files[len(pages):]:
        path.unlink()
    return pages


def to_structure(attributes: dict) -> Structure:
    """A pymatgen Structure from an OPTIMADE entry's attributes; disordered sites keep their occupancies."""
    lattice = attributes["lattice_vectors"]
    positions = attributes["cartesian_site_positions"]
    names = attributes["species_at_sites"]
    if len(positions) != len(names) or not names:
        raise ValueError(f"{len(positions)} positions for {len(names)} species_at_sites")
    species = {item["name"]: item for item in attributes.get("species") or []}
    occupancies = {name: _occupancy(species.get(name, {"chemical_symbols": [name], "concentration": [1.0]}))
                   for name in set(names)}
    return Structure(Lattice(lattice), [occupancies[name] for name in names], positions,
                     coords_are_cartesian=True)


def _occupancy(species: dict) -> dict[str, float]:
    if species.get("attached"):
        raise ValueError(f"species {species.get('name')!r} has attached atoms without positions")
    occupancy = {}
    for symbol, concentration in zip(species["chemical_symbols"], species["concentration"], strict=True):
        if symbol == "vacancy":
            continue
        if not Element.is_valid_symbol(symbol):
            raise ValueError(f"species {species.get('name')!r} holds {symbol!r}, not an element")
        occupancy[symbol] = occupancy.get(symbol, 0.0) + float(concentration)
    if not occupancy:
        raise ValueError(f"species {species.get('name')!r} holds no element")
    return occupancy


def fetch(options: dict, source_dir: Path, *, threads: int = 1, cache_dir: Path | None = None,
          progress: bool = True) -> list[dict]:
    opts = resolve_options(options)
    limit = opts["max_structures"]
    rows, seen = [], set()
    with tqdm(desc="oqmd", unit="page", disable=not progress) as bar:
        for url, page in iter_pages(opts, Path(cache_dir) if cache_dir else None):
            if bar.total is None and isinstance((page.get("meta") or {}).get("data_returned"), int):
                wanted = min(page["meta"]["data_returned"], limit if limit is not None else math.inf)
                bar.total = max(1, math.ceil(wanted / int(opts["page_size"])))
                bar.refresh()
            for entry in page["data"]:
                if limit is not None and len(rows) >= limit:
                    break
                structure_id = f"{SOURCE}-{entry.get('id')}"
                if structure_id in seen:
                    continue
                try:
                    structure = to_structure(entry["attributes"])
                except Exception as error:  # noqa: BLE001 - one bad entry never stops the fetch
                    log.warning("OQMD: skipping %s: cannot build a structure: %s", structure_id, error)
                    continue
                seen.add(structure_id)
                rows.append(row_from_structure(SOURCE, structure_id, source_dir, structure, provenance=url))
            bar.update()
            if limit is not None and len(rows) >= limit:
                break
    return rows
