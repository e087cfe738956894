from setuptools import find_packages, setup

setup(
    name="multitask_pose",
    version="0.1.0",
    description="Multi-person pose estimation on detectron2: multitask R-CNN and a top-down stage",
    python_requires=">=3.9",
    packages=find_packages(include=["multitask_pose", "multitask_pose.*"])
    + ["pose_topdown"]
    + ["pose_topdown." + p for p in find_packages("projects/TopDown/pose_topdown")],
    package_dir={"pose_topdown": "projects/TopDown/pose_topdown"},
    # The top-down stage's config builder, for the core's config checks (multitask_pose/config.py),
    # and its predictor with its person-box source, for tools/demo.py --topdown
    # (multitask_pose/commands/demo.py): the core finds them here and never imports the project.
    entry_points={
        "multitask_pose.stages": ["topdown = pose_topdown.config:get_topdown_cfg"],
        "multitask_pose.predictors": ["topdown = pose_topdown.predictor:predictor_and_boxes"],
    },
    # detectron2 and torch are installed by tools/install/setup_env.sh (see README.md): detectron2
    # is not on PyPI under its own name, so it cannot be a plain requirement here.
    install_requires=["numpy", "opencv-python-headless", "pycocotools", "faster-coco-eval", "tqdm"],
)
