"""One behaviour for bad inputs in the tools that read a folder of photos (tools/demo.py,
tools/detect_persons.py; multitask_pose/data/image_folder.py), on a folder made from the COCO
sample with a text file, a JPEG cut short, an empty file and a JPEG whose markers are right but
whose data does not decode (it passes the structural check and fails mid-run). With the
R-CNN that memorised the sample (the shared session fixture):

- without DATALOADER.SKIP_DAMAGED_IMAGES both tools refuse before any work, in one line naming
  the first damaged file and the key; the file that only fails to decode stops the run there;
- with it both skip and count the same files, with their reasons, and give every image the same
  id;
- a run that failed mid-way restarts with --overwrite (it used to delete a missing output and
  crash) and continues with --resume to the same file; --resume over a changed folder is
  refused."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from multitask_pose.commands import detect_persons

SAMPLE = ROOT / "datasets" / "samples" / "coco"
SKIP = ["DATALOADER.SKIP_DAMAGED_IMAGES", "True"]
KEY = "DATALOADER.SKIP_DAMAGED_IMAGES True"
# sorted between the second and third sample image: a run without the key fails after two
UNDECODABLE = "000000100000.jpg"


def _demo():
    from multitask_pose.commands import demo

    return demo


@pytest.fixture
def photos(tmp_path):
    """A folder of the four sample images, a text file, a cut JPEG, an empty file and a JPEG
    that does not decode."""
    from multitask_pose.data.image_check import image_problem

    folder = tmp_path / "photos"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("*.json", "*.md"))
    (folder / "notes.txt").write_text("taken on the beach")
    data = (SAMPLE / "000000000785.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 3])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / UNDECODABLE).write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 12 + b"\xff\xd9")
    assert image_problem(folder / UNDECODABLE) is None  # only a full decode finds it
    return folder


def _weights(memorised_rcnn):
    out, _ = memorised_rcnn
    return str(out / "config.yaml"), ["MODEL.WEIGHTS", str(out / "model_final.pth")]


def _detect(memorised_rcnn, folder, output, *extra, opts=()):
    config, weights = _weights(memorised_rcnn)
    return detect_persons.main(["--config-file", config, "--input", str(folder), "--output",
                                str(output), "--quiet", *extra, *weights, *opts])  # fmt: skip


def _run_demo(memorised_rcnn, folder, output, opts=()):
    config, weights = _weights(memorised_rcnn)
    return _demo().main(["--config-file", config, "--input", str(folder), "--output", str(output),
                         "--confidence-threshold", "0.3", *weights, *opts])  # fmt: skip


def test_both_tools_refuse_damaged_images_in_one_line_naming_the_file_and_the_key(
    memorised_rcnn, photos, tmp_path, capsys
):
    for run in (lambda: _run_demo(memorised_rcnn, photos, tmp_path / "demo"),
                lambda: _detect(memorised_rcnn, photos, tmp_path / "dets.json")):  # fmt: skip
        assert run() == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{photos / 'cut.jpg'} is a JPEG cut short" in err, err
        assert "(and 1 more damaged image)" in err and KEY in err
    assert not (tmp_path / "demo" / "results.json").exists()  # before any work
    assert not list(tmp_path.glob("dets.json*"))
    # Without the two structurally damaged files the undecodable one stops the run where it is.
    (photos / "cut.jpg").unlink()
    (photos / "zero.jpg").unlink()
    for run in (lambda: _run_demo(memorised_rcnn, photos, tmp_path / "demo"),
                lambda: _detect(memorised_rcnn, photos, tmp_path / "dets.json")):  # fmt: skip
        assert run() == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{photos / UNDECODABLE} cannot be decoded" in err and KEY in err, err


def test_both_tools_skip_and_count_the_same_files_and_give_the_same_ids(
    memorised_rcnn, photos, tmp_path, capsys
):
    assert _run_demo(memorised_rcnn, photos, tmp_path / "demo", opts=SKIP) == 0
    out, err = capsys.readouterr()
    summary = "skipped 1 file that is not an image (notes.txt), 3 damaged images"
    assert out.strip().splitlines()[-1].endswith(summary), out
    assert "demo: 4 images" in out
    assert f"skipped {photos / 'cut.jpg'} is a JPEG cut short" in err
    assert f"skipped {photos / 'zero.jpg'} is empty" in err
    assert f"skipped {photos / UNDECODABLE} cannot be decoded" in err
    demo_ids = {Path(r["file_name"]).name: r["image_id"]
                for r in json.loads((tmp_path / "demo" / "results.json").read_text())}  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "demo").glob("*_pred.jpg")) == sorted(
        p.stem + "_pred.jpg" for p in SAMPLE.glob("*.jpg")
    )

    dets = tmp_path / "dets.json"
    assert _detect(memorised_rcnn, photos, dets, opts=SKIP) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].endswith(summary), out
    assert "detect_persons: 4 images" in out
    assert f"skipped {photos / 'cut.jpg'} is a JPEG cut short" in err
    listed = {Path(e["file_name"]).name: e["id"]
              for e in json.loads(Path(str(dets) + ".images.json").read_text())}  # fmt: skip
    # positions in the sorted image files, the damaged ones included (cut.jpg, zero.jpg last)
    names = sorted([p.name for p in SAMPLE.glob("*.jpg")] + [UNDECODABLE])
    assert listed == {n: names.index(n) for n in names if n != UNDECODABLE}
    assert demo_ids.items() <= listed.items() and len(demo_ids) == 4  # the same ids
    assert {d["image_id"] for d in json.loads(dets.read_text())} == set(listed.values())


def test_a_failed_run_restarts_with_overwrite_and_continues_with_resume(
    memorised_rcnn, photos, tmp_path, capsys
):
    (photos / "cut.jpg").unlink()
    (photos / "zero.jpg").unlink()
    dets = tmp_path / "dets.json"
    partial = tmp_path / "dets.json.partial0.jsonl"

    def fail_midway():  # the undecodable image stops it after two images
        assert _detect(memorised_rcnn, photos, dets, "--overwrite") == 2
        assert len(partial.read_text().splitlines()) == 2 and not dets.exists()
        capsys.readouterr()

    assert _detect(memorised_rcnn, photos, dets) == 2
    assert len(partial.read_text().splitlines()) == 2 and not dets.exists()
    capsys.readouterr()
    assert _detect(memorised_rcnn, photos, dets) == 2  # an unfinished run needs a choice
    assert "pass --resume to finish an interrupted run or --overwrite" in capsys.readouterr().err
    # --overwrite: the partial file goes, the missing output is no error
    assert _detect(memorised_rcnn, photos, dets, "--overwrite", opts=SKIP) == 0
    assert "detect_persons: 4 images (0 from an earlier run)" in capsys.readouterr().out
    whole = json.loads(dets.read_text())
    assert not partial.exists() and len(whole) >= 8

    fail_midway()
    assert _detect(memorised_rcnn, photos, dets, "--resume", opts=SKIP) == 0
    assert "detect_persons: 4 images (2 from an earlier run)" in capsys.readouterr().out
    assert json.loads(dets.read_text()) == whole and not partial.exists()

    # --resume over a folder that changed since (a new first file shifts every id): refused
    fail_midway()
    shutil.copy(SAMPLE / "000000040083.jpg", photos / "000000000001.jpg")
    assert _detect(memorised_rcnn, photos, dets, "--resume", opts=SKIP) == 2
    assert "the input changed; use --overwrite" in capsys.readouterr().err


# ------------------------------------------------ the library parts, without a model (fast)
def test_listing_counts_non_images_and_refuses_or_skips_damaged(photos):
    from multitask_pose.data.image_check import DamagedImageError
    from multitask_pose.data.image_folder import list_images, read_or_skip

    with pytest.raises(DamagedImageError) as e:
        list_images([photos], skip_damaged=False)
    assert str(e.value).startswith(f"{photos / 'cut.jpg'} is a JPEG cut short")
    assert "(and 1 more damaged image)" in str(e.value) and KEY in str(e.value)
    listing = list_images([photos], skip_damaged=True)
    names = sorted([p.name for p in SAMPLE.glob("*.jpg")] + [UNDECODABLE, "cut.jpg", "zero.jpg"])
    assert [(i, p.name) for i, p in listing.images] == [
        (names.index(n), n) for n in names if n not in ("cut.jpg", "zero.jpg")
    ]
    assert [p.name for p in listing.not_images] == ["notes.txt"]
    assert [(p.name, r.split(":")[0]) for p, r in listing.damaged] == [
        ("cut.jpg", "is a JPEG cut short"), ("zero.jpg", "is empty (0 bytes)")]  # fmt: skip
    # the file that only fails to decode: refused in one line, or left out with its reason
    with pytest.raises(DamagedImageError, match=f"{photos / UNDECODABLE} cannot be decoded.*{KEY}"):
        read_or_skip(listing, photos / UNDECODABLE, skip_damaged=False)
    assert read_or_skip(listing, photos / UNDECODABLE, skip_damaged=True) is None
    assert UNDECODABLE not in [p.name for _, p in listing.images]
    assert listing.summary() == (
        "; skipped 1 file that is not an image (notes.txt), 3 damaged images"
    )
    assert read_or_skip(listing, photos / "000000000785.jpg", True).shape[2] == 3


def _fake_detector(image):
    """One box per image, its score the image's mean intensity: a different file, other scores."""
    import torch
    from detectron2.structures import Boxes, Instances

    h, w = image.shape[:2]
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, w / 2, h / 2]]))
    inst.scores = torch.tensor([float(image.mean()) / 255])
    inst.pred_classes = torch.zeros(1, dtype=torch.long)
    return {"instances": inst}


