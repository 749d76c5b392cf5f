"""Evaluation metrics on tiny inputs, with known answers, and what a user
sees when a metric's weights are missing."""
import os.path as osp
import random

import numpy as np
import pytest
import torch

from diffkd.evaluation.metrics import (FID, CLIPScore,
                                       TeacherStudentAgreement,
                                       ToyPromptScore)
from diffkd.evaluation.metrics.agreement import psnr
from diffkd.evaluation.weights import MissingWeightsError
from diffkd.toy.shapes import all_combinations, caption_for, render_shape
from tests.conftest import TinyFeatures


def run_metric(metric, samples, batch=4):
    for i in range(0, len(samples), batch):
        metric.process(None, samples[i:i + batch])
    return metric.evaluate(len(samples))


def toy_samples(n=12, seed=0):
    rng = random.Random(seed)
    combos = all_combinations()[:n]
    return [dict(prompt=caption_for(*c), seed=i, index=i,
                 image=np.asarray(render_shape(*c, size=32, rng=rng)))
            for i, c in enumerate(combos)]


# ------------------------------------------------------------- toy score
def test_toy_prompt_score_known_answer():
    samples = toy_samples(12)
    # the teacher drew the right images, the student the wrong shapes for
    # the first half of the prompts
    wrong = {'circle': 'square', 'square': 'triangle', 'triangle': 'circle'}
    for i, s in enumerate(samples):
        s['teacher_image'] = s['image']
        if i < 6:
            c, sh, b = all_combinations()[i]
            s['image'] = np.asarray(render_shape(c, wrong[sh], b, size=32))
    res = run_metric(ToyPromptScore(), samples)
    assert res['toy/teacher/all_acc'] == 1.0
    assert res['toy/all_acc'] == 0.5
    assert res['toy/shape_acc'] == 0.5
    assert res['toy/colour_acc'] == 1.0 and res['toy/background_acc'] == 1.0
    with pytest.raises(ValueError, match="index 3"):
        run_metric(ToyPromptScore(), [dict(samples[0], prompt='a dog',
                                           index=3)])


# ------------------------------------------------------------- CLIP score
def test_clip_score_known_answer(tiny_clip):
    from transformers import CLIPModel, CLIPProcessor
    samples = toy_samples(6)
    res = run_metric(CLIPScore(model=tiny_clip), samples)
    # by hand: 100 * max(cos(image embedding, text embedding), 0)
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    proc = CLIPProcessor.from_pretrained(tiny_clip)
    want = []
    for s in samples:
        with torch.no_grad():
            img = model.get_image_features(**proc(
                images=s['image'], return_tensors='pt'))
            txt = model.get_text_features(**proc(
                text=[s['prompt']], return_tensors='pt', padding=True))
        img = img if torch.is_tensor(img) else img.pooler_output
        txt = txt if torch.is_tensor(txt) else txt.pooler_output
        cos = float((img / img.norm()) @ (txt / txt.norm()).T)
        want.append(100 * max(cos, 0.0))
    assert res['clip/score'] == pytest.approx(np.mean(want), abs=1e-3)
    assert 0 <= res['clip/score'] <= 100


def test_torchmetrics_clip_score_still_fails_on_transformers_5(tiny_clip):
    """Why CLIPScore computes the score itself (clip_scores): once this
    stops failing, torchmetrics' CLIPScore can take its place."""
    from torchmetrics.functional.multimodal import clip_score
    from transformers import CLIPModel, CLIPProcessor
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    proc = CLIPProcessor.from_pretrained(tiny_clip)
    image = torch.from_numpy(toy_samples(1)[0]['image']).permute(2, 0, 1)
    with pytest.raises(AttributeError, match="has no attribute 'norm'"):
        clip_score(image, 'a red circle',
                   model_name_or_path=lambda: (model, proc))


def test_clip_score_missing_model_says_what_to_do():
    metric = CLIPScore(model='nobody/no-such-clip')
    assert 'huggingface-cli download nobody/no-such-clip' in metric.missing
    assert 'CLIPScore.model' in metric.missing
    # left out of the results, not a crash
    assert run_metric(metric, toy_samples(2)) == {}
    with pytest.raises(MissingWeightsError, match='no-such-clip'):
        CLIPScore(model='nobody/no-such-clip', on_missing='error')


