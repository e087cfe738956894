"""Make detectron2 v0.6's source (PyPI ``pb1-detectron2==0.6``) install as pure Python here.

Usage: python patch_detectron2.py SRC_DIR

The sdist has no C++ sources, and v0.6 predates today's Pillow, NumPy and setuptools. Each patch
below is the smallest change that fixes one break measured on this machine (see
``shared/INSTALL_NOTES.md``); every one fails loudly if the text it expects is not there, so a
different source tree is never half-patched. A user's own detectron2 (for example one built from
source on a GPU machine) is never touched: ``setup_env.sh`` only builds this one when none imports.
"""
import re
import sys
from pathlib import Path

# Stand-in for the compiled extension. It answers the version queries that ``collect_env`` makes;
# the ops that need the real extension (rotated boxes, detectron2's DeformConv, the fast COCOeval)
# fail when called, and ``multitask_pose.env`` reports them as unavailable.
C_STUB = '''"""Pure-Python stand-in for detectron2's C++ extension (written by multitask_pose's installer)."""
PURE_PYTHON_STUB = True


def get_compiler_version():
    return "none (pure-Python detectron2 build)"


def get_cuda_version():
    return "none"


def has_cuda():
    return False
'''

# NumPy 2 removed these aliases of the builtins (deprecated since NumPy 1.20).
NUMPY_ALIASES = re.compile(r"\bnp\.(int|float|bool|str|object)\b(?!_)")


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise SystemExit(f"patch_detectron2: expected text not found in {path}: {old!r}")
    path.write_text(text.replace(old, new))


def main(src: Path) -> None:
    pkg = src / "detectron2"
    if not (pkg / "__init__.py").is_file():
        raise SystemExit(f"patch_detectron2: {src} is not a detectron2 source tree")

    (pkg / "_C.py").write_text(C_STUB)

    # Pillow 10 removed Image.LINEAR; it was always an alias of Image.BILINEAR.
    replace_once(pkg / "data/transforms/transform.py", "interp=Image.LINEAR", "interp=Image.BILINEAR")

    n_alias = 0
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        new, n = NUMPY_ALIASES.subn(lambda m: m.group(1), text)
        if n:
            f.write_text(new)
            n_alias += n
    if n_alias == 0:
        raise SystemExit("patch_detectron2: found no NumPy aliases to replace; wrong source?")

    # setuptools 81 removed pkg_resources; the model-zoo configs sit next to the module.
    mz = pkg / "model_zoo/model_zoo.py"
    replace_once(mz, "import pkg_resources\n", "")
    replace_once(
        mz,
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", os.path.join("configs", config_path)\n    )',
        'cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)',
    )

    # No C++ extension to build, and the sdist keeps the model-zoo configs inside the package
    # (its setup.py only looked for them in a top-level configs/ folder, so none were installed).
    setup = src / "setup.py"
    replace_once(setup, "    ext_modules=get_extensions(),\n", "")
    replace_once(setup, '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n', "")
    replace_once(
        setup,
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
        'package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},',
    )
    print(f"patch_detectron2: patched {src} ({n_alias} NumPy aliases)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
