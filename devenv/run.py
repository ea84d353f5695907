"""`make run` (`python -m devenv.run`): the whole gateway on this machine, in the foreground.

Every part listens on loopback: Redis, SecantusDB (a MongoDB-compatible
server), a mail sink, the PDP, the proxy on HTTP and HTTPS, and an echo
stand-in (devenv/standins/echo_service.py) for each loopback backend URL of
the proxy's routes where nothing answers yet. Whatever already answers at a
URL (your Redis, your MongoDB, your SMTP server, your own service on
127.0.0.1:3000) is used as it is, and the banner says which.

Settings are the services' own: they are validated by the PDP's and the
proxy's settings tables (pdp/config.py, proxy/config.py) and the proxy's
routes loader before anything starts, so a bad one stops startup with the
service's own line. `make run` adds local defaults (loopback addresses,
SSL on with a generated certificate, a generated JWT secret and TOTP key,
SIGNUP_MODE=open) and its own few settings (RUN_SETTINGS below).

Each child leads its own session (devenv/processes.py), so stopping its group
also stops what it forked (gunicorn and proxy workers), and each is asked by
the kernel to stop should this supervisor die without stopping it. Ctrl-C,
SIGTERM or SIGHUP stops them all, newest first, and waits for them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from servicekit.settings import ConfigError, Setting, float_range, int_range, text
from servicekit.settings import load as load_table

from .processes import ROOT, Child, first_line, http_ok, port_answers, stop_all

HOST = "127.0.0.1"
_LOG_TAIL_LINES = 20


# --- make run's own settings (the services' are in pdp/config.py and proxy/config.py) ---

RUN_SETTINGS = (
    Setting(
        "run_dir",
        "LUCID_RUN_DIR",
        text,
        str(ROOT / "run"),
        "State of `make run`: jwt-secret, totp-keys, certs/, redis/, mongodb/, mail/, logs/, pids/.",
    ),
    Setting(
        "ready_timeout_s",
        "RUN_READY_TIMEOUT_S",
        float_range(0.1, 3600),
        "60",
        "How long each part may take to become ready.",
    ),
    Setting(
        "stop_grace_s",
        "RUN_STOP_GRACE_S",
        float_range(0.1, 3600),
        "15",
        "How long each part may take to stop before it is killed.",
    ),
    Setting(
        "mongodb_port",
        "LUCID_MONGODB_PORT",
        int_range(1, 65535),
        "27017",
        "Port of the MongoDB used when MONGODB_URI is unset.",
    ),
    Setting(
        "smtp_port",
        "LUCID_SMTP_PORT",
        int_range(1, 65535),
        "8025",
        "Port of the SMTP server used when SMTP_URL is unset.",
    ),
)


# --- plumbing -------------------------------------------------------------------


class Fatal(Exception):
    """Startup cannot go on: one line (and the end of a child's log), then everything stops."""

    def __init__(self, line: str, code: int = 2, log: Path | None = None):
        super().__init__(line)
        self.line, self.code, self.log = line, code, log


class Stop(Exception):
    """A signal asked everything to stop."""


def say(line: str) -> None:
    print(f"run: {line}", file=sys.stderr, flush=True)


def short(path) -> str:
    """Paths inside the checkout, shown relative to it."""
    path = Path(path)
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def shown_url(url: str) -> str:
    """A URL as the banner shows it: never with its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def bind_host(host: str) -> str:
    """Where a part started for a loopback URL listens."""
    return HOST if host == "localhost" else host


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """(host, port) of a URL; ValueError when the port is not one."""
    parts = urlsplit(url)
    port = parts.port  # ValueError for a port that is not a number from 0 to 65535
    if port == 0:
        raise ValueError("port 0")
    return (parts.hostname or ""), (port or default_port)


def find_tool(name: str, env: dict) -> str | None:
    tools_bin = Path(env.get("LUCID_TOOLS_CACHE") or Path.home() / ".cache/lucid-gateway/tools") / "bin"
    return shutil.which(name, path=os.pathsep.join([env.get("PATH", os.defpath), str(tools_bin)]))


_stop_signal = None


def _on_signal(signum, frame) -> None:
    global _stop_signal
    _stop_signal = signum


def check_stop() -> None:
    if _stop_signal is not None:
        raise Stop()


def pause(seconds: float) -> None:
    check_stop()
    time.sleep(seconds)
    check_stop()


# --- what already answers -------------------------------------------------------


def redis_answers(host: str, port: int, tls: bool) -> bool:
    """Any RESP reply (+PONG, -NOAUTH) means a Redis is there (a TLS one: its port is open)."""
    if tls:
        return port_answers(host, port)
    return first_line(host, port, b"PING\r\n")[:1] in (b"+", b"-")


def smtp_answers(host: str, port: int, tls: bool) -> bool:
    if tls:
        return port_answers(host, port)
    return first_line(host, port).startswith(b"220")


def mongodb_answers(uri: str) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    try:
        client = MongoClient(uri, serverSelectionTimeoutMS=2000, connectTimeoutMS=1000, socketTimeoutMS=2000)
    except PyMongoError:
        return False
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


# --- backends: what the proxy's routes name ----------------------------------------


@dataclass
class Backend:
    name: str  # the stand-in's name, from its variable (BLOCKCHAIN_CORE_URL: blockchain-core) or cluster
    cluster: str
    setting: str  # the variable the URL came from, or the cluster, for error lines
    url: str
    host: str
    port: int
    note: str = ""
    start: bool = False


_ROUTES_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def routes_variables(env: dict) -> dict[str, str]:
    """The ${VAR}s of the routes file the proxy will read, in file order, with a ${VAR:-default}'s default."""
    from proxy.routes import DEFAULT_ROUTES_FILE

    try:
        text = Path(env.get("ROUTES_FILE") or DEFAULT_ROUTES_FILE).read_text(encoding="utf-8")
    except OSError:
        return {}  # the proxy's own check names ROUTES_FILE
    found = {}
    for name, default in _ROUTES_VAR.findall(text):
        found.setdefault(name, default)
    return found


def loopback_default(file_default: str) -> str | None:
    """A ${VAR:-default}'s default, on loopback: http://blockchain-core:8084 -> http://127.0.0.1:8084."""
    default = file_default.strip()
    if not default.startswith(("http://", "https://")):
        return None
    urls = []
    for url in default.split(","):
        parts = urlsplit(url.strip())
        netloc = HOST + (f":{parts.port}" if parts.port else "")
        urls.append(urlunsplit(parts._replace(netloc=netloc)))
    return ",".join(urls)


def load_proxy_routes(env: dict):
    """The proxy's settings and route table, read by the proxy's own loaders."""
    from proxy import config as proxy_config
    from proxy.cli import build_route_table
    from proxy.routes import RoutesError

    try:
        config = proxy_config.load(env)
        table, _mode = build_route_table(config)
    except (proxy_config.ConfigError, RoutesError) as exc:
        raise Fatal(str(exc)) from None
    return config, table


def plan_backends(env: dict, table, variables, pdp_port: int) -> list[Backend]:
    """One Backend per distinct endpoint of the route table, saying what `make run` does for it."""

    def values(var):
        return [u.strip().rstrip("/") for u in env.get(var, "").split(",") if u.strip()]

    groups = []  # in the routes file's order  # (setting, name, cluster, urls)
    seen_urls = set()
    for var in variables:
        for cluster in table.clusters.values():
            urls = [u for u in cluster.endpoints if u in values(var) and u not in seen_urls]
            if urls:
                seen_urls.update(urls)
                groups.append((var, var.removesuffix("_URL").lower().replace("_", "-"), cluster.name, urls))
    for cluster in table.clusters.values():
        urls = [u for u in cluster.endpoints if u not in seen_urls]
        if urls:
            seen_urls.update(urls)
            groups.append((f"clusters.{cluster.name}", cluster.name.replace("_", "-"), cluster.name, urls))

    backends = []
    for setting, base, cluster, urls in groups:  # every URL checked before any is probed
        for index, url in enumerate(urls, 1):
            try:
                host, port = host_port(url, 443 if url.startswith("https://") else 80)
            except ValueError:
                raise Fatal(f"{setting}: expected a port from 1 to 65535 in {url!r}") from None
            name = base if len(urls) == 1 else f"{base}-{index}"
            backends.append(Backend(name, cluster, setting, url, host, port))
    taken = {}
    for b in backends:
        if not is_loopback(b.host):
            b.note = f"{b.name}: {b.url} (yours, not started here)"
        elif b.port == pdp_port:
            b.note = f"{b.cluster}: the PDP :{b.port}"
        elif (b.host, b.port) in taken:
            b.note = f"{b.name}: {b.url} (as {taken[(b.host, b.port)]})"
        elif port_answers(b.host, b.port):
            b.note = f"{b.name}: {b.url} (answers already, used as is)"
        elif b.url.startswith("https://"):
            raise Fatal(f"{b.setting}: nothing answers at {b.url} (a stand-in speaks http:// only)")
        else:
            b.start = True
            b.note = f"{b.name} :{b.port}"
        taken.setdefault((b.host, b.port), b.name)
    return backends


# --- the supervisor ------------------------------------------------------------------


class Supervisor:
    def __init__(self, run_dir: Path, ready_timeout_s: float, stop_grace_s: float):
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.pid_dir = run_dir / "pids"
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.children: list[Child] = []

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, argv: list, env: dict) -> Child:
        check_stop()
        with open(self.log_of(name), "wb") as log:
            child = Child(name, argv, log, env=env, cwd=ROOT, die_with_parent=True)
        self.children.append(child)
        (self.pid_dir / f"{name}.pid").write_text(f"{child.pid}\n")
        return child

    def require_free_port(self, port: int, setting: str, host: str = HOST) -> None:
        if port_answers(host, port):
            raise Fatal(
                f"port {port} ({setting}) is already in use on {host}; stop what listens there or set {setting}"
            )

    def wait_ready(self, child: Child, host: str, port: int, path: str = "") -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while not (http_ok(f"http://{host}:{port}{path}") if path else port_answers(host, port)):
            if not child.running():
                raise Fatal(f"{child.name} exited during startup", code=1, log=self.log_of(child.name))
            if time.monotonic() > deadline:
                raise Fatal(
                    f"{child.name} was not ready on {host}:{port} within {self.ready_timeout_s:g}s",
                    code=1,
                    log=self.log_of(child.name),
                )
            pause(0.1)

    def watch(self) -> None:
        """In the foreground until a signal, or until a child exits."""
        while True:
            for child in self.children:
                if not child.running():
                    raise Fatal(
                        f"{child.name} exited unexpectedly; stopping the rest", code=1, log=self.log_of(child.name)
                    )
            pause(0.2)

    def stop(self) -> None:
        if not self.children:
            return
        say("stopping " + " ".join(c.name for c in self.children))
        stop_all(self.children, self.stop_grace_s, say)
        for pid_file in self.pid_dir.glob("*.pid"):
            pid_file.unlink(missing_ok=True)
        say("stopped")


