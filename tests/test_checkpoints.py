"""Loading the published encoders and the authors' fine-tuned checkpoints, safely."""
import pickle
import sys
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mma_dfer.config import load_config
from mma_dfer.models import build_model, from_authors_checkpoint
from mma_dfer.models.checkpoints import resize_pos_embed
from mma_dfer.safe_files import CheckpointError, safe_load
from tests.fakes import mae_state_dict, write_mae_checkpoint
from tests.conftest import ROOT

TINY = dict(embed_dim=64, depth=4)


def tiny_with_checkpoints(tmp_path, res=160, **ckpt_kwargs):
    video = write_mae_checkpoint(tmp_path / "mae_face_pretrain_vit_base.pth", "video", seed=1, **TINY, **ckpt_kwargs)
    audio = write_mae_checkpoint(tmp_path / "audiomae_pretrained.pth", "audio", seed=2, **TINY)
    cfg = load_config(ROOT / "configs/tiny.yaml", [
        f"data.resolution={res}", "data.audio_frames=512",
        f"model.video_checkpoint={video}", f"model.audio_checkpoint={audio}"])
    return cfg, video, audio


@pytest.mark.parametrize("res,grid", [(224, 14), (160, 10), (112, 7)])
def test_real_layout_checkpoints_load_with_resized_pos_embed(tmp_path, res, grid):
    cfg, video, audio = tiny_with_checkpoints(tmp_path, res)
    model = build_model(cfg)
    src_v = torch.load(video, weights_only=False)["model"]
    src_a = torch.load(audio, weights_only=False)["model"]
    # independent bicubic resize of the 14x14 grid and of the 64x8 fbank grid (time halves)
    want_v = F.interpolate(src_v["pos_embed"][:, 1:].reshape(1, 14, 14, 64).permute(0, 3, 1, 2), size=(grid, grid),
                           mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, grid * grid, 64)
    want_a = F.interpolate(src_a["pos_embed"][:, 1:].reshape(1, 64, 8, 64).permute(0, 3, 1, 2), size=(32, 8),
                           mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 256, 64)
    pv, pa = model.video_encoder.pos_embed.detach(), model.audio_encoder.pos_embed.detach()
    assert pv.shape == (1, 1 + grid * grid + 2, 64) and pa.shape == (1, 1 + 256 + 2, 64)
    torch.testing.assert_close(pv[:, 1:1 + grid * grid], want_v)
    torch.testing.assert_close(pa[:, 1:257], want_a)
    torch.testing.assert_close(pv[:, :1], src_v["pos_embed"][:, :1])
    torch.testing.assert_close(model.audio_encoder.blocks[2].mlp.fc1.weight, src_a["blocks.2.mlp.fc1.weight"])
    torch.testing.assert_close(model.video_encoder.norm.weight, src_v["norm.weight"])
    assert model.video_encoder.pos_embed.requires_grad and not model.video_encoder.blocks[0].attn.qkv.weight.requires_grad


def test_resize_keeps_cls_and_is_identity_on_same_grid():
    pos = torch.randn(1, 1 + 6, 3)
    torch.testing.assert_close(resize_pos_embed(pos, (3, 2), (3, 2)), pos)
    assert resize_pos_embed(pos, (3, 2), (6, 2)).shape == (1, 13, 3)


def test_checkpoint_with_wrong_keys_names_file_and_keys(tmp_path):
    path = tmp_path / "wrong.pth"
    sd = mae_state_dict("video", **TINY)
    del sd["blocks.1.attn.qkv.weight"]
    sd["something.else"] = torch.zeros(1)
    torch.save({"model": sd}, path)
    cfg, _, _ = tiny_with_checkpoints(tmp_path)
    cfg.model.video_checkpoint = str(path)
    with pytest.raises(CheckpointError) as e:
        build_model(cfg)
    msg = str(e.value)
    assert str(path) in msg and "blocks.1.attn.qkv.weight" in msg and "something.else" in msg


def test_checkpoint_of_another_width_names_the_shapes(tmp_path):
    cfg, _, _ = tiny_with_checkpoints(tmp_path)
    wrong = write_mae_checkpoint(tmp_path / "wide.pth", "audio", embed_dim=64, depth=4, mlp_ratio=2.0)
    cfg.model.audio_checkpoint = str(wrong)
    with pytest.raises(CheckpointError, match=r"wide.pth: shape mismatch .*mlp.fc1.weight"):
        build_model(cfg)


