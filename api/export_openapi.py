"""Write the OpenAPI document to openapi/openapi.json: ``python -m api.export_openapi``.

``--check`` only compares and exits 1 when the committed file is stale.
"""

import argparse
import sys
from pathlib import Path

from api.app import create_app
from api.openapi import openapi_text
from api.settings import Settings

DOCUMENT = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed document is stale")
    args = parser.parse_args(argv)
    text = openapi_text(create_app(Settings()))
    if args.check:
        stale = not DOCUMENT.exists() or DOCUMENT.read_text() != text
        print(f"{DOCUMENT}: {'stale, run python -m api.export_openapi' if stale else 'up to date'}")
        return int(stale)
    DOCUMENT.parent.mkdir(exist_ok=True)
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
