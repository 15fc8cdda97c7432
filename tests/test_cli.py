"""The pedseg command: help on every command, and one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pedseg_lib import cli

COMMANDS = ["download", "train", "resume"]


def _run(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr()


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    argv = [command, "--help"] if command else ["--help"]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pedseg")
    if command is None:
        assert all(name in out for name in COMMANDS)


def test_version_is_the_installed_release_s(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pedseg {importlib.metadata.version('pedseg')}"


def test_train_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for option in ("--preset", "--config", "--set KEY=VALUE", "--out", "torchrun"):
        assert option in out


def test_evaluate_and_predict_are_registered_when_inference_exists():
    pytest.importorskip("pedseg_lib.inference", reason="pedseg_lib.inference not installed (optional module)")
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"evaluate", "predict"} <= set(choices)


def _one_line_error(code, captured, pattern):
    import re

    assert code == cli.EXIT_USAGE
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pedseg: error: "), captured.err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in captured.err


def test_bad_override(capsys):
    _one_line_error(*_run(capsys, "train", "--preset", "smoke", "--set", "lrr=0.1"), "did you mean 'lr'")
    _one_line_error(*_run(capsys, "train", "--set", "epochs=many"), "'epochs'.*'many'")


def test_patience_without_validation_images(capsys):
    _one_line_error(*_run(capsys, "train", "--preset", "tutorial", "--set", "patience=3"),
                    r"'patience' \(3\) needs validation images but 'val_size' is 0: set val_size=N")


def test_bad_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\n")
    _one_line_error(*_run(capsys, "train", "--config", str(bad)), r"bad.yaml is not valid YAML")
    _one_line_error(*_run(capsys, "train", "--config", str(tmp_path / "none.yaml")), "cannot read config file")


def test_missing_data(tmp_path, capsys):
    argv = ["train", "--preset", "smoke", "--set", f"data_root={tmp_path / 'nothing'}", "--out", str(tmp_path / "r")]
    _one_line_error(*_run(capsys, *argv), r"no Penn-Fudan dataset at .*nothing")


def test_unwritable_output(tmp_path, synthetic_root, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["train", "--preset", "smoke", "--set", f"data_root={synthetic_root}", "--out", str(blocker / "run")]
    _one_line_error(*_run(capsys, *argv), r"cannot write to the run folder")


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    _one_line_error(*_run(capsys, "resume", str(tmp_path)), "is not a run folder")


def test_console_entry_point_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "pedseg_lib", "train", "--set", "weights=imagenett"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pedseg: error: config key 'weights': 'imagenett' is not valid - use coco, imagenet or none."
    ]
