"""One error path and one help layout for every command-line tool.

A mistake a user can fix from a single sentence (a missing or misspelt ``--config-file``, a config
of the other stage, an unknown or ill-typed config key, a missing checkpoint, a refusal to predict
from random weights) is a :class:`UserError`; :func:`tool_errors` (or :func:`entry_point` around a
tool's ``main(argv)``) prints it as ``<tool>: <culprit and suggestion>`` on stderr and exits with
:data:`EXIT_USER_ERROR` (2, argparse's own code for a bad argument). ``--debug``, which every
tool's parser accepts, shows the traceback instead. Every other exception is left alone, traceback
and all: a ``KeyError`` or ``ValueError`` from deep inside a model is a bug to report, not a
message to the user, so only errors raised as :class:`UserError` (or converted to one where their
cause is known, e.g. yacs's errors in :func:`load_config`) take the short path.

:func:`load_config` merges ``--config-file`` and the ``KEY VALUE`` overrides with these checks
done first: the file exists (close file names suggested), it belongs to the tool's stage (read
from its keys along the ``_BASE_`` chain, before merging), and every key it or the overrides name
exists (close key names suggested, or the other stage named for one of its keys).

:func:`argument_parser` and :func:`train_net_parser` build the tools' parsers: the module
docstring kept as written (examples with their ``\\`` continuations), each option's default shown
unless its help already says it or it has none, and ``--debug``.
"""

import argparse
import contextlib
import copy
import difflib
import functools
import os
import sys
from typing import List, Optional, Sequence

from ..shared.errors import ConfigError, UserError

__all__ = [
    "EXIT_USER_ERROR",
    "ConfigError",
    "HelpFormatter",
    "UserError",
    "argument_parser",
    "config_stage",
    "current_debug",
    "debug_requested",
    "entry_point",
    "load_config",
    "merge_overrides",
    "message",
    "tool_errors",
    "train_net_parser",
]

EXIT_USER_ERROR = 2
STAGES = {"rcnn": "an R-CNN", "topdown": "a top-down"}

_debug = False  # the running tool's --debug (read by launch's worker processes)


def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    """``--debug`` among the options of ``argv`` (default ``sys.argv[1:]``), before any ``--``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        args = args[: args.index("--")]
    return "--debug" in args


def message(e: BaseException) -> str:
    # str(KeyError("x")) quotes its message; a one-argument error's argument is the message.
    return str(e.args[0]) if len(e.args) == 1 else str(e)


def _report(tool: str, e: BaseException):
    print(f"{tool}: {message(e)}", file=sys.stderr)


@contextlib.contextmanager
def tool_errors(tool: str, debug: Optional[bool] = None):
    """A tool's body: a :class:`UserError` becomes ``<tool>: <message>`` on stderr and
    ``SystemExit(2)``, unless ``debug`` (default: ``--debug`` in ``sys.argv``), which re-raises
    it."""
    global _debug
    before, _debug = _debug, debug_requested() if debug is None else debug
    try:
        yield
    except UserError as e:
        if _debug:
            raise
        _report(tool, e)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        _debug = before


def entry_point(tool: str):
    """Decorator for a tool's ``main(argv=None)`` (run as ``sys.exit(main())``): a
    :class:`UserError` is printed as one line and ``main`` returns 2; ``--debug`` in ``argv``
    (or ``sys.argv``) re-raises it."""

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None, *args, **kwargs):
            global _debug
            before, _debug = _debug, debug_requested(argv)
            try:
                return main(argv, *args, **kwargs)
            except UserError as e:
                if _debug:
                    raise
                _report(tool, e)
                return EXIT_USER_ERROR
            finally:
                _debug = before

        return run

    return wrap


def current_debug() -> bool:
    """The running tool's ``--debug`` (as :func:`tool_errors` set it)."""
    return _debug


