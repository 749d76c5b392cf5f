"""Ways a training run stops early on purpose, each with its exit status.

``tools/train.py`` prints the message (no traceback needed: it says what
happened and what is on disk) and exits with ``exit_code``.
"""
import signal


class RunStopped(RuntimeError):
    """A run stopped by diffkd itself; ``exit_code`` is the process's."""
    exit_code = 1


class TrainingInterrupted(RunStopped):
    """SIGTERM/SIGINT: a checkpoint was written and the run stopped.

    Exit status 128 + signal number (143 for SIGTERM, 130 for SIGINT), the
    shell convention for "killed by this signal", which schedulers read as
    interrupted (requeue) rather than failed.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class NonFiniteLossError(RunStopped):
    """A loss was NaN or infinite (``optim_wrapper.nonfinite='stop'``)."""


class CheckpointWriteError(RunStopped):
    """A checkpoint could not be written (e.g. the disk is full); the
    previous one is intact."""
