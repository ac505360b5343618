"""Table 2's intermediate temporal adaptors and Table 3's fusion alternatives: they train, start as
the model without them, keep clips apart, keep a bf16 stream bf16, and have the documented sizes."""
import pytest
import torch

from mma_dfer.config import ConfigError, load_config
from mma_dfer.models import build_model
from mma_dfer.models.fusion_variants import AddFusion, ConcatFusion, MultFusion
from mma_dfer.models.ita import IntermediateTemporalAdaptor
from tests.conftest import ROOT
from tests.test_model import meta_model, trainable

# tiny.yaml: fusion_dim 16, so ita_dim=16 shares the bottleneck's projections and 8 brings its own
VARIANTS = {
    "ita_shared": ["model.ita_dim=16"],
    "ita_own_mean": ["model.ita_dim=8", "model.temporal=mean", "model.ita_temporal_embed=true"],
    "ita_no_fusion": ["model.ita_dim=16", "model.fusion=none"],
    "ita_video_only": ["model.ita_dim=16", "model.fusion=none", "model.modalities=video"],
    "add": ["model.fusion=add"],
    "mult": ["model.fusion=mult", "model.fusion_dim=8"],
    "mult_concat": ["model.fusion=mult_concat", "model.fusion_mlp_dim=32"],
}


def tiny(*overrides):
    return load_config(ROOT / "configs" / "tiny.yaml", list(overrides))


def inputs(cfg, dtype=torch.float32):
    d = cfg.data
    g = torch.Generator().manual_seed(5)
    return (torch.rand(2, d.num_frames, 3, d.resolution, d.resolution, generator=g).to(dtype),
            torch.randn(2, 1, d.audio_frames, d.mel_bins, generator=g).to(dtype))


def set_gates(model, value):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                p.fill_(value)


# -- parameter counts (formulas in docs/model.md), full size on meta tensors --------------------------
D, DEPTH, T = 768, 12, 16


def ita_params(d, own_projections, temporal_embed=False):
    """Per block: LayerNorm 2d, attention 4d^2 + d (bias-free q/kv, out with bias), gate 1; own
    projections Linear D->d + LayerNorm d and Linear d->D; temporal embeddings T*d."""
    per_block = 4 * d * d + 3 * d + 1
    if own_projections:
        per_block += (2 * D + 3) * d + D
    if temporal_embed:
        per_block += T * d
    return DEPTH * per_block


def papers_figure(n, paper):
    """The paper prints some counts rounded (Table 6: 12.28M as 12.3) and some truncated (7.56M
    as 7.5, also in its text): a count agrees when either gives the paper's figure."""
    return paper in (round(n / 1e6, 1), int(n / 1e5) / 10)


def mult_params(w):
    """Per block, two directions of: 2 LayerNorms over D, q (D->w), kv (D->2w), out (w->D), gate."""
    return DEPTH * 2 * (4 * D + 4 * D * w + D + 1)


def mult_concat_params(w, mlp):
    """Per block: two Linear D->w + LayerNorm w, one Transformer layer at w (2 LayerNorms,
    attention 4w^2 + w, feed-forward), two Linear w->D, two gates."""
    layer = 4 * w + 4 * w * w + w + 2 * w * mlp + mlp + w
    return DEPTH * (2 * (D * w + 3 * w) + layer + 2 * (w * D + D) + 2)


def part(model, name):
    return sum(p.numel() for _, p in model.param_groups()[name] if p.requires_grad)


MTT = 2_110_464
BASE_WITHOUT_FUSION = 7_556_639 - 4_746_264  # prompts, pos-embeds, JAM, MTT, classifier


@pytest.mark.parametrize("d,paper", [(64, 1.3), (128, 0.8), (256, 4.3)])
def test_table2_ita_counts(d, paper):
    model = meta_model(f"model.ita_dim={d}", "model.temporal=mean")
    assert part(model, "ita") == ita_params(d, own_projections=d != 128)
    assert part(model, "fusion") == 4_746_264 and part(model, "mtt") == 0
    # ITA-256: projections from the 768-d stream alone are 12 x 2 x 768 x 256 = 4.7M
    assert papers_figure(part(model, "ita"), paper) == (d != 256)
    with_embed = meta_model(f"model.ita_dim={d}", "model.temporal=mean", "model.ita_temporal_embed=true")
    assert part(with_embed, "ita") == ita_params(d, d != 128, temporal_embed=True)