# ------------------------------------------------------------------- FID
def frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr(sqrtm(S1 S2)) is the sum of the square roots of its eigenvalues
    tr_covmean = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    return float(((mu1 - mu2)**2).sum() + np.trace(s1 + s2) - 2 * tr_covmean)


def test_fid_known_answer(tmp_path, tiny_inception):
    from PIL import Image
    refs = toy_samples(30, seed=1)
    for s in refs:
        Image.fromarray(s['image']).save(tmp_path / f"{s['index']}.png")
    fid = FID(reference=str(tmp_path), inception=tiny_inception)
    # the reference set against itself
    assert run_metric(fid, refs)['fid/score'] == pytest.approx(0, abs=1e-6)
    # another set: the closed form on the same features
    other = toy_samples(30, seed=5)
    for s in other[:15]:
        s['image'] = 255 - s['image']
    got = run_metric(FID(reference=str(tmp_path),
                         inception=tiny_inception), other)['fid/score']
    feats = lambda ss: TinyFeatures()(torch.from_numpy(  # noqa: E731
        np.stack([s['image'] for s in ss])).permute(0, 3, 1, 2)).double()
    want = frechet(feats(refs).numpy(), feats(other).numpy())
    assert got == pytest.approx(want, rel=1e-4) and got > 0.01


def test_fid_missing_inception_names_file_and_folder(diffkd_home):
    metric = FID(reference='diffkd-toy/shapes-val')
    where = osp.join(diffkd_home, 'metrics', 'inception-2015-12-05.pt')
    assert where in metric.missing and 'FID.inception' in metric.missing
    assert 'https://' in metric.missing
    with pytest.raises(MissingWeightsError, match='inception-2015-12-05'):
        FID(reference='diffkd-toy/shapes-val', on_missing='error')


# ------------------------------------------------ teacher-student agreement
def with_teacher(samples, noise, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in samples:
        t = s['image'].astype(np.float64) + rng.normal(0, noise,
                                                       s['image'].shape)
        latent = torch.full((4, 4, 4), float(s['index']))
        out.append(dict(s, latent=latent + noise / 100,
                        teacher_latent=latent,
                        teacher_image=t.clip(0, 255).round().astype(
                            np.uint8)))
    return out


def test_agreement_orders_closer_students_first(lpips_files):
    backbone, heads = lpips_files
    scores = [
        run_metric(TeacherStudentAgreement(lpips_backbone=backbone,
                                           lpips_heads=heads),
                   with_teacher(toy_samples(8), noise))
        for noise in (0, 10, 40)]
    same, close, far = scores
    assert same['agreement/latent_mse'] == 0
    assert same['agreement/psnr'] == 100.0
    assert same['agreement/lpips'] == pytest.approx(0, abs=1e-6)
    assert close['agreement/latent_mse'] == pytest.approx(0.01, rel=1e-5)
    assert far['agreement/psnr'] < close['agreement/psnr'] < 100
    assert 0 < close['agreement/lpips'] < far['agreement/lpips']


def test_psnr_known_answer():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    # torchmetrics takes the log of data_range in float32: 1e-6 dB off
    assert psnr(a, b) == pytest.approx(0.0, abs=1e-5)
    c = a.copy()
    c[0, 0, 0] = 255  # mse = 255^2 / 48
    assert psnr(a, c) == pytest.approx(10 * np.log10(48), abs=1e-5)


def test_psnr_equals_the_former_numpy_formula():
    """torchmetrics' PSNR gives what diffkd computed by hand before."""
    rng = np.random.default_rng(0)
    for noise in (1, 10, 80):
        a = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
        b = (a + rng.normal(0, noise, a.shape)).clip(0, 255).astype(np.uint8)
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
        assert psnr(a, b) == pytest.approx(
            min(100.0, 10 * np.log10(255.0**2 / mse)), abs=1e-5)


def test_agreement_without_lpips_weights_keeps_the_other_scores(
        diffkd_home):
    metric = TeacherStudentAgreement()
    assert metric.lpips is None
    res = run_metric(metric, with_teacher(toy_samples(4), 10))
    assert set(res) == {'agreement/latent_mse', 'agreement/psnr'}
    # a model without a teacher: left out, no crash
    assert run_metric(TeacherStudentAgreement(lpips=False),
                      toy_samples(4)) == {}
