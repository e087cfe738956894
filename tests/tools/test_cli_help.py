"""Every command-line tool: its --help, the examples in it, the commands of the READMEs, and the
common error path (multitask_pose/engine/cli.py).

Scripts run in-process through their parser (captured when ``main`` builds it) except the few
subprocess runs that check what a user sees on the terminal (warnings, traceback, exit code).

Rule for paths in examples and README commands: a config file (``--config-file`` and any
``*.yaml`` argument) must exist in the repository; other repository paths must exist too, except
placeholders: values containing ``...``, ``<``, ``>`` or ``$``, paths under ``output/`` (results
of runs), files written by an earlier command of the same README (``--output`` values), and
downloads the README tells the user to fetch (paths under ``datasets/`` other than
``datasets/samples``, and bare file names such as a released checkpoint). ``KEY VALUE``
overrides must name keys of the config of their stage and, unless the value is a placeholder,
merge (right type).
"""

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

import multitask_pose
from multitask_pose.engine import cli
from multitask_pose.engine.cli import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
RCNN = "configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml"
TOPDOWN = "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml"
TOOLS = sorted(
    [str(p.relative_to(ROOT)) for p in (ROOT / "tools").glob("*.py")]
    + [f"projects/TopDown/{n}.py" for n in ("train_net", "posefix_refine", "study")]
)
EXPECTED_TOOLS = {
    "ablate", "analyze_keypoints", "convert_checkpoint", "convert_keypoints", "data_study", "demo",
    "detect_persons", "detector_study", "export_model", "main_job", "plot_curves", "pseudo_label",
    "select_data", "select_hard_examples", "synth_people_stats", "train_net", "train_zoo",
    "posefix_refine", "study",
}  # fmt: skip