# --- help texts ---------------------------------------------------------------------------------


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description and epilog as written; an option's default appended to its help (or as
    its help) when it has a real one (not None, False or empty) and the help does not already
    state it; list defaults as they are typed (space-separated)."""

    @staticmethod
    def _shows_default(action) -> bool:
        default = action.default
        return bool(action.option_strings) and not (
            default is None
            or default is False
            or default is argparse.SUPPRESS
            or default in ("", [], ())
        )

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or not self._shows_default(action):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"

    def _format_action(self, action):
        if not action.help and self._shows_default(action):
            action = copy.copy(action)
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _expand_help(self, action):
        if isinstance(action.default, (list, tuple)):
            action = copy.copy(action)
            action.default = " ".join(map(str, action.default))
        return super()._expand_help(action)


def _add_debug(parser):
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error instead of one line"
    )
    return parser


def argument_parser(doc: Optional[str], **kwargs) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with ``doc`` as its description (layout kept), :class:`HelpFormatter`
    and ``--debug``."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    return _add_debug(argparse.ArgumentParser(description=doc, **kwargs))


def train_net_parser(doc: str) -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` (its flags, which the trainers read) with
    ``doc`` as description and epilog in place of detectron2's generic examples, plus
    ``--allow-random-weights`` and ``--debug``."""
    from detectron2.engine import default_argument_parser

    from .weights_check import add_allow_random_weights_argument

    parser = default_argument_parser(epilog=TRAIN_NET_EPILOG)
    parser.description = doc
    parser.formatter_class = HelpFormatter
    for action in parser._actions:  # detectron2's texts for the two that differ here
        if action.dest == "config_file":
            action.help = "the config yaml (of this stage)"
        elif action.dest == "opts":
            action.help = "config overrides: KEY VALUE ..."
    return _add_debug(add_allow_random_weights_argument(parser))


TRAIN_NET_EPILOG = """\
KEY VALUE pairs after the options override the config (keys of this stage's config; a misspelt
key is named with the closest ones). --num-gpus N starts N worker processes (gloo on a machine
without CUDA). Each evaluation prints one summary line per dataset and writes
results_<dataset>.json into OUTPUT_DIR.
"""


# --- configs ------------------------------------------------------------------------------------


def _config_paths(cfg, prefix="") -> List[str]:
    """Every dotted path of a config, nodes and leaves."""
    out = []
    for key, value in cfg.items():
        path = prefix + key
        out.append(path)
        if isinstance(value, dict):
            out.extend(_config_paths(value, path + "."))
    return out


@functools.lru_cache(maxsize=None)
def _stage_paths():
    """The dotted paths only each stage's config has: {"rcnn": {...}, "topdown": {...}} (the
    stages installed, ``multitask_pose.config.stage_configs``)."""
    from ..config import stage_configs

    paths = {name: set(_config_paths(build())) for name, build in stage_configs().items()}
    if set(paths) != set(STAGES):
        raise RuntimeError(
            f"installed stages {sorted(paths)}, expected {sorted(STAGES)}: reinstall the package"
            " (tools/install/setup_env.sh), which declares the top-down stage in setup.py"
        )
    return {
        name: frozenset(p - set().union(*(q for other, q in paths.items() if other != name)))
        for name, p in paths.items()
    }


def _yaml_chain(path: str) -> List[tuple]:
    """[(file, dict)] from ``path`` through its ``_BASE_`` files (as detectron2 resolves them)."""
    import yaml

    chain, seen = [], set()
    while path:
        if path in seen:
            raise ConfigError(f"{path}: its _BASE_ chain loops")
        seen.add(path)
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such config file (the _BASE_ of {chain[-1][0]})")
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not a readable YAML file ({_first_line(e)})") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a config (a YAML mapping of keys)")
        chain.append((path, data))
        base = data.get("_BASE_")
        if base:
            base = os.path.expanduser(base)
            path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        else:
            path = None
    return chain


def _first_line(e) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _yaml_paths(data: dict, prefix="") -> List[str]:
    out = []
    for key, value in data.items():
        if key in ("_BASE_", "VERSION") and not prefix:
            continue
        out.append(prefix + str(key))
        if isinstance(value, dict):
            out.extend(_yaml_paths(value, f"{prefix}{key}."))
    return out


def config_stage(config_file: str) -> tuple:
    """(stage, evidence): ``"topdown"`` when the file or a ``_BASE_`` sets a key only the
    top-down config has (``evidence`` names it), else ``"rcnn"`` (``evidence``: its
    META_ARCHITECTURE, or a key only the R-CNN config has)."""
    only = _stage_paths()
    keys = [k for _, data in _yaml_chain(config_file) for k in _yaml_paths(data)]
    topdown = [k for k in keys if k in only["topdown"]]
    if topdown:
        return "topdown", "it sets " + min(topdown, key=lambda k: (k != "MODEL.TOPDOWN", len(k)))
    meta = next(
        (d["MODEL"]["META_ARCHITECTURE"] for _, d in _yaml_chain(config_file)
         if isinstance(d.get("MODEL"), dict) and "META_ARCHITECTURE" in d["MODEL"]),
        "GeneralizedRCNN",
    )  # fmt: skip
    return "rcnn", f"MODEL.META_ARCHITECTURE {meta}, no top-down keys"


