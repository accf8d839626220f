"""`python -m nasjax describe`: the genotype, the exact parameter count, FLOPs and the drawing, for every
kind of space; a bad command line or encoding gets one line and exit status 2."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from nasjax import describe
from nasjax.spaces import DARTS_V2_CNN, DARTS_V2_RNN, LANET, DARTSSpace, NASBench101Space, NASBench201Space

LANET_TEXT = str(list(LANET))
PNG = b"\x89PNG\r\n\x1a\n"


def _run(capsys, *argv):
    code = describe.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def _value(lines, key):
    return next(line.split(" ", len(key.split()))[-1] for line in lines if line.startswith(key + " "))


def test_lanet_prints_the_published_count_and_draws_its_cell(tmp_path):
    """The acceptance command, as a subprocess: LaNet at 36 channels x 20 cells has 3,222,982 parameters."""
    out = tmp_path / "lanet.png"
    run = subprocess.run([sys.executable, "-m", "nasjax", "describe", "nasnet", LANET_TEXT, "--channels", "36",
                          "--layers", "20", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('sep_conv_3x3', 1)")
    assert "normal_concat=[5, 6, 7, 8]" in lines[0]
    assert f"list {list(LANET)}" in lines
    assert "params 3222982" in lines
    assert int(_value(lines, "flops")) > 0
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000


def test_small_network_counts_and_auxiliary_head_line(capsys, tmp_path):
    code, lines, err = _run(capsys, "nasnet", LANET_TEXT, "--channels", 8, "--layers", 3, "--out", tmp_path / "a.png")
    assert code == 0 and not err
    code, aux_lines, _ = _run(capsys, "nasnet", LANET_TEXT, "--channels", 8, "--layers", 3, "--auxiliary",
                              "--out", tmp_path / "b.png")
    assert code == 0
    # The auxiliary head is reported on its own line; `params` stays the reference's count without it.
    assert _value(aux_lines, "params") == _value(lines, "params")
    assert int(_value(aux_lines, "auxiliary head params")) > 0
    assert _value(aux_lines, "flops") == _value(lines, "flops")  # inference: no auxiliary head


def test_darts_genotype_string_gives_darts_v2s_count(capsys, tmp_path):
    """DARTS' train.py logs 3.349342 MB for DARTS_V2 at 36 channels, 20 cells (the space's default size)."""
    code, lines, _ = _run(capsys, "darts", repr(DARTS_V2_CNN), "--out", tmp_path / "d.png")
    assert code == 0
    space = DARTSSpace()  # the canonical genotype: each node's smaller input first
    assert lines[0] == space.describe(space.from_genotype(*DARTS_V2_CNN)) and "params 3349342" in lines


def test_other_spaces_draw_what_fits(capsys, tmp_path):
    nb201 = NASBench201Space()
    text = nb201.to_string(np.asarray(nb201.sample(jax.random.key(0), 1)[0]))
    for argv in (["nasbench201", text, "--channels", 4, "--layers", 1],
                 ["convnet-motivating", "[2, 0, 1, -1, -1, -1, 0, 1, -1, -1, -1]"],
                 ["nasbench101", str(NASBench101Space().sample(jax.random.key(1), 1)[0].tolist()),
                  "--channels", 8, "--layers", 1]):
        out = tmp_path / f"{argv[0]}.png"
        code, lines, err = _run(capsys, *argv, "--out", out)
        assert code == 0, err
        assert int(_value(lines, "params")) > 0 and int(_value(lines, "flops")) > 0
        assert out.read_bytes()[:8] == PNG


def test_recurrent_cell_counts_darts_v2s_language_model(capsys, tmp_path):
    """DARTS' recurrent V2 cell at its evaluation size (850 units, 10,000 words): 23 M parameters as DARTS
    reports (embedding, W0, Ws, decoder bias); no image FLOPs for a language model."""
    code, lines, _ = _run(capsys, "rnn-darts", repr(DARTS_V2_RNN), "--out", tmp_path / "r.png")
    assert code == 0 and lines[0] == repr(DARTS_V2_RNN)
    assert "params 22960000" in lines and not any(line.startswith("flops") for line in lines)


@pytest.mark.parametrize("argv, message", [
    (["nasnet", str(list(LANET[:-1]))], "NASNetSpace: a list of 27 ints, expected 4 per node"),
    (["nasnet", str([9] + list(LANET[1:]))], "node 0 slot 0: op id 9 out of range"),
    (["nasnet", "[1, 2"], "is not a list of ints"),
    (["nasnet", "Genotype(normal=[('conv_9x9', 0)])"], "missing fields"),
    (["darts", str(list(LANET))], "DARTSSpace: encoding has shape"),
    (["resnet", "[1]"], "unknown space 'resnet'"),
    (["convnet-motivating", "[2, 0, 1, -1, -1, -1, 0, 1, -1, -1, -1]", "--layers", "3"], "--layers does not apply"),
    (["nasnet", LANET_TEXT, "--channels", "7"], "init_channels must be a positive even number"),
    (["nasnet"], "the following arguments are required: encoding"),
])
def test_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, lines, err = _run(capsys, *argv)
    assert code == 2 and not lines
    assert len(err) == 1 and err[0].startswith("describe: error: ") and message in err[0], err


def test_unknown_command_exits_2():
    run = subprocess.run([sys.executable, "-m", "nasjax", "draw"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "usage: python -m nasjax {describe}" in run.stderr


def test_encodings_in_each_notation_agree():
    space = DARTSSpace()
    enc = space.from_genotype(*DARTS_V2_CNN)
    np.testing.assert_array_equal(describe.parse_encoding(space, str(enc.tolist())), enc)
    np.testing.assert_array_equal(describe.parse_encoding(space, str(enc.reshape(-1).tolist())), enc)