class _Parser(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


_modules = {}


def load_tool(script):
    """The script as a module (imported once, under a name of its own)."""
    if script not in _modules:
        for folder in (ROOT / "tools", ROOT / "projects" / "TopDown"):
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        name = "cli_test_" + script.replace("/", "_")[:-3]
        spec = importlib.util.spec_from_file_location(name, ROOT / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[script] = module
    return _modules[script]


def parser_of(script) -> argparse.ArgumentParser:
    """The tool's parser: its ``build_parser()``, or the one its ``main`` builds (captured at
    ``parse_args``, before anything runs)."""
    module = load_tool(script)
    if hasattr(module, "build_parser"):
        return module.build_parser()

    def capture(self, *a, **k):
        raise _Parser(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
        with pytest.raises(_Parser) as e:
            module.main([])
    return e.value.parser


def test_every_tool_is_covered():
    assert {Path(t).stem for t in TOOLS} == EXPECTED_TOOLS


def _format(parser, action) -> str:
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return formatter.format_help()


@pytest.mark.parametrize("script", TOOLS)
def test_help(script):
    module = load_tool(script)
    parser = parser_of(script)
    text = parser.format_help()
    assert "--debug" in text
    # The description is the script's own docstring (or its first line), also where a library
    # module builds the parser (the studies).
    assert parser.description and module.__doc__.startswith(parser.description.strip())
    assert "(default: None)" not in text and "default: )" not in text
    # No variable name shown as a default (e.g. a module constant's name).
    for shown in re.findall(r"default: ([A-Z][A-Z_]+)\)", text):
        assert not hasattr(module, shown), (script, shown)
    # Every real default is stated.
    for action in parser._actions:
        d = action.default
        real = d not in (None, False, "", [], ()) and d is not argparse.SUPPRESS
        if action.option_strings and real:
            assert "default" in _format(parser, action).lower(), (script, action.option_strings)
    # The docstring layout is kept: no example line lost its continuation (a backslash-newline
    # in a plain docstring joins the lines with a run of spaces).
    for line in text.splitlines():
        command = line.split("#")[0].rstrip()
        if re.match(r"\s*(python|\$PY) ", command):
            assert not re.search(r"\S {4,}\S", command), (script, line)
    if Path(script).stem == "train_net":
        assert "Run on multiple machines" not in text  # detectron2's generic epilog
        stage = "top-down" if "TopDown" in script else "multitask R-CNN"
        assert f"Train or evaluate a {stage} config" in text
        assert "--allow-random-weights" in text


# --- examples and README commands -------------------------------------------------------------


def _commands(lines):
    """Commands (lists of words) of ``$PY``/``python`` lines running a repository script, with
    their backslash continuations joined."""
    out, current = [], None
    for line in lines:
        # comments dropped; a <placeholder> made one word
        stripped = re.sub(r"<[^>]*>", "<x>", re.sub(r"\s#.*$", "", line)).strip()
        if current is not None:
            current += " " + stripped.rstrip("\\")
            if not stripped.endswith("\\"):
                out.append(current)
                current = None
            continue
        if re.match(r"(\$PY|python) (tools|projects/TopDown)/\S+\.py", stripped):
            if stripped.endswith("\\"):
                current = stripped.rstrip("\\")
            else:
                out.append(stripped)
    # "[--flag value]": an optional part, shown as documentation
    return [shlex.split(re.sub(r"\[-[^\]]*\]", "", c)) for c in out]


def _readme_commands(readme):
    """Commands in the fenced code blocks of ``readme`` (fences may be indented)."""
    inside, lines = False, []
    for line in (ROOT / readme).read_text().splitlines():
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if inside:
            lines.append(line)
    return _commands(lines)


def _placeholder(value, produced) -> bool:
    return (
        any(c in value for c in ("...", "<", ">", "$"))
        or value.startswith("output/")
        or any(value == p or value.startswith(p.rstrip("/") + "/") for p in produced)
    )


def _stage_cfg(config_file, script):
    from pose_topdown import add_topdown_config

    if config_file and (ROOT / config_file).is_file():
        stage = cli.config_stage(str(ROOT / config_file))[0]
    else:
        stage = "topdown" if "TopDown" in script or "--topdown" in script else "rcnn"
    cfg = multitask_pose.get_multitask_cfg()
    return add_topdown_config(cfg) if stage == "topdown" else cfg


def check_command(words, produced, where):
    """Problems of one command (empty: fine)."""
    problems = []
    script = words[1]
    if not (ROOT / script).is_file():
        return [f"{where}: no script {script}"]
    if script not in TOOLS:
        return [f"{where}: {script} is not a known tool"]
    argv = words[2:]
    parser = parser_of(script)
    # A <placeholder> of a typed option parses as its default (or first choice).
    for i, value in enumerate(argv):
        action = parser._option_string_actions.get(argv[i - 1]) if i else None
        if value == "<x>" and action is not None and (action.type or action.choices):
            argv[i] = str(action.default if action.default is not None else action.choices[0])
    if "..." in argv:  # "..." may leave out required arguments (shown in another example)
        for item in (*parser._actions, *parser._mutually_exclusive_groups):
            item.required = False
    try:
        with mock.patch.object(sys, "stderr"):
            args = parser.parse_args(argv)
    except SystemExit:
        return [f"{where}: {' '.join(words)}: its arguments do not parse"]
    for i, value in enumerate(argv):
        flag = argv[i - 1] if i else ""
        is_config = flag == "--config-file" or value.endswith((".yaml", ".yml"))
        key = re.fullmatch(r"[A-Z0-9_.]+", value)
        if value.startswith("-") or _placeholder(value, produced) or key:
            continue
        if flag in ("--output", "--report"):
            continue
        top = value.split("/")[0]
        if not (is_config or ("/" in value and (ROOT / top).exists() and top not in (".", ".."))):
            continue  # not a repository path (a user's folder, a download, a dataset name)
        if value.startswith("datasets/") and not value.startswith("datasets/samples"):
            continue  # a download the README describes
        if not (ROOT / value).exists():
            problems.append(f"{where}: {script}: {value} does not exist")
    for flag in ("--output", "--report"):
        if flag in argv:
            produced.add(argv[argv.index(flag) + 1])
    # "..." in a key's place stands for pairs left out
    rest, opts = [o for o in (getattr(args, "opts", None) or []) if o != "--"], []
    while rest:
        if rest[0] == "...":
            rest = rest[1:]
            continue
        opts, rest = opts + rest[:2], rest[2:]
    if opts:
        config = getattr(args, "config_file", None)
        cfg = _stage_cfg(config, " ".join(words))
        keys = opts[0::2]
        for key in keys:
            if not cli._has(cfg, key):
                problems.append(f"{where}: {script}: unknown config key {key}")
        if not problems and config and (ROOT / config).is_file():
            pairs = [v for k, val in zip(opts[0::2], opts[1::2])
                     if not _placeholder(val, produced) for v in (k, val)]  # fmt: skip
            try:
                cli.load_config(cfg, str(ROOT / config), pairs)
            except ConfigError as e:
                problems.append(f"{where}: {script}: {e}")
    return problems


def _examples(script):
    module = load_tool(script)
    help_lines = parser_of(script).format_help().splitlines()
    return _commands((module.__doc__ or "").splitlines() + help_lines)


@pytest.mark.parametrize("script", TOOLS)
def test_help_examples(script, monkeypatch):
    monkeypatch.chdir(ROOT)
    produced = set()
    problems = [p for words in _examples(script) for p in check_command(words, produced, script)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("readme", ["README.md", "projects/TopDown/README.md"])
def test_readme_commands(readme, monkeypatch):
    monkeypatch.chdir(ROOT)
    commands = _readme_commands(readme)
    assert len(commands) >= 5, commands
    produced, problems = set(), []
    for words in commands:
        problems += check_command(words, produced, readme)
    assert not problems, "\n".join(problems)


def test_the_checker_finds_broken_commands():
    """The checks above can fail: each broken command is reported."""
    base = ["$PY", "tools/train_net.py", "--config-file", RCNN]
    assert check_command(["$PY", "tools/nope.py"], set(), "x")
    assert check_command(["$PY", "tools/train_net.py", "--conf-file", RCNN], set(), "x")
    assert check_command(["$PY", "tools/train_net.py", "--config-file", RCNN + ".x"], set(), "x")
    assert check_command([*base, "MODEL.ROI_HEADS.SCORE_THRESH", "0.5"], set(), "x")
    assert check_command([*base, "SOLVER.MAX_ITER", "many"], set(), "x")
    fine = [*base, "SOLVER.MAX_ITER", "5", "MODEL.WEIGHTS", "output/x.pth"]
    assert not check_command(fine, set(), "x")
    assert _commands(["    $PY tools/demo.py --config-file a.yaml \\", "        --input b"]) == [
        ["$PY", "tools/demo.py", "--config-file", "a.yaml", "--input", "b"]
    ]


# --- the error path ----------------------------------------------------------------------------

RCNN_OPTS = ["--input", str(ROOT / "datasets/samples/coco"), "--output"]


def one_line(err: str, tool: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: "), err
    return lines[0]


def run_demo(capsys, tmp_path, *argv):
    demo = load_tool("tools/demo.py")
    code = demo.main([*RCNN_OPTS, str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    return code, err


def test_misspelt_key_on_the_command_line_suggests_the_close_key(capsys, tmp_path):
    typo = ["MODEL.ROI_HEADS.SCORE_THRESH", "0.3"]
    code, err = run_demo(capsys, tmp_path, "--config-file", RCNN, *typo)
    assert code == 2
    assert one_line(err, "demo").startswith(
        "demo: unknown config key MODEL.ROI_HEADS.SCORE_THRESH; did you mean"
        " MODEL.ROI_HEADS.SCORE_THRESH_TEST"
    )
    assert not (tmp_path / "out").exists()


def test_misspelt_key_in_a_yaml_file_suggests_the_close_key(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text(f"_BASE_: {ROOT / RCNN}\nMODEL:\n  ROI_KEYPOINT_HEAD:\n    LOSS_WIEGHT: 2.0\n")
    with pytest.raises(ConfigError) as e:
        cli.load_config(multitask_pose.get_multitask_cfg(), str(bad), stage="rcnn")
    assert str(e.value).startswith(
        f"{bad}: unknown config key MODEL.ROI_KEYPOINT_HEAD.LOSS_WIEGHT; did you mean"
        " MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT"
    )
    # A key of the other stage is named as such.
    with pytest.raises(ConfigError, match="TEST.TOPDOWN.BOX_SOURCE is a key of projects/TopDown's"):
        cli.load_config(multitask_pose.get_multitask_cfg(), str(ROOT / RCNN),
                        ["TEST.TOPDOWN.BOX_SOURCE", "gt"])  # fmt: skip


def test_value_of_the_wrong_type(capsys, tmp_path):
    code, err = run_demo(capsys, tmp_path, "--config-file", RCNN, "SOLVER.MAX_ITER", "many")
    assert code == 2
    assert re.fullmatch(
        r"demo: config override SOLVER.MAX_ITER many: not an int \(the config has SOLVER.MAX_ITER"
        r" \d+\)", one_line(err, "demo")
    )


def test_wrong_stage_both_ways(capsys, tmp_path):
    code, err = run_demo(capsys, tmp_path, "--config-file", TOPDOWN)
    assert code == 2
    assert one_line(err, "demo") == (
        f"demo: --config-file {TOPDOWN} is a top-down config (it sets MODEL.TOPDOWN), not an"
        " R-CNN one: add --topdown"
    )
    code, err = run_demo(capsys, tmp_path, "--topdown", "--config-file", RCNN)
    assert code == 2
    assert one_line(err, "demo") == (
        f"demo: --config-file {RCNN} is an R-CNN config (MODEL.META_ARCHITECTURE GeneralizedRCNN,"
        " no top-down keys), not a top-down one: drop --topdown"
    )
    # Both train_net scripts (detected from the yaml before merging, in their own process).
    for script, config, other in (
        ("tools/train_net.py", TOPDOWN, "projects/TopDown/train_net.py"),
        ("projects/TopDown/train_net.py", RCNN, "tools/train_net.py"),
    ):
        module = load_tool(script)
        args = module.build_parser().parse_args(["--config-file", config])
        tool = "topdown train_net" if "TopDown" in script else "train_net"
        with pytest.raises(SystemExit) as e, cli.tool_errors(tool, debug=False):
            module.main(args)
        assert e.value.code == 2
        line = one_line(capsys.readouterr().err, tool)
        assert f"--config-file {config} is" in line and other in line
    assert cli.config_stage(str(ROOT / "projects/TopDown/configs/COCO/ensembles/"
                                 "hintpose_6_models_256x192.yaml"))[0] == "topdown"  # fmt: skip
    # Through the _BASE_ chain only: this file sets no top-down key itself.
    acc_test = ROOT / "projects/TopDown/configs/COCO/hrnet_w32_256x192_inference_acc_test.yaml"
    assert "TOPDOWN" not in acc_test.read_text()
    assert cli.config_stage(str(acc_test)) == ("topdown", "it sets MODEL.TOPDOWN")


def test_missing_config_file_and_checkpoint(capsys, tmp_path):
    export_model = load_tool("tools/export_model.py")
    missing = RCNN.replace("R_18", "R_81")
    assert export_model.main(["--config-file", missing, "--output", str(tmp_path / "m.onnx")]) == 2
    line = one_line(capsys.readouterr().err, "export_model")
    assert line.startswith(f"export_model: --config-file {missing}: no such file; did you mean")
    assert RCNN in line
    code, err = run_demo(capsys, tmp_path, "--config-file", RCNN, "MODEL.WEIGHTS",
                         str(tmp_path / "none.pth"))  # fmt: skip
    assert code == 2
    missing = f"demo: MODEL.WEIGHTS {tmp_path / 'none.pth'}: no such file"
    assert one_line(err, "demo").startswith(missing)


def test_debug_gives_the_traceback_and_bugs_keep_theirs(capsys, tmp_path):
    demo = load_tool("tools/demo.py")
    with pytest.raises(ConfigError, match="unknown config key MODEL.ROI_HEADS.SCORE_THRESH"):
        demo.main(["--debug", *RCNN_OPTS, str(tmp_path / "o"), "--config-file", RCNN,
                   "MODEL.ROI_HEADS.SCORE_THRESH", "0.3"])  # fmt: skip

    @cli.entry_point("tool")
    def buggy(argv=None):
        raise KeyError("a bug")

    with pytest.raises(KeyError):  # not a UserError: its traceback is shown
        buggy([])


def test_terminal_output_one_line_exit_2_no_warnings(tmp_path):
    """What a user sees: one line and exit 2; the traceback with --debug; no warning of a
    dependency (FutureWarning, DeprecationWarning, torch's meshgrid notice) on --help, on an
    error or on a normal run."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'projects/TopDown'}",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    env.pop("PYTHONWARNINGS", None)

    def run(*args):
        p = subprocess.run([PY, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
        return p.returncode, p.stderr

    code, err = run("tools/demo.py", "--help")
    assert code == 0 and "Warning" not in err, err
    args = ["tools/train_net.py", "--config-file", TOPDOWN]
    code, err = run(*args)
    assert code == 2 and "Warning" not in err
    line = one_line(err, "train_net")
    assert line.startswith(f"train_net: --config-file {TOPDOWN} is a top-down")
    code, err = run(*args, "--debug")
    assert code == 1 and "Traceback" in err and "ConfigError" in err
    # A normal run (random weights allowed, one image): no dependency warning either.
    code, err = run("tools/demo.py", "--config-file", RCNN, "--input",
                    "datasets/samples/coco/000000000785.jpg", "--output", tmp_path / "demo",
                    "--allow-random-weights")  # fmt: skip
    assert code == 0 and "Warning" not in err, err[-3000:]


def test_refusal_in_a_worker_process_is_one_line(tmp_path):
    """--num-gpus 2 (CPU processes): a worker's refusal ends as the tool's one line, exit 2."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'projects/TopDown'}",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    p = subprocess.run(
        [PY, "tools/train_net.py", "--config-file", RCNN, "--eval-only", "--num-gpus", "2",
         "--dist-url", "auto", "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.WEIGHTS", ""],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr[-3000:]
    # torch's own log lines of the workers (no CUDA, spawn stopping the other worker) remain;
    # no traceback, and the refusal once, last.
    assert "Traceback" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("train_net: ")]
    assert len(lines) == 1 and p.stderr.strip().splitlines()[-1] == lines[0]
    assert lines[0].startswith("train_net: MODEL.WEIGHTS is empty")
