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
