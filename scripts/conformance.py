"""Conformance of mesh_config's validation on Istio's own data: a report, not a gate.

    ./scripts/uv.sh run --locked python scripts/conformance.py [--corpus ../shared/corpus]

Three sets, from the corpus described in its README.md:

- samples: every Istio object in Istio's published samples must be accepted (``istio/samples.json`` names
  the files; the Helm templates of ``samples/ambient-argo/tag-chart/templates`` are skipped). Gateway API
  kinds are out of scope and counted as skipped, as are other non-Istio kinds (IstioOperator, ...).
- dataset: every object of ``pkg/test/datasets/validation/dataset`` must be accepted.
- crds: every document of ``pkg/config/validation/testdata/crds`` with an ``_err`` key must be rejected with a
  diagnostic whose text contains that string; the others must be accepted (``istio/validation_crds.json``
  lists them). The ``_err`` line is commented out before validation, so that lines keep their numbers.

It prints the agreement per set and per kind, then every disagreement, and exits 0 (2 when the corpus is
missing).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mesh_config import DocumentResult, LoadResult, load_text

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
GATEWAY_API = "gateway.networking.k8s.io"
TEMPLATES = "samples/ambient-argo/tag-chart/templates/"
DATASET = "pkg/test/datasets/validation/dataset"
ERR_LINE = re.compile(r"(?m)^_err:")


@dataclass(frozen=True)
class Outcome:
    """One document's expected and actual outcome."""

    set: str
    file: str
    index: int
    kind: str
    name: str
    expected: str
    got: str
    agree: bool


def _load(istio: pathlib.Path, relative: str, *, strip_err: bool = False) -> LoadResult:
    text = (istio / relative).read_text(encoding="utf-8")
    if strip_err:
        text = ERR_LINE.sub("#_err:", text)
    return load_text(text, source=relative, default_namespace="default")


def _got(document: DocumentResult) -> str:
    errors = [diagnostic.format() for diagnostic in document.diagnostics if diagnostic.is_error]
    return "accepted" if document.resource is not None else "rejected: " + " | ".join(errors)


def _stray(result: LoadResult) -> list[str]:
    """Errors of a file that belong to no document (a YAML syntax error)."""
    attached = {id(diagnostic) for document in result.documents for diagnostic in document.diagnostics}
    return [diagnostic.format() for diagnostic in result.errors if id(diagnostic) not in attached]


def check_valid(
    name: str, istio: pathlib.Path, files: Iterable[str], skipped: collections.Counter[str]
) -> Iterator[Outcome]:
    """Every Istio document of the files must be accepted; Gateway API and other kinds are counted."""
    for relative in files:
        result = _load(istio, relative)
        for document in result.documents:
            group = document.api_version.rpartition("/")[0]
            if group == GATEWAY_API:
                skipped[f"Gateway API {document.kind}"] += 1
            elif document.skipped:
                skipped[f"not Istio config: {document.api_version}/{document.kind}"] += 1
            else:
                got = _got(document)
                agree = document.resource is not None
                yield Outcome(name, relative, document.index, document.kind, document.name, "accepted", got, agree)
        for error in _stray(result):
            yield Outcome(name, relative, -1, "", "", "readable", error, False)


def samples(istio: pathlib.Path, skipped: collections.Counter[str]) -> Iterator[Outcome]:
    """The samples set."""
    listed = json.loads((istio / "samples.json").read_text(encoding="utf-8"))["files_with_istio_or_gateway_api_kinds"]
    files = sorted(path for path in listed if not path.startswith(TEMPLATES))
    templates = sum(1 for path in listed if path.startswith(TEMPLATES))
    if templates:
        skipped["Helm template files"] += templates
    yield from check_valid("samples", istio, files, skipped)


def dataset(istio: pathlib.Path, skipped: collections.Counter[str]) -> Iterator[Outcome]:
    """The dataset set."""
    files = sorted(str(path.relative_to(istio)) for path in (istio / DATASET).glob("*.yaml"))
    yield from check_valid("dataset", istio, files, skipped)


def crds(istio: pathlib.Path) -> Iterator[Outcome]:
    """The crds set: rejections must carry Istio's error text."""
    expectations = json.loads((istio / "validation_crds.json").read_text(encoding="utf-8"))
    by_file: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for entry in expectations:
        by_file[str(entry["file"])].append(entry)
    for relative, entries in sorted(by_file.items()):
        result = _load(istio, relative, strip_err=True)
        documents = {document.index: document for document in result.documents}
        for entry in entries:
            index, kind, name = int(str(entry["doc_index"])), str(entry["kind"]), str(entry["name"])
            wanted = str(entry.get("error_substring") or "")
            expected = f"rejected with {wanted!r}" if entry["expect"] == "invalid" else "accepted"
            document = documents.get(index)
            if document is None or (document.kind, document.name) != (kind, name):
                found = "nothing" if document is None else f"{document.kind} {document.name}"
                yield Outcome("crds", relative, index, kind, name, expected, f"document misaligned: {found}", False)
                continue
            got = _got(document)
            if entry["expect"] == "invalid":
                texts = [d.format() for d in document.diagnostics if d.is_error]
                agree = document.resource is None and any(wanted in text for text in texts)
                if document.resource is None and not agree:
                    got = "rejected, other message: " + " | ".join(texts)
            else:
                agree = document.resource is not None
            yield Outcome("crds", relative, index, kind, name, expected, got, agree)
        for error in _stray(result):
            yield Outcome("crds", relative, -1, "", "", "readable", error, False)


def _table(title: str, rows: dict[str, list[Outcome]]) -> None:
    print(title)
    for label, outcomes in sorted(rows.items()):
        agree = sum(outcome.agree for outcome in outcomes)
        share = 100 * agree / len(outcomes) if outcomes else 100.0
        print(f"  {label:<34} {agree:>4} / {len(outcomes):<4} {share:6.1f}%")


def report(outcomes: list[Outcome], skipped: collections.Counter[str]) -> None:
    """Print the agreement per set and per kind, the skipped documents, and every disagreement."""
    by_set: dict[str, list[Outcome]] = collections.defaultdict(list)
    by_kind: dict[str, list[Outcome]] = collections.defaultdict(list)
    for outcome in outcomes:
        by_set[outcome.set].append(outcome)
        by_kind[f"{outcome.set}: {outcome.kind or '(file)'}"].append(outcome)
    _table("agreement per set", {**by_set, "all": outcomes})
    _table("agreement per set and kind", by_kind)
    print("skipped (out of scope)")
    for label, count in sorted(skipped.items()):
        print(f"  {label:<60} {count:>4}")
    disagreements = [outcome for outcome in outcomes if not outcome.agree]
    print(f"disagreements ({len(disagreements)})")
    for outcome in disagreements:
        where = f"{outcome.file}#{outcome.index}" if outcome.index >= 0 else outcome.file
        print(f"  [{outcome.set}] {where} {outcome.kind} {outcome.name}".rstrip())
        print(f"      expected {outcome.expected}")
        print(f"      got      {outcome.got}")


def main(argv: list[str] | None = None) -> int:
    """Run the three sets and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=pathlib.Path, default=DEFAULT_CORPUS, help="the corpus directory")
    args = parser.parse_args(argv)
    istio = args.corpus / "istio"
    needed = [istio / "samples.json", istio / "validation_crds.json", istio / DATASET]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        print(f"conformance: the corpus is missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    skipped: collections.Counter[str] = collections.Counter()
    outcomes = [*samples(istio, skipped), *dataset(istio, skipped), *crds(istio)]
    report(outcomes, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
