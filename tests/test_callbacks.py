from vizsla.callbacks import Callback, CallbackRunner, TrainState


class Boom(Callback):
    def epoch_end(self, state):
        raise RuntimeError("boom")


class Counter(Callback):
    def __init__(self):
        self.calls = 0

    def epoch_end(self, state):
        self.calls += 1


def test_failing_callback_is_disabled_and_others_keep_running():
    counter = Counter()
    runner = CallbackRunner([Boom(), counter])
    state = TrainState(spec=None, job_dir=None)
    runner.fire("epoch_end", state)
    runner.fire("epoch_end", state)
    assert counter.calls == 2
    assert "Boom" in runner.disabled and len(runner.callbacks) == 1


def test_request_stop():
    state = TrainState(spec=None, job_dir=None)
    state.request_stop("rule fired")
    assert state.should_stop and state.stop_reason == "rule fired"
