"""Config loading: defaults are the paper's, bases and overrides merge, mistakes are named."""
import pytest

from mma_dfer.config import ConfigError, load_config, save_config


def test_defaults_are_the_papers_values():
    cfg = load_config()
    m, d, t = cfg.model, cfg.data, cfg.train
    assert (d.num_frames, d.resolution, d.audio_frames, d.mel_bins) == (16, 160, 512, 128)
    assert (t.lr, t.epochs, t.batch_size, t.weight_decay, t.seed, t.schedule) == (1e-4, 25, 8, 1e-2, 1, "cosine")
    assert (m.fusion_dim, m.num_prompts, m.prompt_updates) == (128, 6, 2)
    assert (m.temporal_layers, m.temporal_dim, m.temporal_heads, m.temporal_mlp_dim) == (1, 512, 8, 1024)
    assert m.num_classes == 7 and load_config(None, ["data.dataset=mafw"]).model.num_classes == 11


def test_base_files_and_overrides_merge(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {fusion_dim: 64}\ntrain: {epochs: 3}\n")
    (tmp_path / "exp.yaml").write_text("base: base.yaml\ntrain: {lr: 2e-4}\n")
    cfg = load_config(tmp_path / "exp.yaml", ["train.epochs=5", "data.fold=4"])
    assert (cfg.model.fusion_dim, cfg.train.epochs, cfg.train.lr, cfg.data.fold) == (64, 5, 2e-4, 4)


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "unknown config key 'train.lrr' (did you mean train.lr?)"),
    ("modle.depth=2", "unknown config key 'modle'"),
    ("train.epochs=two", "train.epochs expects an integer, got 'two'"),
    ("model.grad_checkpointing=2", "model.grad_checkpointing expects true/false"),
    ("data.source=raw", "data.source='raw' is not one of ['frames', 'video', 'packed']"),
    ("data.decode=device", "data.decode=device decodes packed JPEG frames for data.gpu_augment"),
    ("model.num_classes=5", "model.num_classes=5 but data.dataset='dfew' has 7 classes"),
    ("train", "override 'train' is not of the form section.key=value"),
])
def test_mistakes_name_the_field(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.fusion_dim=256", "data.crop_area=[0.2,1.0]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_config_that_includes_itself(tmp_path):
    (tmp_path / "a.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "a.yaml")