def _secret_file(path: Path, make) -> str:
    """The value kept in path (0600), generated once."""
    if path.is_file() and path.stat().st_size:
        return path.read_text().strip()
    return make()


def _write_secret(path: Path, value: str) -> None:
    if path.is_file() and path.stat().st_size:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


def load_run_settings(environ) -> dict:
    try:
        values = load_table(RUN_SETTINGS, environ)
    except ConfigError as exc:
        raise Fatal(str(exc)) from None
    values["run_dir"] = Path(values["run_dir"]).absolute()
    return values


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    supervisor = None
    try:
        settings = load_run_settings(os.environ)
        supervisor = Supervisor(settings["run_dir"], settings["ready_timeout_s"], settings["stop_grace_s"])
        run(supervisor, settings, dict(os.environ))
    except Stop:
        code = 0
    except Fatal as fatal:
        say(fatal.line + (f"; last lines of {short(fatal.log)}:" if fatal.log else ""))
        if fatal.log:
            try:
                lines = fatal.log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
                print("\n".join(lines), file=sys.stderr, flush=True)
            except OSError:
                pass
        code = fatal.code
    else:
        code = 0
    finally:
        if supervisor is not None:
            supervisor.stop()
    return code


def run(sup: Supervisor, settings: dict, environ: dict) -> None:
    # --- the environment every part gets, with make run's local defaults ---------------
    env = dict(environ)

    def default(name: str, value: str) -> None:
        if not env.get(name):
            env[name] = value

    generated_secret = None
    if not env.get("JWT_SECRET_KEY"):
        generated_secret = sup.run_dir / "jwt-secret"
        env["JWT_SECRET_KEY"] = _secret_file(generated_secret, lambda: secrets.token_hex(32))
    keys_file = None
    if not env.get("TOTP_ENCRYPTION_KEYS"):
        keys_file = sup.run_dir / "totp-keys"
        env["TOTP_ENCRYPTION_KEYS"] = _secret_file(keys_file, lambda: "k1:" + secrets.token_urlsafe(32))
    for name, value in (
        ("HTTP_PORT", "8080"),
        ("HTTPS_PORT", "8081"),
        ("AUTH_PORT", "8082"),
        ("REDIS_URL", f"redis://{HOST}:6379/0"),
        ("SSL_ENABLED", "true"),
        ("LISTEN_HOST", HOST),
        ("PDP_BIND_HOST", HOST),
        ("POLICY_DIR", str(ROOT / "policies")),
        ("MONGODB_URI", f"mongodb://{HOST}:{settings['mongodb_port']}/lucid_gateway"),
        ("SMTP_URL", f"smtp://{HOST}:{settings['smtp_port']}"),
        # Local runs let anyone sign up (the PDP's own default is admin-only).
        ("SIGNUP_MODE", "open"),
    ):
        default(name, value)
    default("PUBLIC_BASE_URL", f"http://{HOST}:{env['HTTP_PORT']}")
    # The PDP serves the sign-in API (docs/auth.md): the auth cluster is the PDP unless told otherwise.
    default("AUTH_SERVICE_URL", f"http://{HOST}:{env['AUTH_PORT']}")
    variables = routes_variables(env)
    for var, file_default in variables.items():
        if not env.get(var) and (value := loopback_default(file_default)):
            env[var] = value
    env["PDP_URL"] = f"http://{HOST}:{env['AUTH_PORT']}"  # the proxy asks the PDP started here

    from proxy import config as proxy_config

    ssl_setting = proxy_config.BY_NAME["ssl_enabled"]
    try:
        ssl_enabled = ssl_setting.parse(env["SSL_ENABLED"])
    except ValueError:
        ssl_enabled = False  # the proxy's loader below names it
    cert_dir = sup.run_dir / "certs"
    generate_cert = ssl_enabled and not env.get("SSL_CERT_PATH") and not env.get("SSL_KEY_PATH")
    if generate_cert:
        env["SSL_CERT_PATH"], env["SSL_KEY_PATH"] = str(cert_dir / "gateway.crt"), str(cert_dir / "gateway.key")
    cert_missing = generate_cert and not (Path(env["SSL_CERT_PATH"]).is_file() and Path(env["SSL_KEY_PATH"]).is_file())

    # --- every setting checked before anything starts: the services' own lines -----------
    proxy_env = {**env, "SSL_ENABLED": "false"} if cert_missing else env  # our certificate is written below
    proxy_cfg, table = load_proxy_routes(proxy_env)
    from pdp.config import load_settings

    try:
        pdp_cfg = load_settings(env)
    except ConfigError as exc:
        raise Fatal(str(exc)) from None
    pdp_port, http_port, https_port = pdp_cfg.port, proxy_cfg.http_port, proxy_cfg.https_port
    backends = plan_backends(env, table, variables, pdp_port)

    redis = _redis_plan(env["REDIS_URL"])
    mongodb = _mongodb_plan(env["MONGODB_URI"], bool(environ.get("MONGODB_URI")))
    smtp = _smtp_plan(env["SMTP_URL"], bool(environ.get("SMTP_URL")))

    # --- state ----------------------------------------------------------------------------
    for folder in (sup.run_dir, sup.log_dir, sup.pid_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.chmod(sup.run_dir, 0o700)
    if generated_secret:
        _write_secret(generated_secret, env["JWT_SECRET_KEY"])
    if keys_file:
        _write_secret(keys_file, env["TOTP_ENCRYPTION_KEYS"])
    if cert_missing:
        _generate_certificate(cert_dir, sup.log_dir / "openssl.log")
        say(f"generated a self-signed certificate for localhost in {short(cert_dir)}")
        proxy_cfg, table = load_proxy_routes(env)  # now with the certificate files
    py = sys.executable
    waits = []  # (child, host, port): started together, then waited for together

    # --- Redis ------------------------------------------------------------------------------
    if redis.start:
        sup.require_free_port(redis.port, "REDIS_URL", bind_host(redis.host))
        binary = find_tool("redis-server", env)
        if not binary:
            raise Fatal("redis-server not found: run 'make bootstrap' (or set REDIS_URL to a running Redis)")
        (sup.run_dir / "redis").mkdir(exist_ok=True)
        child = sup.start(
            "redis",
            [
                binary,
                "--bind",
                bind_host(redis.host),
                "--port",
                str(redis.port),
                "--dir",
                str(sup.run_dir / "redis"),
                "--save",
                "60 1000",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            env,
        )
        redis.note = f"started here, data in {short(sup.run_dir / 'redis')}"
        waits.append((child, bind_host(redis.host), redis.port))

    # --- stand-ins where nothing answers at a backend URL -----------------------------------
    for backend in backends:
        if backend.start:
            child = sup.start(
                backend.name,
                [
                    py,
                    "-m",
                    "devenv.standins.echo_service",
                    backend.name,
                    "--host",
                    bind_host(backend.host),
                    "--port",
                    str(backend.port),
                ],
                env,
            )
            waits.append((child, bind_host(backend.host), backend.port))

    # --- MongoDB (SecantusDB) and the mail sink ---------------------------------------------
    if mongodb.start:
        sup.require_free_port(mongodb.port, mongodb.setting, bind_host(mongodb.host))
        binary = find_tool("secantusd-py", env)
        if not binary:
            raise Fatal("secantusd-py not found: run 'make bootstrap' (or set MONGODB_URI to a running MongoDB)")
        (sup.run_dir / "mongodb").mkdir(exist_ok=True)
        child = sup.start(
            "mongodb",
            [
                binary,
                "--host",
                bind_host(mongodb.host),
                "--port",
                str(mongodb.port),
                "--storage-path",
                str(sup.run_dir / "mongodb"),
                "--standalone",
                "--cache-size",
                "128M",
                "--log-level",
                "WARNING",
            ],
            env,
        )
        mongodb.note = f"SecantusDB started here, data in {short(sup.run_dir / 'mongodb')} (production uses MongoDB)"
        waits.append((child, bind_host(mongodb.host), mongodb.port))
    mail_dir = None
    if smtp.start:
        sup.require_free_port(smtp.port, smtp.setting, bind_host(smtp.host))
        mail_dir = sup.run_dir / "mail"
        mail_dir.mkdir(exist_ok=True)
        child = sup.start(
            "smtp",
            [
                py,
                "-m",
                "devenv.mail_sink",
                "--host",
                bind_host(smtp.host),
                "--port",
                str(smtp.port),
                "--dir",
                str(mail_dir),
            ],
            env,
        )
        waits.append((child, bind_host(smtp.host), smtp.port))
    for child, host, port in waits:
        sup.wait_ready(child, host, port)

    # --- the PDP, then the proxy ---------------------------------------------------------------
    sup.require_free_port(pdp_port, "AUTH_PORT")
    pdp = sup.start("pdp", [py, "-m", "pdp", "serve"], env)
    # /v1/ready: the policy is compiled and Redis answers (an open port is not enough).
    sup.wait_ready(pdp, HOST, pdp_port, "/v1/ready")

    sup.require_free_port(http_port, "HTTP_PORT")
    if ssl_enabled:
        sup.require_free_port(https_port, "HTTPS_PORT")
    proxy = sup.start("proxy", [py, "-m", "proxy"], env)
    sup.wait_ready(proxy, HOST, http_port)
    if ssl_enabled:
        sup.wait_ready(proxy, HOST, https_port)

    print_banner(sup, env, pdp_cfg, proxy_cfg, redis, mongodb, smtp, mail_dir, backends, generated_secret)
    sup.watch()


@dataclass
class Service:
    """Redis, MongoDB or SMTP: used where it answers, started here on a loopback URL where nothing does."""

    setting: str
    host: str
    port: int
    start: bool = False
    note: str = ""


def _reuse_or_start(setting: str, host: str, port: int, answers, what: str) -> Service:
    service = Service(setting, host, port)
    if answers():
        service.note = "already running, reused"
    elif is_loopback(host):
        service.start = True
    else:
        raise Fatal(f"{setting}: nothing answers at {host}:{port} (only a loopback {what} is started here)")
    return service


def _redis_plan(url: str) -> Service:
    from pdp.redis_url import parse_url

    target = parse_url(url)
    if target.kind != "single" or url.startswith("unix:"):
        return Service("REDIS_URL", "", 0, note="yours, not started here")
    host, port = host_port(url, 6379)
    service = _reuse_or_start("REDIS_URL", host, port, lambda: redis_answers(host, port, target.tls), "Redis")
    if service.start and target.tls:
        raise Fatal(f"REDIS_URL: nothing answers at {host}:{port} (only a plain redis:// Redis is started here)")
    return service


def _mongodb_plan(uri: str, given: bool) -> Service:
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.scheme != "mongodb" or "," in netloc:  # mongodb+srv:// or a replica set: yours
        if not mongodb_answers(uri):
            raise Fatal(f"MONGODB_URI: nothing answers at {shown_url(uri)}")
        return Service("MONGODB_URI", "", 0, note="yours, not started here")
    try:
        host, port = host_port(uri, 27017)
    except ValueError:
        raise Fatal(f"MONGODB_URI: expected a port from 1 to 65535 in {shown_url(uri)!r}") from None
    setting = "MONGODB_URI" if given else "LUCID_MONGODB_PORT"
    return _reuse_or_start(
        setting, host, port, lambda: port_answers(host, port) and mongodb_answers(uri), "MongoDB (SecantusDB)"
    )


def _smtp_plan(url: str, given: bool) -> Service:
    from pdp.accounts.mailer import parse_smtp_url

    target = parse_smtp_url(url)
    tls = target["scheme"] != "smtp"
    setting = "SMTP_URL" if given else "LUCID_SMTP_PORT"
    service = _reuse_or_start(
        setting, target["host"], target["port"], lambda: smtp_answers(target["host"], target["port"], tls), "mail sink"
    )
    if service.start and tls:
        raise Fatal(
            f"SMTP_URL: nothing answers at {target['host']}:{target['port']} "
            "(only a plain smtp:// mail sink is started here)"
        )
    return service


def _generate_certificate(cert_dir: Path, log: Path) -> None:
    cert_dir.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)
    try:
        with open(log, "wb") as out:
            done = subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "365",
                    "-subj",
                    "/CN=localhost",
                    "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout",
                    str(cert_dir / "gateway.key"),
                    "-out",
                    str(cert_dir / "gateway.crt"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
            )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    finally:
        os.umask(old_umask)
    if done is None or done.returncode != 0:
        raise Fatal(f"could not generate a self-signed certificate (see {short(log)})")


def _mint_token(env: dict, log: Path) -> str:
    try:
        with open(log, "wb") as err:
            done = subprocess.run(
                [sys.executable, "-m", "pdp", "token", "--sub", "alice", "--roles", "user", "--mfa"],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=60,
            )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = done.stdout.strip().splitlines()
    return lines[-1] if done.returncode == 0 and lines else ""


def print_banner(sup, env, pdp_cfg, proxy_cfg, redis, mongodb, smtp, mail_dir, backends, generated_secret) -> None:
    token = _mint_token(env, sup.log_dir / "token.log")
    check_stop()
    gw = f"http://{HOST}:{proxy_cfg.http_port}"
    https_port = proxy_cfg.https_port
    ssl_enabled = proxy_cfg.ssl_enabled
    cert = short(env.get("SSL_CERT_PATH", ""))
    pdp_url = env["PDP_URL"]
    smtp_url = shown_url(env["SMTP_URL"])
    mail_note = f"{short(mail_dir)}/*.eml" if mail_dir else ""
    if not smtp.note:
        smtp.note = "yours"
    out = ["", f"lucid-gateway is up on {HOST} (Ctrl-C stops everything)", f"  gateway    {gw}"]
    if ssl_enabled:
        out.append(f"             https://localhost:{https_port}  (certificate: {cert})")
    out += [
        f"  PDP        {pdp_url}  (/v1/check, /v1/forward-auth, /v1/ready, /metrics)",
        f"  redis      {shown_url(env['REDIS_URL'])}  ({redis.note})",
        f"  mongodb    {shown_url(env['MONGODB_URI'])}  ({mongodb.note})",
        f"  mail       {smtp_url}: every sign-in mail is saved as {mail_note}"
        if mail_dir
        else f"  mail       {smtp_url}  ({smtp.note})",
        "  backends   " + ", ".join(b.note for b in backends),
        f"  logs       {short(sup.log_dir)}/*.log",
    ]
    if generated_secret:
        # Only a secret generated here is shown: it is a throwaway for this machine.
        out.append(f"  JWT secret dev only, generated into {short(generated_secret)}: {env['JWT_SECRET_KEY']}")
    out.append("")
    if token:
        secret_hint = (
            f"JWT_SECRET_KEY=$(cat {short(generated_secret)})" if generated_secret else "JWT_SECRET_KEY=<yours>"
        )
        out += [
            f"Try it (a token for alice, role user, with MFA, valid {pdp_cfg.jwt_access_minutes} min):",
            f"  TOKEN={token}",
            f"  curl -s {gw}/api/v1/meta/info",
            f'  curl -s -H "Authorization: Bearer $TOKEN" {gw}/api/v1/sessions',
            f"  curl -s -i {gw}/api/v1/sessions     # no token: 401",
        ]
        if ssl_enabled:
            out.append(
                f'  curl -s --cacert {cert} -H "Authorization: Bearer $TOKEN" '
                f"https://localhost:{https_port}/api/v1/chain/info"
            )
        out += [
            f"More tokens: {secret_hint} {short(sys.executable)} -m pdp token --sub bob --roles user,admin --mfa",
            "",
            f"Sign in for real (docs/auth.md; sign-up is {env['SIGNUP_MODE']}):",
            f"  curl -s -H 'Content-Type: application/json' -d '{{\"email\":\"you@example.com\"}}' {gw}/api/v1/users",
            f"  curl -s -H 'Content-Type: application/json' -d '{{\"email\":\"you@example.com\"}}' "
            f"{gw}/api/v1/auth/login",
        ]
        if mail_dir:
            out.append(f"  then open the link in the newest {mail_note}")
    else:
        out.append(f"(could not mint a token: see {short(sup.log_dir)}/token.log)")
    out.append("")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
