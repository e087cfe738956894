"""What this installation found: ``python -m multitask_pose.env``.

Prints torch, torchvision, detectron2 (and whether its C++ ops are present), CUDA, the COCO APIs,
and which features the missing pieces disable.
"""
import importlib
import platform
import sys

__all__ = ["collect_env", "cpu_model", "detectron2_has_cpp_ops"]


def cpu_model() -> str:
    """The processor's name, for benchmark summaries."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detectron2_has_cpp_ops() -> bool:
    """True when detectron2's compiled extension is present (not the pure-Python stand-in that
    ``tools/install/patch_detectron2.py`` writes)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "PURE_PYTHON_STUB", False) and hasattr(_C, "nms_rotated")


def _version(module):
    try:
        m = importlib.import_module(module)
    except ImportError as e:
        return f"not importable ({e})"
    return f"{getattr(m, '__version__', '?')} at {getattr(m, '__file__', '?')}"


def collect_env():
    import torch

    rows = [
        ("python", sys.version.split()[0] + f" ({platform.machine()})"),
        ("CPU", cpu_model()),
        ("torch", _version("torch")),
        ("torchvision", _version("torchvision")),
        ("detectron2", _version("detectron2")),
        ("detectron2 C++ ops", "present" if detectron2_has_cpp_ops() else "absent (pure-Python build)"),
        ("CUDA available", f"{torch.cuda.is_available()} (torch built for CUDA {torch.version.cuda})"),
        ("GPUs", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"),
        ("CPU threads", str(torch.get_num_threads())),
        ("faster-coco-eval", _version("faster_coco_eval")),
        ("pycocotools", _version("pycocotools")),
        ("opencv", _version("cv2")),
        ("numpy", _version("numpy")),
    ]
    notes = []
    if not detectron2_has_cpp_ops():
        notes += [
            "rotated boxes (detectron2 RotatedBoxes ops): unavailable",
            "detectron2's own DeformConv: unavailable (CUDA-only anyway)",
            "COCOEvaluator(use_fast_impl=True) from detectron2: unavailable; "
            "multitask_pose's evaluator uses faster-coco-eval instead (same numbers)",
        ]
    if not torch.cuda.is_available():
        notes.append("no CUDA: train and infer with MODEL.DEVICE cpu; multi-process runs use gloo")
    return rows, notes


def main():
    rows, notes = collect_env()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if notes:
        print("disabled by what is missing:")
        for n in notes:
            print(f"  - {n}")


if __name__ == "__main__":
    main()
