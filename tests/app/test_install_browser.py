"""scripts/install_browser.py: the set-up step that provides Debian's Chromium."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install_browser.py"


def load_script():
    spec = importlib.util.spec_from_file_location("install_browser", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_present_browser_is_left_alone(tmp_path, monkeypatch, capsys):
    mod = load_script()
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(mod, "CHROMIUM", fake)
    monkeypatch.setattr(mod.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("apt-get must not run")))
    assert mod.main() == 0
    assert "is present" in capsys.readouterr().out


def test_missing_browser_without_root_explains_the_fix(tmp_path, monkeypatch, capsys):
    mod = load_script()
    monkeypatch.setattr(mod, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(mod.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("apt-get must not run")))
    assert mod.main() == 0
    err = capsys.readouterr().err
    assert "not root" in err and "apt-get install -y --no-install-recommends chromium" in err


def test_missing_browser_as_root_installs_with_apt(tmp_path, monkeypatch):
    mod = load_script()
    target = tmp_path / "chromium"
    monkeypatch.setattr(mod, "CHROMIUM", target)
    monkeypatch.setattr(mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(mod.shutil, "which", lambda name: "/usr/bin/apt-get")
    calls = []

    class Done:
        returncode = 0

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        if "install" in cmd:
            target.write_text("")
        return Done()

    monkeypatch.setattr(mod.subprocess, "run", fake_run)
    assert mod.main() == 0
    assert calls[0] == ["apt-get", "update"]
    assert calls[1][:2] == ["apt-get", "install"] and {"chromium", "chromium-driver"} <= set(
        calls[1])
