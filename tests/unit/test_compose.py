"""compose.yaml must be a valid production-like stack. With a Docker Compose CLI present,
``docker compose config`` checks it; without one (as here), its structure is checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from coalition.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def has_compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


def test_compose_file_is_accepted() -> None:
    if has_compose_cli():
        result = subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
    for name in ("postgres", "redis", "api"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    assert services["api"]["command"][:2] == ["coalition", "serve"]
    assert services["worker"]["command"] == ["coalition", "worker"]
    assert "coalition migrate" in " ".join(services["migrate"]["command"])
    assert "container_name" not in services["api"]  # replicas must be possible
    declared = set(compose()["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in declared


def test_every_setting_in_compose_is_a_real_setting() -> None:
    fields = set(Settings.__struct_fields__)
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("COALITION_"):
                assert key.removeprefix("COALITION_").lower() in fields, (name, key)
    settings_env = compose()["services"]["api"]["environment"]
    assert settings_env["COALITION_DATABASE_URL"].startswith("postgresql://")


def test_the_image_installs_the_project_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and 'CMD ["coalition", "serve"' in dockerfile
