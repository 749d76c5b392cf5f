"""Teacher/student distillation around the same diffusion wrapper used for
fine-tuning.

One step: the student's wrapper prepares the batch (latents, noise,
timesteps, conditioning); the frozen teacher UNet and the student UNet both
run on it while their declared feature points are recorded; the loss is

    w_task * task + w_out * KD(student_out, teacher_out)
                  + w_feat * sum_pairs KD(student_feat, teacher_feat)

with every term (and every pair, unweighted) logged.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from diffusers import UNet2DConditionModel
from mmengine.logging import print_log
from mmengine.model import BaseModel

from diffkd.registry import MODELS
from ..compression import build_compression, init_from_teacher
from ..diffusion.components import normalized_spec
from ..diffusion.loading import load_component
from ..diffusion.speed import configure_unet
from ..diffusion.frozen import (FrozenChildrenStayInEval,
                               FrozenWeightsOutOfCheckpoints)
from ..diffusion.step import DetachedLogVars
from ..diffusion.validation import HeldOutLossStep
from .recorder import FeatureRecorder, feature_pairs

STUDENT_INITS = ('teacher', 'pretrained', 'random')


class DistillConfigError(ValueError):
    """A teacher/student pair or feature declaration that cannot work."""


FLOAT8 = 'float8'
TORCHAO_HINT = 'pip install torchao (or pip install "diffkd[memory]")'


def check_float8_device() -> None:
    """``model.teacher.dtype='float8'`` needs fp8 matrix multiplies: a CUDA
    GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell)."""
    want = ("model.teacher.dtype='float8' needs a CUDA GPU of compute "
            'capability 8.9 or newer (fp8 matrix multiplies: Ada, Hopper)')
    if not torch.cuda.is_available():
        raise DistillConfigError(
            f"{want}; this machine has no CUDA device. Use "
            "model.teacher.dtype='bfloat16' here")
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 9):
        raise DistillConfigError(
            f'{want}; {torch.cuda.get_device_name()} has compute capability '
            f"{major}.{minor}. Use model.teacher.dtype='bfloat16' on it")


def quantize_float8(unet: nn.Module) -> None:
    """torchao's dynamic fp8 (e4m3, per-row scales) for the teacher's linear
    layers, in place; the other layers stay bf16."""
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_)
    except ImportError as err:
        raise ImportError(f"model.teacher.dtype='float8' needs torchao "
                          f'(with Float8DynamicActivationFloat8WeightConfig):'
                          f' {TORCHAO_HINT}') from err
    quantize_(unet, Float8DynamicActivationFloat8WeightConfig(
        granularity=PerRow()))


def _dtype(name: Optional[str]):
    if name is None:
        return None
    if not hasattr(torch, name) or not isinstance(getattr(torch, name),
                                                  torch.dtype):
        raise ValueError(f'unknown dtype {name!r}')
    return getattr(torch, name)


@MODELS.register_module()
class DiffusionDistiller(HeldOutLossStep, FrozenChildrenStayInEval,
                         DetachedLogVars, FrozenWeightsOutOfCheckpoints,
                         BaseModel):
    """Distil a teacher UNet into a (compressed) student UNet.

    Args:
        student: config of the student's diffusion wrapper
            (``StableDiffusion``/``StableDiffusionXL``); its text encoders,
            VAE and noise schedule serve both UNets. Its ``loss`` is the
            task loss (or give ``task_loss``; not both), and its
            ``prior_loss_weight`` weighs DreamBooth class rows
            (``is_prior``) in the task term, logged as ``loss_task_prior``.
        teacher: ``dict(model=..., subfolder='unet', dtype=None)``: where
            the teacher UNet comes from and the dtype it runs in. The
            student is initialised from the stored weights before the
            teacher is cast; SDXL time ids and pooled text embeds reach the
            teacher in fp32, exactly as the student gets them.
            ``lora``: a diffusers LoRA file (or a folder holding one, a
            run's ``final/lora``) loaded into the teacher, frozen, after
            the student is initialised: the teacher with its adapter
            supervises (and samples), e.g. a student whose
            ``lora=dict(..., weights=...)`` starts from the same LoRA
            transplanted (``configs/ssd_1b/ssd_1b_lora_transplant.py``).
            ``dtype='float8'``: bf16 with its linear layers in torchao's
            dynamic fp8 (needs torchao and a CUDA GPU of compute capability
            8.9 or newer; checked when the model is built).
        compression: a recipe (``dict(type='SSD1B')``) giving the student's
            architecture and the teacher->student module map; None for a
            student of the teacher's own architecture.
        student_init: ``'teacher'`` (weights through the module map),
            ``'pretrained'`` (``student_pretrained``) or ``'random'``.
        student_pretrained: ``dict(name_or_path=..., subfolder='unet')``.
        loss_weights: ``dict(task=, output=, feature=)``.
        task_loss / output_loss / feature_loss: loss configs.
        features: preset name (``bk_sdm``, ``distill_sd``, ``layers``,
            ``self_attention``; see :data:`FEATURE_PRESETS`) or module-path
            patterns on the student; teacher partners follow from the module
            map.
        pairs: explicit ``[(student_module, teacher_module), ...]`` added to
            (or, with ``features=None``, instead of) the derived pairs.
        normalize_features: divide each pair's loss by the teacher feature's
            mean square, so no single deep block dominates.
        log_pairs: log every pair's unweighted loss.
    """

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 compression: Optional[dict] = None,
                 student_init: str = 'teacher',
                 student_pretrained: Optional[dict] = None,
                 loss_weights: Optional[dict] = None,
                 task_loss: Optional[dict] = None,
                 output_loss: Optional[dict] = None,
                 feature_loss: Optional[dict] = None,
                 features: Union[None, str, Sequence[str]] = 'bk_sdm',
                 pairs: Optional[Sequence[Tuple[str, str]]] = None,
                 normalize_features: bool = False,
                 log_pairs: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            data_preprocessor=data_preprocessor
            or dict(type='DiffusionDataPreprocessor'),
            init_cfg=init_cfg)
        if student_init not in STUDENT_INITS:
            raise DistillConfigError(f'student_init must be one of '
                                     f'{STUDENT_INITS}, got {student_init!r}')
        weights = dict(task=1.0, output=1.0, feature=1.0)
        unknown = set(loss_weights or {}) - set(weights)
        if unknown:
            raise DistillConfigError(f'unknown loss_weights keys {unknown}; '
                                     f'valid: {sorted(weights)}')
        weights.update(loss_weights or {})
        self.loss_weights = weights

        student = dict(student)
        if 'loss' in student:
            # The student's own loss is the task term of distillation.
            if task_loss is not None:
                raise DistillConfigError(
                    f"the task loss is given twice: student.loss="
                    f"{student['loss']!r} and task_loss={task_loss!r}; keep "
                    'one of them')
            task_loss = student['loss']

        # Teacher: frozen, eval mode, optionally in a lower precision. A
        # student initialised from it copies the stored (fp32) weights
        # first; the teacher is cast after that, as BK-SDM's code does.
        teacher = dict(teacher)
        t_model = teacher.pop('model')
        t_sub = teacher.pop('subfolder', 'unet')
        t_dtype = teacher.pop('dtype', None)
        # fp8: the teacher is kept in bf16 and its linear layers are
        # quantised on the GPU, before its first forward.
        self.teacher_float8 = t_dtype == FLOAT8
        self._teacher_quantized = False
        if self.teacher_float8:
            check_float8_device()
            t_dtype = 'bfloat16'
        self.teacher_dtype = _dtype(t_dtype)
        t_lora = teacher.pop('lora', None)
        if self.teacher_dtype is not None and student_init != 'teacher':
            teacher.setdefault('torch_dtype', self.teacher_dtype)
        self.teacher = load_component(UNet2DConditionModel, t_model, t_sub,
                                      **teacher)
        self.teacher.requires_grad_(False).eval()
        self.teacher_source = t_model

        # Student UNet and its correspondence with the teacher.
        t_cfg = dict(self.teacher.config)
        if compression is not None:
            result = build_compression(compression)(t_cfg)
            s_cfg, self.module_map = result.student_config, result.module_map
        else:
            s_cfg = {k: v for k, v in t_cfg.items() if not k.startswith('_')}
            self.module_map = {'': ''}
        unet = self._build_student(s_cfg, student_init, student_pretrained)
        self.pairs = self._resolve_pairs(features, pairs, unet)
        self._check_pair_shapes(unet)
        if t_lora:
            # After the student took the teacher's own weights.
            from ..lora import load_lora_file
            load_lora_file(self.teacher, t_lora)
        if self.teacher_dtype is not None:
            self.teacher.to(self.teacher_dtype)
        self.student = MODELS.build(dict(student, unet=unet))
        if student_init == 'pretrained' and self.student.lora:
            # A LoRA export names the UNet it was trained on.
            self.student.component_sources['unet'] = normalized_spec(
                student_pretrained, t_model, None)

        self.task_loss = MODELS.build(task_loss or dict(type='L2Loss'))
        self.output_loss = MODELS.build(output_loss or dict(type='L2Loss'))
        self.feature_loss = MODELS.build(feature_loss or dict(type='L2Loss'))
        self.normalize_features = normalize_features
        self.log_pairs = log_pairs

        # The teacher runs with the student's speed switches (layout,
        # attention kernel, compilation).
        configure_unet(self.teacher, **self.student.unet_speed)
        self.student_recorder = FeatureRecorder(
            self.student.unet, [s for s, _ in self.pairs])
        self.teacher_recorder = FeatureRecorder(
            self.teacher, list(dict.fromkeys(t for _, t in self.pairs)))
        self._init_checkpoint_filter()
        print_log(
            f'distillation: teacher {t_model} '
            f'({_count(self.teacher) / 1e6:.2f}M params) -> student '
            f'({_count(self.student.unet) / 1e6:.2f}M params), '
            f'{len(self.pairs)} feature pairs, weights {self.loss_weights}',
            logger='current')

    # ----------------------------------------------------------- building
    def _build_student(self, s_cfg, init, pretrained) -> nn.Module:
        if init == 'pretrained':
            if not pretrained:
                raise DistillConfigError(
                    "student_init='pretrained' needs student_pretrained="
                    "dict(name_or_path=..., subfolder='unet')")
            pretrained = dict(pretrained)
            unet = load_component(UNet2DConditionModel,
                                  pretrained.pop('name_or_path'),
                                  pretrained.pop('subfolder', None),
                                  **pretrained)
            self._check_student_matches(unet, s_cfg)
            return unet
        unet = UNet2DConditionModel.from_config(s_cfg)
        if init == 'teacher':
            init_from_teacher(unet, self.teacher, self.module_map)
        return unet

    @staticmethod
    def _check_student_matches(unet, s_cfg):
        # Shapes only: the expected UNet is built without storage.
        with torch.device('meta'):
            expected = UNet2DConditionModel.from_config(s_cfg)
        got = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
        want = {k: tuple(v.shape) for k, v in expected.state_dict().items()}
        if got != want:
            diff = sorted(set(got) ^ set(want))[:3] or [
                k for k in want if got[k] != want[k]][:3]
            raise DistillConfigError(
                'the pretrained student does not have the architecture the '
                f'compression recipe describes (first differences: {diff})')

    def _resolve_pairs(self, features, pairs,
                       student: nn.Module) -> List[Tuple[str, str]]:
        out: List[Tuple[str, str]] = []
        s_names = [n for n, _ in student.named_modules()]
        t_names = set(n for n, _ in self.teacher.named_modules())
        if features is not None:
            out.extend(feature_pairs(features, student, self.teacher,
                                     self.module_map))
        for s, t in pairs or []:
            if s not in s_names:
                raise DistillConfigError(
                    f'feature pair ({s!r}, {t!r}): the student has no '
                    f'module {s!r}')
            out.append((s, t))
        for s, t in out:
            if t not in t_names:
                raise DistillConfigError(
                    f'feature pair ({s!r}, {t!r}): the teacher has no '
                    f'module {t!r}')
        if len({s for s, _ in out}) != len(out):
            raise DistillConfigError('a student module is paired twice')
        return out

    @torch.no_grad()
    def _check_pair_shapes(self, student: nn.Module):
        """Run both UNets once on a tiny input and compare pair shapes."""
        if not self.pairs and not self.loss_weights['output']:
            return
        cfg = self.teacher.config
        n_down = len(cfg.down_block_types) - 1
        size = max(8, 2**n_down)
        x = torch.zeros(1, cfg.in_channels, size, size)
        kwargs = dict(encoder_hidden_states=torch.zeros(
            1, 4, cfg.cross_attention_dim))
        if cfg.addition_embed_type == 'text_time':
            text_dim = cfg.projection_class_embeddings_input_dim - \
                6 * cfg.addition_time_embed_dim
            kwargs['added_cond_kwargs'] = dict(
                text_embeds=torch.zeros(1, text_dim),
                time_ids=torch.zeros(1, 6))
        shapes = {}
        for name, unet, names in (
                ('student', student, [s for s, _ in self.pairs]),
                ('teacher', self.teacher, [t for _, t in self.pairs])):
            rec = FeatureRecorder(unet, list(dict.fromkeys(names)))
            p = next(unet.parameters())
            try:
                with rec.recording():
                    out = unet(
                        x.to(p), torch.tensor([10]),
                        **{k: (v.to(p) if torch.is_tensor(v) else
                               {a: b.to(p) for a, b in v.items()})
                           for k, v in kwargs.items()}).sample
                shapes[name] = {k: v.shape for k, v in rec.outputs.items()}
                shapes[name + '_out'] = out.shape
            finally:
                rec.remove()
        if shapes['student_out'] != shapes['teacher_out']:
            raise DistillConfigError(
                f"student output {tuple(shapes['student_out'])} and teacher "
                f"output {tuple(shapes['teacher_out'])} differ")
        for s, t in self.pairs:
            a, b = shapes['student'][s], shapes['teacher'][t]
            if a != b:
                raise DistillConfigError(
                    f'feature pair student {s!r} {tuple(a)} / teacher {t!r} '
                    f'{tuple(b)}: shapes do not match')

    @torch.no_grad()
    def switch_teacher(self, model: str, subfolder: Optional[str] = 'unet'):
        """Load another teacher of the same architecture in place (SSD-1B
        used SDXL, then fine-tuned SDXL experts). Hooks stay attached."""
        new = load_component(UNet2DConditionModel, model, subfolder)
        state = new.state_dict()
        own = self.teacher.state_dict()
        if {k: v.shape for k, v in state.items()} != \
                {k: v.shape for k, v in own.items()}:
            raise DistillConfigError(
                f'teacher {model!r} does not have the architecture of the '
                f'current teacher {self.teacher_source!r}')
        self.teacher.load_state_dict(state)
        self.teacher_source = model
        print_log(f'distillation: teacher is now {model}', logger='current')

    # ----------------------------------------------------------- training
    def _teacher_forward(self, batch):
        if self.teacher_dtype is None:
            return self.student.run_unet(self.teacher, batch)
        cast = copy.copy(batch)
        dt = self.teacher_dtype
        if self.teacher_float8 and not self._teacher_quantized:
            quantize_float8(self.teacher)  # on the device it runs on
            self._teacher_quantized = True
        # Latents and prompt hidden states enter the teacher's layers, which
        # take its dtype (as in a bf16/fp16 pipeline, or under autocast).
        # SDXL's time ids and pooled text embeds stay fp32, the student's
        # exact values: diffusers embeds them in fp32 and casts after, and
        # bf16 holds integers exactly only up to 256 (1365 px -> 1368).
        cast.noisy_latents = batch.noisy_latents.to(dt)
        cast.encoder_hidden_states = batch.encoder_hidden_states.to(dt)
        # The teacher runs in its own dtype outside the optimizer wrapper's
        # autocast, as in the official training scripts (only the student
        # is autocast there). Under CPU bf16 autocast an fp16 teacher's
        # group norms would meet bf16 activations: "mixed dtype (CPU)".
        device = batch.noisy_latents.device.type
        with torch.autocast(device, enabled=False):
            return self.student.run_unet(self.teacher, cast).float()

    def loss(self, inputs: Dict) -> Dict[str, torch.Tensor]:
        st = self.student
        batch = st.prepare(inputs)
        w = self.loss_weights
        need_teacher = w['output'] or (w['feature'] and self.pairs)
        losses: Dict[str, torch.Tensor] = {}
        try:
            if need_teacher:
                self.teacher.eval()
                with torch.no_grad(), self.teacher_recorder.recording():
                    t_pred = self._teacher_forward(batch)
            with self.student_recorder.recording():
                s_pred = st.run_unet(st.unet, batch)
            # DreamBooth class rows (``is_prior``) get the student's
            # prior-preservation weight in the task term; KD uses every row.
            for name, term in st.task_losses(s_pred, batch,
                                             inputs.get('is_prior'),
                                             self.task_loss).items():
                key = 'loss_task_prior' if name == 'loss_prior' \
                    else 'loss_task'
                losses[key] = w['task'] * term
            if w['output']:
                losses['loss_kd_out'] = w['output'] * st.score(
                    s_pred, t_pred, batch, self.output_loss)
            if w['feature'] and self.pairs:
                losses.update(self._feature_losses(batch))
        finally:
            # No feature outlives the step.
            self.student_recorder.clear()
            self.teacher_recorder.clear()
        return losses

    def _feature_losses(self, batch) -> Dict[str, torch.Tensor]:
        s_out = self.student_recorder.outputs
        t_out = self.teacher_recorder.outputs
        total = 0.0
        logs = {}
        for s, t in self.pairs:
            fs, ft = s_out[s], t_out[t].detach().float()
            term = self.student.score(fs, ft, batch, self.feature_loss)
            if self.normalize_features:
                term = term / ft.pow(2).mean().clamp_min(1e-6)
            total = total + term
            if self.log_pairs:
                logs[f'kd_feat/{s}'] = term.detach()
        logs['loss_kd_feat'] = self.loss_weights['feature'] * total
        return logs

    def forward(self, inputs: Dict, data_samples=None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        raise ValueError(f'unsupported mode {mode!r}; use loss or predict')

    # predict() samples the teacher too on request (sampling.teacher): the
    # sample grid's teacher row.
    samples_teacher = True

    @torch.no_grad()
    def predict(self, inputs: Dict) -> List[Dict]:
        """The student's evaluation samples; with ``sampling.teacher`` also
        the teacher's for the same prompts and seeds (``teacher_image``,
        ``teacher_latent``)."""
        sampling = dict(inputs.get('sampling') or {})
        with_teacher = sampling.pop('teacher', False)
        args = (list(inputs['text']), inputs.get('seed'), inputs.get('index'))
        samples = self.student.predict(*args, **sampling)
        if with_teacher:
            # A low-precision teacher samples in fp32 (Sampling.generate).
            theirs = self.student.predict(*args, unet=self.teacher,
                                          **sampling)
            for mine, t in zip(samples, theirs):
                mine.update(teacher_image=t['image'],
                            teacher_latent=t['latent'])
        return samples

    # ------------------------------------------------- export / sampling
    @property
    def pipeline_class_name(self) -> str:
        return self.student.pipeline_class_name

    def export_pretrained(self, out_dir: str) -> Dict:
        info = self.student.export_pretrained(out_dir)
        info['teacher'] = self.teacher_source
        # The model card's "teacher -> student" line.
        info['params'] = dict(teacher=_count(self.teacher),
                              student=_count(self.student.unet))
        return info

    def generate(self, prompts, **kwargs):
        return self.student.generate(prompts, **kwargs)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
