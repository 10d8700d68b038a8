"""ConvLens as a KServe explainer container: ``python -m api.kserve_server --model efficientnet_lite0``.

KServe starts a custom explainer's container with arguments of its own appended to the container's
(``--model_name <the InferenceService's name> --predictor_host <host> --http_port 8080``, and
``--workers N`` when a container concurrency is set: ``CustomExplainer.GetContainer`` in KServe's
``pkg/apis/serving/v1beta1/explainer_custom.go``). This launcher takes them: ``--model_name`` becomes
a KServe name for the ConvLens model ``--model`` (the ``kserve_models`` setting), ``--http_port`` the
port and ``--workers`` uvicorn's worker processes. ``--predictor_host`` is not used: ConvLens runs the
network itself, so ``--model`` must be the predictor's network (a built-in or a registered model).
Only the API runs (inline calls, KServe's verbs among them); no job worker. The API's own rules on
keys hold: on a non-loopback address it needs ``CONVLENS_ADMIN_KEY``.
"""

import argparse
import json
import os
import sys
from collections.abc import Mapping

import uvicorn

from api.settings import Settings
from api.supervisor import say


def configure(argv: list[str], environ: Mapping[str, str]) -> tuple[dict, dict[str, str], list[str]]:
    """(uvicorn's options, the environment variables to set, the arguments ignored) for ``argv``."""
    parser = argparse.ArgumentParser(prog="python -m api.kserve_server", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the ConvLens model the KServe name stands for (default: the same name)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every address, as in a pod)")
    parser.add_argument("--model_name", required=True, help="KServe's: the InferenceService's name, as requests name it")
    parser.add_argument("--http_port", type=int, default=8080, help="KServe's: the port to listen on")
    parser.add_argument("--workers", type=int, default=1, help="KServe's: API processes (each with its own inline pool)")
    parser.add_argument("--predictor_host", help="KServe's: where the predictor is; not used (ConvLens runs the network)")
    args, ignored = parser.parse_known_args(argv)
    names = json.loads(environ.get("CONVLENS_KSERVE_MODELS") or "{}")
    env = {"CONVLENS_KSERVE_MODELS": json.dumps({**names, args.model_name: args.model or args.model_name})}
    options = {"host": args.host, "port": args.http_port, "workers": args.workers, "timeout_graceful_shutdown": 30}
    return options, env, ignored


def main(argv: list[str] | None = None) -> int:
    options, env, ignored = configure(sys.argv[1:] if argv is None else argv, os.environ)
    if ignored:
        say(f"ignoring arguments ConvLens does not use: {' '.join(ignored)}")
    os.environ.update(env)
    refusal = Settings().refuses_to_bind(options["host"])  # read from the environment, as the app will
    if refusal:
        say(refusal)
        return 2
    uvicorn.run("api.app:create_app", factory=True, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
