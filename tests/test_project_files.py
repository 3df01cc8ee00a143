"""Static checks of the files a deployer and a newcomer rely on (Docker cannot run here)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_VARIABLES = set(
    re.findall(
        r'env\.(?:str|bool|int|float|list|db|email_url)\(\s*"([A-Z_]+)"', (ROOT / "offerhub/settings.py").read_text()
    )
)


def test_every_setting_variable_is_documented():
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    undocumented = {name for name in SETTINGS_VARIABLES if name not in example or name not in readme}
    assert not undocumented, f"document these in .env.example and the README table: {sorted(undocumented)}"


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n\n")[:3]
    assert any("make run" in block and "make test" in block for block in head)


def test_compose_has_every_service_and_only_documented_variables():
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    assert set(compose["services"]) >= {"postgres", "redis", "web", "ws", "worker", "beat"}
    for name in ("web", "ws", "worker", "beat"):
        service = compose["services"][name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["REDIS_URL"].startswith("redis://")
    referenced = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker/compose.yaml").read_text()))
    deployment_only = {
        "POSTGRES_PASSWORD",
        "OFFERHUB_IMAGE",
        "WEB_BIND",
        "WEB_PORT",
        "WEB_CONCURRENCY",
        "WEB_THREADS",
        "WS_PORT",
        "WORKER_CONCURRENCY",
        "FORWARDED_ALLOW_IPS",
    }
    unknown = referenced - SETTINGS_VARIABLES - deployment_only
    assert not unknown, f"compose passes variables the settings never read: {sorted(unknown)}"
    guide = (ROOT / "docs/deployment.md").read_text()
    assert all(name in guide for name in deployment_only)


def test_web_serves_http_under_gunicorn_and_ws_serves_the_websockets():
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    command = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert command.startswith('["gunicorn", "--config", "docker/gunicorn.conf.py", "offerhub.wsgi:application"')
    assert (ROOT / "docker/gunicorn.conf.py").exists()
    ws = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())["services"]["ws"]
    assert ws["command"][:2] == ["uvicorn", "offerhub.asgi:application"]


def test_dockerfile_is_multi_stage_and_runs_unprivileged():
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    assert "COPY --from=build" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    for copied in re.findall(r"^COPY (?!--)(.+) \./?$", dockerfile, re.M):
        for name in copied.split():
            assert (ROOT / name).exists(), f"Dockerfile copies {name}, which is not in the repository"


def test_no_cdn_at_run_time():
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text), f"{template} loads an external asset"
