"""The loop runs any job: here a toy two-network, two-optimizer job (the shape of a GAN or a
retriever with its own head), with checkpoints, resume and Ctrl-C from the same callbacks the
fine-tuning runs use."""

from __future__ import annotations

import signal

import pytest
import torch

from tunelab.training import checkpoint
from tunelab.training.callbacks import Checkpointing, Interruption
from tunelab.training.loop import Callback, Interrupted, Job, LoopSettings, fit


def two_optimizer_job(seed: int = 0) -> Job:
    """A generator and a critic on 1-d toy data, each with its own optimizer and scheduler."""
    torch.manual_seed(seed)
    nets = torch.nn.ModuleDict({"gen": torch.nn.Linear(2, 1), "critic": torch.nn.Linear(1, 1)})
    opts = [
        torch.optim.Adam(nets["gen"].parameters(), lr=0.05),
        torch.optim.SGD(nets["critic"].parameters(), lr=0.1, momentum=0.9),
    ]
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5) for o in opts]
    data = torch.linspace(-1, 1, 24).reshape(12, 2)

    def step(batch: list[int], index: int) -> float:
        x = data[batch]
        fake = nets["gen"](x)
        critic_loss = (nets["critic"](fake.detach()) - 1).pow(2).mean()
        opts[1].zero_grad()
        critic_loss.backward()
        opts[1].step()
        gen_loss = nets["critic"](nets["gen"](x)).pow(2).mean() + 0.1 * torch.randn(()).abs()
        opts[0].zero_grad()
        gen_loss.backward()
        opts[0].step()
        for s in scheds:
            s.step()
        return float((gen_loss + critic_loss).detach())

    def batches(epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(12, generator=g).tolist()
        return [order[i : i + 4] for i in range(0, 12, 4)]

    return Job(nets, step, batches, steps_per_epoch=3, optimizers=opts, schedulers=scheds)


def _run(job: Job, callbacks=(), resume=None, epochs: float = 3) -> torch.Tensor:
    fit(
        job,
        LoopSettings(epochs=epochs, metric="m", resume_from=resume),
        lambda: {"m": 0.0},
        lambda e: None,
        callbacks,
    )
    return torch.cat([p.detach().flatten() for p in job.model.parameters()])


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, loop) -> None:
        if loop.state.step == self.step:
            raise RuntimeError("simulated crash")


def test_two_optimizer_job_resumes_to_the_same_weights(tmp_path):
    whole = _run(two_optimizer_job())
    job = two_optimizer_job()
    saver = Checkpointing(tmp_path / "ck", save_steps=2, keep=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(job, [saver, StopAt(5)])
    saved = checkpoint.complete(tmp_path / "ck")
    assert [p.name for p in saved] == ["step-000002", "step-000003", "step-000004"]
    resumed = _run(two_optimizer_job(seed=123), resume=saved[-1])  # other initial weights
    torch.testing.assert_close(resumed, whole)
    fresh = _run(two_optimizer_job(seed=123))
    assert not torch.allclose(fresh, whole)  # so resuming really restored the state


def test_ctrl_c_checkpoints_a_two_optimizer_job(tmp_path):
    class CtrlC(Callback):
        def on_step_end(self, loop) -> None:
            if loop.state.step == 4:
                signal.raise_signal(signal.SIGINT)

    saver = Checkpointing(tmp_path / "ck", save_steps=None, keep=2)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as e:
        _run(two_optimizer_job(), [saver, CtrlC(), Interruption(saver)])
    assert e.value.step == 4 and e.value.checkpoint == tmp_path / "ck" / "step-000004"
    state = checkpoint.read_state(e.value.checkpoint)
    assert (state.step, state.epoch, state.batch_in_epoch) == (4, 1, 1)
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back
