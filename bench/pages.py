"""Every page of a few ``/entities/by-query`` queries against a running catalog, timed.

Deep pages and ordered pages are what offsets made slow (each page re-read and re-sorted the
pages before it); the shared workload of ``catalog.py`` times only first pages. This walks
each query from its first page to its last with ``nextCursor`` and prints, per query, the first
page (which also counts the total), the median and the slowest of the following pages, and the
last page. Point it at any catalog API (Greenroom or Backstage) that holds a catalog, e.g. one
left by ``catalog.py run`` or ``greenroom catalog ingest``::

    .venv/bin/python bench/pages.py --base-url http://127.0.0.1:7007
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.parse
import urllib.request

QUERIES = [
    "filter=kind=component",
    "filter=kind=component&orderField=metadata.name,asc",
    "filter=kind=component&orderField=metadata.name,desc",
    "filter=kind=component&orderField=spec.lifecycle,desc",
    "filter=kind=component,spec.lifecycle=production&orderField=metadata.name,asc",
    "filter=kind=group&orderField=metadata.title,asc",
    "orderField=metadata.title,asc",
    "",
]


def _get(base: str, query: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"{base}/api/catalog/entities/by-query?{query}") as response:
        body = json.load(response)
    return (time.perf_counter() - started) * 1000, body


def walk(base: str, query: str, limit: int, max_pages: int) -> dict[str, float | int]:
    """Every page of ``query``: the times of the first, the others and the last, in ms."""
    common = f"limit={limit}&fields=metadata.name"
    first, body = _get(base, f"{common}&{query}")
    times: list[float] = []
    items = len(body["items"])  # type: ignore[arg-type]
    while len(times) + 1 < max_pages:
        cursor = body["pageInfo"].get("nextCursor")  # type: ignore[attr-defined]
        if not cursor:
            break
        took, body = _get(base, f"{common}&cursor={urllib.parse.quote(cursor)}")
        times.append(took)
        items += len(body["items"])  # type: ignore[arg-type]
    return {
        "pages": len(times) + 1,
        "items": items,
        "total": int(body["totalItems"]),  # type: ignore[call-overload]
        "first": first,
        "p50": statistics.median(times) if times else 0.0,
        "max": max(times) if times else 0.0,
        "last": times[-1] if times else first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:7007")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--max-pages", type=int, default=5000)
    args = parser.parse_args()
    print("| query | pages | items / total | first ms | p50 ms | max ms | last ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for query in QUERIES:
        r = walk(args.base_url.rstrip("/"), query, args.limit, args.max_pages)
        print(
            f"| `{query or '(all)'}` | {r['pages']} | {r['items']} / {r['total']} "
            f"| {r['first']:.1f} | {r['p50']:.1f} | {r['max']:.1f} | {r['last']:.1f} |"
        )


if __name__ == "__main__":
    main()
