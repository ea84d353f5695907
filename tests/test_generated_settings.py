"""The files generated from the settings tables (scripts/gen_settings.py) are current.

docs/settings.md, helm/lucid-gateway/templates/_settings.tpl and the settings
parts of values.schema.json are written from pdp/config.py and proxy/config.py;
this replaces the tests that compared hand-written copies with the tables.
"""

import importlib.util
import shutil
import subprocess
import sys

from tests.support.processes import ROOT

SCRIPT = ROOT / "scripts" / "gen_settings.py"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_settings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_files_are_current():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + "\nregenerate with `make settings`"


def test_check_names_a_stale_file_and_a_run_brings_it_current(tmp_path, monkeypatch, capsys):
    gen = _generator()
    for name in ("TEMPLATE", "SCHEMA", "DOCS"):
        copy = tmp_path / getattr(gen, name).name
        shutil.copy(getattr(gen, name), copy)
        monkeypatch.setattr(gen, name, copy)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    gen.DOCS.write_text(gen.DOCS.read_text().replace("JWT_LEEWAY_S", "JWT_LEEWAY"))
    assert gen.main(["--check"]) == 1
    assert "settings.md" in capsys.readouterr().err
    assert "JWT_LEEWAY_S" not in gen.DOCS.read_text()  # --check writes nothing
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    assert gen.DOCS.read_text() == (ROOT / "docs" / "settings.md").read_text()


def test_every_setting_has_exactly_one_way_in_from_the_chart():
    import json

    gen = _generator()
    schema = json.loads(gen.SCHEMA.read_text())
    for svc in gen.services():
        mapped, by_hand, passed = svc.mapped(), svc.by_hand(), svc.passed_through()
        assert len(mapped) + len(by_hand) + len(passed) == len(svc.rows)
        node = schema
        for key in svc.settings_path.split("."):
            node = node["properties"][key]
        # The pass-through map takes exactly the rows with neither a values path nor template logic.
        assert set(node["properties"]) == {r.env for r in passed}
        assert node["additionalProperties"] is False
        template = gen.TEMPLATE.read_text()
        for row in mapped:
            assert f'"name" "{row.env}"' in template
        for row in by_hand:
            assert f'"name" "{row.env}"' not in template
