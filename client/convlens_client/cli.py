"""``convlens``: the command line on top of :class:`convlens_client.ConvLens`.

    convlens models | convlens methods
    convlens saliency cat.jpg -o map.png [-p target_class=281] [--artifact heatmap]
    convlens style content.jpg style.jpg --wait -o out.png [-p steps=100]
    convlens job deepdream --model vgg19 -i image=photo.jpg --wait -o dream.png
    convlens wait JOB_ID -o out.png

The service is ``--url`` or ``$CONVLENS_URL`` (default http://127.0.0.1:8000);
``$CONVLENS_API_KEY`` is sent as a bearer token. Any other first word is an
inline method (``classify``, ``gradcam``, ...). Errors print the problem's code
and detail and exit 1.
"""

import argparse
import json
import os
import sys

from convlens_client.client import DEFAULT_URL, ConvLens
from convlens_client.errors import ConvLensError


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _params(pairs: list[str], raw: str | None) -> dict:
    params = json.loads(raw) if raw else {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"convlens: -p takes name=value, not {pair!r}")
        params[name] = _value(value)
    return params


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("CONVLENS_URL", DEFAULT_URL), help="the service (default: $CONVLENS_URL)")
    parser.add_argument("-m", "--model", default=None, help="model name (GET /v1/models)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="a param (JSON value or text)")
    parser.add_argument("--params", default=None, metavar="JSON", help="params as one JSON object")
    parser.add_argument("-o", "--output", default=None, help="write the main picture (or --artifact) here")
    parser.add_argument("--artifact", default=None, help="which artifact -o writes (default: the main picture)")


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _finish_job(client: ConvLens, job, args) -> int:
    print(f"job {job.id}: {job.state}", file=sys.stderr)
    if not (args.wait or args.output):
        print(json.dumps(job.raw, indent=2))
        return 0
    job = client.wait(job, progress=not args.quiet)
    if args.output:
        client.download(job, args.artifact, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    print(json.dumps(job.result or {}, indent=2))
    return 0


def _inline(client: ConvLens, method: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"convlens {method}", description=f"run {method} inline on pictures")
    parser.add_argument("images", nargs="*", help="the picture(s); slot=path for methods with several inputs")
    _common(parser)
    args = parser.parse_args(argv)
    client.http.base_url = args.url
    images: dict[str, list] = {}
    for item in args.images:
        slot, sep, path = item.partition("=")
        slot, path = (slot, path) if sep and not os.path.exists(item) else ("image", item)
        images.setdefault(slot, []).append(path)
    slots = {slot: paths[0] if len(paths) == 1 else paths for slot, paths in images.items()}
    embed = "main" if args.output and args.artifact is None else (args.artifact or "none")
    result = client.inline(method, slots, _params(args.param, args.params), args.model, embed)
    if args.output:
        name = args.artifact or result.main
        if name not in result.artifacts:
            raise SystemExit(f"convlens: no artifact {name!r}; this result has {', '.join(result.artifacts)}")
        client.save(result.artifacts[name], args.output)
        print(f"wrote {args.output} ({name})", file=sys.stderr)
    print(json.dumps({key: value for key, value in result.data.items() if key != "params"}, indent=2))
    return 0


def _style(client: ConvLens, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="convlens style", description="Gatys style transfer (a job on vgg19)")
    parser.add_argument("content")
    parser.add_argument("style", nargs="+")
    _common(parser)
    _job_options(parser)
    args = parser.parse_args(argv)
    client.http.base_url = args.url
    job = client.submit("style_transfer", {"content": args.content, "style": args.style}, model=args.model or "vgg19",
                        params=_params(args.param, args.params))
    return _finish_job(client, job, args)


def _job(client: ConvLens, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="convlens job", description="submit any method as a job")
    parser.add_argument("method")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="SLOT=PATH", help="an input picture (repeat)")
    _common(parser)
    _job_options(parser)
    args = parser.parse_args(argv)
    client.http.base_url = args.url
    inputs: dict[str, list] = {}
    for item in args.input:
        slot, _, path = item.partition("=")
        inputs.setdefault(slot, []).append(path)
    many = {slot["name"] for method in client.methods() if method["name"] == args.method for slot in method["inputs"] if slot["many"]}
    inputs = {slot: paths if slot in many else paths[0] for slot, paths in inputs.items()}
    job = client.submit(args.method, inputs, model=args.model or "efficientnet_lite0", params=_params(args.param, args.params))
    return _finish_job(client, job, args)


def _wait(client: ConvLens, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="convlens wait", description="follow a job until it ends")
    parser.add_argument("job_id")
    _common(parser)
    _job_options(parser)
    args = parser.parse_args(argv)
    client.http.base_url = args.url
    args.wait = True
    return _finish_job(client, client.job(args.job_id), args)


def _listing(client: ConvLens, what: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"convlens {what}")
    parser.add_argument("--url", default=os.environ.get("CONVLENS_URL", DEFAULT_URL))
    parser.add_argument("--json", action="store_true", help="the whole catalogue as JSON")
    args = parser.parse_args(argv)
    client.http.base_url = args.url
    items = client.models() if what == "models" else client.methods()
    if args.json:
        print(json.dumps(items, indent=2))
    for item in [] if args.json else items:
        detail = item.get("summary") or item.get("description") or ""
        extra = "" if what == "models" else f" [{item['category']}{', inline' if item['inline'] else ', job'}]"
        print(f"{item['name']:28s}{extra} {detail}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    client = ConvLens(os.environ.get("CONVLENS_URL", DEFAULT_URL), api_key=os.environ.get("CONVLENS_API_KEY"))
    try:
        if command in ("models", "methods"):
            return _listing(client, command, rest)
        if command == "style":
            return _style(client, rest)
        if command == "job":
            return _job(client, rest)
        if command == "wait":
            return _wait(client, rest)
        return _inline(client, command, rest)
    except ConvLensError as exc:
        print(f"convlens: {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