def test_audio_checkpoint_given_as_video_is_refused(tmp_path):
    cfg, video, audio = tiny_with_checkpoints(tmp_path)
    cfg.model.video_checkpoint = str(audio)
    with pytest.raises(CheckpointError, match="audiomae_pretrained.pth"):
        build_model(cfg)


def test_truncated_and_missing_checkpoints(tmp_path):
    cfg, video, _ = tiny_with_checkpoints(tmp_path)
    data = video.read_bytes()
    broken = tmp_path / "broken.pth"
    broken.write_bytes(data[: len(data) // 3])
    cfg.model.video_checkpoint = str(broken)
    with pytest.raises(CheckpointError, match="broken.pth: not a readable torch checkpoint"):
        build_model(cfg)
    cfg.model.video_checkpoint = str(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pth"):
        build_model(cfg)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Exploit()
    evil.marker = marker
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": evil}, path)
    with pytest.raises(CheckpointError, match=r"evil.pth: refused to load: .*(posix|os)\.system"):
        safe_load(path)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------
# The authors' fine-tuned container, written from the key names of their GenerateModel
# ---------------------------------------------------------------------------------------

class RecorderMeter:  # pickled as __main__.RecorderMeter, like the authors' main.py
    def __init__(self, epochs):
        self.total_epoch, self.current_epoch = epochs, epochs
        self.epoch_losses = np.zeros((epochs, 2), dtype=np.float32)
        self.epoch_accuracy = np.zeros((epochs, 2), dtype=np.float32)


def authors_state(model):
    """The model's weights under the authors' GenerateModel names (their state_dict layout)."""
    sd = {}
    for side, enc, prm in (("image_encoder", model.video_encoder, model.video_prompts),
                           ("audio_model", model.audio_encoder, model.audio_prompts)):
        for k, v in enc.state_dict().items():
            sd[f"{side}.{k}"] = v
        sd[f"{side}.learnable_prompts_init"] = prm.init.detach()
        for i, p in enumerate(prm.progressive):
            sd[f"{side}.learnable_prompts_progr.{i}"] = p.detach()
        sd[f"{side}.head.weight"] = torch.randn(12 if side == "image_encoder" else 1000, enc.embed_dim)
        sd[f"{side}.head.bias"] = torch.randn(sd[f"{side}.head.weight"].shape[0])
    for i, f in enumerate(model.fusion):
        sd[f"image_encoder.temporal_pre.{i}.weight"], sd[f"image_encoder.temporal_pre.{i}.bias"] = f.video_down[0].weight, f.video_down[0].bias
        sd[f"image_encoder.temporal_pre_norm.{i}.weight"], sd[f"image_encoder.temporal_pre_norm.{i}.bias"] = f.video_down[1].weight, f.video_down[1].bias
        for j in (0, 1):
            sd[f"image_encoder.audio_proj_pre.{i}.{j}.weight"] = f.audio_down[j].weight
            sd[f"image_encoder.audio_proj_pre.{i}.{j}.bias"] = f.audio_down[j].bias
        sd[f"image_encoder.temporal_att_post.{i}.0.weight"], sd[f"image_encoder.temporal_att_post.{i}.0.bias"] = f.video_up[0].weight, f.video_up[0].bias
        sd[f"audio_model.temporal_att_post.{i}.0.weight"], sd[f"audio_model.temporal_att_post.{i}.0.bias"] = f.audio_up[0].weight, f.audio_up[0].bias
        sd[f"image_encoder.all_gate.{i}"], sd[f"audio_model.all_gate.{i}"] = f.video_gate, f.audio_gate
    sd["vision_proj.weight"], sd["vision_proj.bias"] = model.jam.weight, model.jam.bias
    sd["our_classifier.weight"], sd["our_classifier.bias"] = model.head.weight, model.head.bias
    sd["temporal_net.cls_token"], sd["temporal_net.pos_embedding"] = model.mtt.cls_token, model.mtt.pos_embed
    t = "temporal_net.temporal_transformer.layers.0."
    layer = model.mtt.layers[0]
    for k, v in {"0.fn.norm": layer.attn_norm, "1.fn.norm": layer.ff_norm}.items():
        sd[t + k + ".weight"], sd[t + k + ".bias"] = v.weight, v.bias
        sd[t + k + "2.weight"], sd[t + k + "2.bias"] = torch.ones_like(v.weight), torch.zeros_like(v.bias)
    sd[t + "0.fn.fn.to_q.weight"], sd[t + "0.fn.fn.to_kv.weight"] = layer.attn.to_q.weight, layer.attn.to_kv.weight
    sd[t + "0.fn.fn.to_out.0.weight"], sd[t + "0.fn.fn.to_out.0.bias"] = layer.attn.to_out.weight, layer.attn.to_out.bias
    sd[t + "1.fn.fn.net.0.weight"], sd[t + "1.fn.fn.net.0.bias"] = layer.ff.fc1.weight, layer.ff.fc1.bias
    sd[t + "1.fn.fn.net.3.weight"], sd[t + "1.fn.fn.net.3.bias"] = layer.ff.fc2.weight, layer.ff.fc2.bias
    return {"module." + k: v.detach().clone() for k, v in sd.items()}


def authors_model(dataset):
    cfg = load_config(None, [f"data.dataset={dataset}", "data.resolution=32", "data.audio_frames=64",
                             "model.embed_dim=128", "model.num_heads=2", "model.depth=2", "model.num_prompts=2",
                             "model.prompt_updates=2", "model.fusion_dim=16", "model.temporal_dim=64",
                             "model.temporal_heads=1", "model.temporal_mlp_dim=96"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for f in model.fusion:
            f.video_gate.fill_(0.4)
            f.audio_gate.fill_(-0.3)
    return model


def save_authors_container(path, state, monkeypatch):
    RecorderMeter.__module__ = "__main__"
    monkeypatch.setattr(sys.modules["__main__"], "RecorderMeter", RecorderMeter, raising=False)
    torch.save({"epoch": 25, "state_dict": state, "best_acc": torch.tensor(61.2),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "initial_lr": 1e-4}]},
                "recorder": RecorderMeter(25)}, path)


def test_authors_checkpoint_imports_with_identical_logits(tmp_path, monkeypatch):
    model = authors_model("dfew")
    path = tmp_path / "model.pth"
    save_authors_container(path, authors_state(model), monkeypatch)
    with zipfile.ZipFile(path) as z:  # the container really carries the pickled RecorderMeter
        assert b"RecorderMeter" in z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # plain torch refuses it ...
    imported = from_authors_checkpoint(path)  # ... this loader allows exactly that type
    assert not imported.training and imported.image_size == 32 and imported.audio_frames == 64
    video, audio = torch.rand(2, 16, 3, 32, 32), torch.randn(2, 1, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(imported(video, audio), model(video, audio), rtol=0, atol=1e-5)


def test_authors_mafw_checkpoint_in_canonical_order(tmp_path, monkeypatch):
    from mma_dfer.labels import CLASS_NAMES, LIST_ORDERS

    model = authors_model("mafw")
    path = tmp_path / "mafw.pth"
    save_authors_container(path, authors_state(model), monkeypatch)
    authors = from_authors_checkpoint(path)
    canonical = from_authors_checkpoint(path, label_order="canonical")
    assert authors.class_names == LIST_ORDERS["mafw"]["mma"] and canonical.class_names == CLASS_NAMES["mafw"]
    video, audio = torch.rand(1, 16, 3, 32, 32), torch.randn(1, 1, 64, 128)
    with torch.no_grad():
        a, c = authors(video, audio)[0], canonical(video, audio)[0]
    for i, name in enumerate(authors.class_names):
        torch.testing.assert_close(a[i], c[CLASS_NAMES["mafw"].index(name)])


def test_authors_checkpoint_with_foreign_keys_is_refused(tmp_path, monkeypatch):
    state = authors_state(authors_model("dfew"))
    state["module.image_encoder.context_att.0.in_proj_weight"] = torch.zeros(3, 3)
    path = tmp_path / "odd.pth"
    save_authors_container(path, state, monkeypatch)
    with pytest.raises(CheckpointError, match=r"odd.pth: .*image_encoder.context_att.0.in_proj_weight"):
        from_authors_checkpoint(path)


@pytest.mark.slow
def test_full_paper_config_loads_real_size_checkpoints_and_trains_a_step(tmp_path):
    video = write_mae_checkpoint(tmp_path / "mae_face_pretrain_vit_base.pth", "video", seed=1)
    audio = write_mae_checkpoint(tmp_path / "audiomae_pretrained.pth", "audio", seed=2)
    cfg = load_config(ROOT / "configs/dfew_160.yaml",
                      [f"model.video_checkpoint={video}", f"model.audio_checkpoint={audio}"])
    model = build_model(cfg).train()
    assert sum(p.numel() for p in model.trainable_parameters()) == 7_556_639
    out = model(torch.rand(1, 16, 3, 160, 160), torch.randn(1, 1, 512, 128))
    out.sum().backward()
    assert out.shape == (1, 7) and model.video_encoder.pos_embed.grad is not None
