from .peft_lora import (TEXT_ENCODER_TARGETS, UNET_TARGETS, add_lora,
                        add_lora_from_config, lora_state_dict, save_lora)

__all__ = [
    'TEXT_ENCODER_TARGETS', 'UNET_TARGETS', 'add_lora',
    'add_lora_from_config', 'lora_state_dict',
    'save_lora'
]
