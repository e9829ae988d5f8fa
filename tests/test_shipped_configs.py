"""The configs shipped with the package: found with no checkout, listed and copied by `paddle-losses configs`."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paddle_losses import shipped_configs
from paddle_losses.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_every_file_of_the_repositorys_configs_folder_is_listed():
    expected = sorted(p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
    assert shipped_configs.names() == expected
    assert "quickstart.yaml" in expected and "quick_start/arcmargin_ce.yaml" in expected


@pytest.mark.parametrize("name", ["configs/quick_start/arcmargin_ce.yaml", "quick_start/arcmargin_ce.yaml",
                                  "quick_start/arcmargin_ce", "arcmargin_ce"])
def test_find_accepts_the_paths_the_docs_use(name):
    assert shipped_configs.find(name) == shipped_configs.root() / "quick_start" / "arcmargin_ce.yaml"


def test_resolve_prefers_an_existing_file_and_leaves_unknown_paths_for_the_loader(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped_configs.resolve("configs/quickstart.yaml") == str(shipped_configs.default_config())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quickstart.yaml").write_text("Global: {}\n")
    assert shipped_configs.resolve("configs/quickstart.yaml") == "configs/quickstart.yaml"
    assert shipped_configs.resolve("nope.yaml") == "nope.yaml"


def test_configs_copy_writes_one_file_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["configs", "copy", "arcmargin_ce", str(tmp_path)]) == 0
    copied = tmp_path / "arcmargin_ce.yaml"
    assert copied.read_text() == (ROOT / "configs" / "quick_start" / "arcmargin_ce.yaml").read_text()
    assert main(["configs", "copy", "arcmargin_ce", str(tmp_path)]) == 2
    assert "already exists (pass --force to overwrite)" in capsys.readouterr().err
    assert main(["configs", "copy", "arcmargin_ce", str(tmp_path), "--force"]) == 0
    assert main(["configs", "copy", "all", str(tmp_path / "all")]) == 0
    assert sorted(p.relative_to(tmp_path / "all").as_posix()
                  for p in (tmp_path / "all").rglob("*.yaml")) == shipped_configs.names()


def test_configs_copy_of_an_unknown_name_is_one_error_line(tmp_path, capsys):
    assert main(["configs", "copy", "no_such_config", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("error: no shipped config 'no_such_config'; "
                                               "`paddle-losses configs list` shows them")


@pytest.fixture(scope="module")
def installed_layout(tmp_path_factory):
    """site-packages as `pip install .` lays it out: the package, with configs/ inside it, no checkout."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT / "paddle_losses", site / "paddle_losses",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", site / "paddle_losses" / "configs")
    return site


def run_cli(site, cwd, *args, timeout=120):
    inherited = ("OMP_NUM_THREADS", "PYTHONPATH", "PADDLE_LOSSES_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "paddle_losses.cli", *args], capture_output=True, text=True,
                          cwd=str(cwd), env=env, timeout=timeout)


def test_an_installed_package_lists_its_own_configs_from_any_directory(installed_layout, tmp_path):
    res = run_cli(installed_layout, tmp_path, "configs", "list")
    assert res.returncode == 0, res.stderr
    assert f"in {installed_layout / 'paddle_losses' / 'configs'})" in res.stdout
    assert "  quick_start/triplet_angular_ce.yaml" in res.stdout


def test_an_installed_package_trains_a_shipped_config_from_another_directory_on_all_cores(installed_layout,
                                                                                          tmp_path):
    # the README's command, from a directory with no configs/: the shipped copy is used
    res = run_cli(installed_layout, tmp_path, "train", "-c", "configs/quick_start/tripletv2_ce.yaml",
                  "-o", "Global.epochs=1", "-o", "Global.iter_per_epoch=2", "-o", "Global.eval_before_train=False",
                  "-o", f"Global.output_dir={tmp_path / 'out'}", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    log = res.stdout + res.stderr
    assert "[Eval][Epoch 1][Avg]" in log
    assert f"CPU threads: {len(os.sched_getaffinity(0))}" in log
    assert "OMP_NUM_THREADS" not in log and "ccache" not in log and "Warning" not in log
    assert (tmp_path / "out" / "latest.pdparams").exists()


def test_the_training_guides_config_table_lists_every_quick_start_config():
    guide = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    listed = {line.split("`")[1] for line in guide.splitlines() if line.startswith("| `") and ".yaml`" in line}
    shipped = {p.name for p in (ROOT / "configs" / "quick_start").glob("*.yaml")}
    assert shipped <= listed, sorted(shipped - listed)