def test_runner_overwrite_and_resume_after_a_killed_run(photos, tmp_path):
    from multitask_pose.data.image_folder import list_images, read_or_skip
    from multitask_pose.engine.person_detection import (
        DetectionItem,
        OutputExistsError,
        run_person_detection,
    )

    listing = list_images([photos], skip_damaged=True)  # the undecodable file among them
    items = [DetectionItem(i, str(p)) for i, p in listing.images]
    out = tmp_path / "dets.json"
    partial = tmp_path / "dets.json.partial0.jsonl"
    kw = dict(read_image=lambda f: read_or_skip(listing, Path(f), True), progress=False)

    def kill_after_two(n):
        if n == 2:
            raise KeyboardInterrupt

    def killed():
        with pytest.raises(KeyboardInterrupt):
            run_person_detection(_fake_detector, items, str(out), on_image=kill_after_two,
                                 overwrite=True, **kw)  # fmt: skip
        assert len(partial.read_text().splitlines()) == 2 and not out.exists()

    killed()
    with pytest.raises(OutputExistsError, match="--resume .* or --overwrite"):
        run_person_detection(_fake_detector, items, str(out), **kw)
    stats = run_person_detection(_fake_detector, items, str(out), overwrite=True, **kw)
    whole = json.loads(out.read_text())
    assert stats["resumed"] == 0 and len(whole) == 4 and not partial.exists()
    assert stats["skipped"] == [2] and {d["image_id"] for d in whole} == {0, 1, 3, 4}
    killed()
    stats = run_person_detection(_fake_detector, items, str(out), resume=True, **kw)
    assert stats["resumed"] == 2 and json.loads(out.read_text()) == whole
    # the same ids on other files (a file added before them): refused, not mixed
    killed()
    items = [it for it in items if it.image_id != 2]  # (the undecodable file left out)
    moved = [DetectionItem(it.image_id, nxt.file_name) for it, nxt in zip(items, items[1:] + items)]
    with pytest.raises(ValueError, match="image 0 was .*: the input changed; use --overwrite"):
        run_person_detection(_fake_detector, moved, str(out), resume=True, **kw)
