"""MMA-DFER model parts and checkpoint loading."""
from mma_dfer.models.checkpoints import from_authors_checkpoint, load_pretrained_encoders
from mma_dfer.models.mma_dfer import MMADFER


def build_model(cfg, load_pretrained: bool = True) -> MMADFER:
    """The model a full config describes, with its pretrained encoders loaded when configured."""
    d = cfg.data
    model = MMADFER(cfg.model, cfg.model.num_classes, image_size=d.resolution, num_frames=d.num_frames,
                    audio_frames=d.audio_frames, mel_bins=d.mel_bins)
    if load_pretrained:
        load_pretrained_encoders(model, cfg.model)
    return model


__all__ = ["MMADFER", "build_model", "from_authors_checkpoint", "load_pretrained_encoders"]
