# DreamBooth-LoRA on SSD-1B, as in the SSD-1B announcement: same data and
# schedule as the SDXL run, on a UNet with ~half the parameters. Load with
#   pipe = DiffusionPipeline.from_pretrained('segmind/SSD-1B')
#   pipe.load_lora_weights('work_dirs/ssd_1b_dreambooth_lora_dog/final/lora')
_base_ = ('../stable_diffusion_xl_dreambooth/'
          'stable_diffusion_xl_dreambooth_lora_dog.py')
model = dict(model='segmind/SSD-1B')
# The prior is the student's own: class images come from SSD-1B.
train_dataloader = dict(
    dataset=dict(class_image_generation=dict(model='segmind/SSD-1B')))
