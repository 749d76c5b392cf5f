# The toy world's captioned shapes (32 px), built on first use in
# $DIFFKD_HOME and read through the same imagefolder loader as user data.
#
# A toy twin inherits its real config and a toy schedule that includes this
# file (docs/distill.md, "Toy twins"). mmengine refuses a key that two bases
# both define, so the toy world's values live in one dict, `toy`, and the
# twin assigns them to the real config's keys:
#   train_dataloader = {{_base_.toy.train_dataloader}}
# Keys that real configs do not have (test_*) are set here directly.
toy = dict(
    # Replaces the real config's dataloader (a real distillation streams
    # shards, which have no sampler; the toy shapes are a map-style set).
    train_dataloader=dict(
        _delete_=True,
        # The toy step time is overhead-bound: a big batch is nearly free.
        batch_size=64,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        collate_fn=dict(type='default_collate'),
        dataset=dict(
            type='HFImageTextDataset',
            dataset='diffkd-toy/shapes',
            image_column='image',
            caption_column='text',
            pipeline=[
                dict(type='ResizeShortEdge', size=32),
                dict(type='RandomCropWithCoords', size=32),
                dict(type='RandomHorizontalFlip', prob=0.5),
                dict(type='RandomCaptionDrop', prob=0.1),
                dict(type='ComputeTimeIds'),
                dict(type='NormalizeRGB'),
                dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
            ])),
    vis_prompts=[
        'a red circle on a blue background',
        'a yellow square on a black background',
        'a green triangle on a white background',
        'a blue circle on a yellow background',
        'a white square on a red background',
        'a black triangle on a green background',
    ])

# Validation: the training loss and each KD term on held-out shapes (32 of
# the 90 in diffkd-toy/shapes-val, 2 batches), every image with its own
# fixed noise and timestep (HeldOutLossStep), at train_cfg.val_interval.
# Logged as val/loss, val/loss_task, val/loss_kd_out, val/loss_kd_feat to
# the log, vis_data/scalars.json and TensorBoard.
val_pipeline = [
    dict(type='ResizeShortEdge', size=32),
    dict(type='CenterCropWithCoords', size=32),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
]
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='HFImageTextDataset',
        dataset='diffkd-toy/shapes-val',
        image_column='image',
        caption_column='text',
        max_samples=32,
        pipeline=val_pipeline))
val_cfg = dict(type='ValLoop')
val_evaluator = dict(type='HeldOutLoss')

# Evaluation: the 90 toy captions, prompt i sampled with seed i. Metrics
# whose weights are not on the machine (CLIP, Inception, LPIPS) are left
# out with a message saying which file to put where.
test_dataloader = dict(
    batch_size=10,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='PromptDataset', prompts='diffkd-toy', seed=0))
# tools/test.py samples them like tools/analysis_tools/toy_score.py does
test_cfg = dict(
    type='DiffusionTestLoop',
    sampling=dict(num_inference_steps=20, guidance_scale=4.0))
test_evaluator = [
    dict(type='ToyPromptScore'),
    dict(type='TeacherStudentAgreement'),
    dict(type='CLIPScore'),
    dict(type='FID', reference='diffkd-toy/shapes-val'),
]
