"""The convlens command's ordinary failures: one line on stderr, no traceback, an exit code per kind.

The real console script runs as a subprocess, against a closed port, the live
app (real uvicorn, worker, Redis) or a second live app that needs keys.
"""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from convlens_client import ConvLens
from convlens_client.cli import (
    CLASSIFIER_MODEL,
    EXIT_CODES,
    EXIT_JOB_FAILED,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    FEATURE_MODEL,
    default_model,
)
from PIL import Image

from tests.e2e.conftest import settings_from
from tests.e2e.servers import ROOT, LiveAPI, free_port

STYLE = ["-p", "max_side=32", "-p", "steps=2", "-p", "scales=1", "-p", "optimizer=adam", "-p", "seed=11"]
FEATURE_METHODS = {"style_transfer", "texture_synthesis", "feature_inversion", "train_style_model", "deepdream"}


def command() -> list[str]:
    """The installed console script (this checkout's code first on the path), else the module."""
    script = Path(sys.executable).parent / "convlens"
    return [str(script)] if script.exists() else [sys.executable, "-m", "convlens_client.cli"]


def convlens(*args, url: str | None = None, key: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in ("CONVLENS_URL", "CONVLENS_API_KEY")}
    env["PYTHONPATH"] = str(ROOT / "client")
    if url is not None:
        env["CONVLENS_URL"] = url
    if key is not None:
        env["CONVLENS_API_KEY"] = key
    return subprocess.run([*command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def one_line_failure(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The run exited ``code`` with exactly one line on stderr, naming each of ``words``; that line."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("convlens: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    print(f"convlens {' '.join(result.args[len(command()):])} -> exit {code}: {lines[0]}")  # shown by pytest -rA
    return lines[0]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, chelsea, coffee):
    folder = tmp_path_factory.mktemp("cli-pictures")
    chelsea.resize((48, 32)).save(folder / "cat.png")
    coffee.resize((32, 24)).save(folder / "coffee.png")
    return folder


@pytest.fixture(scope="module")
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # bound, then released: nothing listens there


# -- help ---------------------------------------------------------------------------------------------

HELPS = {
    (): {"exit codes", "models", "methods", "style", "job", "wait"},
    ("--help",): {"exit codes"},
    ("models", "--help"): {"--json", "--url", "--key"},
    ("methods", "--help"): {"--json"},
    ("saliency", "--help"): {"--model", "--param", "--output", "--artifact"},
    ("style", "--help"): {"--model", "--param", "--output", "--wait", "--quiet"},
    ("job", "--help"): {"--input", "--model", "--param", "--wait", FEATURE_MODEL},
    ("wait", "--help"): {"--output", "--artifact", "--quiet"},
}
NOT_THEIRS = {
    ("models", "--help"): {"--model", "--param", "--output", "--wait"},
    ("saliency", "--help"): {"--wait", "--quiet", "--input", "--json"},
    ("wait", "--help"): {"--model", "--param", "--params", "--wait", "--input"},
    ("style", "--help"): {"--input", "--json"},
}


@pytest.mark.parametrize("args", list(HELPS), ids=lambda args: " ".join(args) or "bare")
def test_help_texts_are_plain_words_with_only_their_own_options(args, closed_url):
    result = convlens(*args, url=closed_url)
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert "`" not in result.stdout and ":class:" not in result.stdout
    assert all(word in result.stdout for word in HELPS[args]), result.stdout
    assert not any(word in result.stdout for word in NOT_THEIRS.get(args, ())), result.stdout
    if len(args) <= 1:
        for code in EXIT_CODES:  # the exit codes, documented where they are defined
            assert re.search(rf"^  {code}\s", result.stdout, re.MULTILINE), code


# -- failures before or without a service -------------------------------------------------------------

def test_a_service_that_is_down_is_one_line_and_exit_3(closed_url, pictures):
    for args in (["models"], ["saliency", str(pictures / "cat.png")], ["job", "saliency", "-i", f"image={pictures / 'cat.png'}"],
                 ["wait", "0123456789abcdef01234567"]):
        one_line_failure(convlens(*args, url=closed_url), EXIT_UNREACHABLE, f"cannot reach the ConvLens service at {closed_url}",
                         "--url")


def test_missing_files_are_refused_before_anything_is_sent(closed_url, pictures, tmp_path):
    """Exit 2, not 3: the paths are checked before the (closed) service is tried."""
    cat = str(pictures / "cat.png")
    cases = [
        (["saliency", "nope.jpg"], "no such file: nope.jpg"),
        (["style", cat, str(tmp_path / "starry.jpg")], f"no such file: {tmp_path / 'starry.jpg'}"),
        (["saliency", str(tmp_path)], "is a folder"),
        (["saliency", cat, "-o", str(tmp_path / "no" / "map.png")], "there is no folder"),
    ]
    for args, words in cases:
        one_line_failure(convlens(*args, url=closed_url), EXIT_USAGE, words)


def test_a_mistyped_path_given_to_job_is_no_such_file_not_an_image_id(closed_url, pictures):
    for typo in ("photos/cat.png", "cat.jgp", "cat.jpg", str(pictures / "cat.jpeg")):
        one_line_failure(convlens("job", "saliency", "-i", f"image={typo}", url=closed_url), EXIT_USAGE, f"no such file: {typo}")
    # a bare id is still an id: it goes to the service (closed here)
    one_line_failure(convlens("job", "saliency", "-i", "image=" + "f" * 32, url=closed_url), EXIT_UNREACHABLE)


def test_bad_arguments_are_one_line_and_exit_2(closed_url):
    cases = [(["job", "saliency", "-p", "steps"], "-p takes NAME=VALUE"), (["job", "saliency", "--params", "{steps"], "--params is not JSON"),
             (["wait"], "convlens wait --help"), (["saliency", "--bogus"], "unrecognized arguments: --bogus"),
             (["--url", closed_url, "models"], "options come after the command"), (["cat.jpg"], "no command 'cat.jpg'"),
             (["models", "--url", "localhost:8000"], "pass --url http://HOST:PORT")]
    for args, words in cases:
        one_line_failure(convlens(*args, url=closed_url), EXIT_USAGE, words)


# -- failures the service answers ----------------------------------------------------------------------

def test_unknown_method_and_model_are_the_services_404_in_one_line(live, pictures):
    cat = str(pictures / "cat.png")
    one_line_failure(convlens("nosuch", cat, url=live.url), EXIT_REFUSED, "unknown method 'nosuch'", "404 unknown_method",
                     "convlens methods")
    one_line_failure(convlens("job", "nosuch", "-i", f"image={cat}", url=live.url), EXIT_REFUSED, "no method 'nosuch'", "convlens methods")
    one_line_failure(convlens("classify", cat, "-m", "no_such_model", url=live.url), EXIT_REFUSED, "404 unknown_model", "convlens models")
    one_line_failure(convlens("style_transfer", cat, url=live.url), EXIT_REFUSED, "method_not_inline", "convlens job")
    one_line_failure(convlens("wait", "0123456789abcdef01234567", url=live.url), EXIT_REFUSED, "404 unknown_job")


def test_a_model_the_method_cannot_use_is_the_services_422_in_one_line(live, pictures):
    cat = str(pictures / "cat.png")
    for args in (["job", "fooling_image", "-m", "vgg19", "-i", f"image={cat}"], ["classify", cat, "-m", "vgg19"]):
        one_line_failure(convlens(*args, url=live.url), EXIT_REFUSED, "no classifier head", "422 unsupported_model", "-m")
    one_line_failure(convlens("classify", cat, "-p", "top_k=-3", url=live.url), EXIT_REFUSED, "422 invalid_params", "top_k")


def test_a_wrong_or_missing_key_is_one_line_that_names_the_key_options(live, pictures):
    admin_key = "cli-test-admin-key-0123456789abcdef"
    env = {**live.env, "CONVLENS_OPEN_ACCESS": "false", "CONVLENS_ADMIN_KEY": admin_key}
    from api.app import create_app

    api = LiveAPI(create_app(settings_from(env))).start()
    try:
        with ConvLens(api.url, api_key=admin_key) as admin:
            reader = admin.http.post("/v1/keys", json={"scope": "read", "name": "cli test"}).json()["key"]
        one_line_failure(convlens("models", url=api.url), EXIT_REFUSED, "401 missing_api_key", "--key / CONVLENS_API_KEY")
        one_line_failure(convlens("models", "--key", "not-a-key", url=api.url), EXIT_REFUSED, "401", "--key / CONVLENS_API_KEY")
        one_line_failure(convlens("classify", str(pictures / "cat.png"), url=api.url, key=reader), EXIT_REFUSED,
                         "403 insufficient_scope", "--key / CONVLENS_API_KEY")
        assert convlens("models", url=api.url, key=admin_key).returncode == 0
    finally:
        api.stop()


def test_a_failed_job_is_one_line_and_exit_5(live, pictures):
    result = convlens("job", "probe_steps", "-i", str(pictures / "cat.png"), "-p", "layer=no_such_layer", "-p", "size=32",
                      "--wait", "-q", url=live.url)
    assert result.returncode == EXIT_JOB_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    assert re.fullmatch(r"convlens: job \w+ failed: .*no_such_layer.* \(\w+\)", result.stderr.splitlines()[-1]), result.stderr


# -- defaults ----------------------------------------------------------------------------------------------

def test_feature_methods_default_to_vgg19_and_the_rest_to_the_classifier(live):
    with ConvLens(live.url) as client:
        defaults = {method["name"]: default_model(method) for method in client.methods()}
    assert {name for name, model in defaults.items() if model == FEATURE_MODEL} == FEATURE_METHODS
    assert defaults["class_visualization"] == defaults["fooling_image"] == CLASSIFIER_MODEL


def test_job_style_transfer_runs_on_vgg19_without_m(live, pictures, tmp_path):
    result = convlens("job", "style_transfer", "-i", f"content={pictures / 'cat.png'}", "-i", f"style={pictures / 'coffee.png'}",
                      *STYLE, "-q", "-o", "out.png", url=live.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job_id = re.search(r"job (\w+):", result.stderr).group(1)
    with ConvLens(live.url) as client:
        assert client.job(job_id).model == FEATURE_MODEL
    assert max(Image.open(io.BytesIO((tmp_path / "out.png").read_bytes())).size) == 32
    assert json.loads(result.stdout) is not None
