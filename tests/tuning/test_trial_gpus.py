"""Which GPUs each parallel trial gets: blocks of trial_nproc per place, wrapping when there are too few."""

from vizsla.tuning.worker import gpus_for_slot, visible_gpus


def test_each_place_gets_its_own_block_of_gpus():
    gpus = [str(i) for i in range(8)]
    assert [gpus_for_slot(slot, 1, gpus) for slot in range(4)] == [["0"], ["1"], ["2"], ["3"]]
    assert [gpus_for_slot(slot, 2, gpus) for slot in range(4)] == [
        ["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"],
    ]  # fmt: skip


def test_too_few_gpus_are_shared_round_robin_and_none_means_cpu():
    assert [gpus_for_slot(slot, 1, ["0", "1"]) for slot in range(3)] == [["0"], ["1"], ["0"]]
    assert gpus_for_slot(0, 4, ["0", "1"]) == ["0", "1"]  # a trial cannot have more GPUs than exist
    assert gpus_for_slot(1, 1, []) == []


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
