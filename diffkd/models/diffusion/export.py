"""What a finished run writes for diffusers to load."""
import os.path as osp
from typing import Dict


class DiffusersExport:
    """Mixin: the trained part as a diffusers folder, and what a loader
    needs to rebuild the pipeline around it (``export_info.json``)."""
    pipeline_class_name = 'StableDiffusionPipeline'

    def export_pretrained(self, out_dir: str) -> Dict:
        """Write the trained UNet as a diffusers folder ``out_dir/unet``, or
        the LoRA as ``out_dir/lora/pytorch_lora_weights.safetensors``.

        Returns the base pipeline, the parts written and the components
        taken from elsewhere (``components``: name -> class and source).
        """
        info = dict(base_model=self.model)
        unet = self.component_sources.get('unet')
        if unet and unet['subfolder'] is None and len(unet) == 2:
            info['base_unet'] = unet['name_or_path']  # the simple form
        info['components'] = {
            name: dict(spec, **{'class': self.component_class_name(name)})
            for name, spec in self.component_sources.items()}
        if self.lora:
            import diffusers

            from ..lora import save_lora
            save_lora(
                getattr(diffusers, self.pipeline_class_name),
                osp.join(out_dir, 'lora'), self.unet,
                {n: getattr(self, n) for n in self.text_encoder_names})
            info['parts'] = ['lora']
            return info
        self.unet.save_pretrained(
            osp.join(out_dir, 'unet'), safe_serialization=True)
        info['parts'] = ['unet']
        return info

    def component_class_name(self, name: str) -> str:
        """The class a loader builds component ``name`` with; a scheduler's
        is the one its config names (sampling, not training)."""
        if name == 'scheduler':
            return type(self.sampling_scheduler()).__name__
        return type(getattr(self, name)).__name__
