"""Every reader of a tuned configuration (refresh, serve, evaluate) refuses the same files the same way.

Each bad file must end the command with one line naming the problem and exit 2, before any
work: a misspelt key must not fall back to defaults, a huge number must not be an
"unexpected OverflowError", a huge file must not be read whole.
"""

from __future__ import annotations

import json

import pytest

from batch.similarity import REGISTRY
from schemas.tuned import MAX_CONFIG_BYTES, MEASURE_PARAMS, TunedConfig, TunedConfigError, read_tuned
from streamsim.app.cli import main

BAD = {
    "misspelt params": ({"similarity": "bm25", "parms": {"k1": 3.0}}, "unknown key 'parms'"),
    "misspelt serving": ({"similarity": "cosine", "servng": {"popularity_blend": 0.9}}, "unknown key 'servng'"),
    "unknown measure": ({"similarity": "cosinus"}, "unknown similarity 'cosinus'"),
    "negative h": ({"similarity": "shrinkage", "params": {"h": -1}}, "h=-1 must be within [0, 1e+06]"),
    "h on cosine": ({"similarity": "cosine", "params": {"h": 5}}, "'cosine' has no parameter 'h'"),
    "400-digit h": ({"similarity": "shrinkage", "params": {"h": 10**400}}, "is not a number in range"),
    "provenance not an object": ({"similarity": "cosine", "provenance": []}, '"provenance" must be an object'),
}


def readers(tmp_path):
    """The three commands that read ``--config``, each up to the point where it reads it."""
    train = tmp_path / "train.csv"
    train.write_text("user,productSku,type\nu1,a,1\nu1,b,1\nu2,a,1\nu2,b,2\n")
    test = tmp_path / "test.csv"
    test.write_text("user,item\nu1,a\n")
    return {
        "refresh": ["refresh", "--dataproc", "c", "--region", "r", "--dry-run", "--job-dir", str(tmp_path / "job")],
        "serve": ["serve", "--port", "0", "--bigtable-host", "127.0.0.1:1"],
        "evaluate": ["evaluate", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "report")],
    }


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("reader", ["refresh", "serve", "evaluate"])
def test_every_reader_refuses_a_bad_config(tmp_path, capsys, reader, case):
    config, message = BAD[case]
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps(config))
    assert main([*readers(tmp_path)[reader], "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(path) in err, err
    assert "unexpected" not in err


@pytest.mark.parametrize("reader", ["refresh", "serve", "evaluate"])
def test_a_huge_file_is_refused_unread(tmp_path, capsys, reader):
    path = tmp_path / "huge.json"
    valid = {"similarity": "cosine", "provenance": {"note": "x" * (MAX_CONFIG_BYTES + 1)}}
    path.write_text(json.dumps(valid))
    assert main([*readers(tmp_path)[reader], "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "larger than 64 KiB" in err


def test_a_valid_config_reads_back_and_every_measure_has_its_parameters(tmp_path):
    assert set(REGISTRY) == set(MEASURE_PARAMS)
    path = tmp_path / "tuned.json"
    path.write_text(TunedConfig("bm25", {"k1": 3.0, "b": 0.1}).to_json())
    assert read_tuned(path).params == {"k1": 3.0, "b": 0.1}
    with pytest.raises(TunedConfigError, match="b=2"):
        TunedConfig("bm25", {"b": 2})  # what tune writes is held to the same contract


def test_a_valid_config_reaches_the_refresh_command_line(tmp_path, capsys):
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"similarity": "bm25", "params": {"k1": 3.0, "b": 0.1}}))
    assert main([*readers(tmp_path)["refresh"], "--config", str(path)]) == 0
    assert "--similarity bm25 --param=k1=3.0 --param=b=0.1" in capsys.readouterr().out