def _close_files(path: str) -> List[str]:
    folder = os.path.dirname(path) or "."
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    if not folder:
        return []
    names = []
    for root, _, files in os.walk(folder):
        names += [os.path.join(root, f) for f in files if f.endswith((".yaml", ".yml"))]
        if len(names) > 5000:
            break
    return difflib.get_close_matches(os.path.normpath(path), names, n=2, cutoff=0.7)


def _unknown_key(key: str, cfg, stage_of_key: Optional[str], where: str) -> ConfigError:
    if stage_of_key:
        other = "projects/TopDown's" if stage_of_key == "topdown" else "the R-CNN's"
        return ConfigError(
            f"{where}{key} is a key of {other} config, not of this one: {_STAGE_HINT[stage_of_key]}"
        )
    leaves = [p for p in _config_paths(cfg) if not isinstance(_get(cfg, p), dict)]
    close = difflib.get_close_matches(key, leaves, n=3, cutoff=0.75)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"{where}unknown config key {key}{hint}")


_STAGE_HINT = {
    "topdown": "run top-down configs with projects/TopDown/train_net.py or tools/demo.py --topdown",
    "rcnn": "run R-CNN configs with tools/train_net.py or tools/demo.py (without --topdown)",
}


def _get(cfg, path):
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _has(cfg, path) -> bool:
    node = cfg
    for part in path.split("."):
        if not isinstance(node, dict):
            return False
        if part not in node:
            return getattr(node, "is_new_allowed", lambda: False)()
        node = node[part]
    return True


def _stage_of(path: str) -> Optional[str]:
    only = _stage_paths()
    return next((s for s in ("topdown", "rcnn") if path in only[s]), None)


def load_config(cfg, config_file: str, opts: Sequence[str] = (), *, stage: Optional[str] = None,
                other_stage: Optional[str] = None):  # fmt: skip
    """Merge ``config_file`` and the ``KEY VALUE`` list ``opts`` into ``cfg`` (which has the
    tool's keys), raising a one-line :class:`ConfigError` for a missing file, a config of the
    other ``stage`` ("rcnn" or "topdown"; ``other_stage``: what to run such a config with),
    an unknown key (close names suggested) or a value of the wrong type. Returns ``cfg``."""
    if not config_file:
        raise ConfigError("no --config-file given: pass a config yaml (see --help)")
    if not os.path.isfile(config_file):
        close = _close_files(config_file)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"--config-file {config_file}: no such file{hint}")
    if stage is not None:
        found, evidence = config_stage(config_file)
        if found != stage:
            hint = other_stage or _STAGE_HINT[found]
            raise ConfigError(
                f"--config-file {config_file} is {STAGES[found]} config ({evidence}), not"
                f" {STAGES[stage]} one: {hint}"
            )
    for path, data in reversed(_yaml_chain(config_file)):
        for key in _yaml_paths(data):
            known = _has(cfg, key) or cfg.key_is_deprecated(key) or cfg.key_is_renamed(key)
            if not known:
                raise _unknown_key(key, cfg, _stage_of(key), f"{path}: ")
    try:
        cfg.merge_from_file(config_file)
    except (KeyError, ValueError, AssertionError) as e:
        # yacs reports an unusable key or value of the file (renamed key, type mismatch) thus.
        raise ConfigError(f"{config_file}: {message(e)}") from e
    merge_overrides(cfg, opts)
    return cfg


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def merge_overrides(cfg, opts: Sequence[str]):
    """``cfg.merge_from_list(opts)`` pair by pair, each error one line naming the pair."""
    opts = list(opts or ())
    if opts and opts[0] == "--":
        opts = opts[1:]
    for i in range(0, len(opts), 2):
        key = opts[i]
        if key.startswith("-"):
            raise ConfigError(
                f"option {key} after the KEY VALUE overrides: give options before them"
            )
        if i + 1 == len(opts):
            raise ConfigError(f"config override {key} has no value: overrides are KEY VALUE pairs")
        if not (_has(cfg, key) or cfg.key_is_deprecated(key) or cfg.key_is_renamed(key)):
            raise _unknown_key(key, cfg, _stage_of(key), "")  # (yacs: deprecated/renamed keys)
        value = opts[i + 1]
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, ValueError, AssertionError) as e:
            if not _has(cfg, key):  # a renamed key: yacs's message names the new one
                raise ConfigError(f"config override {key}: {message(e)}") from e
            # yacs refuses a value of another type than the key's default thus.
            old = _get(cfg, key)
            raise ConfigError(
                f"config override {key} {value}: not {_a(type(old).__name__)} (the config has"
                f" {key} {old!r})"
            ) from e
    return cfg
