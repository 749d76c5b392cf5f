"""CLIP score: how well images match their prompts under a CLIP model."""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from diffkd.registry import METRICS
from ..weights import find_hf_model
from .base import WeightedMetric


# Not torchmetrics' CLIPScore: 1.9 fails on transformers 5 ("'BaseModelOutputWithPooling' object has no attribute 'norm'", tested).
def clip_scores(model, processor, images: Sequence[np.ndarray],
                prompts: Sequence[str]) -> torch.Tensor:
    """``100 * max(cos(image, text), 0)`` per pair (Hessel et al. 2021, the
    form torchmetrics and the BK-SDM/KOALA evaluations report)."""
    inputs = processor(text=list(prompts), images=list(images),
                       return_tensors='pt', padding=True, truncation=True)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.no_grad():
        img = model.get_image_features(pixel_values=inputs['pixel_values'])
        txt = model.get_text_features(
            input_ids=inputs['input_ids'],
            attention_mask=inputs.get('attention_mask'))
    img, txt = _tensor(img), _tensor(txt)
    cos = torch.nn.functional.cosine_similarity(img.float(), txt.float())
    return 100 * cos.clamp_min(0)


def _tensor(out):
    # transformers returns a tensor, or an output object holding it.
    return out if torch.is_tensor(out) else out.pooler_output


@METRICS.register_module()
class CLIPScore(WeightedMetric):
    """Mean CLIP score of the generated images against their prompts.

    Args:
        model: hub id or local folder of a ``CLIPModel`` with its processor
            (default ``openai/clip-vit-large-patch14``). Offline, a hub id
            is used only when the Hugging Face cache already holds it.
        on_missing: ``'skip'`` (warn and leave the metric out) or
            ``'error'`` when the model is not available.
    """

    default_prefix = 'clip'

    def __init__(self,
                 model: str = 'openai/clip-vit-large-patch14',
                 on_missing: str = 'skip',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        self.model_name = model
        super().__init__(on_missing, collect_device, prefix)

    def find_weights(self):
        return find_hf_model('CLIPScore', 'model', self.model_name,
                             'the CLIP model')

    def load(self, path):
        from transformers import CLIPModel, CLIPProcessor
        self.clip = CLIPModel.from_pretrained(path).eval()
        self.processor = CLIPProcessor.from_pretrained(path)

    def score_samples(self, samples: List[Dict]) -> List[Dict]:
        rows: List[Dict] = [{} for _ in samples]
        prompts = [s['prompt'] for s in samples]
        for who in ('', 'teacher_'):
            if who + 'image' in samples[0]:
                scores = clip_scores(self.clip, self.processor,
                                     [s[who + 'image'] for s in samples],
                                     prompts)
                for row, score in zip(rows, scores.tolist()):
                    row[who + 'score'] = score
        return rows

    def compute_metrics(self, results: List[Dict]) -> Dict[str, float]:
        return {k.replace('teacher_', 'teacher/'): float(
            np.mean([r[k] for r in results])) for k in results[0]}
