"""The convlens command: the ConvLens service from a shell.

Every ordinary failure (the service down, a missing file, an unknown method or
model, a model the method cannot use, a refused key, a failed job) ends in one
line on stderr and an exit code of its kind (EXIT_CODES, mapped in one place,
failure()); only a bug in convlens itself shows a traceback.
"""

import argparse
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import httpx

from convlens_client.client import DEFAULT_URL, ConvLens
from convlens_client.errors import (
    ConvLensError,
    Forbidden,
    JobFailed,
    OverBudget,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    UnknownMethod,
    UnknownModel,
)

EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_JOB_FAILED, EXIT_SERVICE_FAILED, EXIT_INTERRUPTED = 2, 3, 4, 5, 6, 130
EXIT_CODES = {
    0: "done",
    EXIT_USAGE: "a mistake in the command: an unknown option, a bad value, or a file that is not there",
    EXIT_UNREACHABLE: "the service could not be reached: not running, a wrong --url, or no answer in time",
    EXIT_REFUSED: "the service refused the request: an unknown method or model, a model the method cannot use, "
                  "bad settings, or a wrong or missing key",
    EXIT_JOB_FAILED: "the job failed or was cancelled",
    EXIT_SERVICE_FAILED: "the service failed or is unavailable (its side; try again later)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
EXIT_EPILOG = "exit codes:\n" + "\n".join(
    textwrap.fill(meaning, 79, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7) for code, meaning in EXIT_CODES.items()
)
SHORT_EPILOG = "Exit codes: 0 done, 2 a mistake in the command, 3 service not reachable, 4 refused by the service, " \
               "5 job failed, 6 service error (convlens --help says more)."

HELP = f"""usage: convlens COMMAND [options]

Ask a ConvLens service what a convolutional network sees in your pictures.

commands:
  models                      list the models the service offers
  methods                     list the methods; quick ones answer at once, the others run as jobs
  METHOD PICTURE...           run a quick method and get its answer at once
                              (convlens saliency cat.jpg -o map.png)
  style CONTENT STYLE...      paint the content photo in the style of the others (a job)
                              (convlens style photo.jpg starry.jpg --wait -o out.png)
  job METHOD -i SLOT=PICTURE  run any method as a job
                              (convlens job deepdream -i image=photo.jpg --wait -o dream.png)
  wait JOB_ID                 follow a job until it ends, then write its picture

Every command takes --url (the service; default $CONVLENS_URL, else {DEFAULT_URL})
and --key (the API key; default $CONVLENS_API_KEY). "convlens COMMAND --help"
lists that command's options.

{EXIT_EPILOG}
"""

# Methods that build pictures from a network's feature maps (style, texture, inversion, dreams) were
# tuned on VGG19; the others read a classifier's outputs. Used where the service names no default model.
FEATURE_MODEL, CLASSIFIER_MODEL = "vgg19", "efficientnet_lite0"
PLAIN_NAME = re.compile(r"[a-z][a-z0-9_]*")  # a command, a method or an input slot


class UsageError(Exception):
    """A mistake in the command itself: a bad option or value, a file that is not there."""


def default_model(method: dict) -> str:
    """The model a job of ``method`` (an entry of GET /v1/methods) runs on when -m is not given."""
    if method.get("default_model"):
        return method["default_model"]
    feature_synthesis = method.get("category") == "synthesize" and "layers" in method.get("requires", [])
    return FEATURE_MODEL if feature_synthesis else CLASSIFIER_MODEL


# -- what went wrong, in one line -----------------------------------------------------------------

HINTS_BY_CODE = {
    "method_not_inline": "it runs as a job: use convlens job (or convlens style)",
    "over_inline_budget": "too big to answer at once: run it as a job with convlens job, or ask for less",
    "unsupported_model": "pick another model with -m (convlens models lists them)",
}
HINTS_BY_KIND = (
    (Unauthorized, "check --key / CONVLENS_API_KEY"),
    (Forbidden, "this key may not do that: check --key / CONVLENS_API_KEY"),
    (UnknownMethod, "convlens methods lists them"),
    (UnknownModel, "convlens models lists them"),
    (OverBudget, "ask for less (fewer steps, a smaller size)"),
    (PayloadTooLarge, "send a smaller picture"),
    (RateLimited, "the service is busy: try again shortly"),
    (Unavailable, "try again later"),
)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _refusal(exc: ConvLensError) -> str:
    hint = HINTS_BY_CODE.get(exc.code) or next((hint for kind, hint in HINTS_BY_KIND if isinstance(exc, kind)), None)
    line = f"{_one_line(exc.detail) or 'refused'} ({exc.status} {exc.code})"
    return f"{line}: {hint}" if hint else line


def failure(exc: BaseException, url: str) -> tuple[str, int] | None:
    """The one line and exit code for an ordinary failure; None for anything else (a bug keeps its traceback)."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, OSError) and exc.filename is not None:  # reading a picture, writing -o
        return f"cannot use {exc.filename}: {exc.strerror or exc}", EXIT_USAGE
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return f"{url} is not a service address: pass --url http://HOST:PORT", EXIT_USAGE
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return f"cannot reach the ConvLens service at {url}: is it running? (scripts/serve) or pass --url", EXIT_UNREACHABLE
    if isinstance(exc, httpx.TimeoutException):
        return f"the ConvLens service at {url} did not answer in time: it may be overloaded; try again", EXIT_UNREACHABLE
    if isinstance(exc, httpx.TransportError):
        lost = f"lost the connection to the ConvLens service at {url} ({type(exc).__name__}): is it still running?"
        return lost, EXIT_UNREACHABLE
    if isinstance(exc, JobFailed):
        job, error = exc.job, exc.job.error or {}
        reason = f": {_one_line(error.get('message', ''))} ({error.get('code', job.state)})" if error else ""
        return f"job {job.id} {job.state}{reason}", EXIT_JOB_FAILED
    if isinstance(exc, ConvLensError):
        return _refusal(exc), EXIT_SERVICE_FAILED if isinstance(exc, ServerError) else EXIT_REFUSED
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (a job already submitted goes on: convlens wait JOB_ID follows it)", EXIT_INTERRUPTED
    return None


# -- arguments ------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes raise UsageError (one line, exit 2) instead of printing the usage."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _parser(prog: str, usage: str, description: str) -> _Parser:
    parser = _Parser(prog=prog, usage=usage, description=description, epilog=SHORT_EPILOG)
    service = parser.add_argument_group("service")
    service.add_argument("--url", default=os.environ.get("CONVLENS_URL", DEFAULT_URL),
                         help=f"where the service runs (default: $CONVLENS_URL, else {DEFAULT_URL})")
    service.add_argument("--key", default=os.environ.get("CONVLENS_API_KEY"),
                         help="the API key, when the service needs one (default: $CONVLENS_API_KEY)")
    return parser


def _settings_options(parser: argparse.ArgumentParser, model_help: str) -> None:
    group = parser.add_argument_group("what to run")
    group.add_argument("-m", "--model", default=None, help=model_help)
    group.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                       help="one setting of the method, e.g. -p steps=100 (repeat it; the value is read as JSON "
                            "where it can be, else as text)")
    group.add_argument("--params", default=None, metavar="JSON", help='all settings as one JSON object, e.g. \'{"steps": 100}\'')


def _output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-o", "--output", default=None, metavar="FILE", help="write the result's main picture to FILE")
    group.add_argument("--artifact", default=None, metavar="NAME",
                       help="write this picture of the result instead of the main one (e.g. heatmap)")


def _job_options(parser: argparse.ArgumentParser, following: bool = True) -> None:
    group = parser.add_argument_group("following the job")
    if following:
        group.add_argument("--wait", action="store_true", help="follow the job until it ends (implied by -o)")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _listing_parser(what: str) -> _Parser:
    parser = _parser(f"convlens {what}", f"convlens {what} [--json]", f"List the {what} the service offers.")
    parser.add_argument("--json", action="store_true", help="print the whole catalogue as JSON")
    return parser


def _inline_parser(method: str) -> _Parser:
    parser = _parser(f"convlens {method}", f"convlens {method} PICTURE... [options]",
                     f"Run {method} on your pictures and print its answer at once. Methods that take long run as "
                     "jobs instead (convlens job). Classify and the gradient maps take several pictures in one "
                     "request (convlens saliency *.jpg -o maps/): then -o is a folder, one file per picture.")
    parser.add_argument("images", nargs="*", metavar="PICTURE",
                        help="a picture file; SLOT=FILE for methods that take several kinds of picture")
    _settings_options(parser, "the model to use (default: the service's; convlens models lists them)")
    _output_options(parser)
    return parser


def _style_parser(_command: str) -> _Parser:
    parser = _parser("convlens style", "convlens style CONTENT STYLE... [options]",
                     "Paint the CONTENT photo in the style of the STYLE pictures (Gatys style transfer, a job). "
                     "Each picture is a file, or the id of a picture already uploaded.")
    parser.add_argument("content", metavar="CONTENT", help="the photo to repaint")
    parser.add_argument("style", nargs="+", metavar="STYLE", help="one or more pictures whose style to copy")
    _settings_options(parser, f"the model whose features define content and style (default: {FEATURE_MODEL})")
    _output_options(parser)
    _job_options(parser)
    return parser


def _job_parser(_command: str) -> _Parser:
    parser = _parser("convlens job", "convlens job METHOD -i SLOT=PICTURE... [options]",
                     "Submit METHOD as a job and print it; with --wait or -o, follow it to its end. Each picture "
                     "is a file, or the id of a picture already uploaded.")
    parser.add_argument("method", metavar="METHOD", help="the method to run (convlens methods lists them)")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="SLOT=PICTURE",
                        help="an input picture and which of the method's inputs it is (repeat it); "
                             "the slot may be left out when the method takes one kind of picture")
    _settings_options(parser, f"the model to use (default: {FEATURE_MODEL} for the methods that build pictures "
                              f"from feature maps: style, texture, inversion, dreams; else {CLASSIFIER_MODEL})")
    _output_options(parser)
    _job_options(parser)
    return parser


def _wait_parser(_command: str) -> _Parser:
    parser = _parser("convlens wait", "convlens wait JOB_ID [options]",
                     "Follow a job until it ends, then print its result (and write its picture with -o).")
    parser.add_argument("job_id", metavar="JOB_ID", help="the job's id, as convlens job or style printed it")
    _output_options(parser)
    _job_options(parser, following=False)
    return parser


# -- inputs, checked before anything is sent --------------------------------------------------------

def _looks_like_path(value: str) -> bool:
    """Image ids are bare hex: a slash, a ~ or a file extension means a path was meant."""
    return "/" in value or os.sep in value or value.startswith("~") or bool(Path(value).suffix)


def _file(value: str) -> str:
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{value} is a folder, not a picture")
    if not path.is_file():
        raise UsageError(f"no such file: {value}")
    return value


def _picture(value: str) -> str:
    """A picture file, or the id of an uploaded picture; something that looks like a path must exist."""
    if Path(value).exists() or _looks_like_path(value):
        return _file(value)
    return value


def _check_output(path: str | None) -> None:
    if path is None:
        return
    if Path(path).is_dir():
        raise UsageError(f"-o {path} is a folder: give a file name")
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: there is no folder {folder}")


def _slotted(items: list[str], check) -> list[tuple[str | None, str]]:
    """(slot or None, picture) for each SLOT=PICTURE or PICTURE; a whole argument that is a file is a file."""
    out = []
    for item in items:
        slot, sep, value = item.partition("=")
        if not sep or Path(item).exists() or not PLAIN_NAME.fullmatch(slot):
            slot, value = None, item
        out.append((slot, check(value)))
    return out


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _params(args) -> dict:
    try:
        params = json.loads(args.params) if args.params else {}
    except ValueError as exc:
        raise UsageError(f"--params is not JSON ({exc}): write it like '{{\"steps\": 100}}'") from None
    if not isinstance(params, dict):
        raise UsageError("--params takes a JSON object, like '{\"steps\": 100}'")
    for pair in args.param:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"-p takes NAME=VALUE, not {pair!r} (e.g. -p steps=100)")
        params[name] = _value(value)
    return params


def _method_entry(client: ConvLens, name: str) -> dict:
    for method in client.methods():
        if method["name"] == name:
            return method
    raise UnknownMethod(404, "unknown_method", f"the service has no method {name!r}")


def _job_inputs(method: dict, given: list[tuple[str | None, str]]) -> dict:
    slots = {slot["name"]: slot for slot in method["inputs"]}
    names = ", ".join(slots) or "none"
    if not given:
        required = [name for name, slot in slots.items() if not slot["optional"]]
        if required:
            raise UsageError(f"{method['name']} needs pictures: -i {required[0]}=PICTURE (it takes {names})")
    inputs: dict[str, list] = {}
    for slot, value in given:
        if slot is None:
            if len(slots) != 1:
                raise UsageError(f"say which input each picture is, -i SLOT=PICTURE: {method['name']} takes {names}")
            slot = next(iter(slots))
        if slot not in slots:
            raise UsageError(f"{method['name']} has no input {slot!r}; it takes {names}")
        inputs.setdefault(slot, []).append(value)
    return {slot: values if slots[slot]["many"] else values[0] for slot, values in inputs.items()}


# -- commands ---------------------------------------------------------------------------------------

def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def _listing(client: ConvLens, args) -> int:
    items = client.models() if args.command == "models" else client.methods()
    if args.json:
        _print_json(items)
        return 0
    for item in items:
        detail = item.get("summary") or item.get("description") or ""
        kind = "" if args.command == "models" else f" [{item['category']}, {'at once' if item['inline'] else 'job'}]"
        print(f"{item['name']:28s}{kind} {detail}")
    return 0


def _inline(client: ConvLens, args) -> int:
    images: dict[str, list] = {}
    for slot, path in _slotted(args.images, _file):
        images.setdefault(slot or "image", []).append(path)
    if set(images) == {"image"} and len(images["image"]) > 1:
        return _inline_each(client, args, images["image"])
    _check_output(args.output)
    slots = {slot: paths[0] if len(paths) == 1 else paths for slot, paths in images.items()}
    params = _params(args)
    embed = "main" if args.output and args.artifact is None else (args.artifact or "none")
    result = client.inline(args.command, slots, params, args.model, embed)
    if args.output:
        name = args.artifact or result.main
        if name not in result.artifacts:
            raise UsageError(f"the result has no picture {name!r}; it has {', '.join(result.artifacts) or 'none'}")
        client.save(result.artifacts[name], args.output)
        print(f"wrote {args.output} ({name})", file=sys.stderr)
    _print_json({key: value for key, value in result.data.items() if key != "params"})
    return 0


def _inline_each(client: ConvLens, args, paths: list[str]) -> int:
    """Several pictures in one request (methods that batch): -o names a folder, where each main picture is
    written as <picture's name>.png; a picture the service could not answer is one line on stderr (exit 4)."""
    if args.output is not None and not Path(args.output).is_dir():
        raise UsageError(f"-o {args.output}: with several pictures, give an existing folder for their results")
    embed = "main" if args.output and args.artifact is None else (args.artifact or "none")
    answers = client.each(args.command, paths, _params(args), args.model, embed)
    failed = 0
    for path, answer in zip(paths, answers):
        if isinstance(answer, Exception):
            failed += 1
            print(f"convlens: {path}: {answer.detail} ({answer.status} {answer.code})", file=sys.stderr)
        elif args.output:
            name = args.artifact or answer.main
            target = Path(args.output) / f"{Path(path).stem}{'.npy' if answer.artifacts[name].kind == 'array' else '.png'}"
            client.save(answer.artifacts[name], target)
            print(f"wrote {target} ({name})", file=sys.stderr)
    _print_json([{"picture": path, **({key: value for key, value in answer.data.items() if key != "params"}
                                      if not isinstance(answer, Exception) else {"problem": answer.code})}
                 for path, answer in zip(paths, answers)])
    return 4 if failed else 0


def _style(client: ConvLens, args) -> int:
    _check_output(args.output)
    content, styles = _picture(args.content), [_picture(style) for style in args.style]
    job = client.submit("style_transfer", {"content": content, "style": styles}, model=args.model or FEATURE_MODEL,
                        params=_params(args))
    return _finish_job(client, job, args)


def _job(client: ConvLens, args) -> int:
    _check_output(args.output)
    given = _slotted(args.input, _picture)
    params = _params(args)
    method = _method_entry(client, args.method)
    job = client.submit(args.method, _job_inputs(method, given), model=args.model or default_model(method), params=params)
    return _finish_job(client, job, args)


def _wait(client: ConvLens, args) -> int:
    _check_output(args.output)
    args.wait = True
    return _finish_job(client, client.job(args.job_id), args)


def _finish_job(client: ConvLens, job, args) -> int:
    print(f"job {job.id}: {job.queue if job.state == 'queued' and job.queue else job.state}", file=sys.stderr)
    if not (args.wait or args.output):
        _print_json(job.raw)
        return 0
    job = client.wait(job, progress=not args.quiet)
    if args.output:
        names = [artifact.name for artifact in job.artifacts]
        try:
            client.download(job, args.artifact, args.output)
        except KeyError:
            raise UsageError(f"job {job.id} has no picture {args.artifact!r}; it has {', '.join(names) or 'none'}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    _print_json(job.result or {})
    return 0


COMMANDS = {
    "models": (_listing_parser, _listing),
    "methods": (_listing_parser, _listing),
    "style": (_style_parser, _style),
    "job": (_job_parser, _job),
    "wait": (_wait_parser, _wait),
}


def _parse(argv: list[str]):
    command, rest = argv[0], argv[1:]
    if command.startswith("-"):
        raise UsageError("options come after the command, as in convlens models --url URL (see convlens --help)")
    if command not in COMMANDS and not PLAIN_NAME.fullmatch(command):
        raise UsageError(f"no command {command!r}: name a command or a method first (see convlens --help)")
    build, run = COMMANDS.get(command, (_inline_parser, _inline))
    args = build(command).parse_args(rest)
    args.command = command
    return run, args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0
    url = os.environ.get("CONVLENS_URL", DEFAULT_URL)
    try:
        run, args = _parse(argv)
        url = args.url
        with ConvLens(args.url, api_key=args.key) as client:
            return run(client, args)
    except (Exception, KeyboardInterrupt) as exc:
        known = failure(exc, url)
        if known is None:
            raise
        message, code = known
        print(f"convlens: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
