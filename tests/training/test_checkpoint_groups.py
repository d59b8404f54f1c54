"""A head on cached features optimizes the head alone; its checkpoints from when the optimizer also held
the frozen backbone still resume (vizsla.training.checkpoint_groups)."""

from __future__ import annotations

import torch

from vizsla.training.checkpoint_groups import matching_groups


def _groups(backbone: torch.nn.Module, head: torch.nn.Linear) -> list[dict]:
    return [
        {"name": "backbone", "params": [backbone.weight], "lr": 1e-4, "weight_decay": 1e-4},
        {"name": "backbone_no_decay", "params": [backbone.bias], "lr": 1e-4, "weight_decay": 0.0},
        {"name": "head", "params": [head.weight], "lr": 1e-3, "weight_decay": 1e-4},
        {"name": "head_no_decay", "params": [head.bias], "lr": 1e-3, "weight_decay": 0.0},
    ]


def test_an_older_checkpoint_with_the_backbone_groups_resumes_the_head_alone() -> None:
    torch.manual_seed(0)
    backbone, head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    backbone.requires_grad_(False)
    old = torch.optim.AdamW(_groups(backbone, head))
    head(torch.randn(5, 4)).sum().backward()
    old.step()
    saved_optimizer = old.state_dict()
    saved_scheduler = {"num_updates": 1, "peaks": [1e-4, 1e-4, 1e-3, 5e-4]}

    new = torch.optim.AdamW(_groups(backbone, head)[2:])
    optimizer_state, scheduler_state = matching_groups(
        saved_optimizer, saved_scheduler, [group["name"] for group in new.param_groups]
    )
    new.load_state_dict(optimizer_state)
    assert scheduler_state["peaks"] == [1e-3, 5e-4]
    for param in (head.weight, head.bias):
        assert torch.equal(new.state[param]["exp_avg"], old.state[param]["exp_avg"])
        assert float(new.state[param]["step"]) == 1.0


def test_matching_groups_change_nothing_that_already_matches() -> None:
    backbone, head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(_groups(backbone, head))
    state, scheduler = optimizer.state_dict(), {"peaks": [1.0, 1.0, 1.0, 1.0]}
    names = [group["name"] for group in optimizer.param_groups]
    assert matching_groups(state, scheduler, names) == (state, scheduler)
    # names the checkpoint does not have: left as they are, for torch to refuse with its own message
    assert matching_groups(state, scheduler, ["other"]) == (state, scheduler)


def test_a_head_on_cached_features_optimizes_the_head_alone(tiny_folder, tmp_path) -> None:
    from vizsla.spec import build_spec
    from vizsla.training.setup import create_job

    spec = build_spec({"data": {"root": str(tiny_folder)}, "output": str(tmp_path / "job"),
                       "train": {"finetune": "head", "epochs": 1}, "tracking": {"enabled": False}})
    job = create_job(spec, progress=False)
    assert [group["name"] for group in job.optimizer.param_groups] == ["head", "head_no_decay"]
