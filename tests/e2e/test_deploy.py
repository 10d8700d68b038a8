"""docker-compose.yml is valid and keeps the serving rules (GPU reservation, -c 1, noeviction)."""

import shutil
import subprocess

import pytest
import yaml

from tests.e2e.servers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")


def compose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker-compose", "-f", "docker-compose.yml", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid():
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_keeps_the_serving_rules():
    config = yaml.safe_load(compose("config").stdout)["services"]
    worker = config["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile.gpu"
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert " ".join(worker["command"]).count("-c 1") == 1 and "--prefetch-multiplier=1" in worker["command"]
    assert "noeviction" in config["redis"]["command"]
    assert worker["environment"]["CONVLENS_STORAGE"] == "s3"
    assert "mc mb" in " ".join(config["minio-init"]["entrypoint"])
    assert config["flower"]["profiles"] == ["monitoring"]
