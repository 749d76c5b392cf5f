"""The streaming dataset's position in every checkpoint, so ``--resume``
continues the stream instead of repeating the part of the epoch already
trained on."""
import logging
from typing import Dict, Tuple

from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log

from diffkd.registry import HOOKS

KEY = 'stream_positions'


@HOOKS.register_module()
class StreamPositionHook(Hook):
    """Save the last batch the training loop consumed from each dataloader
    worker of each rank (``batch['stream']``, set by
    :class:`~diffkd.datasets.WebDatasetShards`) and hand it back to the
    dataset on resume.

    On resume the dataloader's workers are restarted with the positions,
    and each answers the batches the training loop skips (as many as it
    trained: mmengine's loops pull and drop them) with empty placeholders,
    then goes on after its last trained batch. Positions saved with
    another number of ranks or workers cannot be mapped: the run then
    starts the stream over, with a warning. Does nothing for datasets
    without ``load_state_dict``.
    """
    priority = 'VERY_LOW'

    def __init__(self):
        self.positions: Dict[Tuple[int, int], Dict] = {}
        self._pending = None

    @staticmethod
    def _workers(runner) -> int:
        return max(1, runner.train_dataloader.num_workers)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        # Recorded before the step, so any checkpoint written after it
        # (whatever the hooks' order) includes this batch.
        if not (isinstance(data_batch, dict) and 'stream' in data_batch):
            return  # not a streaming dataset (the same on every rank)
        stream = data_batch['stream']
        if stream.get('placeholder'):
            raise RuntimeError(
                'a stream placeholder reached training at iteration '
                f'{runner.iter}: the training loop skipped fewer batches on '
                'resume than it had trained (StreamPositionHook expects '
                "mmengine's IterBasedTrainLoop behaviour)")
        self.positions[(stream['rank'], stream['worker'])] = dict(stream)

    def before_save_checkpoint_all_ranks(self, runner) -> None:
        """Every rank's positions go into the one file rank 0 writes: one
        collective per checkpoint (the runner calls this on every rank)."""
        _, world = get_dist_info()
        if world > 1:
            for ranks in all_gather_object(self.positions):
                self.positions.update(ranks)

    def before_save_checkpoint(self, runner, checkpoint):
        if not self.positions:
            return
        _, world = get_dist_info()
        checkpoint[KEY] = dict(
            world_size=world, num_workers=self._workers(runner),
            positions=[self.positions[k] for k in sorted(self.positions)])

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get(KEY)
        if not state:
            return
        rank, world = get_dist_info()
        workers = self._workers(runner)
        if (state['world_size'], state['num_workers']) != (world, workers):
            print_log(
                f'the checkpoint holds stream positions of '
                f'{state["world_size"]} rank(s) x {state["num_workers"]} '
                f'worker(s), this run has {world} x {workers}: the stream '
                'starts over', logger='current', level=logging.WARNING)
            return
        # One batch per iteration: this rank's workers gave as many batches
        # as were trained, which the loop skips on resume.
        given = sum(p['count'] for p in state['positions']
                    if p['rank'] == rank)
        trained = checkpoint.get('meta', {}).get('iter')
        if trained is not None and given != trained:
            print_log(
                f'the checkpoint\'s stream positions of rank {rank} account '
                f'for {given} batch(es), its iteration is {trained}: the '
                'stream starts over', logger='current',
                level=logging.WARNING)
            return
        self.positions = {(p['rank'], p['worker']): p
                          for p in state['positions']}
        self._pending = state

    def before_train(self, runner):
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        loop = runner.train_loop
        dataset = loop.dataloader.dataset
        if not hasattr(dataset, 'load_state_dict'):
            return
        dataset.load_state_dict(state)
        # The workers started (with the dataset as it was) when the loop
        # was built, before the checkpoint was read: start them again.
        iterator = getattr(loop, 'dataloader_iterator', None)
        if iterator is not None and hasattr(iterator, '_iterator'):
            loader = loop.dataloader
            if getattr(loader, 'persistent_workers', False):
                loader._iterator = None  # else torch reuses the old workers
            iterator._iterator = iter(loader)
            # len() is an epoch's estimate (for schedulers), not the end
            # of an infinite stream: no "more than len()" warnings.
            iterator._iterator._IterableDataset_len_called = None
        rank, _ = get_dist_info()
        mine = [p for p in state['positions'] if p['rank'] == rank]
        print_log(
            'stream resumed after ' + ', '.join(
                f'worker {p["worker"]}: epoch {p["epoch"]} batch '
                f'{p["index"]}' for p in mine), logger='current')