def test_table2_mtm_plus_ita128_count():
    model = meta_model("model.ita_dim=128")
    assert part(model, "mtt") == MTT
    assert part(model, "ita") + MTT == 2_901_516
    assert papers_figure(part(model, "ita") + MTT, 2.9)
    assert not papers_figure(MTT, 2.2)  # the MTT row: 1 layer, 512 wide, 8 heads, MLP 1024 is 2.1M
    assert trainable(model) == 7_556_639 + ita_params(128, own_projections=False)


@pytest.mark.parametrize("fusion,count", [
    ("none", 0), ("add", 2 * DEPTH), ("mult", mult_params(128)), ("mult_concat", mult_concat_params(128, 512)),
])
def test_table3_fusion_counts(fusion, count):
    model = meta_model(f"model.fusion={fusion}")
    assert part(model, "fusion") == count
    assert trainable(model) == BASE_WITHOUT_FUSION + count


# -- behaviour on the tiny model ------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_trains_and_every_trainable_parameter_gets_a_gradient(variant):
    cfg = tiny(*VARIANTS[variant])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    set_gates(model, 0.5)
    model(*inputs(cfg)).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_zero_gates_give_the_model_without_the_variant(variant):
    overrides = VARIANTS[variant]
    is_ita = variant.startswith("ita")
    # the reference: the same model without the ITA, or with no fusion at all
    ref_overrides = [o for o in overrides if not o.startswith("model.ita_dim")] if is_ita else ["model.fusion=none"]
    torch.manual_seed(0)
    ref = build_model(tiny(*ref_overrides)).eval()
    set_gates(ref, 0.5)  # the bottleneck's gates stay open: only the ITA's gates are at 0
    torch.manual_seed(1)
    model = build_model(tiny(*overrides)).eval()
    missing, unexpected = model.load_state_dict(ref.state_dict(), strict=False)
    new_part = "ita." if is_ita else "fusion."
    assert not unexpected and missing and all(k.startswith(new_part) for k in missing)
    assert all(p.abs().sum() == 0 for n, p in model.named_parameters() if n.endswith("gate") and n.startswith(new_part))
    video, audio = inputs(tiny())
    with torch.no_grad():
        assert torch.equal(model(video, audio), ref(video, audio))
        set_gates(model, 0.5)
        assert not torch.equal(model(video, audio), ref(video, audio))


def test_ita_at_the_bottleneck_width_uses_the_bottlenecks_projections():
    torch.manual_seed(0)
    model = build_model(tiny("model.ita_dim=16")).train()
    fb, ita = model.fusion[0], model.ita[0]
    assert ita.projections == (fb.video_down, fb.video_up)
    assert not any(".down." in k or ".up." in k for k in model.state_dict() if k.startswith("ita."))
    with torch.no_grad():
        for f in model.fusion:  # the bottleneck adds nothing: its layers learn only through the ITA
            f.video_gate.zero_()
            f.audio_gate.zero_()
        for a in model.ita:
            a.gate.fill_(0.5)
    model(*inputs(tiny())).sum().backward()
    assert fb.video_down[0].weight.grad.abs().sum() > 0 and fb.video_up[0].weight.grad.abs().sum() > 0
    assert fb.audio_down[0].weight.grad is None or fb.audio_down[0].weight.grad.abs().sum() == 0
    own = build_model(tiny("model.ita_dim=8")).ita[0]
    assert own.projections == (own.down, own.up) and "down.0.weight" in own.state_dict()


def _blocks(dim=32, width=8):
    torch.manual_seed(0)
    mods = {"add": AddFusion(), "mult": MultFusion(dim, width, 2), "mult_concat": ConcatFusion(dim, width, 2, 16),
            "ita": IntermediateTemporalAdaptor(dim, width, 2, num_frames=4),
            "ita_embed": IntermediateTemporalAdaptor(dim, width, 2, num_frames=4, temporal_embed=True)}
    with torch.no_grad():
        for m in mods.values():
            set_gates(m, 0.5)
    return mods


@pytest.mark.parametrize("name", ["add", "mult", "mult_concat"])
def test_fusion_blocks_exchange_within_a_clip_only(name):
    block = _blocks()[name]
    t, nv, na = 4, 5, 6
    video, audio = torch.randn(2 * t, nv, 32), torch.randn(2, na, 32)
    v0, a0 = block(video, audio, t)
    audio2 = audio.clone()
    audio2[0, 0] += 1.0  # clip 0's audio reaches every frame of clip 0, not clip 1
    v1, a1 = block(video, audio2, t)
    assert all(not torch.equal(v1[i], v0[i]) for i in range(t)) and torch.equal(v1[t:], v0[t:])
    video2 = video.clone()
    video2[t - 1, 1] += 1.0  # clip 0's last frame reaches clip 0's audio, not clip 1's
    v2, a2 = block(video2, audio, t)
    assert not torch.equal(a2[0], a0[0]) and torch.equal(a2[1], a0[1]) and torch.equal(v2[t:], v0[t:])


