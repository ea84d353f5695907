"""`python -m proxy` and the `lucid-proxy` script: patch first, so ssl and sockets are cooperative."""


def run() -> int:
    from gevent import monkey

    monkey.patch_all()
    from proxy.cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(run())
