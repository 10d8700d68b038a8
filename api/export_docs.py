"""Write the generated parts of the docs from the method registry: ``python -m api.export_docs``.

The README's table of methods sits between ``<!-- methods:start -->`` and
``<!-- methods:end -->`` and is made here from what each method declares
(category, where it runs, the model capabilities it requires, its summary),
so a new method appears in it with no edit by hand. ``--check`` only compares
and exits 1 when the committed README is stale.
"""

import argparse
import sys
from pathlib import Path

from engine.registry import Method, all_methods

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- methods:start -->", "<!-- methods:end -->"
CATEGORIES = ("inspect", "attribute", "synthesize", "fool")


def methods_table(methods: list[Method]) -> str:
    """The Markdown table of ``methods``, by category, then name."""
    rows = ["| category | method | runs | needs of the model | what it does |", "|---|---|---|---|---|"]
    for method in sorted(methods, key=lambda m: (CATEGORIES.index(m.category), m.name)):
        runs = "inline or job" if method.inline else "job"
        needs = ", ".join(method.requires) or "-"
        rows.append(f"| {method.category} | `{method.name}` | {runs} | {needs} | {method.summary} |")
    return "\n".join(rows)


def with_table(text: str, table: str) -> str:
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed README's table is stale")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = with_table(current, methods_table([m for m in all_methods() if m.run.__module__.startswith("engine.")]))
    if args.check:
        if wanted != current:
            print(f"{README} is stale: regenerate it with `python -m api.export_docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