def test_ita_attends_over_the_frames_of_its_clip_only():
    block = _blocks()["ita"]
    t = 4
    video, audio = torch.randn(2 * t, 5, 32), torch.randn(2, 6, 32)
    v0, a0 = block(video, audio, t)
    assert a0 is audio  # the video branch only
    video2 = video.clone()
    video2[0, 0] += 1.0  # clip 0, frame 0, its CLS token
    v1, _ = block(video2, audio, t)
    assert all(not torch.equal(v1[i], v0[i]) for i in range(1, t)) and torch.equal(v1[t:], v0[t:])
    video3 = video.clone()
    video3[0, 1:] += 1.0  # the patch and prompt tokens are not read
    assert torch.equal(block(video3, audio, t)[0][1:], v0[1:])


def test_ita_sees_frame_order_only_with_temporal_embeddings():
    blocks = _blocks()
    t = 4
    video = torch.randn(2 * t, 5, 32)
    order = torch.tensor([3, 0, 2, 1, 4, 5, 6, 7])  # clip 0's frames shuffled
    for name, equivariant in (("ita", True), ("ita_embed", False)):
        out, _ = blocks[name](video, None, t)
        shuffled, _ = blocks[name](video[order], None, t)
        assert torch.allclose(shuffled, out[order], atol=1e-6) == equivariant, name


@pytest.mark.parametrize("name", ["add", "mult", "mult_concat", "ita", "ita_embed"])
def test_blocks_keep_a_bf16_stream_bf16(name):
    block = _blocks()[name]  # fp32 trainable parameters, as with model.frozen_dtype=bfloat16
    video, audio = torch.randn(8, 5, 32, dtype=torch.bfloat16), torch.randn(2, 6, 32, dtype=torch.bfloat16)
    v, a = block(video, audio, 4)
    assert v.dtype == a.dtype == torch.bfloat16
    (v.float().sum() + a.float().sum()).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in block.parameters())


@pytest.mark.parametrize("variant", ["ita_own_mean", "mult_concat"])
def test_whole_module_bf16_cast_trains(variant):
    cfg = tiny(*VARIANTS[variant])
    model = build_model(cfg).train().to(torch.bfloat16)
    out = model(*inputs(cfg, torch.bfloat16))
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


# -- configuration and the params command ----------------------------------------------------------
@pytest.mark.parametrize("overrides,message", [
    (["model.fusion=concat"], "model.fusion='concat'"),
    (["model.fusion=mult", "model.fusion_heads=3"], "model.fusion_heads=3 must divide model.fusion_dim=128"),
    (["model.fusion=mult_concat", "model.fusion_heads=0"], "model.fusion_heads=0 must be > 0"),
    (["model.fusion=mult_concat", "model.fusion_mlp_dim=0"], "model.fusion_mlp_dim=0 must be > 0"),
    (["model.fusion=add", "model.modalities=video"], "model.fusion='add' needs both encoders"),
    (["model.ita_dim=-1"], "model.ita_dim=-1 must be >= 0"),
    (["model.ita_dim=64", "model.ita_heads=3"], "model.ita_heads=3 must divide model.ita_dim=64"),
    (["model.ita_dim=64", "model.modalities=audio", "model.fusion=none"], "model.ita_dim .* needs the video branch"),
])
def test_invalid_variants_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_fusion_heads_are_not_checked_where_unused():
    assert load_config(None, ["model.fusion_heads=3"]).model.fusion == "bottleneck"


@pytest.mark.parametrize("overrides,row", [
    (["model.ita_dim=8", "model.temporal=mean"], "ita"),
    (["model.fusion=mult", "model.fusion_dim=8"], "fusion"),
])
def test_params_command_prints_the_variant_rows(capsys, overrides, row):
    from mma_dfer.cli import main

    args = ["params", "--config", str(ROOT / "configs/tiny.yaml")]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.strip().splitlines()}
    model = build_model(tiny(*overrides))
    assert lines[row][0] == f"{part(model, row):,}" and part(model, row) > 0
    assert lines["trainable:"] == [str(trainable(model))]
