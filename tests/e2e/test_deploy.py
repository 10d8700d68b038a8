"""docker-compose.yml is valid and keeps the serving rules (GPU reservation, -c 1, noeviction)."""

import os
import shutil
import subprocess

import pytest
import yaml

from tests.e2e.servers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")


def compose(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVLENS_ADMIN_KEY": "compose-test-admin-key"}
    return subprocess.run(["docker-compose", "-f", "docker-compose.yml", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


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
    assert f"--broker={worker['environment']['CONVLENS_REDIS_URL']}" in config["flower"]["command"]  # the jobs' broker
    assert "-E" in worker["command"]  # task events, for Flower
    assert "--timeout-graceful-shutdown" in config["api"]["command"]


def test_compose_refuses_to_start_without_an_admin_key():
    env = {k: v for k, v in os.environ.items() if k != "CONVLENS_ADMIN_KEY"}
    result = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode != 0 and "CONVLENS_ADMIN_KEY" in result.stderr
