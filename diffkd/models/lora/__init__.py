from .peft_lora import (TEXT_ENCODER_TARGETS, UNET_TARGETS, add_lora,
                        add_lora_from_config, load_lora_file, lora_file,
                        lora_state_dict, read_lora_file, save_lora,
                        set_lora_weights)

__all__ = [
    'TEXT_ENCODER_TARGETS', 'UNET_TARGETS', 'add_lora',
    'add_lora_from_config', 'load_lora_file', 'lora_file',
    'lora_state_dict', 'read_lora_file', 'save_lora', 'set_lora_weights'
]
