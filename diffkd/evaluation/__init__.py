from .toy import evaluate_toy_pipeline, latent_distance

__all__ = ['evaluate_toy_pipeline', 'latent_distance']
