"""Held-out validation: the training loss terms at fixed noise and
timesteps."""
from typing import Dict, List

import torch


class HeldOutLossStep:
    """Mixin: ``val_step`` gives the training loss terms on held-out data,
    at fixed noise and timesteps.

    Sample ``i`` of the val set draws its VAE sample, noise and timestep
    from a generator of its own, seeded with ``val_seed + sample_idx``: the
    same draws at every validation, whatever the batch size or the number
    of processes, and none from the global generators, which training
    uses. Returns, per batch, ``num_samples``, each ``loss*`` term and
    their sum ``loss`` (what the optimizer minimises), for the
    ``HeldOutLoss`` metric.
    """
    val_seed = 0

    def val_step(self, data) -> List[Dict]:
        data = self.data_preprocessor(data, False)
        inputs = self.held_out_inputs(data)
        return self.held_out_outputs(
            self(inputs, data.get('data_samples'), mode='loss'), inputs)

    def held_out_inputs(self, data: Dict) -> Dict:
        """The batch's inputs with each sample's generator."""
        samples = data.get('data_samples')
        index = samples.get('sample_idx') if isinstance(samples, dict) \
            else None
        if index is None:
            raise ValueError(
                'a held-out loss needs the index of every sample '
                "(data_samples['sample_idx']): keep 'sample_idx' in the "
                "val pipeline's PackInputs meta_keys (the default) and "
                'collate with default_collate')
        index = index.tolist() if torch.is_tensor(index) else list(index)
        return dict(data['inputs'], generator=[
            torch.Generator().manual_seed(self.val_seed + int(i))
            for i in index])

    @staticmethod
    def held_out_outputs(losses: Dict, inputs: Dict) -> List[Dict]:
        terms = {k: v.detach().float() for k, v in losses.items()
                 if k.startswith('loss') and torch.is_tensor(v)}
        out = dict(terms, num_samples=len(inputs['generator']))
        out['loss'] = sum(terms.values())
        return [out]
