"""Each exported zoo entry, loaded from the repository by its ``zoo://`` name, still measures what
its record says (``multitask_pose/model_zoo/check.py``): a change to the code that silently breaks
an entry (a renamed key, a changed layer or decoding) fails here, not in the runs that start from
it. Also the record's integrity (sha256, size) and the figure's arithmetic."""

import hashlib

import pytest

import multitask_pose.model_zoo as zoo
from multitask_pose.model_zoo import check


def _exported(name):
    if not zoo.zoo_weights_file(name).is_file():
        pytest.skip(f"zoo entry {name} has no weights in this clone yet (tools/train_zoo.py)")
    return zoo.zoo_record(name)


@pytest.mark.parametrize("name", sorted(zoo.ENTRIES))
def test_the_stored_file_is_the_recorded_one(name):
    record = _exported(name)
    data = zoo.zoo_weights_file(name).read_bytes()
    assert len(data) <= zoo.MAX_ENTRY_BYTES
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert record["config"] == zoo.ENTRIES[name].config


@pytest.mark.parametrize("name", sorted(zoo.ENTRIES))
def test_the_entry_measures_its_recorded_figure(name):
    record = _exported(name)
    measured = check.measure(name)
    assert measured.keys() == record["check"].keys()
    for key, want in record["check"].items():
        # the same weights and data: only the order of float sums may differ between machines
        assert measured[key] == pytest.approx(want, abs=0.003), key


def test_the_check_subset_is_the_splits_first_images_with_all_their_persons(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from pycocotools.coco import COCO

    name, json_file, image_root = check.check_subset(tmp_path)
    full = COCO(MetadataCatalog.get(check.CHECK_DATASET).json_file)
    first = [img["id"] for img in full.dataset["images"][: check.CHECK_IMAGES]]
    sub = COCO(json_file)
    assert name == f"{check.CHECK_DATASET}_first{check.CHECK_IMAGES}"
    assert [img["id"] for img in sub.dataset["images"]] == first
    want = sorted(a["id"] for a in full.loadAnns(full.getAnnIds(imgIds=first)))
    assert sorted(a["id"] for a in sub.dataset["annotations"]) == want and len(want) > 100
    assert sub.dataset["categories"] == full.dataset["categories"]
    assert image_root == MetadataCatalog.get(check.CHECK_DATASET).image_root
    # what the eval-only run registers from it loads those images
    from multitask_pose.data.datasets import register_config_datasets

    register_config_datasets([(name, json_file, image_root)])
    try:
        assert [d["image_id"] for d in DatasetCatalog.get(name)] == first
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
